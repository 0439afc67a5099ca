"""Executions: start (idempotent), list, read, long-poll, pause, resume, cancel, retry, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import WithJsonSchema

from app.api import examples, guard, metrics
from app.api.deps import ExecutionsDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.api.routes.params import (
    MAX_SEQ,
    TEXT,
    Cursor,
    ExecutionId,
    IdFilter,
    Limit,
    SeqCursor,
    Version,
    WorkflowId,
)
from app.api.schemas import CheckpointList, StartExecution
from app.auth.scopes import Action
from app.domain import views as models
from app.domain.status import ExecutionStatus
from app.errors import CursorInvalid

router = APIRouter(tags=["executions"], route_class=GuardedRoute)

MAX_IDEMPOTENCY_KEY = 200  # characters
MAX_WAIT_S = 60.0  # seconds
DEFAULT_WAIT_S = 30.0  # seconds

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=TEXT,
        description="Same key and body: the first execution again (200); other body: 409.",
    ),
]
TraceParent = Annotated[
    str | None,
    Header(
        pattern=TEXT,
        description="W3C trace context: the run's trace (`trace_id`) continues it. A malformed "
        "value is ignored.",
    ),
]
_STATUS = "|".join(s.value for s in ExecutionStatus)
# Statuses separated by commas, spaces around them and empty items ignored (what _statuses reads;
# it checks them itself, to name the statuses it knows).
_STATUS_LIST = rf"^ *(?:(?:{_STATUS}) *)?(?:, *(?:(?:{_STATUS}) *)?)*$"
StatusFilter = Annotated[
    list[Annotated[str, WithJsonSchema({"type": "string", "pattern": _STATUS_LIST})]] | None,
    Query(
        alias="status",
        description="Only runs in these statuses; repeat the parameter or separate with commas.",
    ),
]


def _located(execution: models.Execution, response: Response) -> models.Execution:
    response.headers["Location"] = f"/v1/executions/{execution.id}"
    return execution


@router.post(
    "/v1/workflows/{workflow_id}/executions",
    summary="Start a run of a workflow",
    responses={
        200: {"model": models.Execution, "description": "An idempotent replay: the first run."},
        **problems(404, 409, 413, 422, 429),
    },
    status_code=status.HTTP_202_ACCEPTED,
    response_model=models.Execution,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def start_execution(
    workflow_id: WorkflowId,
    executions: ExecutionsDep,
    request: Request,
    response: Response,
    body: Annotated[StartExecution | None, Body(openapi_examples=examples.START)] = None,
    version: Version = None,
    idempotency_key: IdempotencyKey = None,
    traceparent: TraceParent = None,
) -> models.Execution:
    body = body or StartExecution()
    execution, created = await executions.start(
        workflow_id,
        inputs=body.inputs,
        config=body.config_dict(),
        version=version,
        idempotency_key=idempotency_key,
        started_by=body.by,
        traceparent=traceparent,
    )
    if created:
        metrics.of(request.app).runs_started.inc()
    else:
        response.status_code = status.HTTP_200_OK
    return _located(execution, response)


@router.get(
    "/v1/executions",
    summary="List executions, newest first",
    response_model=models.Page[models.ExecutionSummary],
    responses=problems(422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def list_executions(
    executions: ExecutionsDep,
    workflow_id: IdFilter = None,
    status_: StatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> models.Page[models.ExecutionSummary]:
    return await executions.list(
        workflow_id=workflow_id, statuses=_statuses(status_), limit=limit, cursor=cursor
    )


def _statuses(values: list[str] | None) -> set[ExecutionStatus] | None:
    if not values:
        return None
    parts = (part.strip(" ") for value in values for part in value.split(","))
    wanted = [part for part in parts if part]
    known = [s.value for s in ExecutionStatus]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "enum",
                    "loc": ("query", "status"),
                    "msg": f"unknown status {name!r}; expected one of: {', '.join(known)}",
                    "input": name,
                }
                for name in unknown
            ]
        )
    return {ExecutionStatus(name) for name in wanted} or None


@router.get(
    "/v1/executions/{execution_id}",
    summary="Read an execution: status, progress, node states, usage, outputs, error",
    response_model=models.Execution,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def get_execution(execution_id: ExecutionId, executions: ExecutionsDep) -> models.Execution:
    return await executions.get(execution_id)


@router.get(
    "/v1/executions/{execution_id}/wait",
    summary="Long-poll until the run is terminal, paused or waiting (or the timeout passes)",
    response_model=models.Execution,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def wait_execution(
    execution_id: ExecutionId,
    executions: ExecutionsDep,
    timeout_s: Annotated[
        float, Query(gt=0, le=MAX_WAIT_S, description="Seconds to wait at most (≤ 60).")
    ] = DEFAULT_WAIT_S,
) -> models.Execution:
    return await executions.wait(execution_id, timeout_s)


@router.post(
    "/v1/executions/{execution_id}/pause",
    summary="Pause a run: running nodes finish, nothing new starts, then a checkpoint",
    responses=problems(404, 409, 422),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=models.Execution,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def pause_execution(execution_id: ExecutionId, executions: ExecutionsDep) -> models.Execution:
    return await executions.pause(execution_id)


@router.post(
    "/v1/executions/{execution_id}/resume",
    summary="Resume a paused run",
    responses=problems(404, 409, 422),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=models.Execution,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def resume_execution(
    execution_id: ExecutionId, executions: ExecutionsDep
) -> models.Execution:
    return await executions.resume(execution_id)


@router.post(
    "/v1/executions/{execution_id}/cancel",
    summary="Cancel a run; with wait=true answer once its nodes have really stopped",
    responses={
        200: {"model": models.Execution, "description": "With wait=true: the stopped run."},
        **problems(404, 409, 422),
    },
    status_code=status.HTTP_202_ACCEPTED,
    response_model=models.Execution,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def cancel_execution(
    execution_id: ExecutionId,
    executions: ExecutionsDep,
    response: Response,
    wait: Annotated[bool, Query(description="Answer once the run has stopped (200).")] = False,
) -> models.Execution:
    execution = await executions.cancel(execution_id, wait=wait)
    if wait:
        response.status_code = status.HTTP_200_OK
    return execution


@router.delete(
    "/v1/executions/{execution_id}",
    summary="Delete a run with its events, checkpoints, node results and forms",
    description="A run that is running or pausing must be cancelled or paused first (409).",
    responses=problems(404, 409, 422),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def delete_execution(execution_id: ExecutionId, executions: ExecutionsDep) -> Response:
    await executions.delete(execution_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/executions/{execution_id}/retry",
    summary="Re-run a failed, timed-out or cancelled run from where it stopped",
    responses=problems(404, 409, 422),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=models.Execution,
    openapi_extra=guard.needs(Action.CONTROL_RUNS),
)
async def retry_execution(execution_id: ExecutionId, executions: ExecutionsDep) -> models.Execution:
    return await executions.retry(execution_id)


@router.get(
    "/v1/executions/{execution_id}/checkpoints",
    summary="Checkpoints the run has taken",
    response_model=CheckpointList,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def list_checkpoints(execution_id: ExecutionId, executions: ExecutionsDep) -> CheckpointList:
    return CheckpointList(items=await executions.checkpoints(execution_id))


@router.get(
    "/v1/executions/{execution_id}/profile",
    summary="Where the run's time went: critical path, time split, bottlenecks",
    description="Computed from the run's recorded events, for a running, waiting or finished "
    "run (`partial` until it finishes: unfinished nodes run to now). Top-level nodes only; "
    "nested nodes' backoff and waiting count as their container's.",
    response_model=models.RunProfile,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def run_profile(execution_id: ExecutionId, executions: ExecutionsDep) -> models.RunProfile:
    return await executions.profile(execution_id)


@router.get(
    "/v1/executions/{execution_id}/events/log",
    summary="The run's events as JSON pages (the same events as the SSE stream)",
    response_model=models.Page[models.EventOut],
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def events_log(
    execution_id: ExecutionId,
    executions: ExecutionsDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Events with a greater seq.")] = 0,
    limit: Limit = 50,
    cursor: SeqCursor = None,
) -> models.Page[models.EventOut]:
    if cursor is not None:
        # ASCII digits only: "³".isdigit() holds, and int() refuses it.
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_SEQ:
            raise CursorInvalid(f"cursor {cursor!r} is not valid")
        after = int(cursor)
    return await executions.events(execution_id, after=after, limit=limit)
