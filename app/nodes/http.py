"""The ``http`` node: one request through the process's shared ``httpx.AsyncClient``.

Requests are built here (not by the client), so a shared client's cookie jar, default headers
and base URL never leak from one run into another; sending (egress policy, per-host policies,
redirects, the size limit, errors without secrets) is :mod:`app.nodes.net.exchange`, shared with
the graphql node.
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx

from app.domain.http_nodes import HttpConfig
from app.domain.node_types import CORE_NODE_TYPES
from app.domain.urls import check_http_url
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError
from app.nodes.net import auth, exchange, values
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

USER_AGENT = "oxify-http"


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
        applied = await auth.applied(self._resources, await auth.rendered(ctx))
        request = await build_request(ctx, config, applied)
        limits = exchange.Limits(
            timeout_s=float(await ctx.render("timeout_s")),
            max_bytes=config.max_response_bytes,
            expects=config.expects,
            expected=", ".join(str(s) for s in config.expect_status),
            follow_redirects=config.follow_redirects,
            secret_headers=tuple(applied.headers),
        )
        request.extensions["timeout"] = httpx.Timeout(limits.timeout_s).as_dict()
        ctx.spend(api_calls=1)
        with applied.scrubbing():
            answer = await exchange.send(self._resources, request, limits, ctx.clock.now)
            return NodeOutput(applied.shown(_output(answer, config)))


async def build_request(
    ctx: NodeContext, config: HttpConfig, applied: auth.Applied
) -> httpx.Request:
    """The rendered request; template and URL problems are config errors (not retried)."""
    content: bytes | None = None
    content_type = None
    if config.sends_json:
        content = json_bytes(await ctx.render("json"))
        content_type = "application/json"
    elif config.body is not None:
        content = str(await ctx.render("body")).encode()
        content_type = "text/plain; charset=utf-8"
    return outbound(
        config.method,
        await ctx.render("url"),
        values.headers(await values.render_hidden(ctx, "headers")),
        applied,
        content=content,
        content_type=content_type,
        params=values.params(await values.render_hidden(ctx, "query")),
        idempotency_key=ctx.idempotency_key if config.idempotency_key else None,
    )


def outbound(
    method: str,
    url: str,
    headers: dict[str, str],
    applied: auth.Applied,
    *,
    content: bytes | None = None,
    content_type: str | None = None,
    params: tuple[tuple[str, str], ...] = (),
    idempotency_key: str | None = None,
) -> httpx.Request:
    """A request as the http node and the agent's http tools send it: the service's
    ``User-Agent``, the auth's headers and parameters over the given ones."""
    try:
        check_http_url(url)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise NodeConfigError(f"config field 'url': {exc}") from None
    merged = httpx.Headers({"User-Agent": USER_AGENT, "Accept": "*/*"})
    merged.update(headers)
    merged.update(applied.headers)
    if idempotency_key is not None:
        merged["Idempotency-Key"] = idempotency_key
    if content_type is not None:
        merged.setdefault("Content-Type", content_type)
    params += applied.params
    if params:
        parsed = parsed.copy_merge_params(params)
    return httpx.Request(method, parsed, headers=merged, content=content)


def json_bytes(value: Any, field: str = "json") -> bytes:
    """``value`` as compact JSON (NaN and infinities refused)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeConfigError(f"config field {field!r} is not valid JSON: {exc}") from None
    return text.encode()


def _output(answer: exchange.Answer, config: HttpConfig) -> dict[str, Any]:
    headers = dict(answer.response.headers.items())
    return {"status": answer.status, "headers": headers, **body_of(answer, config.response)}


def body_of(answer: exchange.Answer, mode: str = "auto") -> dict[str, Any]:
    """``{"json": …}`` or ``{"text": …}``: as ``mode`` says, or by the content type (``auto``)."""
    if mode == "auto":
        mode = "json" if _is_json(answer.response.headers.get("content-type", "")) else "text"
    if mode == "text":
        return {"text": answer.text()}
    return {"json": parse_json(answer)}


def parse_json(answer: exchange.Answer) -> Any:
    """The answer's body as JSON (``None`` when empty); not JSON is a node error."""
    try:
        body = answer.body
        return json.loads(body, parse_constant=_no_constants) if body.strip() else None
    except ValueError:
        raise exchange.HttpResponseInvalid(
            f"{answer.where} answered {answer.status} with a body that is not valid JSON",
            details={
                "status": answer.status,
                "body_excerpt": answer.text()[: exchange.EXCERPT_CHARS],
            },
        ) from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
