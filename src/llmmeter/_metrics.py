"""Every metric instrument llmmeter records: name, unit, buckets (DESIGN section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Counter, Histogram, Meter

from . import _semconv as sc

DURATION_BUCKETS: Final = tuple(round(0.01 * 2**i, 2) for i in range(14))
"""Seconds, 0.01 to 81.92, doubling: the GenAI conventions' advice."""

TOKEN_BUCKETS: Final = tuple(4**i for i in range(14))
"""Tokens, 1 to 67108864, powers of 4: the GenAI conventions' advice."""


COST_BUCKETS: Final = tuple(
    round(m * 10.0**e, 6) for e in range(-5, 2) for m in (1, 2.5, 5) if m * 10.0**e <= 10
)
"""USD per call, 0.00001 to 10 in 1-2.5-5 steps: a short chat call costs well under a cent,
a long reasoning call a few dollars (the proposal gives no buckets)."""


@dataclass(slots=True)
class LatestInstruments:
    """The instruments of the newest GenAI conventions (``OTEL_SEMCONV_STABILITY_OPT_IN``),
    which replace duration, time to first chunk, token usage and the cache counter; created
    only when opted in."""

    duration: Histogram
    embeddings_duration: Histogram
    time_to_first_chunk: Histogram
    input_tokens: Counter
    output_tokens: Counter
    cache_read_tokens: Counter
    cache_write_tokens: Counter
    reasoning_tokens: Counter
    operation_input_tokens: Histogram
    operation_output_tokens: Histogram
    embeddings_input_tokens: Histogram
    cost: Histogram

    @classmethod
    def create(cls, meter: Meter) -> LatestInstruments:
        seconds = list(DURATION_BUCKETS)
        tokens = [float(b) for b in TOKEN_BUCKETS]

        def histogram(name: str, unit: str, description: str, buckets: list[float]) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )

        def counter(name: str, description: str) -> Counter:
            return meter.create_counter(name, unit="{token}", description=description)

        return cls(
            duration=histogram(
                sc.METRIC_INFERENCE_DURATION, "s", "GenAI inference duration", seconds
            ),
            embeddings_duration=histogram(
                sc.METRIC_EMBEDDINGS_DURATION, "s", "GenAI embeddings duration", seconds
            ),
            time_to_first_chunk=histogram(
                sc.METRIC_INFERENCE_TIME_TO_FIRST_CHUNK,
                "s",
                "Time from request start to the first streamed chunk of output",
                seconds,
            ),
            input_tokens=counter(
                sc.METRIC_INFERENCE_USAGE_INPUT_TOKENS, "Input tokens used, cached ones included"
            ),
            output_tokens=counter(
                sc.METRIC_INFERENCE_USAGE_OUTPUT_TOKENS,
                "Output tokens used, reasoning ones included",
            ),
            cache_read_tokens=counter(
                sc.METRIC_INFERENCE_USAGE_CACHE_READ, "Input tokens read from the prompt cache"
            ),
            cache_write_tokens=counter(
                sc.METRIC_INFERENCE_USAGE_CACHE_WRITE, "Input tokens written to the prompt cache"
            ),
            reasoning_tokens=counter(
                sc.METRIC_INFERENCE_USAGE_REASONING, "Output tokens used for reasoning"
            ),
            operation_input_tokens=histogram(
                sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS,
                "{token}",
                "Input tokens per inference",
                tokens,
            ),
            operation_output_tokens=histogram(
                sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS,
                "{token}",
                "Output tokens per inference",
                tokens,
            ),
            embeddings_input_tokens=histogram(
                sc.METRIC_EMBEDDINGS_OPERATION_INPUT_TOKENS,
                "{token}",
                "Input tokens per embeddings operation",
                tokens,
            ),
            cost=histogram(
                sc.METRIC_INFERENCE_COST,
                "{USD}",
                "Cost of one GenAI call in US dollars",
                list(COST_BUCKETS),
            ),
        )


@dataclass(slots=True)
class Instruments:
    """The instruments of one instrumentation, created from its meter; every part of llmmeter
    that records holds this one object, so :meth:`rebind` moves them all at once."""

    duration: Histogram
    token_usage: Histogram
    time_to_first_chunk: Histogram
    cost: Counter
    unpriced: Counter
    cache_tokens: Counter
    decisions: Counter
    savings: Counter
    spend_guard_errors: Counter
    evaluations: Counter
    agreement: Counter
    evaluation_errors: Counter
    evaluation_dropped: Counter
    attribution_overflow: Counter
    attribution_cap_reached: Counter
    latest: LatestInstruments | None = None
    """The newest conventions' instruments, when opted in (they then replace duration, time
    to first chunk, token usage and cache tokens above, which record nothing)."""

    def rebind(self, meter: Meter) -> None:
        """Record to ``meter`` from now on: the application configured its own providers
        after llmmeter started on its fallback ones."""
        fresh = Instruments.create(meter, latest=self.latest is not None)
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))

    @classmethod
    def create(cls, meter: Meter, *, latest: bool = False) -> Instruments:
        return cls(
            latest=LatestInstruments.create(meter) if latest else None,
            duration=meter.create_histogram(
                sc.METRIC_OPERATION_DURATION,
                unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            ),
            token_usage=meter.create_histogram(
                sc.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=[float(b) for b in TOKEN_BUCKETS],
            ),
            time_to_first_chunk=meter.create_histogram(
                sc.METRIC_TIME_TO_FIRST_CHUNK,
                unit="s",
                description="Time from request start to the first streamed chunk of output",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            ),
            cost=meter.create_counter(
                sc.METRIC_COST, unit="{USD}", description="Cost of GenAI calls in US dollars"
            ),
            unpriced=meter.create_counter(
                sc.METRIC_UNPRICED,
                unit="{call}",
                description="GenAI calls with token usage that no price covers",
            ),
            cache_tokens=meter.create_counter(
                sc.METRIC_CACHE_TOKENS,
                unit="{token}",
                description="Input tokens read from or written to the prompt cache",
            ),
            decisions=meter.create_counter(
                sc.METRIC_POLICY_DECISIONS,
                unit="{call}",
                description="Routing policy decisions, by rule and action",
            ),
            savings=meter.create_counter(
                sc.METRIC_SAVINGS,
                unit="{USD}",
                description="US dollars saved (route) or that would be saved (shadow) by routing",
            ),
            spend_guard_errors=meter.create_counter(
                sc.METRIC_SPEND_GUARD_ERRORS,
                unit="{error}",
                description="Polls of the fleet's spend that gave no figure the guard trusts",
            ),
            evaluations=meter.create_counter(
                sc.METRIC_EVALUATIONS,
                unit="{call}",
                description="Shadow evaluations whose two answers were judged, by rule",
            ),
            agreement=meter.create_counter(
                sc.METRIC_EVALUATION_AGREEMENT,
                unit="{call}",
                description="Sum of the agreement scores (0 to 1) of judged shadow evaluations",
            ),
            evaluation_errors=meter.create_counter(
                sc.METRIC_EVALUATION_ERRORS,
                unit="{error}",
                description="Shadow evaluations that could not be judged, by rule and reason",
            ),
            evaluation_dropped=meter.create_counter(
                sc.METRIC_EVALUATION_DROPPED,
                unit="{call}",
                description="Sampled calls never evaluated (queue full, budget, exit)",
            ),
            attribution_overflow=meter.create_counter(
                sc.METRIC_ATTRIBUTION_OVERFLOW,
                unit="{call}",
                description="Calls whose attribution value went on metrics as the overflow value",
            ),
            attribution_cap_reached=meter.create_counter(
                sc.METRIC_ATTRIBUTION_CAP_REACHED,
                unit="{key}",
                description="Attribution keys whose cap of distinct metric values filled",
            ),
        )
