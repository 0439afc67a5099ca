"""The composition root: builds the database engine, journal, bus, scheduler, runner and
services, and the FastAPI app around them. The only module that wires everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import errors as api_errors
from app.api import metrics as api_metrics
from app.api.routes import router
from app.engine.graph import Limits, PlanCache
from app.engine.scheduler import Scheduler
from app.events.bus import EventBus
from app.nodes import http as http_node
from app.nodes.registry import load_registry
from app.services.container import Services
from app.services.executions import ExecutionService
from app.services.runner import Runner
from app.services.workflows import WorkflowService
from app.settings import Settings, get_settings
from app.store import db
from app.store.journal import SqlJournal

log = logging.getLogger("oxify")

HTTP_CLIENT_TIMEOUT_S = 30.0  # seconds; nodes set their own per request


@asynccontextmanager
async def running_services(settings: Settings) -> AsyncIterator[Services]:
    """Everything a serving process needs, started; stopped (runs paused) on exit."""
    engine = db.create_engine(settings.resolved_database_url)
    journal = SqlJournal(engine)
    bus = EventBus(journal, queue_size=settings.subscriber_queue)
    journal.set_publisher(bus.publish)
    http_client = http_node.make_client(timeout=HTTP_CLIENT_TIMEOUT_S)
    registry = load_registry(http_client=http_client)
    limits = Limits(
        max_nodes=settings.max_workflow_nodes,
        max_depth=settings.max_workflow_depth,
        max_expression_length=settings.max_expression_length,
    )
    plan_cache = PlanCache()
    workflows = WorkflowService(
        engine, plan_cache=plan_cache, limits=limits, node_types=registry.node_types
    )
    scheduler = Scheduler(
        executors=registry.executors,
        events=journal,
        checkpoints=journal,
        loader=workflows,
        node_types=registry.node_types,
        limits=limits,
        plan_cache=plan_cache,
    )
    runner = Runner(
        engine=engine,
        scheduler=scheduler,
        journal=journal,
        workflows=workflows,
        max_concurrent=settings.max_concurrent_runs,
    )
    executions = ExecutionService(
        engine, workflows=workflows, runner=runner, journal=journal, bus=bus
    )
    services = Services(settings, engine, workflows, executions, runner, bus)
    await runner.start()
    try:
        yield services
    finally:
        await runner.shutdown(settings.shutdown_grace_s)
        await journal.close()
        await http_client.aclose()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The HTTP app; its lifespan starts and stops the services."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_services(settings) as services:
            app.state.services = services
            services.bus.listen(api_metrics.of(app).observe_events)
            yield

    app = FastAPI(
        title="Oxify",
        version="0.1.0",
        summary="Durable workflow execution: DAGs of LLM, retrieval, code, HTTP and human steps.",
        lifespan=lifespan,
    )
    api_errors.install(app, max_body_bytes=settings.max_body_bytes)
    app.include_router(router)
    return app
