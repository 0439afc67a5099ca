"""Stored credentials' envelope: a Fernet token over ``{"id", "project", "value"}``.

Fernet (AES-128-CBC with HMAC-SHA-256) refuses any altered token. Binding the row's id and
project *inside* the token means a ciphertext copied onto another row (another credential, or
the same name in another project) is refused on decrypt too, though it is a valid token: the
database alone cannot move a secret to where its holder may use it.

Keys come from ``OXIFY_SECRET_KEYS`` (comma-separated Fernet keys): the first encrypts, every one
decrypts (:class:`cryptography.fernet.MultiFernet`), so a new key goes first, ``oxify
credentials rotate-key`` re-encrypts every row under it, and the old key can then be dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.domain.credentials import Kind
from app.errors import CredentialMismatch, CredentialUnreadable

KEY_FORM = "a Fernet key: 32 url-safe base64-encoded bytes (Fernet.generate_key())"


def parse_keys(text: str) -> list[str]:
    """The keys of ``OXIFY_SECRET_KEYS`` (comma-separated, blanks ignored); a ValueError names
    the position of a key that is not a Fernet key (never the key itself)."""
    keys = [part.strip() for part in text.split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(f"key {position} of {len(keys)} is not {KEY_FORM}") from None
    return keys


class Keyring:
    """The configured keys: ``all`` (a MultiFernet: the first encrypts, every one decrypts) and
    ``primary`` (the first alone, which tells whether a token needs re-encrypting)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        fernets = [Fernet(key) for key in keys]
        self.primary = fernets[0]
        self.all = MultiFernet(fernets)

    def __repr__(self) -> str:
        return "Keyring(...)"


def seal(keys: Keyring, credential_id: str, project: str, value: str) -> bytes:
    """The token a credential's row holds: its value bound to its id and project."""
    payload = {"id": credential_id, "project": project, "value": value}
    return keys.all.encrypt(json.dumps(payload, separators=(",", ":")).encode())


def open(keys: Keyring, credential_id: str, project: str, token: bytes) -> str:
    """The value sealed in ``token`` for this id and project.

    Raises :class:`CredentialUnreadable` when no key opens the token (or it was altered) and
    :class:`CredentialMismatch` when it was sealed for another id or project.
    """
    try:
        payload = json.loads(keys.all.decrypt(token))
    except (InvalidToken, ValueError):
        raise CredentialUnreadable() from None
    if not _well_formed(payload):
        raise CredentialUnreadable()
    if payload["id"] != credential_id or payload["project"] != project:
        raise CredentialMismatch()
    value: str = payload["value"]
    return value


def rotated(keys: Keyring, credential_id: str, project: str, token: bytes) -> bytes | None:
    """``token`` sealed anew under the first key, or None when it already is (rotation is
    idempotent). The envelope is checked first: a copied or altered row is not re-sealed."""
    value = open(keys, credential_id, project, token)
    try:
        keys.primary.decrypt(token)
    except InvalidToken:
        return seal(keys, credential_id, project, value)
    return None


def _well_formed(payload: object) -> bool:
    return isinstance(payload, dict) and all(
        isinstance(payload.get(name), str) for name in ("id", "project", "value")
    )


@dataclass(frozen=True, slots=True)
class Resolved:
    """A credential opened for one use: its value never prints (``repr`` leaves it out)."""

    name: str
    kind: Kind
    value: str = field(repr=False)
    params: Mapping[str, str] = field(default_factory=dict)  # not secret: username, header


class Resolver(Protocol):
    """The port node executors resolve credentials through (the service implements it)."""

    async def resolve(self, project: str, name: str) -> Resolved:
        """The credential ``name`` of ``project``; raises CredentialNotFound,
        EncryptionNotConfigured or CredentialUnreadable."""
        ...
