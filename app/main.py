"""The composition root: builds the database engine, journal, bus, scheduler, runner and
services, and the FastAPI app around them. The only module that wires everything."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import faults
from app.api import errors as api_errors
from app.api import metrics as api_metrics
from app.api import security as api_security
from app.api.routes import router
from app.auth.oidc import OidcVerifier
from app.domain.events import Event
from app.engine.compile.graph import PlanCache
from app.engine.run.scheduler import Scheduler
from app.events.bus import EventBus
from app.events.notify import Channel, LocalNotifier, Notifier, PgNotifier
from app.nodes.registry import load_registry
from app.nodes.resources import NodeResources
from app.observability.metrics import Metrics
from app.observability.observers import combined
from app.observability.tracing import Tracing
from app.services.audit import AuditService
from app.services.auth_failures import AuthFailures
from app.services.authn import Authenticator
from app.services.container import Services
from app.services.credentials import CredentialService
from app.services.executions import ExecutionService
from app.services.finished_runs import FinishedRuns
from app.services.forms import FormService
from app.services.gauges import ClusterGauges
from app.services.housekeeping import Housekeeping
from app.services.keys import KeyService
from app.services.limits import LimitService
from app.services.runner import LeaseSettings, Runner
from app.services.tickets import TicketService
from app.services.token_quotas import TokenQuotas
from app.services.workflows import WorkflowService
from app.settings import Settings, get_settings
from app.store import db
from app.store.journal import SqlJournal

log = logging.getLogger("oxify")

MAINTENANCE_TIMEOUT_S = 300.0  # seconds a retention statement may take (bulk deletes)


@asynccontextmanager
async def running_services(
    settings: Settings, metrics: Metrics, tracing: Tracing | None = None
) -> AsyncIterator[Services]:
    """Everything a serving process needs, started, recording into ``metrics`` (and traces
    into ``tracing``); stopped (runs paused) on exit."""
    tracing = tracing or Tracing()
    faults.install(settings.faults, settings.faults_seed)
    # One bound for every database call; writes and renewals a third of a lease at most, so a
    # hung connection is replaced while the leases it renews still hold.
    timeout_s = min(settings.db_timeout_s, settings.lease_s / 3)
    engine = db.create_engine(settings.resolved_database_url, timeout_s=settings.db_timeout_s)
    replica_id = settings.resolved_replica_id
    journal = SqlJournal(engine, timeout_s=timeout_s)
    bus = EventBus(journal, queue_size=settings.subscriber_queue, lags=metrics)
    notifier: Notifier = (
        PgNotifier(db.asyncpg_dsn(engine), replica_id, timeout_s=settings.db_timeout_s)
        if db.is_postgres(engine)
        else LocalNotifier()
    )

    def published(events: Sequence[Event]) -> None:
        bus.publish(events)
        notifier.send(Channel.EVENTS, {event.execution_id for event in events})

    keys = KeyService(
        engine, pepper=settings.pepper, sender=replica_id, cache_s=settings.key_cache_s
    )
    tokens = OidcVerifier.from_settings(settings) if settings.oidc_enabled else None
    auth = Authenticator(keys, tokens=tokens, poll=not db.is_postgres(engine))
    auth_failures = AuthFailures(engine)
    keys.on_change(auth.keys_changed)
    notifier.listen(Channel.KEYS, auth.keys_changed)
    notifier.on_resync(auth.resync)

    journal.set_publisher(published)
    notifier.listen(Channel.EVENTS, bus.refresh)
    notifier.on_resync(bus.refresh_all)
    credentials = CredentialService(engine, settings.keyring())
    rate_limits = LimitService(
        engine,
        defaults=settings.default_limits(),
        auth_failures_per_min=settings.auth_failures_per_min,
        trusted_proxies=settings.proxy_networks(),
        refresh_s=settings.limits_refresh_s,
        replica_ttl_s=settings.lease_s,
    )
    # Bound late: the runner drives runs (a pause), the executions resume them.
    token_quotas = TokenQuotas(
        engine,
        limits=rate_limits,
        keys=keys,
        mode=settings.quota_exhausted,
        control=lambda execution_id: runner.control(execution_id),
        resume=lambda execution_id: executions.resume(execution_id),
    )
    resources = NodeResources(
        settings=settings,
        database=engine,
        meter=metrics,
        credentials=credentials,
        token_quota=token_quotas,
    )
    registry = load_registry(resources)
    if settings.faults:
        executors = {name: faults.FaultyExecutor(e) for name, e in registry.executors.items()}
        registry = dataclasses.replace(registry, executors=executors)
    limits = settings.engine_limits()
    plan_cache = PlanCache()
    workflows = WorkflowService(
        engine,
        plan_cache=plan_cache,
        limits=limits,
        node_types=registry.node_types,
        checks=registry.checks,
    )
    scheduler = Scheduler(
        executors=registry.executors,
        events=journal,
        checkpoints=journal,
        loader=workflows,
        node_types=registry.node_types,
        limits=limits,
        plan_cache=plan_cache,
        # The tracing observer goes before the metrics: watches end in reverse, so its span is
        # still current when a node's duration is observed (the trace_id exemplar).
        observer=combined([tracing.observer(), metrics.nodes]),
    )
    runner = Runner(
        engine=engine,
        scheduler=scheduler,
        journal=journal,
        workflows=workflows,
        notifier=notifier,
        settings=LeaseSettings(
            replica_id=replica_id,
            max_concurrent=settings.max_concurrent_runs,
            lease_s=settings.lease_s,
            heartbeat_s=settings.resolved_heartbeat_s,
            poll_s=settings.resolved_poll_s,
            timeout_s=timeout_s,
        ),
        on_claimed=functools.partial(
            metrics.claimed, replica_id=replica_id, lease_s=settings.lease_s
        ),
        tracer=tracing.tracer,
    )

    def requeued(execution_ids: list[str]) -> None:
        runner.notify()
        notifier.send(Channel.QUEUE, execution_ids)

    journal.on_requeued(requeued)
    forms = FormService(
        engine,
        queued=lambda execution_id: requeued([execution_id]),
        answered=metrics.form_answered,
    )
    finished_runs = FinishedRuns(engine, metrics.run_finished, timeout_s=timeout_s)
    bus.listen(finished_runs.events)
    executions = ExecutionService(
        engine,
        workflows=workflows,
        runner=runner,
        journal=journal,
        bus=bus,
        notifier=notifier,
        max_queued=settings.max_queued_runs,
        max_input_bytes=settings.max_input_bytes,
        tracer=tracing.tracer,
        trace_url_template=settings.trace_url_template,
        limits=rate_limits,
    )
    # Retention deletes in bulk: its statements get a longer bound, on connections of their own.
    maintenance = (
        db.create_engine(
            settings.resolved_database_url,
            timeout_s=MAINTENANCE_TIMEOUT_S,
            pool_size=1,
            max_overflow=1,
        )
        if db.is_postgres(engine)
        else engine
    )
    housekeeping = Housekeeping(
        maintenance,
        forms=forms,
        executions=executions,
        deadline_sweep_s=settings.deadline_sweep_s,
        retention_days=settings.retention_days,
        retention_interval_s=settings.retention_interval_s,
        quotas=token_quotas,
    )
    gauges = ClusterGauges(engine, settings.cluster_gauges_s)
    services = Services(
        settings,
        engine,
        workflows,
        executions,
        runner,
        bus,
        forms,
        registry.catalog(),
        resources,
        gauges,
        finished_runs=finished_runs,
        keys=keys,
        auth=auth,
        tickets=TicketService(engine, keys),
        auth_failures=auth_failures,
        audit=AuditService(engine),
        credentials=credentials,
        limits=rate_limits,
        token_quotas=token_quotas,
    )
    await notifier.start()
    await runner.start()
    await housekeeping.start()
    gauges.start()
    keys.start()
    await rate_limits.start()
    try:
        yield services
    finally:
        await rate_limits.close()
        await keys.close()
        await auth_failures.close()
        if tokens is not None:
            await tokens.aclose()
        await gauges.close()
        await housekeeping.close()
        await runner.shutdown(settings.shutdown_grace_s)
        await journal.close()
        await finished_runs.close()
        await bus.close()
        await notifier.close()
        await resources.aclose()
        await engine.dispose()
        if maintenance is not engine:
            await maintenance.dispose()
        faults.install(())


def create_app(settings: Settings | None = None, *, tracing: Tracing | None = None) -> FastAPI:
    """The HTTP app; its lifespan starts and stops the services. ``tracing``: the app's tracer
    provider (tests hand in their own); None: as the settings say (off without an endpoint)."""
    settings = settings or get_settings()
    # Resolved once: the leases and the spans' resource name the same replica.
    settings = settings.model_copy(update={"replica_id": settings.resolved_replica_id})
    tracing = tracing or Tracing.from_settings(settings, settings.resolved_replica_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with running_services(settings, api_metrics.of(app), tracing) as services:
                app.state.services = services
                yield
        finally:
            await tracing.close()

    app = FastAPI(
        title="Oxify",
        version="0.1.0",
        summary="Durable workflow execution: DAGs of LLM, retrieval, code, HTTP and human steps.",
        lifespan=lifespan,
        # FastAPI's own telemetry would trace (and meter) every request through OpenTelemetry's
        # global providers, which `oxify serve` sets: a second server span per request beside
        # tracing.instrument's, and one that ends before the metrics middleware reads it.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api_errors.install(app, max_body_bytes=settings.max_body_bytes)
    api_metrics.install(app, settings)
    api_security.install(app, settings)
    app.include_router(router)
    tracing.instrument(app)
    return app
