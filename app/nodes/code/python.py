"""Python ``code`` nodes: each script runs in a child process of its own, under limits.

The child (:mod:`app.nodes.code.worker`) is ``python -I -S`` with an empty environment (the
service's variables, and so its secrets, are not there), a scratch directory as its working
directory (removed afterwards), and a process group of its own. It applies its limits itself
before the script runs (CPU, address space, file size, processes), and as root it first
becomes ``OXIFY_CODE_USER``. The service enforces the rest: the wall-clock timeout and
cancellation kill the whole process group, and the answer read back is capped.

Starting an interpreter costs tens of milliseconds, so :class:`Workers` keeps a few started and
waiting for a job. Each process runs ONE script and is never reused: the one taken is replaced
at once, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.errors import NodeConfigError
from app.nodes.code.failures import CodeFailed, CodeLimitExceeded, CodeOutputInvalid, excerpt

WORKER = str(Path(__file__).with_name("worker.py"))
MIN_FILE_BYTES = 64 * 1024  # bytes a script may write to a file, whatever its max_output_bytes
PRINTS_KEPT = 64 * 1024  # bytes of what a script printed kept (the end), for error messages
# The kinds of error the worker reports (worker.py); any other answer was forged by the script.
WORKER_ERRORS = frozenset({"memory", "too_large", "not_json", "raised", "no_main"})
LANGUAGE = "python"


@dataclass(frozen=True, slots=True)
class Job:
    """One script to run and the limits it runs under."""

    source: str
    inputs: Any
    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    processes: int
    user: tuple[int, int] | None  # (uid, gid) to become; None: stay who the service is

    @property
    def file_bytes(self) -> int:
        """RLIMIT_FSIZE: room for the answer (a tag byte and the JSON, or an error)."""
        return max(self.max_output_bytes, MIN_FILE_BYTES) + 1

    def payload(self) -> bytes:
        limits = {
            "cpu_s": math.ceil(self.timeout_s),
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "file_bytes": self.file_bytes,
            "output_bytes": self.max_output_bytes,
            "processes": self.processes,
        }
        job = {"source": self.source, "inputs": self.inputs, "limits": limits, "user": self.user}
        try:
            return orjson.dumps(job)
        except TypeError as exc:  # an integer past 64 bits, a lone surrogate
            raise NodeConfigError(f"the script's inputs cannot be sent as JSON: {exc}") from None


@dataclass(slots=True)
class Worker:
    """A started child waiting for its job, and its scratch directory: ``answer`` and
    ``prints`` (the child's stdout and stderr, opened by the service) beside ``work`` (the
    child's working directory, the only part it may write to when it runs as another user)."""

    process: asyncio.subprocess.Process
    scratch: Path

    def kill(self) -> None:
        """SIGKILL to the whole process group (whatever the script forked goes too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


async def start(user: tuple[int, int] | None) -> Worker:
    """A fresh child, returned once it waits for its job on stdin (its modules imported)."""
    scratch, answer, prints = _scratch(user)  # a few system calls: not worth a thread
    ready_read, ready_write = os.pipe()  # the child closes its end once it is ready
    try:
        with answer, prints:
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",
                    "-S",
                    WORKER,
                    str(ready_write),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=answer,
                    stderr=prints,
                    cwd=scratch / "work",
                    env={},
                    start_new_session=True,
                    pass_fds=(ready_write,),
                )
            finally:
                os.close(ready_write)
    except BaseException:
        os.close(ready_read)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    worker = Worker(process, scratch)
    try:
        await _closed(ready_read)
    except BaseException:
        worker.kill()
        await asyncio.shield(discard(worker))
        raise
    return worker


async def discard(worker: Worker) -> None:
    """Wait for a killed child and remove its scratch directory."""
    await worker.process.wait()
    await asyncio.to_thread(shutil.rmtree, worker.scratch, True)


async def _closed(fd: int) -> None:
    """Wait until every writer of the pipe ``fd`` has closed it (then close ``fd``)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb")
    )
    try:
        await reader.read()
    finally:
        transport.close()


def _scratch(user: tuple[int, int] | None) -> tuple[Path, BinaryIO, BinaryIO]:
    """A scratch directory and the child's stdout and stderr in it: files, not pipes, so that
    processes the script leaves behind cannot hold the answer hostage."""
    scratch = Path(tempfile.mkdtemp(prefix="oxify-code-"))
    # The service's, not listable: a script running as another user reaches its own "work"
    # and cannot swap the files; the answer and prints only through the descriptors it gets.
    scratch.chmod(0o711)
    work = scratch / "work"
    work.mkdir(mode=0o700)
    if user is not None:
        os.chown(work, *user)
    return scratch, _private(scratch / "answer"), _private(scratch / "prints")


def _private(path: Path) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb")


class Workers:
    """Up to ``size`` started children waiting for a job, all of one event loop."""

    def __init__(self, size: int, user: tuple[int, int] | None) -> None:
        self.size = size
        self.user = user
        self._ready: deque[Worker] = deque()
        self._starting: set[asyncio.Task[None]] = set()

    async def take(self) -> Worker:
        """A waiting child, else a new one. Call :meth:`refill` once its script is done."""
        return self._ready.popleft() if self._ready else await start(self.user)

    async def filled(self) -> None:
        """Start the missing children and wait until they are ready."""
        self.refill()
        await asyncio.gather(*self._starting)

    def refill(self) -> None:
        """Start the missing children in the background. After a script rather than when it
        is taken: starting an interpreter would compete with the script for the CPU."""
        missing = self.size - len(self._ready) - len(self._starting)
        for _ in range(max(missing, 0)):
            task = asyncio.get_running_loop().create_task(self._add())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _add(self) -> None:
        worker = await start(self.user)
        self._ready.append(worker)

    def abandon(self) -> None:
        """End the waiting children without their event loop (it is gone or another one)."""
        for task in self._starting:
            task.cancel()
        while self._ready:
            worker = self._ready.popleft()
            worker.kill()
            shutil.rmtree(worker.scratch, ignore_errors=True)

    async def aclose(self) -> None:
        """Stop starting children and end the waiting ones."""
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        while self._ready:
            worker = self._ready.popleft()
            worker.kill()
            await discard(worker)


async def run(worker: Worker, job: Job) -> Any:
    """Run ``job`` in ``worker``: its ``main``'s return value, or a node error saying what
    happened. Cancellation kills the process group before it propagates."""
    process = worker.process
    try:
        async with asyncio.timeout(job.timeout_s):
            await _exchange(process, job)
    except BaseException as exc:  # timed out or cancelled: the script and its children go now
        worker.kill()
        await asyncio.shield(discard(worker))
        if isinstance(exc, TimeoutError):
            raise CodeLimitExceeded(
                f"the script ran longer than timeout_s ({job.timeout_s:g} s) and was killed",
                language=LANGUAGE,
                limit="timeout",
            ) from None
        raise
    worker.kill()  # the script's own children, left behind
    await process.wait()
    try:
        answer, prints = await asyncio.to_thread(_read, worker.scratch, job.file_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, worker.scratch, True)
    return _result(answer, prints, process.returncode, job)


async def _exchange(process: asyncio.subprocess.Process, job: Job) -> None:
    stdin = process.stdin
    assert stdin is not None  # asked for
    stdin.write(job.payload())
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.drain()
    stdin.close()
    await process.wait()


def _read(scratch: Path, file_bytes: int) -> tuple[bytes, bytes]:
    """The answer and the end of what was printed."""
    with open(scratch / "answer", "rb") as file:
        answer = file.read(file_bytes)
    with open(scratch / "prints", "rb") as file:
        file.seek(max(0, os.fstat(file.fileno()).st_size - PRINTS_KEPT))
        prints = file.read(PRINTS_KEPT)
    return answer, prints


def _result(answer: bytes, prints: bytes, returncode: int | None, job: Job) -> Any:
    tag, body = answer[:1], answer[1:]
    if tag == b"R":
        if len(body) > job.max_output_bytes:  # the script wrote to the answer's file itself
            raise CodeLimitExceeded(
                f"the script wrote more than max_output_bytes ({job.max_output_bytes})",
                language=LANGUAGE,
                limit="output",
            )
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CodeOutputInvalid(
                f"the script's answer is not JSON: {exc}", language=LANGUAGE
            ) from None
    if tag == b"E":
        try:
            error = orjson.loads(body)
            fields = {key: str(error.get(key) or "") for key in ("kind", "message", "traceback")}
            if fields["kind"] not in WORKER_ERRORS or not fields["message"]:
                raise KeyError("kind")
            raise _failure(fields, prints, job)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            # Not the worker's: the script wrote to the answer's file itself.
            raise CodeOutputInvalid(
                "the script's answer is not one the worker writes", language=LANGUAGE
            ) from None
    raise _death(returncode, prints, job)


def _failure(error: dict[str, str], prints: bytes, job: Job) -> Exception:
    kind, message = error["kind"], error["message"]
    if kind == "memory":
        return CodeLimitExceeded(
            f"the script ran out of memory (memory_mb {job.memory_mb}): {message}"
            + _printed(prints),
            language=LANGUAGE,
            limit="memory",
        )
    if kind == "too_large":
        return CodeLimitExceeded(
            f"{message}, more than max_output_bytes ({job.max_output_bytes})",
            language=LANGUAGE,
            limit="output",
        )
    if kind == "not_json":
        return CodeOutputInvalid(message, language=LANGUAGE)
    trace = error.get("traceback") or message
    return CodeFailed(
        f"{message}\n{excerpt(trace)}{_printed(prints)}",
        language=LANGUAGE,
        traceback=excerpt(trace),
    )


def _death(returncode: int | None, prints: bytes, job: Job) -> Exception:
    """A child that ended without an answer: killed by a limit, or exited by itself."""
    if returncode is not None and returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        if number in (signal.SIGXCPU, signal.SIGKILL):
            return CodeLimitExceeded(
                f"the script was killed by {name}: it used up its CPU time "
                f"({math.ceil(job.timeout_s)} s), or the system killed it" + _printed(prints),
                language=LANGUAGE,
                limit="cpu",
            )
        if number in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            return CodeLimitExceeded(
                f"the script crashed with {name}, most likely out of memory "
                f"(memory_mb {job.memory_mb})" + _printed(prints),
                language=LANGUAGE,
                limit="memory",
            )
        if number == signal.SIGXFSZ:
            return CodeLimitExceeded(
                f"the script wrote a file larger than max_output_bytes ({job.max_output_bytes})",
                language=LANGUAGE,
                limit="output",
            )
        return CodeFailed(f"the script was killed by {name}" + _printed(prints), language=LANGUAGE)
    return CodeFailed(
        f"the script exited (status {returncode}) without returning from main" + _printed(prints),
        language=LANGUAGE,
    )


def _printed(prints: bytes) -> str:
    text = prints.decode(errors="replace").strip()
    return f"\nwhat it printed (the end):\n{excerpt(text)}" if text else ""
