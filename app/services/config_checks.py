"""Running the node types' config checks (:mod:`app.domain.config_checks`) over a plan.

Every node of a type with a check is checked, nested nodes (container bodies, inline
sub-workflows) included, all at once: a check that waits on a server waits in parallel with
the others (and checks of one server share their question, see the mcp node). The whole pass
is bounded by ``timeout_s``; a check still running then, or one that raised, becomes a warning
on its node rather than a failure of the request: the checks are a courtesy on top of the
validation, which the document already passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from app.domain.config_checks import ConfigCheck, Finding
from app.domain.views import ValidationWarning
from app.engine.compile.plan import Plan, PlanNode
from app.engine.compile.validation_errors import join
from app.errors import ErrorDetail

log = logging.getLogger("oxify")

CHECKS_TIMEOUT_S = 3.0  # seconds all checks of one document may take (each bounds itself too)


@dataclass(slots=True)
class CheckResults:
    """Error findings (the document is rejected) and warnings (it is accepted)."""

    errors: list[ErrorDetail] = field(default_factory=list)
    warnings: list[ValidationWarning] = field(default_factory=list)


def checked_nodes(plan: Plan, checks: Mapping[str, ConfigCheck]) -> Iterator[PlanNode]:
    """The nodes of ``plan`` whose type has a check, nested graphs included, in document order."""
    for node in plan.nodes.values():
        if node.type in checks:
            yield node
        for nested in node.graphs.values():
            yield from checked_nodes(nested, checks)


async def run_checks(
    plan: Plan, checks: Mapping[str, ConfigCheck], timeout_s: float = CHECKS_TIMEOUT_S
) -> CheckResults:
    results = CheckResults()
    nodes = list(checked_nodes(plan, checks))
    if not nodes:
        return results
    tasks = [asyncio.create_task(_check(checks[node.type], node)) for node in nodes]
    try:
        await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        for task in tasks:
            task.cancel()
    for node, task in zip(nodes, tasks, strict=True):
        config = join(node.pointer, "config")
        if not task.done():
            message = f"not checked: the {node.type} check did not finish within {timeout_s:g} s"
            results.warnings.append(ValidationWarning(pointer=config, message=message))
            continue
        for finding in task.result():
            pointer = join(config, finding.field, *finding.at) if finding.field else config
            if finding.warning:
                results.warnings.append(ValidationWarning(pointer=pointer, message=finding.message))
            else:
                results.errors.append(ErrorDetail(pointer, finding.message, finding.code))
    return results


async def _check(check: ConfigCheck, node: PlanNode) -> list[Finding]:
    try:
        return list(await check(node.config))
    except Exception as exc:  # a broken check (a plug-in's) must not fail the request
        log.warning("the %s check of %s raised", node.type, node.pointer, exc_info=True)
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return [Finding("", f"not checked: the {node.type} check failed ({why})", warning=True)]
