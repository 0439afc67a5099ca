"""The API key format: parseable, checksummed, hashed under the pepper."""

from __future__ import annotations

import re

import pytest

from app.auth import keys, scopes
from app.auth.principal import ANONYMOUS, Principal
from app.auth.scopes import Action, Scope

PEPPER = b"p" * 32


def test_a_new_key_parses_back_to_its_parts() -> None:
    text, parsed = keys.new_key()
    assert re.fullmatch(r"oxify_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", text)
    assert keys.parse(text) == parsed
    assert len(parsed.secret) == keys.SECRET_CHARS  # 32 base62 characters: 190 bits


def test_the_checksum_catches_a_changed_character() -> None:
    text, _ = keys.new_key()
    position = len("oxify_") + 12 + 1 + 5  # inside the secret
    changed = text[:position] + ("a" if text[position] != "a" else "b") + text[position + 1 :]
    assert keys.parse(changed) is None


@pytest.mark.parametrize(
    "text",
    ["", "oxify_", "Bearer x", "oxify_short_secret", "oxify_" + "a" * 12 + "_" + "b" * 37],
)
def test_malformed_keys_do_not_parse(text: str) -> None:
    assert keys.parse(text) is None


def test_the_digest_depends_on_the_pepper() -> None:
    _, parsed = keys.new_key()
    stored = keys.digest(parsed.secret, PEPPER)
    assert keys.matches(parsed.secret, stored, PEPPER)
    assert not keys.matches(parsed.secret, stored, b"q" * 32)
    assert not keys.matches(parsed.secret + "x", stored, PEPPER)


def test_the_scope_table() -> None:
    viewer = frozenset({Scope.VIEWER})
    reviewer = frozenset({Scope.REVIEWER})
    runner = frozenset({Scope.RUNNER})
    assert scopes.allows(viewer, Action.READ_RUNS)
    assert not scopes.allows(viewer, Action.CONTROL_RUNS)
    assert not scopes.allows(viewer, Action.ANSWER_FORMS)
    assert scopes.allows(reviewer, Action.ANSWER_FORMS)
    assert not scopes.allows(reviewer, Action.READ_WORKFLOWS)
    assert scopes.allows(runner, Action.WRITE_WORKFLOWS)
    assert not scopes.allows(runner, Action.ANSWER_FORMS)
    assert not scopes.allows(runner, Action.ADMIN)
    for action in Action:  # admin implies all
        assert scopes.allows({Scope.ADMIN}, action)
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        scopes.parse(["root"])


def test_principals_name_their_actor_never_a_secret() -> None:
    key = Principal(scopes=frozenset({Scope.VIEWER}), project="p", key_id="abc")
    assert key.actor == "key:abc"
    assert Principal(scopes=frozenset(), project="p", subject="ann").actor == "sub:ann"
    assert ANONYMOUS.actor == "anonymous"
    assert key.sees("p")
    assert not key.sees("q")
    assert ANONYMOUS.sees("q")
