"""Signing keys of a test identity provider (RSA, EC P-256, Ed25519) and the tokens they sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER_PATH = "/realms/oxify"  # the issuer is <server url> + this
AUDIENCE = "oxify-api"
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Signer:
    """One private key of the provider: ``kid``, the algorithm it signs with."""

    kid: str
    algorithm: str
    private_key: SigningKey

    def jwk(self) -> dict[str, Any]:
        """The public half as the provider publishes it."""
        algorithm = jwt.algorithms.get_default_algorithms()[self.algorithm]
        public = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid, **header}
        )


@cache
def signer(kid: str, algorithm: str = "RS256") -> Signer:
    """A key made once per test session (RSA key generation takes tens of milliseconds)."""
    private: SigningKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return Signer(kid, algorithm, private)


def claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    """A valid token's claims for ``issuer`` and AUDIENCE, good for five minutes; an override
    of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 300,
        "scope": "openid runner viewer",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def jwks(*signers: Signer) -> dict[str, Any]:
    return {"keys": [s.jwk() for s in signers]}


def unsigned(payload: dict[str, Any]) -> str:
    """A token with ``alg: none`` (no signature), as an attacker writes it."""
    return jwt.encode(payload, "", algorithm="none")


def hmac_with_public_key(signer: Signer, payload: dict[str, Any]) -> str:
    """The key-confusion attack: HS256 with the provider's *public* key as the HMAC secret
    (PyJWT refuses a PEM as an HMAC key, so the token is assembled by hand)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"
