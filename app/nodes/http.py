"""The ``http`` node: one request through the process's shared ``httpx.AsyncClient``.

Secrets stay out of results and errors: request headers are never echoed, and URLs in messages
lose their query string and userinfo. Requests are built here (not by the client), so a shared
client's cookie jar, default headers and base URL never leak from one run into another.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from app.domain.node_types import CORE_NODE_TYPES, HttpConfig, check_http_url
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError, NodeError
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
EXCERPT_CHARS = 500  # characters of an unexpected answer's body kept in the error
EXCERPT_READ_BYTES = 8 * 1024  # bytes read of an unexpected answer, for the excerpt
USER_AGENT = "oxify-http"


class HttpStatusError(NodeError):
    """The server answered with a status the node does not expect."""

    code = "http_status"


class HttpTransportError(NodeError):
    """The request did not complete (connection, timeout, broken response)."""

    code = "http_transport"


class HttpResponseInvalid(NodeError):
    """The response cannot be used (too large, not the JSON it claims to be)."""

    code = "http_response_invalid"
    retryable = False


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``http`` node type, sending through ``resources.http``."""
    return [NodeDefinition(CORE_NODE_TYPES["http"], HttpExecutor(resources))]


class HttpExecutor:
    """Sends the node's request; outputs ``{"status", "headers", "json" | "text"}``.

    Every request goes through the one client the resources hold (made on the first request).
    """

    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(HttpConfig, ctx.config)
        request = await build_request(ctx, config)
        timeout_s = float(await ctx.render("timeout_s"))
        request.extensions["timeout"] = httpx.Timeout(timeout_s).as_dict()
        now = ctx.clock.now  # for Retry-After dates, on the run's clock
        ctx.spend(api_calls=1)
        return await _send(self._resources.http, request, config, timeout_s, now)


async def build_request(ctx: NodeContext, config: HttpConfig) -> httpx.Request:
    """The rendered request; template and URL problems are config errors (not retried)."""
    url = await ctx.render("url")
    try:
        check_http_url(url)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise NodeConfigError(f"config field 'url': {exc}") from None
    headers = httpx.Headers({"User-Agent": USER_AGENT, "Accept": "*/*"})
    headers.update(_headers(await _render_hidden(ctx, "headers")))
    if config.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    content: bytes | None = None
    if config.sends_json:
        content = _json_bytes(await ctx.render("json"))
        headers.setdefault("Content-Type", "application/json")
    elif config.body is not None:
        content = str(await ctx.render("body")).encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    params = _params(await _render_hidden(ctx, "query"))
    if params:
        parsed = parsed.copy_merge_params(params)
    return httpx.Request(config.method, parsed, headers=headers, content=content)


def display_url(url: httpx.URL) -> str:
    """The URL for messages: no userinfo, query string or fragment (they may hold secrets)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), else None."""
    if value is None:
        return None
    text = value.strip()
    if (seconds := _digits(text)) is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# -- sending -----------------------------------------------------------------------------------


async def _send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    config: HttpConfig,
    timeout_s: float,
    now: Callable[[], datetime],
) -> NodeOutput:
    where = f"{request.method} {display_url(request.url)}"
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                return await _receive(response, config, where, now)
            finally:
                await response.aclose()
    except TimeoutError:
        if deadline.expired():
            raise HttpTransportError(
                f"{where} timed out after {timeout_s:g} s", details={"error": "timeout"}
            ) from None
        raise
    except httpx.RequestError as exc:
        raise _transport_error(exc, where, timeout_s) from None


async def _receive(
    response: httpx.Response, config: HttpConfig, where: str, now: Callable[[], datetime]
) -> NodeOutput:
    status = response.status_code
    if not config.expects(status):
        body, _ = await _read(response, EXCERPT_READ_BYTES)
        raise _status_error(response, body, config, where, now())
    declared = response.headers.get("content-length", "")
    plain = "content-encoding" not in response.headers  # else the decoded size may differ
    size = _digits(declared)
    body, over = b"", plain and size is not None and size > config.max_response_bytes
    if not over:
        body, over = await _read(response, config.max_response_bytes)
    if over:
        raise HttpResponseInvalid(
            f"{where}: the response body exceeds max_response_bytes "
            f"({config.max_response_bytes} bytes)",
            details={"status": status, "max_response_bytes": config.max_response_bytes},
        )
    output: dict[str, Any] = {"status": status, "headers": dict(response.headers.items())}
    mode = config.response
    if mode == "auto":
        mode = "json" if _is_json(response.headers.get("content-type", "")) else "text"
    if mode == "text":
        output["text"] = _text(response, body)
        return NodeOutput(output)
    try:
        output["json"] = json.loads(body, parse_constant=_no_constants) if body.strip() else None
    except ValueError:
        raise HttpResponseInvalid(
            f"{where} answered {status} with a body that is not valid JSON",
            details={"status": status, "body_excerpt": _text(response, body)[:EXCERPT_CHARS]},
        ) from None
    return NodeOutput(output)


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the (decoded) body, and whether there was more."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        room = limit - len(body)
        if len(chunk) > room:
            body += chunk[:room]
            return bytes(body), True
        body += chunk
    return bytes(body), False


def _status_error(
    response: httpx.Response, body: bytes, config: HttpConfig, where: str, now: datetime
) -> HttpStatusError:
    status = response.status_code
    retryable = status in RETRYABLE_STATUS
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    expected = ", ".join(str(s) for s in config.expect_status)
    return HttpStatusError(
        f"{where} answered {status}{reason} (expected {expected})",
        retryable=retryable,
        details={"status": status, "body_excerpt": _text(response, body)[:EXCERPT_CHARS]},
        retry_after_s=retry_after_s(response.headers.get("retry-after"), now)
        if retryable
        else None,
    )


def _transport_error(exc: httpx.RequestError, where: str, timeout_s: float) -> NodeError:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        message = f"{where} timed out after {timeout_s:g} s ({_PHASES.get(kind, kind)})"
        return HttpTransportError(message, details={"error": kind})
    if isinstance(exc, httpx.ConnectError):
        message = f"{where}: could not connect: {exc or 'connection failed'}"
        return HttpTransportError(message, details={"error": kind})
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        # h11's text may quote the offending header value: keep it out.
        message = f"{where}: the request could not be sent ({kind})"
        return HttpTransportError(message, retryable=False, details={"error": kind})
    if isinstance(exc, httpx.DecodingError):
        message = f"{where}: the response body could not be decoded: {exc}"
        return HttpResponseInvalid(message, details={"error": kind})
    message = f"{where}: the connection failed: {kind}: {exc}"
    return HttpTransportError(message, details={"error": kind})


_PHASES = {
    "ConnectTimeout": "connecting",
    "ReadTimeout": "waiting for the response",
    "WriteTimeout": "sending the request",
    "PoolTimeout": "waiting for a free connection",
}


# -- shaping values ----------------------------------------------------------------------------


async def _render_hidden(ctx: NodeContext, field: str) -> Any:
    """Render a field whose values may be secrets: a bad value is reported without them."""
    try:
        return await ctx.render(field)
    except NodeConfigError:
        raise NodeConfigError(
            f"config field {field!r} rendered to a value that is not valid: each value must be "
            "text, a number, a boolean or null (values are not shown: they may hold secrets)"
        ) from None


def _headers(values: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        text = _scalar_text(value)
        if any(c in text for c in "\r\n\0"):
            raise NodeConfigError(f"header {name!r}: the value holds a line break or NUL")
        headers[name] = text
    return headers


def _params(values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    params: list[tuple[str, str]] = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                params.append((name, _scalar_text(item)))
    return tuple(params)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_bytes(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeConfigError(f"config field 'json' is not valid JSON: {exc}") from None
    return text.encode()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _text(response: httpx.Response, body: bytes) -> str:
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
