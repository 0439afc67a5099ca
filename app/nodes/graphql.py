"""The ``graphql`` node: one operation POSTed as JSON (``query``, ``variables``,
``operationName``); outputs the answer's ``data``.

It sends like the http node (:mod:`app.nodes.net.exchange`: egress policy, per-host policies,
redirects, the 10 MiB answer limit) with the same ``auth``. An answer with ``errors`` fails the
node carrying them, even beside partial ``data``: retried only when the HTTP status says the
server may answer better later (503, 429 …).
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx

from app.domain.http_nodes import HTTP_DEFAULT_MAX_RESPONSE_BYTES, GraphqlConfig
from app.domain.node_types import CORE_NODE_TYPES
from app.domain.urls import check_http_url
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError, NodeError
from app.nodes.http import USER_AGENT, parse_json
from app.nodes.net import auth, exchange, values
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

ACCEPT = "application/graphql-response+json, application/json;q=0.9"
ERRORS_KEPT = 20  # of an answer's errors, in the node's error details
MESSAGE_CHARS = 300  # of the first error's message, in the node's error message


class GraphqlErrors(NodeError):
    """The GraphQL answer holds errors."""

    code = "graphql_errors"
    retryable = False


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``graphql`` node type, sending through ``resources.http``."""
    return [NodeDefinition(CORE_NODE_TYPES["graphql"], GraphqlExecutor(resources))]


class GraphqlExecutor:
    """Sends the node's operation; outputs the answer's ``data``."""

    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(GraphqlConfig, ctx.config)
        applied = await auth.applied(self._resources, await auth.rendered(ctx))
        request = await _request(ctx, config, applied)
        limits = exchange.Limits(
            timeout_s=float(await ctx.render("timeout_s")),
            max_bytes=HTTP_DEFAULT_MAX_RESPONSE_BYTES,
            expects=lambda _status: True,  # an error status may still carry GraphQL errors
            expected="200-299",
            secret_headers=tuple(applied.headers),
        )
        request.extensions["timeout"] = httpx.Timeout(limits.timeout_s).as_dict()
        ctx.spend(api_calls=1)
        with applied.scrubbing():
            answer = await exchange.send(self._resources, request, limits, ctx.clock.now)
            return NodeOutput(applied.shown(_data(answer, ctx)))


async def _request(ctx: NodeContext, config: GraphqlConfig, applied: auth.Applied) -> httpx.Request:
    url = await ctx.render("url")
    try:
        check_http_url(url)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise NodeConfigError(f"config field 'url': {exc}") from None
    if applied.params:
        parsed = parsed.copy_merge_params(applied.params)
    headers = httpx.Headers({"User-Agent": USER_AGENT, "Accept": ACCEPT})
    headers.update(values.headers(await values.render_hidden(ctx, "headers")))
    headers.update(applied.headers)
    headers["Content-Type"] = "application/json"
    body: dict[str, Any] = {
        "query": await ctx.render("query"),
        "variables": await ctx.render("variables"),
    }
    if config.operation_name is not None:
        body["operationName"] = config.operation_name
    try:
        content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise NodeConfigError(f"config field 'variables' is not valid JSON: {exc}") from None
    return httpx.Request("POST", parsed, headers=headers, content=content)


def _data(answer: exchange.Answer, ctx: NodeContext) -> Any:
    ok = 200 <= answer.status < 300
    try:
        document = parse_json(answer)
    except exchange.HttpResponseInvalid:
        if not ok:
            raise exchange.status_error(answer, "200-299", ctx.clock.now()) from None
        raise
    errors = document.get("errors") if isinstance(document, dict) else None
    if errors:
        raise _errors(answer, errors, ctx)
    if not ok:
        raise exchange.status_error(answer, "200-299", ctx.clock.now())
    if not isinstance(document, dict) or "data" not in document:
        raise exchange.HttpResponseInvalid(
            f"{answer.where} answered {answer.status} with JSON that is not a GraphQL answer "
            "(no 'data')",
            details={"status": answer.status},
        )
    return document["data"]


def _errors(answer: exchange.Answer, errors: Any, ctx: NodeContext) -> GraphqlErrors:
    listed = errors if isinstance(errors, list) else [errors]
    first = listed[0]
    message = first.get("message") if isinstance(first, dict) else None
    text = " ".join(str(message if message is not None else first).split())[:MESSAGE_CHARS]
    more = f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""
    status = answer.status
    retryable = status in exchange.RETRYABLE_STATUS
    retry_after = answer.response.headers.get("retry-after") if retryable else None
    return GraphqlErrors(
        f"{answer.where} answered with GraphQL errors: {text}{more}",
        retryable=retryable,
        details={"status": status, "errors": listed[:ERRORS_KEPT]},
        retry_after_s=exchange.retry_after_s(retry_after, ctx.clock.now()),
    )
