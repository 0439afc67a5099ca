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

# -- general attributes -----------------------------------------------------------------------
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

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
EXECUTION_STATUS = "oxify.execution.status"  # how a segment left the run: completed, waiting, …

# -- span names (besides the GenAI ones above) ------------------------------------------------
SPAN_NODE = "node"  # "node {node_id}": a node from its first attempt to its last
SPAN_ATTEMPT = "attempt"  # "attempt {n}": one attempt of a node, under the node's span
SPAN_CHECKPOINT = "checkpoint"
SPAN_SUBMIT = "submit_workflow"  # the root of a run submitted outside any trace (no request)

# -- instrumentation scope --------------------------------------------------------------------
TRACER_NAME = "oxify"
