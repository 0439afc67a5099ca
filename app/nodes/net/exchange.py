"""One HTTP exchange as the http and graphql nodes make it: through the shared client (so the
egress policy), under the host's rate limit and circuit breaker, within one timeout for every
hop, redirects followed by hand (at most ``MAX_REDIRECTS``, auth dropped when they leave the
origin) and the body read in a stream up to a byte limit.

Secrets stay out of errors: URLs in messages lose their userinfo and query string, and request
headers are never repeated.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from app.domain.http_nodes import MAX_REDIRECTS
from app.errors import NodeError
from app.nodes.net import hosts
from app.nodes.resources import NodeResources

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
EXCERPT_CHARS = 500  # characters of an unexpected answer's body kept in the error
EXCERPT_READ_BYTES = 8 * 1024  # bytes read of an unexpected answer, for the excerpt


class HttpStatusError(NodeError):
    """The server answered with a status the node does not expect."""

    code = "http_status"


class HttpTransportError(NodeError):
    """The request did not complete (connection, timeout, broken response)."""

    code = "http_transport"


class HttpResponseInvalid(NodeError):
    """The response cannot be used (too large, not the JSON it claims to be, too many
    redirects)."""

    code = "http_response_invalid"
    retryable = False


@dataclass(frozen=True, slots=True)
class Limits:
    """How one exchange is bounded and which answers it accepts."""

    timeout_s: float
    max_bytes: int
    expects: Callable[[int], bool]
    expected: str  # what ``expects`` accepts, for messages ("200-299")
    follow_redirects: bool = True
    secret_headers: Collection[str] = ()  # dropped by a redirect to another origin


@dataclass(frozen=True, slots=True)
class Answer:
    """The final response (closed) and its body."""

    response: httpx.Response
    body: bytes
    where: str  # "GET https://host/path" of the request that got it

    @property
    def status(self) -> int:
        return self.response.status_code

    def text(self) -> str:
        try:
            return self.body.decode(self.response.charset_encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


async def send(
    resources: NodeResources, request: httpx.Request, limits: Limits, now: Callable[[], datetime]
) -> Answer:
    """Send ``request`` and read its answer; an unexpected status is an
    :class:`HttpStatusError` (with a body excerpt and the server's ``Retry-After``)."""
    deadline = asyncio.get_running_loop().time() + limits.timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        answer, following = await _hop(resources, request, limits, deadline)
        if following is None:
            if not limits.expects(answer.status):
                raise status_error(answer, limits.expected, now())
            return answer
        request = _redirected(request, following, limits)
    raise HttpResponseInvalid(
        f"{answer.where} redirected more than {MAX_REDIRECTS} times",
        details={"status": answer.status},
    )


def display_url(url: httpx.URL) -> str:
    """The URL for messages: no userinfo, query string or fragment (they may hold secrets)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), else None."""
    if value is None:
        return None
    text = value.strip()
    if (seconds := digits(text)) is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def status_error(answer: Answer, expected: str, now: datetime) -> HttpStatusError:
    """The error for an answer whose status the node does not accept."""
    status = answer.status
    retryable = status in RETRYABLE_STATUS
    phrase = answer.response.reason_phrase
    return HttpStatusError(
        f"{answer.where} answered {status}{f' {phrase}' if phrase else ''} (expected {expected})",
        retryable=retryable,
        details={"status": status, "body_excerpt": answer.text()[:EXCERPT_CHARS]},
        retry_after_s=retry_after_s(answer.response.headers.get("retry-after"), now)
        if retryable
        else None,
    )


def digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


# -- one hop -----------------------------------------------------------------------------------


async def _hop(
    resources: NodeResources, request: httpx.Request, limits: Limits, deadline: float
) -> tuple[Answer, httpx.Request | None]:
    """One request: the answer, and the request a redirect asks for (when it is followed)."""
    where = f"{request.method} {display_url(request.url)}"
    loop = asyncio.get_running_loop()
    async with hosts.policies(resources).call(request.url.host, deadline - loop.time()) as call:
        try:
            async with asyncio.timeout_at(deadline) as timer:
                response = await resources.http.send(request, stream=True, follow_redirects=False)
                try:
                    call.answered(response.status_code)
                    following = response.next_request if limits.follow_redirects else None
                    if following is not None:
                        return Answer(response, b"", where), following
                    return Answer(response, await _body(response, limits, where), where), None
                finally:
                    await response.aclose()
        except TimeoutError:
            if timer.expired():
                raise HttpTransportError(
                    f"{where} timed out after {limits.timeout_s:g} s", details={"error": "timeout"}
                ) from None
            raise
        except httpx.RequestError as exc:
            raise _transport_error(exc, where, limits.timeout_s) from None


def _redirected(previous: httpx.Request, following: httpx.Request, limits: Limits) -> httpx.Request:
    """The redirect's request; auth headers stay with the origin they were given for (httpx
    drops ``Authorization`` itself; an API key header is dropped here)."""
    if (previous.url.scheme, previous.url.host, previous.url.port) != (
        following.url.scheme,
        following.url.host,
        following.url.port,
    ):
        for name in limits.secret_headers:
            following.headers.pop(name, None)
    return following


async def _body(response: httpx.Response, limits: Limits, where: str) -> bytes:
    if not limits.expects(response.status_code):
        body, _ = await _read(response, EXCERPT_READ_BYTES)
        return body
    declared = digits(response.headers.get("content-length", ""))
    plain = "content-encoding" not in response.headers  # else the decoded size may differ
    over = plain and declared is not None and declared > limits.max_bytes
    body = b""
    if not over:
        body, over = await _read(response, limits.max_bytes)
    if over:
        raise HttpResponseInvalid(
            f"{where}: the response body exceeds max_response_bytes ({limits.max_bytes} bytes)",
            details={"status": response.status_code, "max_response_bytes": limits.max_bytes},
        )
    return body


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
