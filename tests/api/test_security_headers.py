"""Security headers on every answer, and CORS only for the origins configured."""

from __future__ import annotations

import pytest

from app.settings import Settings
from tests.api.helpers import serving


async def test_every_answer_carries_the_security_headers(pg_database_url: str) -> None:
    async with serving(pg_database_url) as client:
        for response in (
            await client.get("/healthz"),
            await client.get("/v1/workflows"),
            await client.get("/v1/workflows/missing"),
            await client.post("/v1/workflows", content=b"{", headers={"content-type": "x/y"}),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in response.headers["content-security-policy"]
        docs = await client.get("/docs")
        assert docs.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in docs.headers  # its page loads scripts


async def test_cors_is_off_unless_origins_are_configured(pg_database_url: str) -> None:
    preflight = {
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with serving(pg_database_url) as client:
        answer = await client.options("/v1/workflows", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    async with serving(pg_database_url, cors_origins=["https://dash.example"]) as client:
        answer = await client.options("/v1/workflows", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://dash.example"
        simple = await client.get("/v1/workflows", headers={"Origin": "https://dash.example"})
        exposed = simple.headers["access-control-expose-headers"]
        for name in ("Location", "Retry-After", "RateLimit", "RateLimit-Policy"):
            assert name in exposed
        other = await client.get("/v1/workflows", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_wildcard_origin_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="list the origins instead"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)
