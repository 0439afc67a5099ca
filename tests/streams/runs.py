"""Workflows to stream, and helpers that start runs through the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from app.domain import views as models
from app.services.container import Services

QUICK: dict[str, Any] = {
    "name": "quick",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "each",
            "type": "foreach",
            "config": {
                "items": "{{ [1, 2, 3, 4, 5] }}",
                "body": {
                    "nodes": [
                        {"id": "double", "type": "transform", "config": {"value": "{{ item * 2 }}"}}
                    ],
                    "edges": [],
                },
            },
        },
        {"id": "end", "type": "end"},
    ],
    "edges": [{"from": "start", "to": "each"}, {"from": "each", "to": "end"}],
}

# Sleeps far longer than any test: the run stays live until the test cancels it.
SLOW: dict[str, Any] = {
    "name": "slow",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "nap", "type": "delay", "config": {"seconds": 60}},
        {"id": "end", "type": "end"},
    ],
    "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}],
}

AppFactory = Callable[..., Awaitable[FastAPI]]


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


async def start_run(app: FastAPI, document: dict[str, Any]) -> str:
    services = services_of(app)
    workflow = await services.workflows.create(document)
    execution, _created = await services.executions.start(workflow.id, inputs={}, config=None)
    return execution.id


async def finished_run(app: FastAPI, document: dict[str, Any] = QUICK) -> models.Execution:
    """A run of ``document``, once it has ended."""
    execution_id = await start_run(app, document)
    execution = await services_of(app).executions.wait(execution_id, 10)
    assert execution.status.is_terminal, execution.status
    return execution


async def cancel(app: FastAPI, execution_id: str) -> None:
    await services_of(app).executions.cancel(execution_id, wait=True)
