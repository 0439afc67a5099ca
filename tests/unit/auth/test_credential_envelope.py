"""The credentials' envelope: bound to its row, refused when altered or moved, re-encrypted by
rotation; the keys' setting validated without ever showing a key."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from app import redaction
from app.auth import credentials
from app.auth.credentials import Keyring
from app.errors import CredentialMismatch, CredentialUnreadable
from app.observability.logs import JsonLines, TextLines
from app.settings import Settings

A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()
CANARY = "canary-4f1d9a7e-secret"


def test_a_sealed_value_opens_for_its_own_row() -> None:
    keys = Keyring([A])
    token = credentials.seal(keys, "id-1", "default", CANARY)
    assert CANARY.encode() not in token
    assert credentials.open(keys, "id-1", "default", token) == CANARY


@pytest.mark.parametrize(("other_id", "other_project"), [("id-2", "default"), ("id-1", "p2")])
def test_a_ciphertext_copied_onto_another_row_is_refused(other_id: str, other_project: str) -> None:
    keys = Keyring([A])
    token = credentials.seal(keys, "id-1", "default", CANARY)
    with pytest.raises(CredentialMismatch) as raised:
        credentials.open(keys, other_id, other_project, token)
    assert CANARY not in str(raised.value)


def test_an_altered_token_is_refused() -> None:
    keys = Keyring([A])
    token = bytearray(base64.urlsafe_b64decode(credentials.seal(keys, "i", "p", CANARY)))
    token[40] ^= 1  # a bit of the ciphertext
    with pytest.raises(CredentialUnreadable) as raised:
        credentials.open(keys, "i", "p", base64.urlsafe_b64encode(bytes(token)))
    assert type(raised.value) is CredentialUnreadable


def test_a_token_no_configured_key_opens_is_refused() -> None:
    token = credentials.seal(Keyring([A]), "i", "p", CANARY)
    with pytest.raises(CredentialUnreadable):
        credentials.open(Keyring([B]), "i", "p", token)


def test_a_token_sealed_by_hand_without_the_binding_is_refused() -> None:
    token = Fernet(A).encrypt(b'{"value": "x"}')
    with pytest.raises(CredentialUnreadable):
        credentials.open(Keyring([A]), "i", "p", token)


def test_rotation_seals_under_the_first_key_once() -> None:
    old = credentials.seal(Keyring([A]), "i", "p", CANARY)
    both = Keyring([B, A])
    rotated = credentials.rotated(both, "i", "p", old)
    assert rotated is not None
    assert credentials.open(Keyring([B]), "i", "p", rotated) == CANARY
    assert credentials.rotated(both, "i", "p", rotated) is None  # idempotent
    with pytest.raises(CredentialMismatch):  # a moved row is not re-sealed in place
        credentials.rotated(both, "other", "p", old)


def test_the_keys_setting_takes_comma_separated_fernet_keys() -> None:
    settings = Settings(secret_keys=f" {B} , {A} ")
    keys = settings.keyring()
    assert keys is not None
    token = credentials.seal(keys, "i", "p", CANARY)
    assert credentials.open(Keyring([B]), "i", "p", token) == CANARY
    assert A not in repr(settings) and B not in repr(settings) and A not in repr(keys)
    assert Settings().keyring() is None


def test_a_bad_key_is_named_by_position_never_shown() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(secret_keys=f"{A},not-a-key-{A[:10]}")
    text = str(raised.value)
    assert "key 2 of 2 is not a Fernet key" in text
    assert A[:10] not in text


def test_a_resolved_value_never_prints() -> None:
    resolved = credentials.Resolved(name="crm", kind="bearer", value=CANARY)
    assert CANARY not in repr(resolved)


def test_remembered_values_are_scrubbed_from_log_lines() -> None:
    redaction.remember(CANARY, "short")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, f"got {CANARY}", None, None)
    assert CANARY not in JsonLines([]).format(record)
    assert CANARY not in TextLines([]).format(record)
    assert "short" not in redaction.remembered()  # too short to scrub everywhere
