"""Span names and attribute keys, in one place.

The GenAI names follow OpenTelemetry's GenAI semantic conventions, which are still in
development: this is the set their ``gen_ai_latest_experimental`` opt-in emits
(``OTEL_SEMCONV_STABILITY_OPT_IN``), and the one module to change when they move.
"""

from __future__ import annotations

STABILITY_OPT_IN = "gen_ai_latest_experimental"

# -- operations (gen_ai.operation.name) and the span names built from them -------------------
OP_INVOKE_WORKFLOW = "invoke_workflow"  # a run segment: "invoke_workflow {workflow name}"
OP_INVOKE_AGENT = "invoke_agent"
OP_CHAT = "chat"  # an LLM call: "chat {gen_ai.request.model}"
OP_EMBEDDINGS = "embeddings"  # "embeddings {gen_ai.request.model}"
OP_RETRIEVAL = "retrieval"  # "retrieval {collection}"
OP_EXECUTE_TOOL = "execute_tool"  # "execute_tool {gen_ai.tool.name}"

# -- who asked (a request's caller: "key:<key id>" or "sub:<subject>", never a credential) ----
ENDUSER_ID = "enduser.id"

# -- GenAI attributes -------------------------------------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # opt-in content only
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"  # opt-in content only
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"  # opt-in content only
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"  # text, json
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_RETRIEVAL_QUERY_TEXT = "gen_ai.retrieval.query.text"  # opt-in content only
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"  # opt-in content only
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"  # opt-in content only
# gen_ai.provider.name's well-known values for Oxify's providers are their own names (openai,
# anthropic, ollama); gen_ai.tool.type: an MCP server's tool is an "extension", the rest are
# "function"s (the model calls them as functions; Oxify runs them).
TOOL_TYPE_FUNCTION = "function"
TOOL_TYPE_EXTENSION = "extension"

# -- general attributes -----------------------------------------------------------------------
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_FULL = "url.full"  # without userinfo, query or fragment: they may hold secrets
DB_SYSTEM_NAME = "db.system.name"  # qdrant, postgresql

# -- Oxify's own ------------------------------------------------------------------------------
EXECUTION_ID = "oxify.execution.id"
SEGMENT_REASON = "oxify.segment.reason"  # start, resume, takeover, form_answered, …
NODE_ID = "oxify.node.id"
NODE_TYPE = "oxify.node.type"
NODE_ATTEMPT = "oxify.node.attempt"
NODE_OUTCOME = "oxify.node.outcome"
CHECKPOINT_NUMBER = "oxify.checkpoint.number"
REPLICA_ID = "oxify.replica.id"
RETRY_SCHEDULED = "retry_scheduled"  # the event on a failed attempt that will be retried
RETRY_DELAY_S = "oxify.retry.delay_s"
LLM_CACHED = "oxify.llm.cached"  # a chat span answered from the process's answer cache
RETRIEVAL_MODE = "oxify.retrieval.mode"  # vector, keyword, hybrid
RETRIEVAL_HITS = "oxify.retrieval.hits"  # chunks returned
EXECUTION_STATUS = "oxify.execution.status"  # how a segment left the run: completed, waiting, …

# -- span names (besides the GenAI ones above) ------------------------------------------------
SPAN_NODE = "node"  # "node {node_id}": a node from its first attempt to its last
SPAN_ATTEMPT = "attempt"  # "attempt {n}": one attempt of a node, under the node's span
SPAN_CHECKPOINT = "checkpoint"
SPAN_SUBMIT = "submit_workflow"  # the root of a run submitted outside any trace (no request)

# -- instrumentation scope --------------------------------------------------------------------
TRACER_NAME = "oxify"
