"""Cost of pricing one call: llmmeter's cached rates vs genai-prices' own ``calc_price``.

The target (issue 4): a price lookup adds no more than about 2 microseconds to a call.

    python benchmarks/pricing.py [--calls N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    """Median of 5 rounds, microseconds per call."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()

    import genai_prices

    from llmmeter._pricing import PriceTable
    from llmmeter._usage import Usage

    table = PriceTable.load()
    usage = Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=350, reasoning_tokens=64)
    # As a span is priced: response model (a dated snapshot), then the request model.
    models = ("gpt-4o-2024-08-06", "gpt-4o")

    def ours() -> Any:
        return table.price(usage, models, service_tier="default")

    reference_usage = genai_prices.Usage(
        input_tokens=1200, cache_read_tokens=1024, output_tokens=350
    )
    now = datetime.now(UTC)

    def reference() -> Any:
        return genai_prices.calc_price(
            reference_usage,
            "gpt-4o-2024-08-06",
            provider_id="openai",
            genai_request_timestamp=now,
            price_context={"service_tier": "default"},
        )

    ours()
    reference()
    ours_us = _per_call(ours, args.calls)
    reference_us = _per_call(reference, max(1, args.calls // 20))
    print(
        json.dumps(
            {
                "llmmeter_price_us": round(ours_us, 2),
                "genai_prices_calc_price_us": round(reference_us, 2),
                "speedup": round(reference_us / ours_us, 1),
                "target_us": 2.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
