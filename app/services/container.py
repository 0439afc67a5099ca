"""The services one process runs, as built by the composition root (``app.main``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.views import NodeTypeList
from app.events.bus import EventBus
from app.nodes.ai import cache
from app.nodes.resources import NodeResources
from app.services.audit import AuditService
from app.services.auth_failures import AuthFailures
from app.services.authn import Authenticator
from app.services.credentials import CredentialService
from app.services.executions import ExecutionService
from app.services.finished_runs import FinishedRuns
from app.services.forms import FormService
from app.services.gauges import ClusterGauges
from app.services.keys import KeyService
from app.services.limits import LimitService
from app.services.runner import Runner
from app.services.tickets import TicketService
from app.services.token_quotas import TokenQuotas
from app.services.workflows import WorkflowService
from app.settings import Settings
from app.store import db


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    workflows: WorkflowService
    executions: ExecutionService
    runner: Runner
    bus: EventBus
    forms: FormService
    node_types: NodeTypeList  # what GET /v1/node-types answers; fixed once the process started
    resources: NodeResources  # the clients node executors share (and their counters)
    gauges: ClusterGauges  # cluster-wide counts for the metrics, refreshed in the background
    finished_runs: FinishedRuns  # runs that ended here, counted by workflow for the metrics
    keys: KeyService
    auth: Authenticator  # who a request comes from
    tickets: TicketService  # single-use tickets for browser streams
    auth_failures: AuthFailures  # refused credentials, sampled into the audit log
    audit: AuditService  # the audit log, read and checked
    credentials: CredentialService  # secrets nodes use, encrypted (resources resolve through it)
    limits: LimitService  # rate limits and quotas per key and project
    token_quotas: TokenQuotas  # tokens/day on every model call

    def answer_cache_counts(self) -> dict[str, tuple[int, int]]:
        """Hits and misses of the process's answer caches made so far, by kind (``llm``,
        ``embeddings``)."""
        caches = cache.answer_caches(self.resources)
        return {kind: (made.hits, made.misses) for kind, made in caches.items()}

    async def ready(self) -> tuple[bool, str]:
        """Database reachable and migrated to head: (ready, reason)."""
        try:
            current = await db.current_revision(self.engine)
        except Exception as exc:
            return False, f"database unreachable: {type(exc).__name__}"
        head = db.head_revision()
        if current != head:
            return False, f"database at migration {current}, expected {head}"
        return True, "ok"
