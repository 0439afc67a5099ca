"""Content on spans: the conventions' message form, redaction before cutting, the bounds."""

from __future__ import annotations

import json

from app.nodes import span_content
from app.nodes.span_content import CONTENT_CHARS, CONTENT_MESSAGES, CUT

SECRET = "sk-content-canary-0c4f"


def test_a_secret_across_the_cut_is_scrubbed_not_halved() -> None:
    text = "x" * (CONTENT_CHARS - 5) + SECRET + "tail"
    shown = span_content.as_json(text, [SECRET])
    assert shown == "x" * (CONTENT_CHARS - 5) + "[secr" + CUT
    assert SECRET[:5] not in shown


def test_fields_named_like_secrets_are_hidden_at_any_depth() -> None:
    arguments = {"query": "cats", "auth": {"api_key": "k-123", "user": "ada"}}
    assert json.loads(span_content.as_json(arguments, [])) == {
        "query": "cats",
        "auth": {"api_key": "[secret]", "user": "ada"},
    }


def test_messages_in_the_conventions_form() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "forecast", "arguments": {"city": "Oslo"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "forecast", "content": "rain"},
    ]
    assert json.loads(span_content.messages(messages, [])) == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "forecast", "arguments": {"city": "Oslo"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "rain"}]},
    ]


def test_the_latest_messages_are_kept() -> None:
    messages = [{"role": "user", "content": str(i)} for i in range(CONTENT_MESSAGES + 7)]
    shown = json.loads(span_content.messages(messages, []))
    assert len(shown) == CONTENT_MESSAGES
    assert shown[-1]["parts"][0]["content"] == str(CONTENT_MESSAGES + 6)


def test_an_answer_with_tool_calls_finishes_with_tool_call() -> None:
    calls = [{"id": "c2", "name": "lookup", "arguments": {}}]
    (message,) = json.loads(span_content.answer("", calls, "tool_calls", []))
    assert message["finish_reason"] == "tool_call"
    assert message["parts"] == [
        {"type": "tool_call", "id": "c2", "name": "lookup", "arguments": {}}
    ]
