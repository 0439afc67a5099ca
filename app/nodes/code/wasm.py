"""WebAssembly ``code`` nodes: a WASI module run by wasmtime, in a worker thread.

The module gets the inputs as JSON on stdin and writes its result as JSON to stdout. It gets
no preopened directory (no files), no environment, no arguments but its name and no sockets
(WASI preview 1 has none to give). Each run has a store of its own with three limits:

- ``fuel``: wasmtime charges about one unit per instruction; out of fuel, the module traps.
- ``memory_mb``: its linear memories may not grow past this (``memory.grow`` answers -1; a
  module that asks for more up front does not instantiate).
- ``timeout_s``: an epoch deadline. One ticker thread advances the engine's epoch every
  ``TICK_S`` while runs are active; a store's deadline is its timeout in ticks, so a module
  stops in time however much fuel it was given.

Compiled modules are kept by the SHA-256 of their bytes (LRU, ``MODULES_KEPT``): a module is
compiled once per process and instantiated per run. A cancelled node stops waiting at once; a
module cannot be stopped from outside its thread, so it runs on until its own deadline at the
latest (wasmtime's store is single-threaded).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import wasmtime
from cachetools import LRUCache

from app.nodes.code.failures import (
    CodeFailed,
    CodeLimitExceeded,
    CodeOutputInvalid,
    excerpt,
)

TICK_S = 0.01  # seconds between epoch ticks while a module runs
MODULES_KEPT = 64  # compiled modules kept per process
STDERR_KEPT = 4096  # bytes of what a module wrote to stderr kept, for error messages
LANGUAGE = "wasm"
MIB = 1024 * 1024
TABLE_ELEMENTS = 100_000  # entries per table: enough for a real module's function table
MAX_TABLES = 4
WASM_PAGE = 64 * 1024  # bytes: memory grows by pages


@dataclass(frozen=True, slots=True)
class Job:
    """One module to run on one input and the limits it runs under."""

    module: bytes
    stdin: bytes
    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    fuel: int


class Runtime:
    """The process's wasmtime engine, its compiled modules and its epoch ticker."""

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        # One memory, 32-bit: the store's memory limit is per memory, so several memories (or
        # 64-bit ones) would multiply what a module may take from the service's own process.
        config.wasm_multi_memory = False
        config.wasm_memory64 = False
        self.engine = wasmtime.Engine(config)
        self._modules: LRUCache[str, wasmtime.Module] = LRUCache(MODULES_KEPT)
        self._lock = threading.Lock()
        self._ticker = _Ticker(self.engine)

    def module(self, data: bytes) -> wasmtime.Module:
        """The compiled module of ``data``, compiled on first use (CodeFailed if invalid)."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            cached = self._modules.get(key)
        if cached is not None:
            return cached
        try:
            compiled = wasmtime.Module(self.engine, data)
        except wasmtime.WasmtimeError as exc:
            message = f"the module is not valid WebAssembly: {exc}"
            raise CodeFailed(message, language=LANGUAGE) from None
        with self._lock:
            self._modules[key] = compiled
        return compiled

    def run(self, job: Job) -> Any:
        """Run ``job`` to its end (blocking: call it in a worker thread); the JSON it wrote."""
        module = self.module(job.module)
        store = wasmtime.Store(self.engine)
        store.set_limits(
            memory_size=job.memory_mb * MIB,
            table_elements=TABLE_ELEMENTS,  # tables live in the service's memory too
            instances=1,
            tables=MAX_TABLES,
            memories=1,
        )
        store.set_fuel(job.fuel)
        out, err = _Capture(job.max_output_bytes), _Capture(STDERR_KEPT, keep_end=True)
        with tempfile.TemporaryDirectory(prefix="oxify-wasm-") as scratch:
            stdin = os.path.join(scratch, "stdin.json")
            with open(stdin, "wb") as file:
                file.write(job.stdin)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["module"]
            wasi.stdin_file = stdin
            wasi.stdout_custom = out.write
            wasi.stderr_custom = err.write
            store.set_wasi(wasi)
            linker = wasmtime.Linker(self.engine)
            linker.define_wasi()
            with self._ticker.active():
                store.set_epoch_deadline(math.ceil(job.timeout_s / TICK_S) + 1)
                _run(linker, store, module, job, err)
        if out.overflowed:
            raise CodeLimitExceeded(
                f"the module wrote more than max_output_bytes ({job.max_output_bytes})",
                language=LANGUAGE,
                limit="output",
            )
        try:
            return orjson.loads(bytes(out.data))
        except orjson.JSONDecodeError as exc:
            shown = excerpt(bytes(out.data).decode(errors="replace"), 200)
            raise CodeOutputInvalid(
                f"the module's stdout is not JSON ({exc}): {shown!r}", language=LANGUAGE
            ) from None

    def close(self) -> None:
        self._ticker.close()


def _run(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    module: wasmtime.Module,
    job: Job,
    err: _Capture,
) -> None:
    try:
        instance = linker.instantiate(store, module)
    except wasmtime.WasmtimeError as exc:
        raise _instantiation_error(exc, job) from None
    start = instance.exports(store).get("_start")
    if not isinstance(start, wasmtime.Func):
        message = "the module exports no _start function (it must be a WASI command)"
        raise CodeFailed(message, language=LANGUAGE)
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        if exc.code != 0:
            raise CodeFailed(
                f"the module exited with status {exc.code}" + err.shown(), language=LANGUAGE
            ) from None
    except wasmtime.Trap as exc:
        raise _trap_error(exc, job, err, _memory_in_use(instance, store)) from None
    except wasmtime.WasmtimeError as exc:
        raise CodeFailed(f"the module failed: {exc}" + err.shown(), language=LANGUAGE) from None


def _trap_error(exc: wasmtime.Trap, job: Job, err: _Capture, memory: int) -> Exception:
    code = exc.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return CodeLimitExceeded(
            f"the module used up its fuel ({job.fuel})", language=LANGUAGE, limit="fuel"
        )
    if code == wasmtime.TrapCode.INTERRUPT:
        return CodeLimitExceeded(
            f"the module ran longer than timeout_s ({job.timeout_s:g} s) and was stopped",
            language=LANGUAGE,
            limit="timeout",
        )
    what = code.name.lower().replace("_", " ") if code is not None else str(exc.message)
    if memory + WASM_PAGE > job.memory_mb * MIB:
        return CodeLimitExceeded(
            f"the module trapped ({what}) with its memory at the memory_mb limit "
            f"({job.memory_mb}): growing it further failed" + err.shown(),
            language=LANGUAGE,
            limit="memory",
        )
    used = f" (its exported memory: {memory // 1024} KiB)" if memory else ""
    return CodeFailed(
        f"the module trapped: {what}{used}" + err.shown(),
        language=LANGUAGE,
        trap=code.name if code is not None else None,
    )


def _memory_in_use(instance: wasmtime.Instance, store: wasmtime.Store) -> int:
    """Bytes of the module's exported linear memories."""
    exports = instance.exports(store)
    memories = [exports[name] for name in exports]
    return sum(m.data_len(store) for m in memories if isinstance(m, wasmtime.Memory))


def _instantiation_error(exc: wasmtime.WasmtimeError, job: Job) -> Exception:
    text = str(exc)
    if "memory" in text and ("limit" in text or "minimum" in text):
        return CodeLimitExceeded(
            f"the module needs more memory than memory_mb ({job.memory_mb}): "
            f"{text.splitlines()[0]}",
            language=LANGUAGE,
            limit="memory",
        )
    return CodeFailed(f"the module could not be instantiated: {text}", language=LANGUAGE)


class _Capture:
    """Bytes a module writes to one stream, at most ``limit`` of them."""

    def __init__(self, limit: int, *, keep_end: bool = False) -> None:
        self.limit = limit
        self.keep_end = keep_end
        self.data = bytearray()
        self.overflowed = False

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        if len(self.data) <= self.limit:
            return len(chunk)
        if self.keep_end:
            del self.data[: -self.limit]
            return len(chunk)
        self.overflowed = True
        del self.data[self.limit :]
        return -errno.EFBIG  # the module's write fails; its run is refused afterwards anyway

    def shown(self) -> str:
        text = bytes(self.data).decode(errors="replace").strip()
        return f"\nstderr (the end):\n{excerpt(text)}" if text else ""


class _Ticker:
    """Advances the engine's epoch every ``TICK_S`` while at least one run is active."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._closed = False
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Ticks go on while the block runs (a store's deadline counts them)."""
        with self._changed:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="oxify-wasm-epoch")
                self._thread.daemon = True
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _tick(self) -> None:
        while True:
            with self._changed:
                while not (self._active or self._closed):
                    self._changed.wait()
                if self._closed:
                    return
            if self._stop.wait(TICK_S):
                return
            self._engine.increment_epoch()
