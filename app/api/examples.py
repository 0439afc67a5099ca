"""Example request bodies the OpenAPI document shows (and schemathesis's examples phase sends):
a workflow that computes, one that waits for an approval, and a run of either."""

from __future__ import annotations

from typing import Any

DOUBLER: dict[str, Any] = {
    "name": "doubler",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "double", "type": "transform", "config": {"value": "{{ inputs.n * 2 }}"}},
        {"id": "end", "type": "end", "config": {"outputs": {"result": "{{ double.output }}"}}},
    ],
    "edges": [{"from": "start", "to": "double"}, {"from": "double", "to": "end"}],
}
APPROVAL: dict[str, Any] = {
    "name": "ship",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "review", "type": "approval", "config": {"prompt": "Ship {{ inputs.n }}?"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"from": "start", "to": "review"},
        {"from": "review", "to": "end", "branch": "approved"},
    ],
}

DOCUMENTS = {
    "doubler": {"summary": "Doubles its input `n`", "value": DOUBLER},
    "approval": {"summary": "Waits for a person to approve", "value": APPROVAL},
}
START = {"n": {"summary": "Inputs for either example workflow", "value": {"inputs": {"n": 21}}}}
