"""The child side of a Python ``code`` node: runs ONE job in this process, then exits.

Started (by :mod:`app.nodes.code.python`) as ``python -I -S worker.py`` with an empty
environment, in a scratch directory, as the leader of a process group of its own, possibly
before there is a job for it. It imports only the standard library (``-S``: no site-packages).

1. Import ``PRELOADED`` and close the pipe end named by ``argv[1]`` (the service then knows
   this process is ready), then wait for the job (JSON on stdin, read to EOF): source,
   inputs, limits, and the user to become.
2. As root: leave the host's network (a network namespace of its own), then become that user
   (no groups), so the script cannot read the service's files or ``/proc/<service pid>/environ``
   and ``RLIMIT_NPROC`` applies to it.
3. Limits: CPU seconds, address space, size of files written, processes, no core dumps.
4. Run ``main(inputs)`` and write ONE answer to the original stdout (a file the service
   opened): ``R`` + the value as JSON, or ``E`` + ``{"kind", "message", "traceback"}``. What
   the script prints goes to stderr (fd 1 is pointed there first), never into the answer.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import linecache
import os
import resource
import sys
import traceback

PRELOADED = (
    "math",
    "re",
    "datetime",
    "collections",
    "itertools",
    "functools",
    "statistics",
    "decimal",
    "random",
    "string",
    "textwrap",
    "base64",
    "hashlib",
    # So a script's reach is what its network namespace allows, not what the user may read.
    "socket",
    "encodings.idna",
)
"""Imported while the process waits for its job (a warm one has them ready), and before it
becomes the sandbox user, who may not be able to read the Python installation (one under
/root): scripts can import these whatever the user may read."""
FILENAME = "<code>"  # the script's frames in tracebacks; the only ones shown
ERROR_CHARS = 8000  # of an error's message and traceback: the answer file has room for both
NO_MEMORY = b'E{"kind": "memory", "message": "MemoryError"}'  # built before the limits apply
CLONE_NEWNET = 0x40000000  # <sched.h>


def main() -> None:
    for name in PRELOADED:
        __import__(name)
    os.close(int(sys.argv[1]))  # ready: the service is told by this end of a pipe closing
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() and os.write(1, ...) land with stderr
    raw = sys.stdin.buffer.read()
    if not raw:
        return  # the service closed without a job for this process
    job = json.loads(raw)
    sys.stdin = open(os.devnull)  # noqa: SIM115 (the script reads EOF)
    _become(job.get("user"))
    _limit(job["limits"])
    try:
        out = _run(job["source"], job["inputs"], job["limits"]["output_bytes"])
    except MemoryError:
        out = NO_MEMORY
    for stream in (sys.stdout, sys.stderr):  # what it printed, before _exit skips it
        with contextlib.suppress(Exception):
            stream.flush()
    answer.write(out)
    answer.flush()
    os._exit(0)  # done: the interpreter's teardown would only add to the node's time


def _become(user: list[int] | None) -> None:
    if user is None:
        return
    _without_network()
    uid, gid = user
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _without_network() -> None:
    """Move into a network namespace of its own (root may): only a loopback interface, down, so
    the script reaches no host at all, the egress policy's refusals included. Where namespaces
    cannot be made (a container without the capability) the script keeps the host's network."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare")


def _limit(limits: dict[str, int]) -> None:
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    memory = limits["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run(source: str, inputs: object, output_bytes: int) -> bytes:
    lines = source.splitlines(keepends=True)
    linecache.cache[FILENAME] = (len(source), None, lines, FILENAME)
    namespace = {"__name__": "__code__"}
    try:
        exec(compile(source, FILENAME, "exec"), namespace)
        function = namespace.get("main")
        if not callable(function):
            return _error("no_main", "the source defines no function main(inputs)")
        value = function(inputs)
    except MemoryError:
        return NO_MEMORY
    except BaseException as exc:  # SystemExit too: the script's own doing
        return _error("raised", _last_line(exc), _traceback(exc))
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = text.encode()  # a lone surrogate in a string is not JSON text either
    except (TypeError, ValueError, RecursionError) as exc:
        return _error("not_json", f"main returned {type(value).__name__}, not JSON: {exc}")
    if len(data) > output_bytes:
        return _error("too_large", f"main returned {len(data)} bytes of JSON")
    return b"R" + data


def _error(kind: str, message: str, trace: str = "") -> bytes:
    error = {"kind": kind, "message": message[:ERROR_CHARS], "traceback": trace[-ERROR_CHARS:]}
    return b"E" + json.dumps(error).encode()


def _last_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _traceback(exc: BaseException) -> str:
    """The script's own frames (not this worker's), most recent call last."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    listed = "".join(traceback.format_list(frames))
    return "Traceback (most recent call last):\n" + listed + _last_line(exc)


if __name__ == "__main__":
    main()
