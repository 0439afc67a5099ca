"""Credential use cases: store (encrypted), list, read and delete them for the caller's project;
resolve one for a node; re-encrypt every row under the first key.

The caller's project comes from the request context (:func:`app.auth.context.principal`): a
caller bound to a project sees only its credentials (another project's answer 404), a caller
without one sees every project. Values go one way: in through :meth:`create`, out only through
:meth:`resolve` to a node executor, never into an answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import context
from app.auth import credentials as envelope
from app.auth.principal import DEFAULT_PROJECT
from app.domain import views as models
from app.domain.credentials import Credential, NewCredential
from app.errors import (
    CredentialInvalid,
    CredentialNotFound,
    CredentialUnreadable,
    EncryptionNotConfigured,
    ErrorDetail,
    InsufficientScope,
)
from app.services import audit
from app.services.audit import AuditAction
from app.store import credentials as store
from app.store import db

ROTATE_BATCH = 100  # rows re-encrypted per transaction


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Rotation:
    """What a re-encryption did: rows sealed anew, rows already under the first key, and the
    ids of rows no configured key opens (or copied from another row), left as they were."""

    rotated: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)


class CredentialService:
    """Credentials, encrypted under ``keys`` (None: storing and resolving are refused)."""

    def __init__(
        self,
        engine: AsyncEngine,
        keys: envelope.Keyring | None,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._read = db.autocommit(engine)
        self._keys = keys
        self._now = now

    async def create(self, new: NewCredential) -> Credential:
        """Encrypt and store ``new`` in the caller's project (or the one it names, for a caller
        that sees every project). Raises CredentialInvalid, CredentialExists,
        EncryptionNotConfigured (nothing stored) or InsufficientScope."""
        problems = [ErrorDetail(pointer, message) for pointer, message in new.problems()]
        if problems:
            raise CredentialInvalid(problems)
        keys = self._keyring()
        project = _project_for(new.project)
        credential_id = str(uuid.uuid4())
        now = self._now()
        row = {
            "id": credential_id,
            "project": project,
            "name": new.name,
            "kind": new.kind,
            "params": new.params(),
            "ciphertext": envelope.seal(keys, credential_id, project, new.value.get_secret_value()),
            "created_at": now,
            "updated_at": now,
        }
        async with self._engine.begin() as conn:
            await store.insert(conn, row)
            created = await store.get(conn, credential_id, project)
            detail = {"name": new.name, "kind": new.kind}
            await audit.record(
                conn,
                action=AuditAction.CREDENTIAL_CREATE,
                target=f"credential:{credential_id}",
                project=project,
                detail=detail,
            )
        assert created is not None
        return created

    async def list(self, *, limit: int, cursor: str | None) -> models.Page[Credential]:
        """The caller's credentials (every project's for a caller bound to none), no values."""
        async with self._read.connect() as conn:
            return await store.list_page(
                conn, context.principal().project, limit=limit, cursor=cursor
            )

    async def get(self, credential_id: str) -> Credential:
        """One credential, without its value; raises CredentialNotFound (also for another
        project's)."""
        async with self._read.connect() as conn:
            found = await store.get(conn, credential_id, context.principal().project)
        if found is None:
            raise CredentialNotFound(f"no credential {credential_id!r}")
        return found

    async def delete(self, credential_id: str) -> None:
        """Delete a credential for good; raises CredentialNotFound."""
        async with self._engine.begin() as conn:
            found = await store.get(conn, credential_id, context.principal().project)
            if found is None or not await store.remove(conn, credential_id, found.project):
                raise CredentialNotFound(f"no credential {credential_id!r}")
            await audit.record(
                conn,
                action=AuditAction.CREDENTIAL_DELETE,
                target=f"credential:{credential_id}",
                project=found.project,
                detail={"name": found.name},
            )

    async def resolve(self, project: str, name: str) -> envelope.Resolved:
        """The credential ``name`` of ``project``, decrypted, for one node's call (the
        :class:`app.auth.credentials.Resolver` port). Raises CredentialNotFound,
        EncryptionNotConfigured or CredentialUnreadable."""
        keys = self._keyring()
        async with self._read.connect() as conn:
            row = await store.find(conn, project, name)
        if row is None:
            raise CredentialNotFound(f"no credential {name!r} in project {project!r}")
        value = envelope.open(keys, row.id, row.project, row.ciphertext)
        return envelope.Resolved(name=row.name, kind=row.kind, value=value, params=row.params)

    async def rotate(self, batch_size: int = ROTATE_BATCH) -> Rotation:
        """Re-encrypt every row under the first key, ``batch_size`` rows a transaction.
        Idempotent: rows already under the first key are left alone."""
        keys = self._keyring()
        done = Rotation()
        after = ""
        while True:
            async with self._engine.begin() as conn:
                rows = await store.batch(conn, after, batch_size)
                for row in rows:
                    try:
                        sealed = envelope.rotated(keys, row.id, row.project, row.ciphertext)
                    except CredentialUnreadable:
                        done.failed.append(row.id)
                        continue
                    if sealed is None:
                        done.unchanged += 1
                    elif await store.reseal(conn, row.id, row.ciphertext, sealed, self._now()):
                        done.rotated += 1
            if len(rows) < batch_size:
                return done
            after = rows[-1].id

    def _keyring(self) -> envelope.Keyring:
        if self._keys is None:
            raise EncryptionNotConfigured()
        return self._keys


def _project_for(named: str | None) -> str:
    """The project a new credential goes to: the caller's own; a caller bound to none may
    name one (else ``default``)."""
    own = context.principal().project
    if own is None:
        return named or DEFAULT_PROJECT
    if named is not None and named != own:
        raise InsufficientScope(f"these credentials work in project {own!r} only")
    return own
