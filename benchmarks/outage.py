"""Per-call latency of instrumented openai calls while the OTLP endpoint is down, hanging or
answering errors, as a ratio against the same calls in the same run with nothing exported
(``none``) and without llmmeter (``bare``).

Each variant runs in its own process (providers are process-global), configured only through
the standard ``OTEL_*`` variables and a bare ``llmmeter.instrument()``, as a user would. The
openai SDK is real but talks to an in-memory transport, so a server's network noise is left
out; the OTLP receivers are real sockets served by this process, on another core when there
is one. Variants are interleaved over rounds, the order rotated each round.

    python benchmarks/outage.py [--calls N] [--rounds R] [--variants a,b] [--json]

Variants:

- ``bare``: the SDK without llmmeter.
- ``none``: instrumented, ``OTEL_TRACES_EXPORTER=none`` and ``OTEL_METRICS_EXPORTER=none``.
- ``healthy``: a receiver answering 200 to ``/v1/traces`` and ``/v1/metrics``.
- ``refused``: a port nobody listens on.
- ``hanging``: accepts connections, reads the request, never answers.
- ``erroring-503``: answers 503 (retried by the exporter with backoff).
- ``erroring-400``: answers 400 (not retried: each batch is dropped at once).

Besides the speed, each variant is checked: every call returned its answer and nothing
raised; the healthy receiver got every span; the number of llmmeter warnings about the
outage per signal (expected: one, however many batches failed, which the child counts from
the exporter's own suppressed log records); other lines on stderr; and the time the child
takes to exit after its last call (the SDK flushes at interpreter exit, bounded by
``OTEL_EXPORTER_OTLP_TIMEOUT`` per export attempt).

Columns: the median and best over rounds of each child's mean µs per measured call; ``x none``
and ``x bare`` are medians over rounds of the ratio to that baseline's child in the same
round; ``spread`` is (slowest - fastest round) / median; ``p99`` (median over rounds) and
``max`` are single calls; ``outage logs s/m`` counts llmmeter's outage warnings for spans and
for metrics per child (a range when rounds differ); ``other log`` counts any other stderr
line; ``exit s`` is from the last call to the child's exit, median (max) over rounds.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from typing import Any

VARIANTS = ("bare", "none", "healthy", "refused", "hanging", "erroring-503", "erroring-400")
ANSWER = "Hello there!"
RESULT = "OUTAGE-RESULT "
EXIT = "OUTAGE-EXIT "
CHAT_BODY = {
    "id": "chatcmpl-outage",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}
EXPORTER_LOGGERS = {
    "spans": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "metrics": "opentelemetry.exporter.otlp.proto.http.metric_exporter",
}


# --- the child: one variant, one round ------------------------------------------------------


class _ExporterRecords(logging.Filter):
    """Counts the OTLP exporter's own failure records (which llmmeter keeps out of the log)
    without changing them: installed before llmmeter's filter, it sees every one."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        for signal, name in EXPORTER_LOGGERS.items():
            logging.getLogger(name).addFilter(self._counter(signal))

    def _counter(self, signal: str) -> Callable[[logging.LogRecord], bool]:
        def count(record: logging.LogRecord) -> bool:
            if record.levelno >= logging.ERROR:
                key = f"{signal}_failed_exports"
            elif record.levelno >= logging.WARNING:
                key = f"{signal}_retries"
            else:
                return True
            with self.lock:
                self.counts[key] = self.counts.get(key, 0) + 1
            return True

        return count


def _mock_client() -> Any:
    import importlib

    import openai

    # The HTTP library this openai sends through: httpx2 from 3.x on, httpx before (both may
    # be installed side by side).
    major = int(openai.__version__.split(".")[0])
    httpx_mod = importlib.import_module("httpx2" if major >= 3 else "httpx")

    body = json.dumps(CHAT_BODY).encode()

    def handler(request: Any) -> Any:
        return httpx_mod.Response(200, content=body, headers={"content-type": "application/json"})

    http_client = httpx_mod.Client(transport=httpx_mod.MockTransport(handler))
    return openai.OpenAI(
        api_key="sk-outage", base_url="http://outage.local/v1", http_client=http_client
    )


def _calls(client: Any, count: int) -> tuple[float, list[float], int, list[str]]:
    """Seconds in all, seconds per call, calls answered, errors raised."""
    create = client.chat.completions.create
    messages = [{"role": "user", "content": "Say hello"}]
    clock = time.perf_counter
    each: list[float] = []
    answered = 0
    errors: list[str] = []
    start = clock()
    for _ in range(count):
        before = clock()
        try:
            response = create(model="gpt-4o-mini", messages=messages)
        except Exception as exc:  # counted: the promise is that nothing is raised
            errors.append(repr(exc)[:200])
            continue
        each.append(clock() - before)
        answered += response.choices[0].message.content == ANSWER
    return clock() - start, each, answered, errors


def child(variant: str, calls: int, warmup: int, cpu: int | None) -> None:
    """Run one variant: what a user's process does, plus the measurement."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    records = _ExporterRecords()
    # Registered before the SDK's own exit handlers, so it runs after their flush.
    atexit.register(lambda: print(EXIT + json.dumps(records.counts), flush=True))
    if variant != "bare":
        import llmmeter

        llmmeter.instrument()
    client = _mock_client()
    _, _, warm_answered, warm_errors = _calls(client, warmup)
    import gc

    gc.collect()
    total, each, answered, errors = _calls(client, calls)
    each.sort()
    result = {
        "variant": variant,
        "calls": warmup + calls,
        "answered": warm_answered + answered,
        "errors": (warm_errors + errors)[:5],
        "error_count": len(warm_errors) + len(errors),
        "us_per_call": total / calls * 1e6,
        "p99_us": each[min(len(each) - 1, int(len(each) * 0.99))] * 1e6 if each else None,
        "max_us": each[-1] * 1e6 if each else None,
    }
    print(RESULT + json.dumps(result), flush=True)


# --- the receivers ----------------------------------------------------------------------------


@dataclass
class _Counts:
    requests: dict[str, int] = field(default_factory=dict)
    spans: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[dict[str, int], int]:
        with self.lock:
            return dict(self.requests), self.spans


def _count_spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    message = ExportTraceServiceRequest.FromString(body)
    return sum(
        len(scope.spans) for resource in message.resource_spans for scope in resource.scope_spans
    )


@contextlib.contextmanager
def _http_receiver(status: int) -> Iterator[tuple[str, _Counts]]:
    """An OTLP/HTTP receiver answering ``status`` to every POST, counting what it gets."""
    counts = _Counts()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            spans = _count_spans(body) if status == 200 and self.path == "/v1/traces" else 0
            with counts.lock:
                counts.requests[self.path] = counts.requests.get(self.path, 0) + 1
                counts.spans += spans
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _hanging_receiver() -> Iterator[tuple[str, _Counts]]:
    """Accepts every connection and reads what is sent, but never answers."""
    counts = _Counts()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def drain(conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                if not conn.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with counts.lock:
                counts.requests["connections"] = counts.requests.get("connections", 0) + 1
            held.append(conn)
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", counts
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in held:
            conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the parent -------------------------------------------------------------------------------


@dataclass
class Run:
    """One child: one variant in one round."""

    variant: str
    result: dict[str, Any] | None = None
    exporter_records: dict[str, int] = field(default_factory=dict)
    returncode: int | None = None
    exit_s: float | None = None
    stderr: list[str] = field(default_factory=list)
    """What the child logged (its stderr), then any stray line it printed on stdout."""
    spans_received: int | None = None
    receiver_requests: dict[str, int] = field(default_factory=dict)

    def outage_lines(self, signal: str) -> int:
        return sum(
            f"llmmeter: exporting {signal} to " in line and " failed (" in line
            for line in self.stderr
        )

    def other_lines(self) -> list[str]:
        return [line for line in self.stderr if "llmmeter: exporting " not in line]


def _env(variant: str, endpoint: str | None, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMMETER_"))}
    env["PYTHONHASHSEED"] = "0"
    if variant == "none":
        env["OTEL_TRACES_EXPORTER"] = "none"
        env["OTEL_METRICS_EXPORTER"] = "none"
    elif endpoint is not None:
        env.update(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": str(args.schedule_delay),
                "OTEL_METRIC_EXPORT_INTERVAL": str(args.metric_interval),
            }
        )
        if args.export_timeout > 0:  # 0: the exporters' own default (10 s), as a new user has
            env["OTEL_EXPORTER_OTLP_TIMEOUT"] = f"{args.export_timeout:g}"
    return env


def _run_child(
    variant: str,
    endpoint: str | None,
    counts: _Counts | None,
    args: argparse.Namespace,
    cpu: int | None,
) -> Run:
    run = Run(variant)
    command = [sys.executable, os.path.abspath(__file__), "--child", variant]
    command += ["--calls", str(args.calls), "--warmup", str(args.warmup)]
    taskset = shutil.which("taskset")
    if cpu is not None and taskset:
        command = [taskset, "-c", str(cpu), *command]
    elif cpu is not None:
        command += ["--cpu", str(cpu)]
    before = counts.snapshot() if counts else ({}, 0)
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            command, env=_env(variant, endpoint, args), stdout=subprocess.PIPE, stderr=stderr
        )
        assert process.stdout is not None
        last_call: float | None = None
        lines = []
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(RESULT):
                last_call = time.monotonic()
                run.result = json.loads(line[len(RESULT) :])
            elif line.startswith(EXIT):
                run.exporter_records = json.loads(line[len(EXIT) :])
            else:
                lines.append(line)
        try:
            run.returncode = process.wait(timeout=args.child_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            run.returncode = process.wait()
        if last_call is not None:
            run.exit_s = time.monotonic() - last_call
        stderr.seek(0)
        run.stderr = [line for line in stderr.read().splitlines() if line.strip()] + lines
    if counts:
        requests, spans = counts.snapshot()
        run.receiver_requests = {k: v - before[0].get(k, 0) for k, v in requests.items()}
        run.spans_received = spans - before[1]
    return run


def _cpus() -> tuple[int | None, set[int] | None]:
    """The core for the children, and the others for this process (the receivers)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    child_cpu = allowed[-1]
    rest = set(allowed[:-1])
    return child_cpu, rest or None


def _versions() -> dict[str, str]:
    out = {
        "machine": f"{platform.machine()} {_cpu_model()} ({os.cpu_count()} cpus)",
        "system": platform.platform(terse=True),
        "python": platform.python_version(),
    }
    for package in ("openai", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _summarise(runs: dict[str, list[Run]], baselines: Sequence[str]) -> dict[str, Any]:
    """Per variant: speed over rounds, paired ratios, and what every child reported."""
    rounds = max(len(r) for r in runs.values())
    out: dict[str, Any] = {}
    for variant, variant_runs in runs.items():
        us = [r.result["us_per_call"] for r in variant_runs if r.result]
        summary: dict[str, Any] = {
            "rounds_us": [round(x, 1) for x in us],
            "median_us": round(statistics.median(us), 1) if us else None,
            "best_us": round(min(us), 1) if us else None,
            "spread_pct": round((max(us) - min(us)) / statistics.median(us) * 100, 1)
            if us
            else None,
            "p99_us": _median([r.result["p99_us"] for r in variant_runs if r.result]),
            "max_us": max((r.result["max_us"] or 0 for r in variant_runs if r.result), default=0),
            "completed": sum(r.result is not None and r.returncode == 0 for r in variant_runs),
            "rounds": rounds,
            "calls": sum(r.result["calls"] for r in variant_runs if r.result),
            "answered": sum(r.result["answered"] for r in variant_runs if r.result),
            "errors": sum(r.result["error_count"] for r in variant_runs if r.result),
            "error_samples": [e for r in variant_runs if r.result for e in r.result["errors"]][:3],
            "returncodes": [r.returncode for r in variant_runs],
            "exit_s": [round(r.exit_s, 2) if r.exit_s is not None else None for r in variant_runs],
            "outage_lines": {
                "spans": [r.outage_lines("spans") for r in variant_runs],
                "metrics": [r.outage_lines("metrics") for r in variant_runs],
            },
            "recovery_lines": sum("works again" in line for r in variant_runs for line in r.stderr),
            "exporter_records": _sum_dicts([r.exporter_records for r in variant_runs]),
            "other_stderr": sorted({line for r in variant_runs for line in r.other_lines()})[:10],
            "other_stderr_count": sum(len(r.other_lines()) for r in variant_runs),
            "receiver_requests": _sum_dicts([r.receiver_requests for r in variant_runs]),
            "spans_received": sum(r.spans_received or 0 for r in variant_runs)
            if any(r.spans_received is not None for r in variant_runs)
            else None,
        }
        for baseline in baselines:
            summary[f"ratio_vs_{baseline}"] = _paired_ratio(variant_runs, runs.get(baseline, []))
        out[variant] = summary
    return out


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def _sum_dicts(dicts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _paired_ratio(runs: Sequence[Run], baseline: Sequence[Run]) -> float | None:
    """The median over rounds of (this variant / the baseline) within the same round."""
    ratios = [
        a.result["us_per_call"] / b.result["us_per_call"]
        for a, b in zip(runs, baseline, strict=False)
        if a.result and b.result
    ]
    return round(statistics.median(ratios), 3) if ratios else None


def _span(values: Sequence[int]) -> str:
    low, high = min(values, default=0), max(values, default=0)
    return str(low) if low == high else f"{low}-{high}"


def _table(header: dict[str, Any], variants: dict[str, Any]) -> str:
    lines = [f"{key}: {value}" for key, value in header.items()]
    lines.append("")
    columns = (
        "variant",
        "median us",
        "best us",
        "x none",
        "x bare",
        "spread",
        "p99 us",
        "max ms",
        "answered",
        "spans rcvd",
        "outage logs s/m",
        "other log",
        "exit s (max)",
    )
    rows = []
    for name, v in variants.items():
        exits = [x for x in v["exit_s"] if x is not None]
        received = v["spans_received"]
        rows.append(
            (
                name,
                _num(v["median_us"]),
                _num(v["best_us"]),
                _num(v.get("ratio_vs_none"), 3),
                _num(v.get("ratio_vs_bare"), 3),
                f"{v['spread_pct']}%" if v["spread_pct"] is not None else "-",
                _num(v["p99_us"]),
                _num(v["max_us"] / 1000, 1),
                f"{v['answered']}/{v['calls']}" + (f" {v['errors']} raised" if v["errors"] else ""),
                "-" if received is None or name != "healthy" else str(received),
                "-"
                if name in ("bare", "none")
                else f"{_span(v['outage_lines']['spans'])}/{_span(v['outage_lines']['metrics'])}",
                str(v["other_stderr_count"]),
                f"{statistics.median(exits):.2f} ({max(exits):.2f})" if exits else "-",
            )
        )
    widths = [max(len(str(row[i])) for row in (columns, *rows)) for i in range(len(columns))]
    for row in (columns, *rows):
        lines.append("  ".join(str(cell).rjust(w) for cell, w in zip(row, widths, strict=True)))
    lines.append("")
    lines.append("us/call per round (in the order of the rounds):")
    lines.extend(f"  {name}: {v['rounds_us']}" for name, v in variants.items())
    lines.append("")
    lines.append("exporter records per variant (all rounds; llmmeter keeps these out of the log):")
    for name, v in variants.items():
        extra = ""
        if v["receiver_requests"]:
            extra = f"; receiver got {v['receiver_requests']}"
        if v["exporter_records"] or extra:
            lines.append(f"  {name}: {v['exporter_records']}{extra}")
    others = {name: v["other_stderr"] for name, v in variants.items() if v["other_stderr"]}
    if others:
        lines.append("")
        lines.append("other stderr lines (distinct, first 10):")
        for name, found in others.items():
            lines.extend(f"  {name}: {line[:160]}" for line in found)
    return "\n".join(lines)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per round")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured calls first")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--export-timeout",
        type=float,
        default=2.0,
        help="OTEL_EXPORTER_OTLP_TIMEOUT, seconds; 0 leaves it unset (the exporters' 10 s)",
    )
    parser.add_argument("--schedule-delay", type=int, default=200, help="OTEL_BSP_SCHEDULE_DELAY")
    parser.add_argument(
        "--metric-interval", type=int, default=500, help="OTEL_METRIC_EXPORT_INTERVAL"
    )
    parser.add_argument("--child-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; expected some of {VARIANTS}")
    args.variants = variants
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if args.child:
        child(args.child, args.calls, args.warmup, args.cpu)
        return
    load_before = _load()
    child_cpu, parent_cpus = _cpus()
    if parent_cpus:
        os.sched_setaffinity(0, parent_cpus)
    with contextlib.ExitStack() as stack:
        endpoints: dict[str, tuple[str | None, _Counts | None]] = {
            "bare": (None, None),
            "none": (None, None),
            "refused": (f"http://127.0.0.1:{_free_port()}", None),
        }
        endpoints["healthy"] = stack.enter_context(_http_receiver(200))
        endpoints["hanging"] = stack.enter_context(_hanging_receiver())
        endpoints["erroring-503"] = stack.enter_context(_http_receiver(503))
        endpoints["erroring-400"] = stack.enter_context(_http_receiver(400))
        runs: dict[str, list[Run]] = {v: [] for v in args.variants}
        for round_no in range(args.rounds):
            shift = round_no % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                endpoint, counts = endpoints[variant]
                runs[variant].append(_run_child(variant, endpoint, counts, args, child_cpu))
                if not args.json:
                    print(".", end="", file=sys.stderr, flush=True)
        if not args.json:
            print(file=sys.stderr)
    header = {
        **_versions(),
        "pinning": f"children on cpu {child_cpu} "
        f"({'taskset' if shutil.which('taskset') else 'sched_setaffinity'}), "
        f"receivers on {sorted(parent_cpus) if parent_cpus else 'the same cpu'}"
        if child_cpu is not None
        else "none (no sched_getaffinity)",
        "settings": f"{args.rounds} rounds x ({args.warmup} warm-up + {args.calls} measured "
        f"calls); OTEL_BSP_SCHEDULE_DELAY={args.schedule_delay} "
        f"OTEL_METRIC_EXPORT_INTERVAL={args.metric_interval} "
        f"OTEL_EXPORTER_OTLP_TIMEOUT={args.export_timeout:g}",
        "load average": f"{load_before} before, {_load()} after (other processes add noise)",
    }
    variants = _summarise(runs, [b for b in ("none", "bare") if b in runs])
    if args.json:
        print(json.dumps({"header": header, "variants": variants}, indent=2))
    else:
        print(_table(header, variants))


if __name__ == "__main__":
    main()
