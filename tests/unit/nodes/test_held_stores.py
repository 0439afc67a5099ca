"""The bounded set of open stores: least recently used idle ones closed, never one in use,
never reopened before its close has finished."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.nodes.resources import ResourcesClosed
from app.nodes.retrieval.held import HeldStores


class Store:
    def __init__(self, name: str, log: list[str], gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.log = log
        self.gate = gate
        log.append(f"open {name}")

    async def aclose(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.log.append(f"close {self.name}")


def held(size: int) -> HeldStores[Store]:
    return HeldStores(size, logging.getLogger("test"))


async def use(stores: HeldStores[Store], name: str, log: list[str]) -> Store:
    async with stores.use(name, lambda: Store(name, log)) as store:
        return store


async def settled() -> None:
    """Let the close tasks started so far run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_least_recently_used_idle_store_is_closed() -> None:
    log: list[str] = []
    stores = held(2)
    first = await use(stores, "a", log)
    await use(stores, "b", log)
    assert await use(stores, "a", log) is first
    await use(stores, "c", log)
    await settled()
    assert log == ["open a", "open b", "open c", "close b"]
    assert len(stores) == 2
    await stores.aclose()
    assert sorted(log[4:]) == ["close a", "close c"]
    with pytest.raises(ResourcesClosed):
        await use(stores, "a", log)


async def test_a_store_in_use_is_closed_only_when_its_user_is_done() -> None:
    log: list[str] = []
    stores = held(1)
    async with stores.use("a", lambda: Store("a", log)) as a:
        await use(stores, "b", log)
        await settled()
        assert log == ["open a", "open b", "close b"]  # "a" is busy: "b" goes
        async with stores.use("c", lambda: Store("c", log)):
            await settled()
            assert len(stores) == 2  # both in use: over the bound while they are
        await settled()
        assert log[-1] == "close c"
        assert await use(stores, "a", log) is a
    await use(stores, "d", log)
    await settled()
    assert log[-2:] == ["open d", "close a"]
    await stores.aclose()


async def test_a_store_is_not_reopened_before_its_close_ends() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    stores = held(1)
    async with stores.use("a", lambda: Store("a", log, gate)):
        pass
    await use(stores, "b", log)  # "a" starts closing, and waits for the gate
    reopening = asyncio.create_task(use(stores, "a", log))
    await settled()
    assert not reopening.done() and log == ["open a", "open b"]
    gate.set()
    await reopening
    assert log[:4] == ["open a", "open b", "close a", "open a"]
    gate.set()
    await stores.aclose()
