"""OpenAPI links: which answer feeds which operation (create a workflow → start a run → read,
pause, resume, cancel, retry, delete it; its forms → answer one). Clients and stateful tests
follow them; :func:`add` writes them into the document.
"""

from __future__ import annotations

from typing import Any

_WORKFLOW = (
    "get_workflow",
    "update_workflow",
    "workflow_graph",
    "start_execution",
    "archive_workflow",
)
_EXECUTION = (
    "get_execution",
    "wait_execution",
    "list_checkpoints",
    "events_log",
    "stream_events",
    "pause_execution",
    "resume_execution",
    "cancel_execution",
    "retry_execution",
    "delete_execution",
)
_FORM = ("get_form", "submit_form")


def _to(targets: tuple[str, ...], parameter: str, pointer: str) -> dict[str, Any]:
    """Links to each of ``targets``, passing the answer's value at ``pointer`` as ``parameter``
    (``path.<name>`` or ``query.<name>``)."""
    return {
        target: {"operationId": target, "parameters": {parameter: f"$response.body#{pointer}"}}
        for target in targets
    }


_RUN = {
    **_to(_EXECUTION, "path.execution_id", "/id"),
    **_to(("list_forms",), "query.execution_id", "/id"),
}
_LINKS: dict[tuple[str, str], dict[str, Any]] = {
    ("create_workflow", "201"): _to(_WORKFLOW, "path.workflow_id", "/id"),
    ("update_workflow", "200"): _to(_WORKFLOW, "path.workflow_id", "/id"),
    ("get_workflow", "200"): _to(_WORKFLOW, "path.workflow_id", "/id"),
    ("start_execution", "202"): _RUN,
    ("start_execution", "200"): _RUN,
    ("get_execution", "200"): _RUN,
    ("wait_execution", "200"): _RUN,
    ("pause_execution", "202"): _RUN,
    ("resume_execution", "202"): _RUN,
    ("cancel_execution", "202"): _RUN,
    ("cancel_execution", "200"): _RUN,
    ("retry_execution", "202"): _RUN,
    ("list_forms", "200"): _to(_FORM, "path.form_id", "/items/0/id"),
    ("get_form", "200"): _to(_FORM, "path.form_id", "/id"),
    ("submit_form", "200"): _to(("get_form",), "path.form_id", "/id"),
}


def add(document: dict[str, Any]) -> None:
    """Write the links into ``document``'s responses; a link from an answer the document does
    not have is a mistake in this table (ValueError)."""
    responses = {
        (operation["operationId"], status): response
        for operations in document.get("paths", {}).values()
        for operation in operations.values()
        for status, response in operation.get("responses", {}).items()
    }
    for (source, status), links in _LINKS.items():
        response = responses.get((source, status))
        if response is None:
            raise ValueError(f"no response {status} of {source!r} to link from")
        response["links"] = links
