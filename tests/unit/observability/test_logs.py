"""The server's log lines configured in-process: JSON with the run's ids from the engine's
context, uvicorn's access line in the same shape, secrets redacted, the text format."""

from __future__ import annotations

import io
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeError
from app.observability import logs
from app.redaction import SECRET, redact
from app.settings import Settings
from tests.support import Harness, ProbeConfig, node, probe_registry, workflow

CANARY = "sk-canary-5f1e0c"
Configure = Callable[..., Callable[[], list[str]]]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """``logs.configure`` into a buffer; returns the written lines once the listener stopped.
    The loggers it touches are put back as they were."""
    names = ("", *logs.SERVER_LOGGERS, *logs.QUIET_LOGGERS)
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for lg in map(logging.getLogger, names)
    ]
    listeners: list[Any] = []

    def start(**options: Any) -> Callable[[], list[str]]:
        buffer = io.StringIO()
        listener = logs.configure(stream=buffer, **options)
        listeners.append(listener)

        def lines() -> list[str]:
            listener.stop()
            listeners.remove(listener)
            return buffer.getvalue().splitlines()

        return lines

    yield start
    for listener in listeners:
        listener.stop()
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled


class Chatty:
    """Logs at every attempt (the canary in its message and in a secret-named field); the
    first attempt fails."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        logging.getLogger("oxify.test.node").warning(
            "calling with %s", CANARY, extra={"api_key": CANARY, "input_tokens": 3}
        )
        if ctx.attempt == 1:
            raise NodeError("first attempt fails")
        return NodeOutput("ok")


async def test_node_logs_carry_the_run_node_and_attempt(configure: Configure) -> None:
    from app.domain.node_types import NodeType

    registry = probe_registry()[0].with_type(NodeType("chatty", ProbeConfig), Chatty())
    lines = configure(
        log_format="json", level="info", secrets=[CANARY], fields={"replica_id": "r1"}
    )
    retry = {"max_retries": 1, "initial_delay_ms": 1, "jitter": 0}
    outcome = await Harness(registry=registry).run(
        workflow([node("talk", "chatty", retry=retry)], [])
    )
    logging.getLogger("oxify.test").info("outside any run")
    assert outcome.status.value == "completed"

    records = [json.loads(line) for line in lines()]
    assert all(CANARY not in line for line in map(json.dumps, records))
    node_lines = [r for r in records if r["logger"] == "oxify.test.node"]
    assert [(r["execution_id"], r["node_id"], r["attempt"]) for r in node_lines] == [
        ("run-1", "talk", 1),
        ("run-1", "talk", 2),
    ]
    assert node_lines[0]["message"] == f"calling with {SECRET}"
    assert node_lines[0]["api_key"] == SECRET
    assert node_lines[0]["input_tokens"] == 3
    assert node_lines[0]["level"] == "warning"
    assert node_lines[0]["time"].endswith("Z")
    outside = records[-1]
    assert outside["replica_id"] == "r1"
    assert "execution_id" not in outside and "node_id" not in outside
    assert list(outside)[:4] == ["time", "level", "logger", "message"]


async def test_access_and_error_lines(configure: Configure) -> None:
    lines = configure(log_format="json", level="info", secrets=[CANARY])
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/x?key={CANARY}", "1.1", 404
    )
    try:
        raise RuntimeError(f"failed with {CANARY}")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("exception in ASGI application")
    access, error = (json.loads(line) for line in lines())
    assert access["method"] == "GET"
    assert access["path"] == f"/x?key={SECRET}"
    assert access["status"] == 404
    assert error["logger"] == "uvicorn.error"
    assert "RuntimeError: failed with [secret]" in error["exc_info"]


async def test_the_text_format_is_scrubbed_too(configure: Configure) -> None:
    lines = configure(log_format="text", level="warning", secrets=[CANARY])
    logging.getLogger("oxify.test").info("below the level")
    logging.getLogger("oxify.test").warning("key %s", CANARY)
    (line,) = lines()
    assert line.endswith(f"WARNING oxify.test key {SECRET}")


def test_secret_values_walk_the_settings() -> None:
    settings = Settings.model_validate(
        {
            "openai_api_key": "sk-1",
            "mcp_servers": {"docs": {"url": "https://mcp.test/mcp", "headers": {"X-Key": "h-2"}}},
        }
    )
    assert sorted(logs.secret_values(settings)) == ["h-2", "sk-1"]


def test_redact_hides_secret_named_fields_at_any_depth() -> None:
    data = {
        "headers": {"Authorization": "Bearer a", "x-api-key": "b", "accept": "json"},
        "calls": [{"access_token": "c", "input_tokens": 5, "key_id": "k1"}],
        "note": "held sk-9",
    }
    assert redact(data, ["sk-9"]) == {
        "headers": {"Authorization": SECRET, "x-api-key": SECRET, "accept": "json"},
        "calls": [{"access_token": SECRET, "input_tokens": 5, "key_id": "k1"}],
        "note": f"held {SECRET}",
    }


async def test_closing_the_handler_writes_what_is_queued(configure: Configure) -> None:
    """``logging.shutdown`` closes the handlers: at exit, and before a fault's ``os._exit``."""
    lines = configure(log_format="json", level="info")
    logging.getLogger("oxify.test").warning("last words")
    (handler,) = logging.getLogger().handlers
    handler.close()
    assert isinstance(handler, logs.ContextQueueHandler)
    assert handler.listener is not None and handler.listener.stopped  # drained and joined
    assert [json.loads(line)["message"] for line in lines()] == ["last words"]


class _BlockedSink(io.StringIO):
    """A stream whose writes wait until released: a sink that cannot keep up."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_a_stuck_sink_costs_dropped_records_not_memory_or_a_blocked_caller(
    configure: Configure,
) -> None:
    sink = _BlockedSink()
    listener = logs.configure(log_format="json", level="info", stream=sink, max_queued=10)
    try:
        log = logging.getLogger("oxify.test")
        for n in range(50):  # none of these calls waits for the stuck sink
            log.info("record %d", n)
        dropped = logs.dropped_records()
        assert 50 - 11 <= dropped <= 50 - 10  # the listener may hold one it took
        sink.release.set()
        cast("queue.Queue[Any]", listener.queue).join()  # all written: room again
        log.info("after")
    finally:
        listener.stop()
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    warnings = [line for line in lines if line["logger"] == "oxify.logs"]
    assert {line["level"] for line in warnings} == {"warning"}
    announced = [int(line["message"].split()[0]) for line in warnings]
    assert sum(announced) == dropped  # every loss is told, once
    assert warnings[-1]["message"].endswith("log record(s) dropped: the log sink did not keep up")
    assert lines[-1]["message"] == "after"


async def test_node_lines_carry_the_attempts_trace_and_span_ids(configure: Configure) -> None:
    from app.domain.node_types import NodeType
    from tests.spans import one, recording, span_id, trace_id

    tracing, exporter = recording()
    assert tracing.tracer is not None
    registry = probe_registry()[0].with_type(NodeType("chatty", ProbeConfig), Chatty())
    lines = configure(log_format="json", level="info")
    retry = {"max_retries": 1, "initial_delay_ms": 1, "jitter": 0}
    with tracing.tracer.start_as_current_span("segment"):
        await Harness(registry=registry, observer=tracing.observer()).run(
            workflow([node("talk", "chatty", retry=retry)], [])
        )
    records = [json.loads(line) for line in lines()]
    spans = exporter.get_finished_spans()
    attempts = [one(spans, "attempt 1"), one(spans, "attempt 2")]
    node_lines = [r for r in records if r["logger"] == "oxify.test.node"]
    assert [(r["trace_id"], r["span_id"]) for r in node_lines] == [
        (f"{trace_id(a):032x}", f"{span_id(a):016x}") for a in attempts
    ]
