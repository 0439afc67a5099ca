"""Response hardening at the edge: security headers on every answer, and CORS (off unless
``OXIFY_CORS_ORIGINS`` names origins).

The API answers JSON, events and plain text that browsers must never sniff into HTML, frame,
or send the page's address along with; the strict Content-Security-Policy is left off the
interactive docs (``/docs``, ``/redoc``), whose page loads its scripts and styles.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
DOC_PATHS = ("/docs", "/redoc")
# What a browser client may read off an answer: where a new run is, when to try again, limits.
EXPOSED = ["Location", "Retry-After", "RateLimit", "RateLimit-Policy", "WWW-Authenticate"]


class SecurityHeaders:
    """Adds :data:`HEADERS` (and the CSP, but on the docs pages) to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = HEADERS if scope["path"].startswith(DOC_PATHS) else [*HEADERS, CSP]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Security headers always; CORS for the configured origins only."""
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=EXPOSED,
            max_age=600,
        )
