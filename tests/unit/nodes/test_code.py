"""The ``code`` node: expressions; Python scripts in limited child processes (timeouts, memory,
fork bombs, output size, environment, cancellation, tracebacks); WebAssembly modules compiled
from WAT here (result, fuel, memory, timeout)."""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import shutil
import socket
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.run.control import RunControl
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.support import Harness, edge, node, workflow

CANARY = "oxify-canary-5e1d0c"
MAX_PROCESSES = 8  # RLIMIT_NPROC of the scripts here: a fork bomb forks more


@pytest.fixture
async def resources() -> AsyncIterator[NodeResources]:
    settings = Settings(
        database_url="sqlite+aiosqlite:///:memory:", code_max_processes=MAX_PROCESSES
    )
    async with NodeResources(settings=settings) as made:
        yield made


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the scripts may write to (they run as `nobody` when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="oxify-code-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def code(node_id: str = "run", **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "code", "config": config}  # timeout_s is the config's


def python(source: str, **config: Any) -> dict[str, Any]:
    return code(language="python", source=textwrap.dedent(source), **config)


def wasm(wat: str, **config: Any) -> dict[str, Any]:
    module = base64.b64encode(wasmtime.wat2wasm(wat)).decode()
    return code(language="wasm", module=module, **config)


async def run_one(h: Harness, spec: dict[str, Any], inputs: Any = None) -> Any:
    """The node's output, or its error (as the ``node.failed`` event holds it)."""
    start = node("start", "start")
    outcome = await h.run(workflow([start, spec], [edge("start", spec["id"])]), inputs)
    if outcome.status is ExecutionStatus.COMPLETED:
        (done,) = [e for e in h.of_type(EventType.NODE_COMPLETED) if e.node_id == spec["id"]]
        return done.data["output"]
    (failed,) = h.of_type(EventType.NODE_FAILED)
    return failed.data["error"]


async def gone(pid: int) -> None:
    """Wait until process ``pid`` has exited (a pidfd turns readable; a zombie counts)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        exited = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(fd, lambda: exited.done() or exited.set_result(None))
        try:
            async with asyncio.timeout(10):
                await exited
        finally:
            asyncio.get_running_loop().remove_reader(fd)
    finally:
        os.close(fd)


def read_fifo(path: Path) -> str:
    with open(path) as fifo:
        return fifo.readline().strip()


# -- expression ------------------------------------------------------------------------------


async def test_an_expression_reads_the_run_context_or_its_inputs_mapping(h: Harness) -> None:
    spec = code(language="expression", source="[inputs.n * 2, start.output.n]")
    assert await run_one(h, spec, {"n": 21}) == [42, 21]
    mapped = code(language="expression", source="inputs.a + inputs.b", inputs={"a": 1, "b": 2})
    assert await run_one(Harness(registry=h.registry), mapped) == 3


async def test_an_expression_is_compiled_when_the_document_is_validated(h: Harness) -> None:
    with pytest.raises(Exception, match=r"invalid_expression|syntax"):
        h.scheduler().plan(workflow([code(language="expression", source="1 +")], []))
    with pytest.raises(Exception, match=r"unknown_reference|not a node"):
        h.scheduler().plan(workflow([code(language="expression", source="nope.x")], []))
    # Python source is used as written: braces are not a template.
    src = "def main(inputs):\n    return {{'a': 1}}.__len__()\n"
    h.scheduler().plan(workflow([code(language="python", source=src)], []))


# -- python ----------------------------------------------------------------------------------


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def test_main_gets_its_inputs_and_returns_json(h: Harness) -> None:
    spec = python(
        """
        def main(inputs):
            print("prints stay out of the result")
            return {"sum": inputs["a"] + inputs["b"], "items": [None, True, 1.5]}
        """,
        inputs={"a": "{{ inputs.x }}", "b": 2},
    )
    assert await run_one(h, spec, {"x": 40}) == {"sum": 42, "items": [None, True, 1.5]}


async def test_without_a_mapping_main_gets_the_run_context(h: Harness) -> None:
    spec = python("def main(inputs):\n    return [inputs['inputs'], inputs['start']['output']]")
    assert await run_one(h, spec, {"k": "v"}) == [{"k": "v"}, {"k": "v"}]


async def test_an_infinite_loop_is_killed_at_its_timeout(h: Harness) -> None:
    spec = python("def main(inputs):\n    while True:\n        pass\n", timeout_s=0.5)
    error = await run_one(h, spec)
    assert error["code"] == "code_limit_exceeded"
    assert error["details"]["limit"] in ("timeout", "cpu")


async def test_a_memory_bomb_is_stopped_at_memory_mb(h: Harness) -> None:
    at_once = python("def main(inputs):\n    return len(bytearray(1 << 30))\n", memory_mb=64)
    error = await run_one(h, at_once)
    assert (error["code"], error["details"]["limit"]) == ("code_limit_exceeded", "memory")
    assert "memory_mb 64" in error["message"]
    growing = python(
        """
        def main(inputs):
            hoard = []
            while True:
                hoard.append(" " * 1_000_000)
        """,
        memory_mb=64,
    )
    error = await run_one(Harness(registry=h.registry), growing)
    assert error["details"]["limit"] == "memory"


async def test_a_fork_bomb_is_contained_and_its_processes_end_with_the_node(h: Harness) -> None:
    spec = python(
        f"""
        import os, time

        def main(inputs):
            children, refused = [], 0
            for _ in range({MAX_PROCESSES * 3}):
                try:
                    pid = os.fork()
                except OSError:
                    refused += 1
                    continue
                if pid == 0:
                    time.sleep(600)
                    os._exit(0)
                children.append(pid)
            return {{"children": children, "refused": refused}}
        """
    )
    result = await run_one(h, spec)
    assert result["refused"] > 0
    assert len(result["children"]) < MAX_PROCESSES
    for pid in result["children"]:
        await gone(pid)


async def test_a_result_larger_than_max_output_bytes_is_refused(h: Harness) -> None:
    spec = python("def main(inputs):\n    return 'x' * 5000\n", max_output_bytes=1000)
    error = await run_one(h, spec)
    assert (error["code"], error["details"]["limit"]) == ("code_limit_exceeded", "output")


async def test_the_services_environment_is_invisible(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OXIFY_TEST_CANARY", CANARY)
    spec = python(
        """
        import os

        def main(inputs):
            try:
                with open(f"/proc/{os.getppid()}/environ", "rb") as file:
                    parent = file.read().decode(errors="replace")
            except OSError as exc:
                parent = type(exc).__name__
            return {"env": dict(os.environ), "parent": parent, "cwd": os.getcwd()}
        """
    )
    result = await run_one(h, spec)
    assert CANARY not in str(result["env"])
    assert "OXIFY_TEST_CANARY" not in result["env"]
    if os.geteuid() == 0:  # scripts run as `nobody`: the service's /proc entries are closed
        assert result["parent"] == "PermissionError"
    assert result["cwd"].startswith(tempfile.gettempdir())
    assert not Path(result["cwd"]).exists()  # noqa: ASYNC240 (the scratch directory is gone)


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
async def test_a_script_reaches_no_network(h: Harness) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # reachable from the service's network
    port = listener.getsockname()[1]
    spec = python(
        f"""
        import socket

        def main(inputs):
            try:
                with socket.socket() as sock:
                    sock.settimeout(2)
                    sock.connect(("127.0.0.1", {port}))
            except OSError as exc:
                return exc.errno
            return "connected"
        """
    )
    try:
        assert await run_one(h, spec) == errno.ENETUNREACH  # its loopback is down
    finally:
        listener.close()


async def test_cancelling_the_run_kills_the_script(h: Harness, shared_dir: Path) -> None:
    fifo = shared_dir / "pid"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    spec = python(
        f"""
        import os

        def main(inputs):
            with open({str(fifo)!r}, "w") as fifo:
                fifo.write(f"{{os.getpid()}}\\n")
            while True:
                pass
        """,
        timeout_s=60,
    )
    control = RunControl()
    running = asyncio.create_task(h.run(workflow([spec], []), control=control))
    pid = int(await asyncio.to_thread(read_fifo, fifo))
    control.cancel()
    outcome = await running
    assert outcome.status is ExecutionStatus.CANCELLED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped before the node ended


async def test_main_raising_gives_a_traceback_of_the_scripts_frames(h: Harness) -> None:
    spec = python(
        """
        def helper(n):
            raise ValueError(f"bad n: {n}")

        def main(inputs):
            print("about to fail")
            return helper(3)
        """
    )
    error = await run_one(h, spec)
    assert error["code"] == "code_failed"
    message = error["message"]
    assert "ValueError: bad n: 3" in message
    assert "line 7, in main" in message and "line 3, in helper" in message
    assert "worker.py" not in message
    assert "about to fail" in message


async def test_a_result_that_is_not_json_is_a_clear_error(h: Harness) -> None:
    error = await run_one(h, python("def main(inputs):\n    return {1, 2}\n"))
    assert error["code"] == "code_output_invalid"
    assert "set" in error["message"]
    error = await run_one(Harness(registry=h.registry), python("x = 1\n"))
    assert "defines no function main" in error["message"]


async def test_limits_above_the_deployments_caps_are_refused(h: Harness) -> None:
    spec = python("def main(inputs):\n    return 1\n", timeout_s=3600)
    error = await run_one(h, spec)
    assert "OXIFY_CODE_MAX_TIMEOUT_S" in error["message"]


# -- wasm ------------------------------------------------------------------------------------

ECHO = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\\"echo\\":")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 24))
    (i32.store (i32.const 4) (i32.const 60000))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store8 (i32.add (i32.const 24) (i32.load (i32.const 8))) (i32.const 125))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.add (i32.load (i32.const 8)) (i32.const 9)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))
"""
"""Writes ``{"echo": <its stdin>}``: 8 bytes of prefix at 16, stdin read to 24, a ``}`` after."""

SPIN = '(module (func (export "_start") (loop br 0)))'

GROW = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\\"grew\\":false}{\\"grew\\":true}")
  (func (export "_start")
    (i32.store (i32.const 4) (i32.const 14))
    (i32.store (i32.const 0) (i32.const 16))
    (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1))
      (then (i32.store (i32.const 0) (i32.const 30)) (i32.store (i32.const 4) (i32.const 13))))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
"""Grows its memory by 100 pages (6.25 MiB) and writes whether that worked."""


async def test_a_wasm_module_reads_json_on_stdin_and_writes_json(h: Harness) -> None:
    spec = wasm(ECHO, inputs={"n": "{{ inputs.n }}", "tags": ["a"]})
    assert await run_one(h, spec, {"n": 7}) == {"echo": {"n": 7, "tags": ["a"]}}


async def test_a_wasm_module_stops_when_its_fuel_runs_out(h: Harness) -> None:
    error = await run_one(h, wasm(SPIN, fuel=100_000))
    assert (error["code"], error["details"]["limit"]) == ("code_limit_exceeded", "fuel")


async def test_a_wasm_module_stops_at_its_timeout_whatever_its_fuel(h: Harness) -> None:
    error = await run_one(h, wasm(SPIN, fuel=10**15, timeout_s=0.2))
    assert (error["code"], error["details"]["limit"]) == ("code_limit_exceeded", "timeout")


async def test_a_wasm_modules_memory_is_limited(h: Harness) -> None:
    assert await run_one(h, wasm(GROW, memory_mb=1)) == {"grew": False}
    assert await run_one(Harness(registry=h.registry), wasm(GROW, memory_mb=16)) == {"grew": True}
    big = '(module (memory 40) (func (export "_start")))'  # 2.5 MiB up front
    error = await run_one(Harness(registry=h.registry), wasm(big, memory_mb=1))
    assert (error["code"], error["details"]["limit"]) == ("code_limit_exceeded", "memory")


async def test_a_wasm_module_cannot_take_memory_past_its_limit_by_other_ways(h: Harness) -> None:
    # Several memories each under the limit (the limit is per memory), or a huge table.
    two = '(module (memory 1) (memory 1) (func (export "_start")))'
    error = await run_one(h, wasm(two, memory_mb=16))
    assert error["code"] == "code_failed" and "not valid WebAssembly" in error["message"]
    table = """
    (module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (table $t 1 funcref)
      (func (export "_start")
        (if (i32.ne (table.grow $t (ref.null func) (i32.const 100000000)) (i32.const -1))
          (then (call $exit (i32.const 3))))))
    """
    error = await run_one(Harness(registry=h.registry), wasm(table, memory_mb=16))
    assert error["code"] == "code_output_invalid"  # grow refused: it wrote nothing, exit 0


async def test_a_wasm_module_that_writes_no_json_is_a_clear_error(h: Harness) -> None:
    error = await run_one(h, wasm('(module (func (export "_start")))'))
    assert error["code"] == "code_output_invalid"
    with pytest.raises(Exception, match="not valid base64"):
        h.scheduler().plan(workflow([code(language="wasm", module="not base64!")], []))


async def test_a_string_with_a_lone_surrogate_is_not_json(h: Harness) -> None:
    error = await run_one(h, python("def main(inputs):\n    return '\\ud800'\n"))
    assert error["code"] == "code_output_invalid", error


async def test_a_forged_answer_is_not_taken_for_the_workers(h: Harness) -> None:
    spec = python(
        """
        import os

        def main(inputs):
            os.write(3, b'E{"kind": "x"}')
            os._exit(0)
        """
    )
    error = await run_one(h, spec)
    assert error["code"] == "code_output_invalid", error
