"""Tokens per day, as model-calling nodes see it: a call is admitted (or refused with
``quota_exhausted``) before it is sent, and its tokens charged once it answered, through
:class:`NodeResources`. The composition root hands nodes the service's quotas; `oxify run` and
tests that need none get :data:`UNLIMITED`."""

from __future__ import annotations

from typing import Protocol

# ruff: noqa: ARG002 (the unlimited quota takes what every quota is told, and ignores it)


class TokenQuota(Protocol):
    async def admit(self, execution_id: str) -> None:
        """Raise QuotaExhausted when the run's key or project has no tokens left today."""
        ...

    async def charge(self, execution_id: str, tokens: int) -> None:
        """Count tokens an answered call spent (the run pauses or fails once a quota is
        crossed, as ``OXIFY_QUOTA_EXHAUSTED`` says)."""
        ...


class _Unlimited:
    __slots__ = ()

    async def admit(self, execution_id: str) -> None:
        return None

    async def charge(self, execution_id: str, tokens: int) -> None:
        return None


UNLIMITED: TokenQuota = _Unlimited()
