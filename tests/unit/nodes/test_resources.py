"""NodeResources: named clients made once on first use, closed newest first; the HTTP client."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from app.nodes.resources import NodeResources, ResourcesClosed, make_client
from app.settings import Settings


class Client:
    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.name)

    async def aclose(self) -> None:
        self._closed.append(self.name)


def resources(**options: Any) -> NodeResources:
    return NodeResources(settings=Settings(database_url="sqlite+aiosqlite:///:memory:"), **options)


async def test_a_named_client_is_made_on_first_use_and_only_once() -> None:
    made: list[str] = []
    closed: list[str] = []

    def create() -> Client:
        made.append("openai")
        return Client("openai", closed)

    shared = resources()
    assert made == []
    first = shared.client("openai", create, close=Client.aclose)
    again = shared.client("openai", create, close=Client.aclose)
    assert first is again
    assert made == ["openai"]
    await shared.aclose()
    assert closed == ["openai"]


async def test_clients_close_newest_first_sync_and_async() -> None:
    closed: list[str] = []
    async with resources() as shared:
        shared.client("a", lambda: Client("a", closed), close=Client.close)
        shared.client("b", lambda: Client("b", closed), close=Client.aclose)
        shared.client("c", lambda: Client("c", closed), close=Client.close)
        shared.client("kept", lambda: Client("kept", closed))  # no close given: not closed
    assert closed == ["c", "b", "a"]
    assert shared.closed


async def test_one_failing_close_does_not_keep_the_others_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    def broken(_: Client) -> None:
        raise OSError("socket already gone")

    shared = resources()
    shared.client("a", lambda: Client("a", closed), close=Client.close)
    shared.client("b", lambda: Client("b", closed), close=broken)
    with caplog.at_level(logging.ERROR, logger="oxify.nodes"):
        await shared.aclose()
    assert closed == ["a"]
    assert "closing the 'b' client failed" in caplog.text


async def test_no_client_after_closing() -> None:
    shared = resources()
    await shared.aclose()
    with pytest.raises(ResourcesClosed, match="'late'"):
        shared.client("late", lambda: Client("late", []))


async def test_the_http_client_is_made_on_first_use_and_closed() -> None:
    shared = resources()
    client = shared.http
    assert shared.http is client
    assert isinstance(client, httpx.AsyncClient)
    await shared.aclose()
    assert client.is_closed


async def test_a_given_http_client_is_the_one_shared_and_closed() -> None:
    given = make_client()
    async with resources(http=given) as shared:
        assert shared.http is given
    assert given.is_closed


async def test_the_shared_client_keeps_no_cookies() -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Set-Cookie": "session=run-1; Path=/"})

    async with make_client(transport=httpx.MockTransport(answer)) as client:
        await client.get("https://example.test/")
        assert len(client.cookies.jar) == 0


async def test_made_lists_the_clients_of_a_type_without_making_any() -> None:
    closed: list[str] = []
    async with resources() as shared:
        assert shared.made(Client) == {}
        a = shared.client("a", lambda: Client("a", closed))
        shared.client("other", lambda: "not a Client")
        b = shared.client("b", lambda: Client("b", closed))
        listed = shared.made(Client)
        assert listed == {"a": a, "b": b}
        listed.clear()  # a copy: the resources keep their clients
        assert shared.made(Client) == {"a": a, "b": b}
        assert shared.made(httpx.AsyncClient) == {}  # the HTTP client is not made by asking


async def test_a_scoped_view_has_its_own_logger_and_shares_the_clients() -> None:
    closed: list[str] = []
    shared = resources()
    view = shared.scoped("hello")
    assert view.logger.name == "oxify.nodes.hello"
    assert shared.logger.name == "oxify.nodes"
    assert view.settings is shared.settings
    made = view.client("a", lambda: Client("a", closed), close=Client.close)
    assert shared.client("a", lambda: Client("other", closed)) is made
    await shared.aclose()
    assert closed == ["a"]
    assert view.closed
