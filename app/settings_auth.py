"""The settings of authentication: API key hashing and caching. A mixin of
:class:`app.settings.Settings` (so read from ``OXIFY_*`` variables)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

MIN_PEPPER_CHARS = 32  # a pepper is a server secret: as long as a key's secret, at least


class AuthSettings(BaseModel):
    """Fields mixed into Settings."""

    key_pepper: SecretStr | None = Field(
        default=None,
        description="Server secret every API key's digest is keyed with (HMAC-SHA-256), at "
        f"least {MIN_PEPPER_CHARS} characters, the same on every replica "
        '(`python -c "import secrets; print(secrets.token_urlsafe(32))"`). Required to create '
        "or check keys; changing it invalidates every key.",
    )
    key_cache_s: float = Field(
        default=5.0,
        gt=0,
        le=5.0,
        description="Seconds a replica trusts what it read about a key; revocations reach "
        "every replica at once through Postgres notifications, this bounds it otherwise.",
    )

    @field_validator("key_pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PEPPER_CHARS:
            raise ValueError(f"must be at least {MIN_PEPPER_CHARS} characters")
        return value

    @property
    def pepper(self) -> bytes | None:
        return None if self.key_pepper is None else self.key_pepper.get_secret_value().encode()
