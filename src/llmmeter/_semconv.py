"""Every span attribute and metric name llmmeter emits, in one place.

Names follow the OpenTelemetry GenAI semantic conventions (latest, including the OpenAI
registry). Where the conventions have no name, the ``llmmeter.`` namespace is used, as
DESIGN section 4 specifies. Dashboards and alert rules depend on these strings: change one
only together with every place that uses it, and say so in the CHANGELOG.
"""

from __future__ import annotations

from typing import Final

# --- request ---------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
OPENAI_API_TYPE: Final = "openai.api.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"

# --- response --------------------------------------------------------------------------
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"

# --- usage -----------------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"

# --- cost (semconv has none merged; these follow the open proposal, DESIGN section 4) ----
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"
LLMMETER_COST_INPUT: Final = "llmmeter.cost.input"
LLMMETER_COST_OUTPUT: Final = "llmmeter.cost.output"
LLMMETER_PRICE_REF: Final = "llmmeter.price.ref"
"""Where the price came from: ``genai-prices <version>``, ``override``, or ``unknown``; ``local``
for a local server's call that no price covers (not counted as unpriced)."""
LLMMETER_SERVER_LOCAL: Final = "llmmeter.server.local"
"""``true`` on the spans of calls to a local or self-hosted server (see ``_providers.py``)."""

# --- content (opt-in only) -------------------------------------------------------------
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"

EVENT_INFERENCE_DETAILS: Final = "gen_ai.client.inference.operation.details"
"""The GenAI event carrying an inference's content when content goes to events."""

# --- errors and transport --------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
"""How many times the SDK re-sent the request (its internal retries); set only when > 0."""

# --- llmmeter's own --------------------------------------------------------------------
LLMMETER_TASK: Final = "llmmeter.task"
LLMMETER_STREAM_USAGE_INJECTED: Final = "llmmeter.stream.usage_injected"
"""True when llmmeter asked the server for stream usage the user had not asked for."""
LLMMETER_STREAM_END: Final = "llmmeter.stream.end"
"""How a stream (or raw response) ended: ``exhausted``, ``closed``, ``abandoned`` (garbage
collected unfinished) or ``error``."""
LLMMETER_USAGE_ALREADY_COUNTED: Final = "llmmeter.usage.already_counted"
"""True on a Responses call whose usage an earlier call already reported (``retrieve`` of a
response id seen before): its tokens are left off so sums count each response once."""

# --- routing policy (DESIGN section 4) ---------------------------------------------------
LLMMETER_POLICY_RULE: Final = "llmmeter.policy.rule"
"""The rule that routed (or would have routed) the call."""
LLMMETER_POLICY_ACTION: Final = "llmmeter.policy.action"
"""``route`` (sent to the target), ``shadow`` (sent as written; the target is what routing
would have used) or ``fallback`` (the original model, re-sent after the routed call failed
or its answer was not accepted)."""
LLMMETER_POLICY_ORIGINAL_MODEL: Final = "llmmeter.policy.original_model"
"""The model the application asked for."""
LLMMETER_POLICY_TARGET_MODEL: Final = "llmmeter.policy.target_model"
"""The model the rule routes to."""
LLMMETER_POLICY_SAVINGS: Final = "llmmeter.policy.savings"
"""USD saved (``route``) or that would have been saved (``shadow``): the call's actual tokens
priced at the original model minus at the target. Negative when the target costs more."""
LLMMETER_POLICY_FALLBACK_REASON: Final = "llmmeter.policy.fallback_reason"
"""On a ``fallback`` span: the routed attempt's ``error.type``, or ``rejected`` when the
policy's ``accept`` check turned its answer down."""
LLMMETER_POLICY_ACCEPTED: Final = "llmmeter.policy.accepted"
"""``false`` on a routed call whose answer the ``accept`` check turned down."""
ACTION_ROUTE: Final = "route"
ACTION_SHADOW: Final = "shadow"
ACTION_FALLBACK: Final = "fallback"
ACTION_EVALUATE: Final = "evaluate"
"""The background re-send of a sampled call to the other model of its rule's pair."""
FALLBACK_REJECTED: Final = "rejected"

# --- metric instruments ----------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
METRIC_COST: Final = "llmmeter.cost.usd"
"""Monotonic USD counter; unit ``{USD}`` so Prometheus names it ``llmmeter_cost_usd_total``."""
METRIC_UNPRICED: Final = "llmmeter.cost.unpriced"
"""Calls with usage that no price covers; Prometheus: ``llmmeter_cost_unpriced_total``."""
METRIC_CACHE_TOKENS: Final = "llmmeter.usage.cache.input_tokens"
"""Input tokens read from (or written to) the provider's prompt cache: a part of the input
already counted in ``gen_ai.client.token.usage``, so never added to it. Counter, label
``llmmeter.cache.operation``; Prometheus: ``llmmeter_usage_cache_input_tokens_total``."""
LLMMETER_CACHE_OPERATION: Final = "llmmeter.cache.operation"
"""``read`` (cached input tokens, billed at the cached rate) or ``creation`` (cache writes)."""
METRIC_POLICY_DECISIONS: Final = "llmmeter.policy.decisions"
"""Routing decisions by rule and action; Prometheus: ``llmmeter_policy_decisions_total``."""
METRIC_SAVINGS: Final = "llmmeter.savings.usd"
"""USD saved (action ``route``) or that shadow mode says would be saved (action ``shadow``),
by rule; only positive amounts. Prometheus: ``llmmeter_savings_usd_total``."""
METRIC_SPEND_GUARD_ERRORS: Final = "llmmeter.spend_guard.errors"
"""Times the fleet spend guard had no figure it could trust, by
``llmmeter.spend_guard.reason``; Prometheus: ``llmmeter_spend_guard_errors_total``."""
LLMMETER_SPEND_GUARD_REASON: Final = "llmmeter.spend_guard.reason"
"""``unreachable`` (no connection, timeout), ``http_error`` (a non-2xx status),
``bad_response`` (not one finite number), or ``stale`` (the last good figure expired)."""

# --- values ----------------------------------------------------------------------------
PROVIDER_OPENAI: Final = "openai"
PROVIDER_AZURE: Final = "azure.ai.openai"

# Shadow evaluation (docs/policy.md "Shadow evaluation").
LLMMETER_EVALUATION: Final = "llmmeter.evaluation"
"""``True`` on an evaluation call's span and metrics: its cost is what evaluation costs."""
LLMMETER_EVALUATION_REASON: Final = "llmmeter.evaluation.reason"
"""Errors: ``request`` (the evaluation request failed), ``comparator`` (it raised or returned
no score), ``unreadable`` (an answer could not be read or judged). Dropped: ``queue_full``,
``budget``, ``shutdown``."""
LLMMETER_EVALUATION_SCORE: Final = "llmmeter.evaluation.score"
"""The comparator's agreement score in [0, 1], on the evaluation call's span."""
LLMMETER_EVALUATION_ERROR: Final = "llmmeter.evaluation.error"
"""Why the pair could not be judged, on the evaluation call's span."""
LLMMETER_EVALUATION_COMPARATOR: Final = "llmmeter.evaluation.comparator"
LLMMETER_POLICY_MODE: Final = "llmmeter.policy.mode"
METRIC_EVALUATIONS: Final = "llmmeter.evaluations"
METRIC_EVALUATION_AGREEMENT: Final = "llmmeter.evaluation.agreement"
METRIC_EVALUATION_ERRORS: Final = "llmmeter.evaluation.errors"
METRIC_EVALUATION_DROPPED: Final = "llmmeter.evaluation.dropped"
METRIC_AGREEMENT_TARGET: Final = "llmmeter.policy.agreement_target"
REASON_REQUEST: Final = "request"
REASON_COMPARATOR: Final = "comparator"
REASON_UNREADABLE: Final = "unreadable"
REASON_QUEUE_FULL: Final = "queue_full"
REASON_BUDGET: Final = "budget"
REASON_SHUTDOWN: Final = "shutdown"

# --- the newest GenAI conventions (OTEL_SEMCONV_STABILITY_OPT_IN) ---------------------------
# Emitted instead of the names above that they replace when the variable lists
# SEMCONV_LATEST; the default stays as above. Followed: open-telemetry/semantic-conventions-genai
# v0.1.0 (docs/gen-ai/client-inference.md, client-embeddings.md, gen-ai-token-metrics.md); the
# cost histogram as proposed in its pull request #443 (open). See docs/telemetry.md.
SEMCONV_LATEST: Final = "gen_ai_latest_experimental"
"""The value of ``OTEL_SEMCONV_STABILITY_OPT_IN`` that switches to the names below."""
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
"""Replaces ``gen_ai.usage.cache_creation.input_tokens`` on spans."""
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
"""On the usage counters; ``unknown``: the OpenAI SDK's totals mix text, image and audio."""
MODALITY_UNKNOWN: Final = "unknown"
METRIC_INFERENCE_DURATION: Final = "gen_ai.client.inference.duration"
METRIC_INFERENCE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.inference.time_to_first_chunk"
METRIC_INFERENCE_USAGE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
METRIC_INFERENCE_USAGE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
METRIC_INFERENCE_USAGE_CACHE_READ: Final = "gen_ai.client.inference.usage.cache_read.input_tokens"
METRIC_INFERENCE_USAGE_CACHE_WRITE: Final = "gen_ai.client.inference.usage.cache_write.input_tokens"
METRIC_INFERENCE_USAGE_REASONING: Final = "gen_ai.client.inference.usage.reasoning.output_tokens"
METRIC_INFERENCE_OPERATION_INPUT_TOKENS: Final = "gen_ai.client.inference.operation.input_tokens"
METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = "gen_ai.client.inference.operation.output_tokens"
METRIC_EMBEDDINGS_DURATION: Final = "gen_ai.client.embeddings.duration"
METRIC_EMBEDDINGS_OPERATION_INPUT_TOKENS: Final = "gen_ai.client.embeddings.operation.input_tokens"
METRIC_INFERENCE_COST: Final = "gen_ai.client.inference.cost"
"""Per-call cost histogram, unit ``{USD}`` (the proposal's; not merged, so the name may still
change). ``llmmeter.cost.usd`` is recorded beside it under both name sets: the spend alerts
and the spend guard read that counter."""
# --- attribution (docs/telemetry.md "Attribution") ---------------------------------------
USER_ID: Final = "user.id"
"""``llmmeter.attribute(user=...)``: the registry's ``user.id``."""
LLMMETER_TENANT: Final = "llmmeter.tenant"
"""``llmmeter.attribute(tenant=...)`` (the conventions define no tenant attribute)."""
LLMMETER_FEATURE: Final = "llmmeter.feature"
"""``llmmeter.attribute(feature=...)``: the product feature the call serves."""
LLMMETER_ATTRIBUTION_PREFIX: Final = "llmmeter.attribution."
"""Followed by an application's own key: ``llmmeter.attribute(team="search")`` is
``llmmeter.attribution.team``."""
LLMMETER_ATTRIBUTION_KEY: Final = "llmmeter.attribution_key"
"""The key (``tenant``, ``team``) on the attribution counters."""
METRIC_ATTRIBUTION_OVERFLOW: Final = "llmmeter.attribution.overflow"
"""Calls whose value of a key went on metrics as the overflow value (the key's cap of distinct
values was full); Prometheus: ``llmmeter_attribution_overflow_total``."""
METRIC_ATTRIBUTION_CAP_REACHED: Final = "llmmeter.attribution.cap_reached"
"""Once per process and key, when its cap of distinct values fills; Prometheus:
``llmmeter_attribution_cap_reached_total``."""
METRIC_POLICY_DAILY_BUDGET: Final = "llmmeter.policy.daily_budget.usd"
"""A guarded rule's daily budget (``when_spend_over``), by rule and, for a budget per value of
an attribution key, by that key's label; Prometheus: ``llmmeter_policy_daily_budget_usd``."""
LLMMETER_BUDGET_BY: Final = "llmmeter.budget.by"
"""On the budget gauge: the attribute a budget is per (``llmmeter.tenant``); absent for the
fleet's budget."""
