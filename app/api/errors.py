"""Every error answer is ``application/problem+json`` (RFC 9457), whatever raised it.

One handler maps :class:`~app.errors.OxifyError` subclasses by their stable ``code`` to a status;
FastAPI's request validation, Starlette's HTTP errors (unknown route 404, wrong method 405) and
unexpected exceptions (500, no traceback) take the same shape. Request bodies over the cap are
refused with 413 before anything parses them (:class:`BodyLimitMiddleware`).
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.api import bodies, openapi
from app.api.schemas import PROBLEM_MEDIA_TYPE, ProblemDetails, ProblemError
from app.errors import ErrorDetail, OxifyError, RateLimited

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://oxify.dev/problems/"

# Codes whose status is not derived from their suffix; anything unmapped answers 500.
_STATUS_BY_CODE = {
    "workflow_invalid": 422,
    "inputs_invalid": 422,
    "inputs_too_large": 422,
    "run_config_invalid": 422,
    "cursor_invalid": 422,
    "workflow_archived": 409,
    "invalid_state": 409,
    "idempotency_conflict": 409,
    "queue_full": 429,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "form_closed": 409,
    "form_already_answered": 409,
    "not_an_approver": 403,
    "submission_invalid": 422,
    "request_invalid": 422,
    "database_unavailable": 503,
    "unauthenticated": 401,
    "insufficient_scope": 403,
    "identity_provider_unavailable": 503,
    "key_invalid": 422,
    "key_pepper_missing": 503,
    "credential_exists": 409,
    "credential_invalid": 422,
    "encryption_not_configured": 503,
}
# Errors about a query parameter rather than the body: where to point.
_PARAMETER_BY_CODE = {"cursor_invalid": "cursor"}
_HTTP_CODES = {413: "body_too_large", 503: "not_ready"}
_VALIDATION_TITLE = "The request is not valid."
_INTERNAL_DETAIL = "An unexpected error occurred; it has been logged."


class ApiProblem(Exception):
    """A problem the API layer itself answers with (not a service error), e.g. 503 not ready."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        errors: Sequence[ProblemError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"The request body is larger than {limit} bytes.")


def status_for(code: str) -> int:
    """The HTTP status of an OxifyError ``code``."""
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    if code.endswith("_not_found"):
        return 404
    return 500


def problem(
    status: int,
    code: str,
    *,
    title: str | None = None,
    detail: str | None = None,
    errors: Iterable[ProblemError] = (),
) -> ProblemDetails:
    return ProblemDetails(
        type=PROBLEM_TYPE_BASE + code,
        title=title or _phrase(status),
        status=status,
        detail=detail,
        code=code,
        errors=list(errors),
    )


def problem_response(details: ProblemDetails, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(
        details.model_dump(mode="json", exclude_none=True),
        status_code=details.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting error answers, 500 always included (the OpenAPI step
    moves them to ``application/problem+json``)."""
    return {
        status: {"model": ProblemDetails, "description": _RESPONSE_DESCRIPTIONS[status]}
        for status in sorted({*statuses, 500})
    }


_RESPONSE_DESCRIPTIONS = {
    401: "No valid credentials: send `Authorization: Bearer <api key or token>`.",
    403: "Not allowed for this person.",
    404: "Not found.",
    409: "Conflicts with the resource's current state.",
    413: "The request body is too large.",
    422: f"The request is not valid; `errors` point at the bad fields. {bodies.RULES}",
    429: "Too many runs waiting to start, a rate limit or a quota reached: `Retry-After` says "
    "when to try again; rate limits and quotas also answer `RateLimit-Policy` and `RateLimit`.",
    500: "An unexpected error (logged; no details leak).",
    503: "Not ready.",
}


# -- converting errors ------------------------------------------------------------------------


def from_oxify_error(exc: OxifyError) -> ProblemDetails:
    status = status_for(exc.code)
    if status == 500:
        log.error("unmapped error %s", exc.code, exc_info=exc)
        return problem(status, "internal_error", detail=_INTERNAL_DETAIL)
    details: list[ErrorDetail] = getattr(exc, "errors", None) or []
    errors = [_from_detail(d) for d in details]
    parameter = _PARAMETER_BY_CODE.get(exc.code)
    if parameter is not None and not errors:
        errors = [
            ProblemError(
                loc=["query", parameter], msg=exc.message, code=exc.code, parameter=parameter
            )
        ]
    title = (type(exc).__doc__ or exc.code).strip().splitlines()[0]
    return problem(status, exc.code, title=title, detail=exc.message, errors=errors)


def from_validation_error(exc: RequestValidationError) -> ProblemDetails:
    errors = [_from_pydantic(error) for error in exc.errors()]
    detail = f"{len(errors)} problem(s) in the request"
    return problem(422, "request_invalid", title=_VALIDATION_TITLE, detail=detail, errors=errors)


def from_http_exception(exc: StarletteHTTPException) -> ProblemDetails:
    status = exc.status_code
    code = _HTTP_CODES.get(status) or _phrase(status).lower().replace(" ", "_").replace("-", "_")
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != _phrase(status) else None
    return problem(status, code, detail=detail)


def _from_detail(detail: ErrorDetail) -> ProblemError:
    """A service's complaint, its pointer into the request body."""
    parts = [_unescape(p) for p in detail.pointer.split("/")[1:]] if detail.pointer else []
    loc: list[str | int] = ["body", *map(_loc_token, parts)]
    return ProblemError(loc=loc, msg=detail.message, code=detail.code, pointer=detail.pointer)


def _loc_token(token: str) -> str | int:
    return int(token) if token.isascii() and token.isdigit() else token  # not "³"


def _from_pydantic(error: Any) -> ProblemError:
    loc: list[str | int] = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
    code = str(error.get("type", "invalid"))
    msg = str(error.get("msg", "invalid"))
    if code == "json_invalid":  # loc is ("body", <offset>): point at the body, say where
        ctx = error.get("ctx") or {}
        msg = f"{msg}: {ctx.get('error', 'invalid JSON')} at offset {loc[-1]}"
        return ProblemError(loc=["body"], msg=msg, code=code, pointer="")
    if loc and loc[0] == "body":
        pointer = "".join(f"/{_escape(str(p))}" for p in loc[1:])
        return ProblemError(loc=loc, msg=msg, code=code, pointer=pointer)
    parameter = str(loc[1]) if len(loc) > 1 else None
    return ProblemError(loc=loc, msg=msg, code=code, parameter=parameter)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# -- handlers ---------------------------------------------------------------------------------


def _handler(
    convert: Callable[[Any], ProblemDetails],
    headers: Callable[[HTTPConnection, Any], Mapping[str, str] | None] = lambda _c, _e: None,
) -> ExceptionHandler:
    """An exception handler answering problem+json over HTTP, closing a WebSocket otherwise
    (close code 4000 + status, e.g. 4404; 1011 for server errors)."""

    async def handle(conn: HTTPConnection, exc: Exception) -> Response | None:
        details = convert(exc)
        if isinstance(conn, WebSocket):
            code = 4000 + details.status if details.status < 500 else 1011
            reason = (details.detail or details.title).encode()[:120].decode(errors="ignore")
            await conn.close(code=code, reason=reason)  # a close reason holds ≤ 123 bytes
            return None
        return problem_response(details, headers(conn, exc))

    return cast(ExceptionHandler, handle)


def _unexpected(exc: Exception) -> ProblemDetails:
    log.error("unhandled error", exc_info=exc)
    return problem(500, "internal_error", detail=_INTERNAL_DETAIL)


def _error_headers(_conn: HTTPConnection, exc: OxifyError) -> dict[str, str] | None:
    """``Retry-After`` when the error says when to try again; the RFC 6750 challenge on 401
    and 403 answers about credentials."""
    headers: dict[str, str] = {}
    seconds = getattr(exc, "retry_after_s", None)
    if seconds is not None:
        headers["Retry-After"] = str(seconds)
    if isinstance(exc, RateLimited):
        headers |= rate_limit_headers(exc.policy, exc.quota, exc.window_s, exc.remaining, seconds)
    if exc.code == "unauthenticated":
        headers["WWW-Authenticate"] = 'Bearer realm="oxify"'
    elif exc.code == "insufficient_scope":
        headers["WWW-Authenticate"] = 'Bearer realm="oxify", error="insufficient_scope"'
    return headers or None


def rate_limit_headers(
    policy: str, quota: float, window_s: int, remaining: int, reset_s: int | None
) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (IETF draft httpapi-ratelimit-headers): the
    policy's quota ``q`` per ``w`` seconds, and ``r`` left until the window resets in ``t``."""
    quota_text = str(int(quota)) if float(quota).is_integer() else f"{quota:g}"
    state = f'"{policy}";r={max(0, remaining)}'
    if reset_s is not None:
        state += f";t={reset_s}"
    return {"RateLimit-Policy": f'"{policy}";q={quota_text};w={window_s}', "RateLimit": state}


def _http_headers(conn: HTTPConnection, exc: StarletteHTTPException) -> Mapping[str, str] | None:
    """The exception's headers; a 405's ``Allow`` lists every method the OpenAPI document
    gives the path (Starlette names those of the first route matching it, and FastAPI has a
    route per method)."""
    if exc.status_code != 405:
        return exc.headers
    methods = openapi.methods_of(conn.app.openapi(), conn.url.path)
    return {**(exc.headers or {}), "Allow": ", ".join(methods)}


def _from_api_problem(exc: ApiProblem) -> ProblemDetails:
    return problem(exc.status, exc.code, detail=exc.detail, errors=exc.errors)


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    """Everything the API adds around its routes (the composition root's one hook into the
    edge, with :func:`app.api.metrics.install`): problem+json handlers, the body cap and the
    OpenAPI document."""
    app.add_exception_handler(OxifyError, _handler(from_oxify_error, _error_headers))
    app.add_exception_handler(RequestValidationError, _handler(from_validation_error))
    app.add_exception_handler(StarletteHTTPException, _handler(from_http_exception, _http_headers))
    app.add_exception_handler(
        ApiProblem, _handler(_from_api_problem, lambda _conn, exc: exc.headers)
    )
    app.add_exception_handler(Exception, _handler(_unexpected))
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    openapi.install(app)


# -- the body cap -----------------------------------------------------------------------------


class BodyLimitMiddleware:
    """413 for request bodies over ``max_body_bytes``, before the body is parsed.

    A declared Content-Length over the cap is refused at once, without calling the app; other
    bodies (chunked) are counted as they are received, and the read that crosses the cap
    raises :class:`BodyTooLarge`, which the HTTP error handler answers.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(from_http_exception(BodyTooLarge(self.max_body_bytes)))
        await response(scope, receive, send)


__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ApiProblem",
    "BodyLimitMiddleware",
    "install",
    "problem",
    "problems",
    "status_for",
]
