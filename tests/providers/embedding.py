"""Deterministic embeddings with meaningful similarity: a hashed bag of words.

Each lower-cased word adds ±1 to one of ``dimensions`` slots picked by a stable hash, and the
vector is L2-normalised, so texts sharing words have a higher cosine than texts that share none
— enough for tests of vector search to rank documents by topic.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

_WORDS = re.compile(r"\w+")


def embed(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORDS.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # A text without words still gets a unit vector (providers never return zeros).
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


def as_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: "base64"``: little-endian float32s, base64-encoded (the SDK
    asks for this by default and decodes it)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
