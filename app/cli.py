"""`oxify`: run, validate and draw workflow documents, and list node types, from the command line.

One small function per subcommand (``cmd_*``), each registered by an ``add_*`` function;
``serve`` and ``migrate`` join them the same way. ``main`` returns the exit code:

- 0: done (the run completed, the document is valid, the picture was printed);
- 1: ``validate``/``graph``/``analyze`` found the document invalid; the run failed, timed out
  or was cancelled;
- 2: unusable input: a file that cannot be read or is not JSON, bad options, and for ``run`` an
  invalid document or inputs;
- 3: the run stopped waiting for a person (forms and approvals need the server);
- 130: interrupted with Ctrl-C (the run was cancelled cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import ValidationError

from app import cli_analysis, cli_database, cli_display
from app.cli_audit import add_audit_commands
from app.cli_credentials import add_credential_commands
from app.cli_errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WAITING,
    CliError,
)
from app.cli_keys import add_key_commands
from app.cli_server import add_server_commands
from app.domain.run import RunConfig, RunOutcome
from app.domain.status import ExecutionStatus
from app.engine.compile import graph, render
from app.engine.compile.inputs import apply_defaults, validate_inputs
from app.engine.compile.plan import Plan
from app.engine.run import bounded
from app.engine.run.control import RunControl
from app.engine.run.scheduler import RunRequest, Scheduler
from app.errors import ErrorDetail, InputsInvalid, InputsTooLarge, OxifyError, WorkflowInvalid
from app.nodes import registry as node_registry
from app.nodes.registry import Registry, load_registry
from app.nodes.resources import NodeResources
from app.services.config_checks import run_checks
from app.store.memory import MemoryStore

# What each add_<command> registers its parser on.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# -- reading files -----------------------------------------------------------------------------


def load_json(path: str) -> Any:
    """Parse a JSON file (``-`` is stdin); unreadable files and bad JSON say where."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"error: {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"error: {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise CliError(f"error: {path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"error: {path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def problems(errors: Sequence[ErrorDetail]) -> str:
    return f"{len(errors)} problem{'' if len(errors) == 1 else 's'}"


def problem_lines(errors: Sequence[ErrorDetail], *, codes: bool = False) -> list[str]:
    """``pointer: message`` (``(code)`` too) per problem, indented under a heading; a message
    that already starts with its code (``cycle: a → b → a``) does not repeat it."""
    return [
        f"  {e.pointer or '/'}: {e.message}"
        + (f" ({e.code})" if codes and not e.message.startswith(f"{e.code}:") else "")
        for e in errors
    ]


def plan_document(
    path: str, registry: Registry, exit_code: int, planner: Callable[[Any], Plan] | None = None
) -> Plan:
    """Read, validate and plan the document at ``path``; every problem is reported at once."""
    document = load_json(path)
    try:
        if planner is not None:
            return planner(document)
        return graph.plan_workflow(document, node_types=registry.node_types)
    except WorkflowInvalid as exc:
        heading = f"error: {path}: the workflow document is invalid ({problems(exc.errors)})"
        raise CliError([heading, *problem_lines(exc.errors)], exit_code) from None


# -- run ---------------------------------------------------------------------------------------


def parse_value(raw: str) -> Any:
    """A command-line value: JSON when it parses (``3``, ``true``, ``[1]``), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_inputs(inputs_json: str | None, pairs: Sequence[str], schema: Any) -> dict[str, Any]:
    """``--inputs-json``, then each ``--input k=v`` over it, then the schema's top-level defaults.

    A value whose property the schema types as a string stays text (``--input zip=01234``).
    Defaults of ``properties`` in the ``inputs`` schema fill keys that were not given, so a
    document whose inputs all have defaults runs without any.
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    properties = properties if isinstance(properties, dict) else {}
    inputs: dict[str, Any] = {}
    if inputs_json is not None:
        loaded = load_json(inputs_json)
        if not isinstance(loaded, dict):
            raise CliError(f"error: {inputs_json}: the inputs must be a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"error: --input {pair!r}: expected KEY=VALUE")
        text = isinstance(spec := properties.get(key), dict) and spec.get("type") == "string"
        inputs[key] = raw if text else parse_value(raw)
    filled: dict[str, Any] = apply_defaults(schema, inputs)
    return filled


# The checkpoint policies a run accepts, as a person types them (help text and errors).
CHECKPOINT_POLICIES = (
    'every_node, every_level, never, {"every_n_levels": N} or {"every_n_nodes": N}'
)


def run_config(args: argparse.Namespace) -> RunConfig:
    """``--config-json`` with the single-option flags laid over it."""
    data: Any = {} if args.config_json is None else load_json(args.config_json)
    if not isinstance(data, dict):
        raise CliError(f"error: {args.config_json}: the run config must be a JSON object")
    # field -> (option, the value as typed), for the options given
    typed = {
        field: (option, value)
        for field, option, value in (
            ("max_concurrency", "--max-concurrency", args.max_concurrency),
            ("timeout_s", "--timeout", args.timeout),
            ("checkpoint", "--checkpoint", args.checkpoint),
        )
        if value is not None
    }
    data.update({field: value for field, (_, value) in typed.items()})
    if "checkpoint" in typed:  # JSON when it parses ('{"every_n_levels": 2}'), else a name
        data["checkpoint"] = parse_value(args.checkpoint)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise CliError(config_problems(exc, args.config_json, typed)) from None


def config_problems(
    exc: ValidationError, config_file: str | None, typed: dict[str, tuple[str, Any]]
) -> list[str]:
    """One line per bad field, naming the option (or the file and pointer) that set it.

    A union field (``checkpoint``) fails once per alternative; pydantic's list of them reads as
    internals, so the field gets one line saying which forms it takes.
    """
    lines: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else ""
        why = error["msg"]
        if field == "checkpoint":
            why, loc = f"expected {CHECKPOINT_POLICIES} (N ≥ 1)", [field]
        pointer = "/" + "/".join(loc)
        if pointer in lines:
            continue
        if field in typed:
            option, value = typed[field]
            lines[pointer] = f"error: {option} {value!r}: {why}"
        else:
            lines[pointer] = f"error: {config_file}: {pointer}: {why}"
    return list(lines.values())


async def execute(
    scheduler: Scheduler, request: RunRequest, store: MemoryStore, display: cli_display.Display
) -> tuple[RunOutcome, bool]:
    """Run with the display attached; Ctrl-C cancels the run (twice: stops at once)."""
    control = RunControl()
    interrupted = False
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        nonlocal interrupted
        if interrupted and task is not None:
            task.cancel()
            return
        interrupted = True
        display.note("interrupted: cancelling the run (Ctrl-C again to stop at once)")
        control.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        handled = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        handled = False
    unsubscribe = store.subscribe(display.on_events)
    try:
        with display:
            outcome = await scheduler.run(request, control)
    finally:
        unsubscribe()
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
    return outcome, interrupted


def report(outcome: RunOutcome, interrupted: bool) -> int:
    """Outputs on stdout when the run completed; otherwise why not on stderr."""
    status = outcome.status
    if status is ExecutionStatus.COMPLETED:
        print(json.dumps(outcome.outputs, indent=2, ensure_ascii=False, default=str))
        return EXIT_OK
    if status is ExecutionStatus.WAITING:
        waiting = ", ".join(outcome.waiting_on) or "?"
        print(
            f"the run is waiting for a person at: {waiting}\n"
            "human input is not available in-process: run the workflow on a server "
            "(`oxify serve`) to answer forms and approvals",
            file=sys.stderr,
        )
        return EXIT_WAITING
    if interrupted and status is ExecutionStatus.CANCELLED:
        print("cancelled (interrupted)", file=sys.stderr)
        return EXIT_INTERRUPTED
    error = outcome.error or {}
    where = f" at {error['node_id']}" if error.get("node_id") else ""
    message = f": {error['message']}" if error.get("message") else ""
    print(f"error: the run {status.value.replace('_', ' ')}{where}{message}", file=sys.stderr)
    return EXIT_FAILED


@contextlib.contextmanager
def loaded_registry() -> Iterator[Registry]:
    """The node types (plug-ins too) for a command that runs nothing; what the node factories
    opened is closed after."""
    resources = NodeResources(settings=cli_database.load_settings())
    try:
        yield load_registry(resources)
    finally:
        asyncio.run(resources.aclose())


def cmd_run(args: argparse.Namespace) -> int:
    # The resources the run's nodes share (one HTTP client for every http node, ...) are used
    # and closed on the run's event loop; on an early exit they are closed on a loop of their
    # own (clients opened by plug-in factories, if any).
    resources = NodeResources(settings=cli_database.load_settings())
    try:
        return run_document(args, resources)
    finally:
        if not resources.closed:
            asyncio.run(resources.aclose())


def run_document(args: argparse.Namespace, resources: NodeResources) -> int:
    registry = load_registry(resources)
    store = MemoryStore()
    settings = resources.settings
    scheduler = Scheduler(
        executors=registry.executors,
        events=store,
        checkpoints=store,
        loader=store,
        node_types=registry.node_types,
        limits=settings.engine_limits(),
    )
    plan = plan_document(args.file, registry, EXIT_USAGE, scheduler.plan)
    inputs = parse_inputs(args.inputs_json, args.input, plan.input_schema)
    try:
        asyncio.run(bounded.check_inputs(inputs, settings.max_input_bytes))
    except InputsTooLarge as exc:
        raise CliError(f"error: {exc.message}") from None
    except InputsInvalid as exc:
        heading = f"error: the inputs cannot be stored ({problems(exc.errors)})"
        raise CliError([heading, *problem_lines(exc.errors)]) from None
    errors = validate_inputs(plan.input_schema, inputs)
    if errors:
        heading = f"error: the inputs do not match the document's schema ({problems(errors)})"
        raise CliError([heading, *problem_lines(errors)])
    request = RunRequest(str(uuid.uuid4()), plan, inputs, run_config(args))
    name = plan.name or Path(args.file).stem
    # Everything so far (modules, schemas, the plan) lives as long as the process: keep it out
    # of the collector's full passes, which the run's own objects then pay for alone.
    gc.freeze()
    display = cli_display.make_display(name, quiet=args.quiet, stream=sys.stderr)

    async def run() -> tuple[RunOutcome, bool]:
        async with resources:
            return await execute(scheduler, request, store, display)

    try:
        outcome, interrupted = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OxifyError as exc:  # the engine should have ended the run as failed; say why anyway
        print(f"error: the run stopped unexpectedly: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return report(outcome, interrupted)


def add_run(commands: Commands) -> None:
    p = commands.add_parser("run", help="run a workflow document in-process and print its outputs")
    p.add_argument("file", help="workflow document (JSON; - for stdin)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one input; VALUE is JSON when it parses, else text (always text for string inputs)",
    )
    p.add_argument("--inputs-json", metavar="FILE", help="inputs as a JSON object file")
    p.add_argument("--config-json", metavar="FILE", help="run config as a JSON object file")
    p.add_argument("--max-concurrency", type=int, metavar="N", help="nodes running at once")
    p.add_argument("--timeout", type=float, metavar="S", help="run timeout in seconds")
    p.add_argument(
        "--checkpoint",
        metavar="POLICY",
        help=f"one of: {CHECKPOINT_POLICIES}",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_run)


# -- validate, graph ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    document = load_json(args.file)
    resources = NodeResources(settings=cli_database.load_settings())
    try:
        return asyncio.run(validate_document(document, load_registry(resources), resources))
    finally:
        if not resources.closed:
            asyncio.run(resources.aclose())


async def validate_document(document: Any, registry: Registry, resources: NodeResources) -> int:
    """As the server validates: the document, then the node types' config checks (an mcp
    node's tool against its server's list), whose sessions close on this loop."""
    errors = graph.validate_workflow(document, node_types=registry.node_types)
    checked = None
    if not errors:
        plan = graph.plan_workflow(document, node_types=registry.node_types)
        try:
            checked = await run_checks(plan, registry.checks)
        finally:
            await resources.aclose()
        errors = checked.errors
    if errors:
        print(f"invalid: {problems(errors)}", file=sys.stderr)
        print("\n".join(problem_lines(errors, codes=True)), file=sys.stderr)
        return EXIT_FAILED
    for warning in checked.warnings if checked is not None else ():
        print(f"warning: {warning.pointer}: {warning.message}", file=sys.stderr)
    nested = plan.node_count - len(plan.nodes)
    extra = f" (+{nested} nested)" if nested > 0 else ""
    print(f"valid: {len(plan.nodes)} nodes{extra}, {len(plan.levels)} levels")
    for number, level in enumerate(plan.levels):
        print(f"  {number}: {', '.join(level)}")
    return EXIT_OK


def add_validate(commands: Commands) -> None:
    p = commands.add_parser("validate", help="check a workflow document and list its levels")
    p.add_argument("file", help="workflow document (JSON; - for stdin)")
    p.set_defaults(handler=cmd_validate)


def cmd_graph(args: argparse.Namespace) -> int:
    with loaded_registry() as registry:
        plan = plan_document(args.file, registry, EXIT_FAILED)
    text = render.render(plan, args.format)
    print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK


def add_graph(commands: Commands) -> None:
    p = commands.add_parser("graph", help="draw a workflow document")
    p.add_argument("file", help="workflow document (JSON; - for stdin)")
    p.add_argument("--format", choices=render.FORMATS, default="ascii", help="default: ascii")
    p.set_defaults(handler=cmd_graph)


def cmd_analyze(args: argparse.Namespace) -> int:
    with loaded_registry() as registry:
        plan = plan_document(args.file, registry, EXIT_FAILED)
    price = cli_analysis.pricing(cli_database.load_settings())
    print(cli_analysis.render(plan, price, as_json=args.json))
    return EXIT_OK


def add_analyze(commands: Commands) -> None:
    p = commands.add_parser(
        "analyze", help="score a document's health, complexity, cost estimate and batching"
    )
    p.add_argument("file", help="workflow document (JSON; - for stdin)")
    p.add_argument("--json", action="store_true", help="print the reports as one JSON object")
    p.set_defaults(handler=cmd_analyze)


# -- nodes -------------------------------------------------------------------------------------

NODES_COLUMNS = ("type", "source", "version", "description")


def cmd_nodes(args: argparse.Namespace) -> int:
    with loaded_registry() as registry:
        catalog = registry.catalog()
    if args.json:  # the answer of GET /v1/node-types
        print(json.dumps(catalog.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return EXIT_OK
    rows = [NODES_COLUMNS] + [
        (item.type, item.source, item.version, item.description) for item in catalog.items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(NODES_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return EXIT_OK


def add_nodes(commands: Commands) -> None:
    p = commands.add_parser(
        "nodes", help="list the node types (built-in and plug-ins) with source and version"
    )
    p.add_argument("--json", action="store_true", help="print GET /v1/node-types' JSON")
    p.set_defaults(handler=cmd_nodes)


# -- entry point -------------------------------------------------------------------------------


def installed_version() -> str:
    """The version of the installed ``oxify`` distribution (what pip and bug reports see)."""
    return node_registry.installed_version(node_registry.OXIFY_DISTRIBUTION)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oxify", description="Oxify: durable workflow execution.")
    parser.add_argument("--version", action="version", version=f"oxify {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_run,
        add_validate,
        add_graph,
        add_analyze,
        add_nodes,
        add_server_commands,
        add_key_commands,
        add_audit_commands,
        add_credential_commands,
    ):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.handler(args)
    except CliError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    raise SystemExit(main())
