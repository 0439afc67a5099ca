"""The hand-written parts of the API reference: conventions, streams, what each event carries,
what each core node type outputs, and the error codes the API layer answers with itself.

Keyed by the code's own names (event types, node types), so the generator refuses to write a
reference that leaves one out (see ``app.cli_docs``).
"""

from __future__ import annotations

from app.domain.events import EventType

INTRO = """\
# Oxify HTTP API reference

Generated from the app (its OpenAPI document, its node types, its event types and its errors)
by `oxify docs`; a test fails when this file is stale. The OpenAPI document itself is served at
`/openapi.json` and committed as `openapi/openapi.json`; the JSON Schema of workflow documents
is `openapi/workflow.schema.json`.
"""

CONVENTIONS = """\
## Conventions

- **Base path** `/v1` (plus `/healthz`, `/readyz`, `/metrics`). Bodies are JSON; ids are opaque
  strings (UUIDs); timestamps are RFC 3339 in UTC.
- **Errors** are `application/problem+json` (RFC 9457). Match on `code`, never on the text;
  `errors` points at each bad field: `pointer` is an RFC 6901 pointer into the request body,
  `parameter` names a bad query parameter or header, `loc` is the same place as a list.

  ```json
  {"type": "https://oxify.dev/problems/workflow_invalid", "status": 422,
   "title": "The workflow document is not valid.", "code": "workflow_invalid",
   "detail": "1 problem(s) in the workflow document",
   "errors": [{"loc": ["body", "nodes", 1, "config", "condition"], "code": "invalid_expression",
               "pointer": "/nodes/1/config/condition",
               "msg": "syntax error at the end of the expression: invalid syntax"}]}
  ```

  Bad input is always a 4xx naming the field, never a 500. Routes under `/v1` answer
  `503 not_ready` while the service starts or stops; an unknown path answers `404 not_found`,
  a method a route does not take `405 method_not_allowed`.
- **Lists** take `?limit=` (default 50, at most 500) and `?cursor=` (the `next_cursor` of the
  previous page) and answer `{"items": [...], "next_cursor": "…" | null}`, newest first.
- **Starting a run** answers `202` with the execution and `Location: /v1/executions/{id}`.
  An `Idempotency-Key` header makes retries safe: the same key with the same body answers `200`
  with the first execution; with another body, `409 idempotency_conflict`.
- **Control** (pause, resume, cancel, retry) answers `202` with the execution as it is right
  after the request (the run changes status on its own afterwards; follow it with `…/wait`, the
  event stream or `GET /v1/executions/{id}`). Asking for what is already under way (pausing a
  pausing run) is not an error; asking for what the run's status does not allow is
  `409 invalid_state`.
- **Long-poll** `GET /v1/executions/{id}/wait?timeout_s=N` answers once the run is terminal,
  paused or waiting for a person, or after `N` seconds (at most 60) with the run as it is.
- **What a run spent**: an execution's `usage` is `{"nodes", "api_calls", "tokens",
  "cost_usd"}` (node executions with every attempt, outbound calls with every retry, LLM
  input and output tokens, US dollars), the sums over its `nodes`, each of which carries its
  own `usage` (null when it spent nothing): what the node spent over all its attempts, as
  its `node.completed` or `node.failed` event says (those events carry `usage` too), or as
  far as its finished durable steps go while it still runs. `cost_usd` covers priced model
  calls only: a model the price table does not know adds 0.
- **Body size**: bodies over `OXIFY_MAX_BODY_BYTES` (10 MiB) get `413 body_too_large` before
  they are read.
- **Credentials**: `Authorization: Bearer <api key or OIDC token>` on every route but
  `/healthz` and `/readyz`, once an API key exists or an identity provider is configured (until
  then a loopback-only service answers without). Each operation names the scopes that may call
  it (`x-oxify-scopes`): `viewer` reads workflows, runs, events and forms; `runner` also writes
  workflows and starts, pauses, resumes, cancels, retries and deletes runs; `reviewer` reads runs
  and forms and answers forms; `admin` may do everything. No valid credentials:
  `401 unauthenticated` with `WWW-Authenticate: Bearer`; credentials without the scope:
  `403 insufficient_scope`; both before the body is read. Another project's workflow, run or
  form answers `404` as if it did not exist, and lists show the caller's project only.
  Credentials in the URL (`?api_key=`, `?token=`, …) are refused; browsers open event streams
  with a single-use `?ticket=` from `POST /v1/auth/tickets`.
"""

STREAMS = """\
## Event streams

A run's events are numbered `seq` 1, 2, 3 … without gaps, stored before they are sent.

- **Server-Sent Events**: `GET /v1/executions/{id}/events`. The first message is a
  `retry: 2000` hint; then each event is `id: <seq>`, `event: <type>`, `data: <the event as
  JSON>`. The stream replays the stored events after the position, follows the run live and
  closes after the run's terminal event (paused and waiting runs keep it open). The position is
  `Last-Event-ID` when sent (a browser's EventSource sends it when it reconnects), else
  `?after=` (default 0). Asking for what follows a finished run's last event answers
  `204 No Content`, which tells EventSource to stop reconnecting. A comment line (`: ping`) goes
  out every `OXIFY_SSE_PING_S` seconds (15).
- **WebSocket**: `/v1/executions/{id}/ws?after=N`, one JSON text frame per event, then a close
  with code 1000 after the terminal event (at once when nothing follows `N` in a finished run).
  An unknown run closes with 4404, a bad `after` with 4422. A handshake without valid
  credentials (header or `?ticket=`) is refused before it is accepted: 401, or 403 without the
  scope (a server that cannot answer a handshake with a status closes with 4401 or 4403); so is
  one while the service starts or stops (503).
- **JSON pages**: `GET /v1/executions/{id}/events/log?after=N&limit=L` answers the same events
  as a list page.

Every event has this shape (`node_id` and `level` are `null` for run-wide events; nested nodes
have keys such as `loop[2].double`):

```json
{"seq": 17, "execution_id": "…", "type": "node.completed", "ts": "2025-01-01T12:00:00.000000Z",
 "node_id": "fetch", "level": 1, "data": {"output": {"…": "…"}, "duration_ms": 12.5, "attempt": 1}}
```
"""

DOCUMENT = """\
## Workflow document

The body of `POST /v1/workflows` (and of `PUT /v1/workflows/{id}` and `…/validate`). Strings
in configs may hold `{{ expression }}` templates over the run's context (`inputs`,
`<node_id>.output`, `vars`, and `item`/`index` in loops, `error` in a catch); a string that is
exactly one template keeps the value's JSON type, and a scalar field may be given as one
template, checked against the field's type when it is rendered. Conditions and `switch` values
are expressions without the braces.
"""

# EventType -> (when it is sent, what its `data` holds)
EVENTS: dict[EventType, tuple[str, str]] = {
    EventType.WORKFLOW_STARTED: (
        "the run starts for the first time",
        '`{"total_nodes", "levels", "replica"}` (the replica driving it)',
    ),
    EventType.WORKFLOW_RESUMED: (
        "the run continues after a pause, a retry, a restart or a takeover",
        '`{"reason": "resumed" | "retry" | "shutdown" | "recovered" | "answered" | '
        '"cancelling", "checkpoint", "replica"}` (`cancelling`: a cancel asked while the run '
        "was being set down; it ends cancelled at once)",
    ),
    EventType.WORKFLOW_COMPLETED: ("the run completed (terminal)", '`{"outputs"}`'),
    EventType.WORKFLOW_FAILED: (
        "the run failed (terminal)",
        '`{"error": {"code", "message", "node_id", "details"?}}`',
    ),
    EventType.WORKFLOW_CANCELLED: ("the run was cancelled (terminal)", "`{}`"),
    EventType.WORKFLOW_TIMED_OUT: (
        "the run's `timeout_s` passed (terminal)",
        '`{"error": {"code", "message"}}`',
    ),
    EventType.WORKFLOW_PAUSED: (
        "the run paused at a checkpoint; with `reason` `shutdown` its replica was stopping and "
        "the run is queued again for any replica (`paused` only if a client asked for a pause)",
        '`{"reason"?: "shutdown"}`',
    ),
    EventType.WORKFLOW_WAITING: (
        "the run stopped to wait for people",
        '`{"waiting_on": [node keys]}`',
    ),
    EventType.LEVEL_STARTED: (
        "the first node of a level (longest path from a root) starts",
        '`{"level", "nodes": [ids]}`',
    ),
    EventType.LEVEL_COMPLETED: ("every node of a level is final", '`{"level"}`'),
    EventType.NODE_STARTED: ("a node (attempt) starts", '`{"type", "attempt"}`'),
    EventType.NODE_COMPLETED: (
        "a node completed",
        '`{"output", "duration_ms", "attempt", "branch"?}` (plus type-specific metadata)',
    ),
    EventType.NODE_FAILED: (
        "a node failed for good (retries exhausted, or not retryable)",
        '`{"error": {"code", "message", "node_id", "details"?}, "attempt", "tolerated", '
        '"duration_ms"?}`; `tolerated`: the run goes on (`continue_on_error`)',
    ),
    EventType.NODE_RETRY: (
        "a node failed and will be tried again after a backoff",
        '`{"attempt", "next_attempt", "retry", "delay_ms", "error"}`',
    ),
    EventType.NODE_SKIPPED: (
        "a node will not run: none of its incoming edges is live",
        '`{"reason"}`',
    ),
    EventType.NODE_CANCELLED: ("a running node was stopped by a cancel", "`{}`"),
    EventType.NODE_WAITING: (
        "a node waits for people (a form or an approval)",
        '`{"reason": "form", "form_id", "kind": "form" | "approval", "deadline"}`',
    ),
    EventType.NODE_TOKEN: (
        "a streaming node produced text (model tokens): what arrives within 50 ms is one event, "
        "so at most ~20 a second per node",
        '`{"node_id", "attempt", "index", "text"}`; `index` counts the attempt\'s token events '
        "from 0, and their texts in index order concatenate to everything it streamed",
    ),
    EventType.NODE_PROGRESS: (
        "reserved for a node's own progress (no core node type sends it yet)",
        "node-specific",
    ),
    EventType.NODE_STEP: (
        "a durable sub-step of a node finished (its result is saved with a checkpoint and "
        "not run again); listed under the node's `steps` in `GET /v1/executions/{id}`",
        '`{"node_id", "name", "ok", "error"?}`; `error` (`{"code", "message", "node_id", '
        '"details"?}`) when `ok` is false: the step raised and runs again when the node does',
    ),
    EventType.CHECKPOINT_CREATED: (
        "node results were saved (per the run's `checkpoint` policy)",
        '`{"checkpoint": number, "nodes": [node keys saved]}`',
    ),
    EventType.PROGRESS_UPDATE: (
        "a top-level node became final",
        '`{"completed", "total", "percent"}`',
    ),
    EventType.FORM_REQUESTED: (
        "a form or approval opens",
        '`{"form_id", "kind", "prompt", "fields", "deadline", "on_timeout", "context"?}`, for '
        'approvals also `{"approvers", "quorum", "allow_self_approval"}`; `context`: what the '
        'request is about (an agent\'s tool call: `{"tool", "arguments", "reasoning"}`)',
    ),
    EventType.FORM_SUBMITTED: ("a form or approval was decided", '`{"form_id", "by"}`'),
    EventType.FORM_TIMED_OUT: (
        "nobody answered by the deadline",
        '`{"form_id", …}` (what the deadline decided)',
    ),
    EventType.AGENT_TOOL_CALL: (
        "an agent node is about to call a tool (or refuses a call the model got wrong, or "
        "people rejected)",
        '`{"node_id", "turn", "call_id", "name", "arguments"}`',
    ),
    EventType.AGENT_TOOL_RESULT: (
        "an agent node's tool call finished; its result is a durable step, never run again",
        '`{"node_id", "turn", "call_id", "ok", "approved_by"?}`',
    ),
}

# core node type -> what it outputs and which branches it can take
NODE_OUTPUTS: dict[str, str] = {
    "start": "The run's inputs.",
    "end": "Its `outputs` mapping resolved, else its inputs passed through.",
    "transform": "`value` with its templates resolved.",
    "set_var": "`value`; later nodes read it as `vars.<name>`.",
    "if": "The condition's value (a boolean). Branches `true`, `false`.",
    "switch": "`value`'s value. Branch: the matching case, else `default`.",
    "delay": '`{"slept": seconds}`.',
    "fail": "Never outputs: fails the node with `message` (code `fail_node`).",
    "foreach": "The body's outputs, in item order; `item` and `index` inside.",
    "while": "The body's outputs, one per iteration.",
    "repeat": "The body's outputs, `count` of them; `index` inside.",
    "try": "The `try` graph's output, or `catch`'s after an error (as `error` inside).",
    "subworkflow": "The mapped `outputs` (the child's result in scope as `outputs`), else the "
    "child's outputs.",
    "http": '`{"status", "headers", "json"}` or `{"status", "headers", "text"}`.',
    "graphql": "The answer's `data`; an answer with `errors` fails the node, carrying them "
    "(`graphql_errors`).",
    "approval": '`{"decision", "comment", "by", "at", "approvals"}`. Branches `approved`, '
    "`rejected`, and `timed_out` with `on_timeout: branch`.",
    "form": "The submitted values (defaults filled in). With `on_timeout: branch`, branches "
    "`submitted` and `timed_out`.",
    "llm": '`{"text", "json"?, "model", "usage": {"input_tokens", "output_tokens"}, "cost_usd", '
    '"finish_reason", "cached"}`; `json` when `response_format` asks for JSON; tokens stream as '
    "`node.token` events.",
    "index": '`{"indexed": documents, "chunks": n}`; a document\'s chunks replace those indexed '
    "before under its id.",
    "retriever": '`[{"id", "text", "score", "metadata"}]`, best first; `id` is '
    '`"<document id>#<chunk number>"`; `score` in the `mode`\'s own scale.',
    "mcp": "The tool's structured content, else the text of its text blocks joined by newlines "
    "(`null` without any). A tool error (`isError`) fails the node with code `mcp_tool_error`.",
    "code": "The expression's value; `main(inputs)`'s return value (JSON); for wasm, the JSON "
    "the module wrote to stdout. Errors: `code_limit_exceeded` (`details.limit`: `timeout`, "
    "`cpu`, `memory`, `output`, `fuel`), `code_failed` (with a traceback excerpt), "
    "`code_output_invalid`.",
    "agent": '`{"text", "json"?, "turns", "tool_calls": [{"turn", "id", "name", "arguments", '
    '"ok", "result" | "error", "approved_by"?}], "messages", "usage": {"input_tokens", '
    '"output_tokens"}, "cost_usd", "finish_reason"}`. Fails with `max_turns_exceeded` (the '
    "transcript in `details.messages`) or `agent_answer_invalid` (a final answer that missed "
    "`response_format` twice).",
}

# Codes the API layer answers with itself (the rest are the services' errors): code -> meaning
API_CODES: dict[str, tuple[int, str]] = {
    "request_invalid": (422, "A parameter, header or body field is not valid (see `errors`)."),
    "body_too_large": (413, "The request body is larger than `OXIFY_MAX_BODY_BYTES`."),
    "not_found": (404, "No such route."),
    "method_not_allowed": (405, "The route does not take this method."),
    "not_ready": (503, "The service is starting or stopping, or its database is not ready."),
    "internal_error": (500, "An unexpected error (logged; no details leak)."),
}
