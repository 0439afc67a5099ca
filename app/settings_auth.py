"""The settings of authentication: API key hashing and caching. A mixin of
:class:`app.settings.Settings` (so read from ``OXIFY_*`` variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from app.settings_net import split_list

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
    key_pepper_file: Path | None = Field(
        default=None,
        description="A file holding key_pepper (a Docker or Kubernetes secret); used when "
        "OXIFY_KEY_PEPPER is not set.",
    )
    admin_key_file: Path | None = Field(
        default=None,
        description="A file holding an API key (`oxify keys generate`) that `oxify serve` "
        "makes an admin key of every project at startup, if no key has its id: a deployment's "
        "first key, from a secret.",
    )
    key_cache_s: float = Field(
        default=5.0,
        gt=0,
        le=5.0,
        description="Seconds a replica trusts what it read about a key; revocations reach "
        "every replica at once through Postgres notifications, this bounds it otherwise.",
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), comma-separated or a "
        "JSON list; empty (the default): no CORS headers, browsers on other origins are "
        "refused. `*` allows any origin, but not together with cors_allow_credentials.",
    )
    cors_allow_credentials: bool = Field(
        default=False,
        description="Let browsers send cookies and HTTP authentication on CORS requests "
        "(API keys go in the Authorization header, which needs no such permission).",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_list(cls, value: object) -> object:
        return split_list(value)

    @field_validator("cors_allow_credentials")
    @classmethod
    def _no_wildcard_with_credentials(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "*" in info.data.get("cors_origins", ()):
            raise ValueError(
                "not with OXIFY_CORS_ORIGINS='*': any web page could act with its visitors' "
                "credentials; list the origins instead"
            )
        return value

    @field_validator("key_pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PEPPER_CHARS:
            raise ValueError(f"must be at least {MIN_PEPPER_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _pepper_from_file(self) -> AuthSettings:
        if self.key_pepper is None and self.key_pepper_file is not None:
            try:
                text = self.key_pepper_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read {self.key_pepper_file}: {exc}") from None
            self.key_pepper = self._long_enough(SecretStr(text))
        return self

    @property
    def pepper(self) -> bytes | None:
        return None if self.key_pepper is None else self.key_pepper.get_secret_value().encode()
