"""Provider servers for tests and benchmarks: real HTTP servers on 127.0.0.1 speaking the OpenAI,
Anthropic and Ollama wire protocols, scriptable and recording, so the real SDKs and Oxify's own
httpx calls can be exercised without a network or a model.

    async with openai_server() as srv:            # in the test's event loop
        srv.script(Text("hi"), Failure.rate_limited(2))
        client = openai.AsyncOpenAI(base_url=srv.url, api_key="k", max_retries=0)

    with anthropic_server() as srv:               # in a thread of its own
        ...
"""

from tests.providers.anthropic_wire import anthropic_server
from tests.providers.ollama_wire import ollama_server
from tests.providers.openai_wire import openai_server
from tests.providers.replies import (
    Echo,
    EmbedReply,
    Failure,
    Hang,
    Reply,
    Text,
    Tokens,
    ToolCall,
    ToolCalls,
)
from tests.providers.server import ProviderServer, Recorded
from tests.providers.tally import Tally

__all__ = [
    "Echo",
    "EmbedReply",
    "Failure",
    "Hang",
    "ProviderServer",
    "Recorded",
    "Reply",
    "Tally",
    "Text",
    "Tokens",
    "ToolCall",
    "ToolCalls",
    "anthropic_server",
    "ollama_server",
    "openai_server",
]
