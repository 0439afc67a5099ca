"""API key format and hashing.

``oxify_<key id>_<secret><checksum>``: a 12-character base62 id (the lookup key, safe to log),
a 32-character base62 secret (190 bits from :mod:`secrets`) and a 6-character base62 CRC32 of
everything before it. The checksum lets secret scanners recognise a leaked key and lets the
service refuse a mistyped or made-up key without a database read.

Stored as HMAC-SHA-256 of the secret under a server-side pepper, not bcrypt or argon2: those
slow down guessing low-entropy passwords, and 190 random bits cannot be guessed; they would
cost ~50 ms of CPU a request. A database dump without the pepper verifies nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "oxify_"
ID_CHARS = 12  # ~71 bits: unique ids without a retry loop worth the name
SECRET_CHARS = 32  # 32 * log2(62) = 190.5 bits
CHECKSUM_CHARS = 6  # base62 of a CRC32 (62**6 > 2**32)
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FORMAT = re.compile(
    rf"{PREFIX}([0-9A-Za-z]{{{ID_CHARS}}})_([0-9A-Za-z]{{{SECRET_CHARS}}})"
    rf"([0-9A-Za-z]{{{CHECKSUM_CHARS}}})"
)
KEY_ID = re.compile(rf"[0-9A-Za-z]{{{ID_CHARS}}}")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def _random(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_CHARS)


def new_key_id() -> str:
    return _random(ID_CHARS)


def new_key(key_id: str | None = None) -> tuple[str, ParsedKey]:
    """A fresh key (the text shown once) and its parts."""
    parsed = ParsedKey(key_id or new_key_id(), _random(SECRET_CHARS))
    body = f"{PREFIX}{parsed.key_id}_{parsed.secret}"
    return body + _checksum(body), parsed


def parse(text: str) -> ParsedKey | None:
    """The parts of a well-formed key with a valid checksum; None for anything else."""
    match = _FORMAT.fullmatch(text)
    if match is None:
        return None
    key_id, secret, checksum = match.groups()
    body = f"{PREFIX}{key_id}_{secret}"
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return ParsedKey(key_id, secret)


def digest(secret: str, pepper: bytes) -> bytes:
    """What the database holds for a key: HMAC-SHA-256 of the secret under the pepper."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).digest()


def matches(secret: str, stored: bytes, pepper: bytes) -> bool:
    """Constant-time comparison of a presented secret with the stored digest."""
    return hmac.compare_digest(digest(secret, pepper), stored)
