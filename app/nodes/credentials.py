"""Stored credentials as node executors reach them (an ``auth`` of type ``credential``, a model
call's ``credential``): by name, in the run's project, through the resolver the composition
root put in :class:`~app.nodes.resources.NodeResources`.

A resolved value never enters a node's render context (no template can name it); it goes
straight onto the request that needs it, and is remembered by :mod:`app.redaction` so a log
line that echoes it (a server quoting the header it refused) shows ``[secret]`` instead.
"""

from __future__ import annotations

from app import redaction
from app.auth import context
from app.auth.credentials import Resolved
from app.auth.principal import DEFAULT_PROJECT
from app.errors import (
    CredentialNotFound,
    CredentialUnreadable,
    EncryptionNotConfigured,
    NodeConfigError,
)
from app.nodes.resources import NodeResources


def run_project() -> str:
    """The project whose credentials a run's nodes use: the run's own (the runner binds it to
    the task that drives the run); ``default`` where nothing is bound (``oxify run``)."""
    return context.project() or DEFAULT_PROJECT


async def resolve(resources: NodeResources, name: str) -> Resolved:
    """The credential ``name`` of the run's project, its value remembered for redaction;
    anything that stops it is a node config error (not retried) that never shows a value."""
    resolver = resources.credentials
    project = run_project()
    if resolver is None:
        raise NodeConfigError(
            f"credential {name!r}: stored credentials need the service's database (`oxify "
            "run` has none); pass the secret as a run input instead"
        )
    try:
        found = await resolver.resolve(project, name)
    except CredentialNotFound:
        raise NodeConfigError(f"credential {name!r} not found in project {project!r}") from None
    except EncryptionNotConfigured as exc:
        raise NodeConfigError(f"credential {name!r}: {exc.message}") from None
    except CredentialUnreadable as exc:
        raise NodeConfigError(f"credential {name!r} cannot be used: {exc.message}") from None
    redaction.remember(found.value)
    return found
