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
        applied = auth.apply(await auth.rendered(ctx))
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
        answer = await exchange.send(self._resources, request, limits, ctx.clock.now)
        return NodeOutput(_output(answer, config))


async def build_request(
    ctx: NodeContext, config: HttpConfig, applied: auth.Applied
) -> httpx.Request:
    """The rendered request; template and URL problems are config errors (not retried)."""
    url = await ctx.render("url")
    try:
        check_http_url(url)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise NodeConfigError(f"config field 'url': {exc}") from None
    headers = httpx.Headers({"User-Agent": USER_AGENT, "Accept": "*/*"})
    headers.update(values.headers(await values.render_hidden(ctx, "headers")))
    headers.update(applied.headers)
    if config.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    content: bytes | None = None
    if config.sends_json:
        content = _json_bytes(await ctx.render("json"))
        headers.setdefault("Content-Type", "application/json")
    elif config.body is not None:
        content = str(await ctx.render("body")).encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    params = values.params(await values.render_hidden(ctx, "query")) + applied.params
    if params:
        parsed = parsed.copy_merge_params(params)
    return httpx.Request(config.method, parsed, headers=headers, content=content)


def _output(answer: exchange.Answer, config: HttpConfig) -> dict[str, Any]:
    response = answer.response
    output: dict[str, Any] = {"status": answer.status, "headers": dict(response.headers.items())}
    mode = config.response
    if mode == "auto":
        mode = "json" if _is_json(response.headers.get("content-type", "")) else "text"
    if mode == "text":
        output["text"] = answer.text()
        return output
    output["json"] = parse_json(answer)
    return output


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


def _json_bytes(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeConfigError(f"config field 'json' is not valid JSON: {exc}") from None
    return text.encode()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
