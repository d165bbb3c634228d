"""How fast ``llmmeter report`` reads a file, in MiB per second, by the file's shape.

Three shapes (issue 18): what the collector writes (one export request of real-looking spans
a line); a pretty-printed file of many small documents, whose reading was quadratic (each
document recounted the newlines from the file's start); and log lines that are not JSON at
all, which the reader now gives up on after the first thousand. Each file is about
``--size`` MiB; the read runs in this process, its table thrown away.

    python benchmarks/readers.py [--size MIB] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MIB = 1 << 20
SPANS_PER_LINE = 512


def _span(index: int) -> dict[str, object]:
    start = 1_764_000_000 * 10**9 + index * 1_000_000
    attributes = [
        ("gen_ai.operation.name", {"stringValue": "chat"}),
        ("gen_ai.request.model", {"stringValue": "gpt-4o" if index % 3 else "gpt-4o-mini"}),
        ("llmmeter.task", {"stringValue": ("classify", "summarize", "answer")[index % 3]}),
        ("gen_ai.usage.input_tokens", {"intValue": str(800 + index % 400)}),
        ("gen_ai.usage.output_tokens", {"intValue": str(50 + index % 90)}),
        ("gen_ai.usage.cost.amount", {"doubleValue": 0.0021 + (index % 7) / 10_000}),
    ]
    return {
        "traceId": f"{index + 1:032x}",
        "spanId": f"{index + 1:016x}",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 400_000_000 + index % 300_000_000),
        "attributes": [{"key": key, "value": value} for key, value in attributes],
        "status": {},
    }


def _request(first: int) -> dict[str, object]:
    spans = [_span(first + offset) for offset in range(SPANS_PER_LINE)]
    return {"resourceSpans": [{"scopeSpans": [{"scope": {"name": "llmmeter"}, "spans": spans}]}]}


def collector_lines(size: int) -> bytes:
    lines: list[bytes] = []
    total = first = 0
    while total < size:
        lines.append(json.dumps(_request(first)).encode() + b"\n")
        total += len(lines[-1])
        first += SPANS_PER_LINE
    return b"".join(lines)


def pretty_documents(size: int) -> bytes:
    """``jq .`` of a file of empty export requests: many small documents over many lines."""
    document = json.dumps({"resourceSpans": []}, indent=2).encode() + b"\n"
    return document * (size // len(document))


def junk_lines(size: int) -> bytes:
    line = b"2026-11-25 09:00:01 INFO request served in 12 ms by worker 7 of the pool\n"
    return line * (size // len(line))


SHAPES: dict[str, Callable[[int], bytes]] = {
    "collector lines": collector_lines,
    "pretty documents": pretty_documents,
    "junk lines": junk_lines,
}


def _read_seconds(path: Path) -> float:
    """One ``llmmeter report`` of ``path``, in seconds; its output thrown away."""
    from llmmeter._cli import main

    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        main(["report", str(path), "--format", "json"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=float, default=32.0, help="MiB per file (default: 32)")
    parser.add_argument("--rounds", type=int, default=3, help="reads per shape (median)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for name, build in SHAPES.items():
            path = Path(directory) / "input.json"
            path.write_bytes(build(int(args.size * MIB)))
            seconds = statistics.median(_read_seconds(path) for _ in range(args.rounds))
            size = path.stat().st_size / MIB
            results[name] = {"mib": round(size, 1), "seconds": seconds, "mib_per_s": size / seconds}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'shape':<18} {'MiB':>6} {'seconds':>8} {'MiB/s':>8}")
    for name, result in results.items():
        print(
            f"{name:<18} {result['mib']:>6.1f} {result['seconds']:>8.2f} "
            f"{result['mib_per_s']:>8.1f}"
        )


if __name__ == "__main__":
    main()
