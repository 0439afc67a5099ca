"""What the ``code`` node shares within a process: warm Python workers, the wasmtime engine
and its compiled modules, and the gate on how many scripts and modules run at once.

One per :class:`~app.nodes.resources.NodeResources` (closed with it). Child processes belong
to the event loop that started them: when a process's loop changes (tests, ``oxify run``
after another loop) the waiting children of the old one are killed and new ones start.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.errors import NodeConfigError
from app.nodes.code import python, wasm
from app.nodes.resources import NodeResources
from app.settings import Settings

CLIENT_NAME = "code"


def code_runtime(resources: NodeResources) -> CodeRuntime:
    """The process's runtime of the code node (made on first use, closed with the resources)."""
    return resources.client(
        CLIENT_NAME, lambda: CodeRuntime(resources.settings), close=CodeRuntime.aclose
    )


class CodeRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wasm: wasm.Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: python.Workers | None = None
        self._gate = asyncio.Semaphore(settings.code_concurrency)
        self._threads: ThreadPoolExecutor | None = None

    @property
    def user(self) -> tuple[int, int] | None:
        """The (uid, gid) scripts run as when the service runs as root; else None (as is)."""
        if os.geteuid() != 0:
            return None
        name = self.settings.code_user
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise NodeConfigError(f"OXIFY_CODE_USER {name!r} is not a user here") from None
        return entry.pw_uid, entry.pw_gid

    async def run_python(self, job: python.Job) -> Any:
        """Run a Python job in a fresh child (a waiting one when there is one)."""
        workers = self._python_workers()
        async with self._gate:
            try:
                return await python.run(await workers.take(), job)
            finally:
                workers.refill()

    async def warm(self) -> None:
        """Start the waiting Python workers now and wait until they are ready (else the first
        script starts them)."""
        await self._python_workers().filled()

    async def run_wasm(self, job: wasm.Job) -> Any:
        """Run a wasm job in a thread of the runtime's own (the loop's default pool, which
        other work shares, is never filled with modules). Cancelling stops the wait; the module
        stops at its own deadline and keeps its place at the gate until then, so no more than
        ``OXIFY_CODE_CONCURRENCY`` ever run."""
        gate = self._bind()
        if self._wasm is None:
            self._wasm = wasm.Runtime()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                self.settings.code_concurrency, thread_name_prefix="oxify-wasm"
            )
        await gate.acquire()
        running = asyncio.get_running_loop().run_in_executor(self._threads, self._wasm.run, job)
        running.add_done_callback(lambda _: gate.release())
        return await asyncio.shield(running)

    def _python_workers(self) -> python.Workers:
        self._bind()
        if self._workers is None:
            self._workers = python.Workers(self.settings.code_workers, self.user)
        return self._workers

    def _bind(self) -> asyncio.Semaphore:
        """The gate of the running loop; a new loop gets a new gate and new workers."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._workers is not None:
                self._workers.abandon()
                self._workers = None
            self._gate = asyncio.Semaphore(self.settings.code_concurrency)
            self._loop = loop
        return self._gate

    async def aclose(self) -> None:
        if self._workers is not None:
            if self._loop is asyncio.get_running_loop():
                await self._workers.aclose()
            else:
                self._workers.abandon()
            self._workers = None
        if self._threads is not None:
            threads, self._threads = self._threads, None
            await asyncio.to_thread(threads.shutdown)  # the modules running end at their deadline
        if self._wasm is not None:
            await asyncio.to_thread(self._wasm.close)
            self._wasm = None
