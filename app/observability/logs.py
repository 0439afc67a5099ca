"""The server's log: one JSON object a line (or text), every logger's records in one shape.

Records go through a queue: the logging call only copies the record and what its context knows
(the run, node and attempt bound by the engine, the replica, the current span), and a thread
formats and writes it, so a slow sink never stalls the event loop. The queue is bounded
(``MAX_QUEUED``): records that find it full are dropped and counted, and the next record
that gets through is preceded by a warning saying how many were lost. Secrets are redacted on that
thread: fields named like secrets, and the settings' secret values and the stored credentials'
values resolved so far (:func:`app.redaction.remember`) wherever they appear.

Fields: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``; ``execution_id``,
``replica_id``, ``node_id``, ``attempt`` where they apply; ``trace_id`` and ``span_id`` when an
OpenTelemetry span is current; ``key_id`` (the API key's id, never the key) once requests are
authenticated; a record's ``extra`` fields; uvicorn's access lines add ``method``, ``path``,
``status``, ``client_addr`` and ``http_version``.
"""

from __future__ import annotations

import copy
import logging
import queue
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any, Literal, TextIO, cast

from pydantic import BaseModel, SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from app import redaction
from app.engine.run import log_fields

try:  # OpenTelemetry is optional: with it installed, lines carry the current span's ids.
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    otel_trace = None  # type: ignore[assignment]

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# uvicorn's own loggers keep handlers of their own unless told otherwise: theirs go to the queue.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# The HTTP clients log every request's full URL at INFO: a query string or userinfo may hold a
# secret (an http node's API key in the query, credentials in OXIFY_OLLAMA_URL).
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
# uvicorn's access record: `'%s - "%s %s HTTP/%s" %d'` with these arguments.
ACCESS_FIELDS = ("client_addr", "method", "path", "http_version", "status")
FIRST_FIELDS = ("time", "level", "logger", "message")
# Record attributes that are not fields: uvicorn's ANSI-coloured copy of the message, the task.
NOT_FIELDS = (*RESERVED_ATTRS, "color_message", "taskName")
_EXCEPTIONS = logging.Formatter()  # a traceback as text, taken in the logging task
MAX_QUEUED = 10_000  # records waiting for a slow sink; memory stays bounded past that


def secret_values(model: object) -> list[str]:
    """Every ``SecretStr`` value in ``model`` (settings), at any depth."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            if secret := value.get_secret_value():
                found.append(secret)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    return found


def _span_ids() -> Iterator[tuple[str, str]]:
    if otel_trace is None:
        return
    span = otel_trace.get_current_span().get_span_context()
    if span.is_valid:
        yield "trace_id", format(span.trace_id, "032x")
        yield "span_id", format(span.span_id, "016x")


class Listener(QueueListener):
    """Writes the queued records on its thread; stops once, from whichever comes first: the
    server's exit or ``logging.shutdown`` (at exit, or before a fault's ``os._exit``)."""

    stopped = False

    def enqueue_sentinel(self) -> None:
        # Waits for room (a full queue drains on its own), where the library's put_nowait fails.
        records = cast("queue.Queue[Any]", self.queue)
        records.put(None)  # QueueListener's sentinel

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            super().stop()  # what is still queued is written first


class ContextQueueHandler(QueueHandler):
    """Reads, in the logging task, what the listener's thread cannot: the bound fields, the
    current span, the message with its arguments, the exception's text."""

    def __init__(self, records: queue.Queue[logging.LogRecord], fields: Mapping[str, Any]):
        super().__init__(records)
        self.fields = fields
        self.listener: Listener | None = None
        self.dropped = 0  # records lost to a full queue since start
        self._unreported = 0  # of those, not yet announced in the log

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self._unreported:
                self.queue.put_nowait(self._dropped_warning())
                self._unreported = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            self._unreported += 1

    def _dropped_warning(self) -> logging.LogRecord:
        return self.prepare(
            logging.makeLogRecord(
                {
                    "name": "oxify.logs",
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": "%d log record(s) dropped: the log sink did not keep up",
                    "args": (self._unreported,),
                }
            )
        )

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        super().close()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        known = record.__dict__
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            known.update(zip(ACCESS_FIELDS, args, strict=True))
        for key, value in (*self.fields.items(), *log_fields.current().items(), *_span_ids()):
            known.setdefault(key, value)
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            record.exc_text = _EXCEPTIONS.formatException(record.exc_info)
            record.exc_info = None
        return record


class JsonLines(JsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` first, then the record's fields; redacted."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=NOT_FIELDS,
        )
        self.secrets = secrets

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        at: datetime = log_data["time"]
        log_data["time"] = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        log_data["level"] = str(log_data["level"]).lower()
        first = {key: log_data.pop(key) for key in FIRST_FIELDS}
        secrets = [*self.secrets, *redaction.remembered()]
        rest = redaction.redact(log_data, secrets)
        assert isinstance(rest, dict)
        return {**first, "message": redaction.scrub(str(first["message"]), secrets), **rest}


class TextLines(logging.Formatter):
    """The text format, for a terminal; secret values scrubbed from the whole line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__(TEXT_FORMAT)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        secrets = [*self.secrets, *redaction.remembered()]
        return redaction.scrub(super().format(record), secrets)


def configure(
    *,
    log_format: LogFormat,
    level: str,
    secrets: Sequence[str] = (),
    fields: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
    max_queued: int = MAX_QUEUED,
) -> Listener:
    """Send every logger's records (the app's, uvicorn's error and access logs) through one
    queue to ``stream`` (stderr) in ``log_format``; ``fields`` go on every line. Returns the
    started listener: stop it on the way out, which writes what is still queued."""
    sink = logging.StreamHandler(stream or sys.stderr)
    sink.setFormatter(JsonLines(secrets) if log_format == "json" else TextLines(secrets))
    records: queue.Queue[logging.LogRecord] = queue.Queue(max_queued)
    root = logging.getLogger()
    handler = ContextQueueHandler(records, dict(fields or {}))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.setLevel(logging.NOTSET)  # the root's, until uvicorn sets its own
        server_logger.propagate = True
        server_logger.disabled = False
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    handler.listener = Listener(records, sink)
    handler.listener.start()
    return handler.listener


def dropped_records() -> int:
    """Records lost to a full queue since the server's logging was configured (0 without)."""
    root = logging.getLogger()
    return sum(h.dropped for h in root.handlers if isinstance(h, ContextQueueHandler))
