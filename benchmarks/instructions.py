"""Instructions per call, counted by callgrind: `make bench-instructions` and its CI check.

    python benchmarks/instructions.py [--only NAME[,NAME]] [--cases a,b] [--warmup W]
                                      [--n1 N1] [--n2 N2] [--jobs J] [--json FILE]
                                      [--write-docs docs/performance.md] [--from-json FILE]
    python benchmarks/instructions.py --check [--update] [--figures FILE]

Why instructions. Wall time on a shared 2-core machine swings 30-60 % from run to run, so
"does llmmeter cost less than the others?" has no stable answer in microseconds. The
instructions valgrind counts do not move with the load.

Method. Each variant runs in its own process under ``valgrind --tool=callgrind``, with
``bench.py``'s client, in-memory transport, pre-built bodies and telemetry pipeline, and the
variant set up by its ``bench.py`` setup (so ``others:setup_x`` works as in ``compare.py``).
Per case the child makes the warm-up calls, then calls ``os.getsid(0)`` before call 1, after
call N1 and after call N2; ``--dump-before=getsid`` makes callgrind write, at each of those,
the instructions counted since the one before, on the calling thread
(``--separate-threads=yes``: it is the application's thread a call costs). So per call =
(count at N2 - count at N1) / (N2 - N1): start-up, the warm-up and whatever runs once stay
outside the counted span. The N1 segment is kept as a cross-check (``first_per_call``: a
little lower, as the spans the processor holds until the flush make each collection longer).
Streamed cases make a quarter of the calls. Per chunk is the slope
``(stream_50 - stream_10) / 40``. Each variant is counted in ``--layouts`` memory layouts
(default 3: a padding variable moves where the interpreter's objects land) and the median
kept.

Same from run to run: two runs of one child agree within a few dozen instructions per call,
because what varied is pinned. The span processor exports only when flushed
(``OTEL_BSP_SCHEDULE_DELAY``: its timer thread, waking every 5 s of wall time, ran a varying
number of times and left the heap a little different, ±0.1 %). Before the counted span the
child collects garbage and freezes what survives (the collector then walks what the calls
leave, not the heap of imported modules; it stays on: its passes are part of a call's
cost), seeds ``random`` (span ids) and sets a switch interval no timer reaches; the child runs
with address randomisation off (``setarch -R``). What remains is the layout: CPython's
method cache and its sets of objects hash by address, so another environment, path or
argument moves a count by up to 0.15 % (2 % of a share); hence the median over layouts,
and every figure over the ``bare`` of its own interpreter.

Children run with ``bench.child_env()`` (``PYTHONHASHSEED=0``, ``PYTHONPATH=src``, no
``LLMMETER_*``/``OTEL_*``), after ``compileall`` of ``src/``, ``benchmarks/`` and the
interpreter's site-packages: a module without byte code would be compiled in the counts.
Children run in parallel (``--jobs``, default the core count): counts do not depend on load.

What runs (``--only``, default all):

- ``main``: ``bare``, ``floor`` and ``llmmeter`` in this interpreter (``make``'s ``.venv``).
- each instrumentation of ``compare.INSTRUMENTATIONS``: its ``bare``, itself and
  ``llmmeter``, in its virtualenv under ``build/bench-compare/`` (built or reused by
  ``compare.ensure_venv``, pinned there). Every figure is over the ``bare`` of its own
  interpreter: openlit's virtualenv is on openai 2.x, and its ``bare`` is its own.
- ``startup``: ``import llmmeter`` + ``instrument()`` after ``import openai``, and before it
  (then ``import openai`` patches), each over ``import openai``, in fresh interpreters that
  built the application's SDK providers first, as ``bench.py``'s import rows do.

Goals (issue 19), in instructions over ``bare``: llmmeter at most 0.8x the fastest other
instrumentation on each case (llmmeter as counted in that instrumentation's virtualenv) and
at most 1.25x the floor; per streamed chunk at most the fastest other's. The tables say
whether each is met, and by how many instructions a missed one is missed.

The check (``--check``; ``make check-instructions``, in CI): ``bare``, ``floor`` and
``llmmeter`` on ``chat`` and ``chat_async`` in this interpreter, in one run; llmmeter's share
= (llmmeter - bare) / (floor - bare), a ratio of two counts that survives SDK and
OpenTelemetry upgrades better than an absolute. Exit 1, with one line per case naming both
figures, when a share exceeds the figure checked in (``benchmarks/instructions.json``, with
the environment it was taken in) by more than 5 %; ``--update`` writes the figures measured.

Exit status: 1 when a child failed, its telemetry was invalid, or (``--check``) a share grew
too much; 2 when valgrind is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench
import compare

HERE = bench.HERE
ROOT = bench.ROOT
FIGURES = HERE / "instructions.json"
"""The shares ``--check`` compares against (``--update`` writes them)."""

MARK = "getsid"
"""The libc function the child calls (``os.getsid(0)``) where a count ends; nothing else in
the child calls it, and the parent checks that callgrind dumped exactly as often as marked."""

MAIN = "main"
STARTUP = "startup"
MAIN_VARIANTS = ("bare", "floor", "llmmeter")
CASES = ("chat", "chat_async", "responses", "embeddings", "stream_10", "stream_50")
GOAL_CASES = ("chat", "chat_async", "responses", "embeddings", "stream_50")
SHORT_STREAM, LONG_STREAM = "stream_10", "stream_50"
PER_CHUNK = "per chunk"
STREAM_SHARE = 4
"""Streamed cases make a quarter of the calls (a 50-chunk stream costs ~7 chat calls)."""

ANCHOR_LIMIT = 0.8
"""llmmeter's instructions over bare, at most this multiple of the fastest other's."""
FLOOR_LIMIT = 1.25
"""... and at most this multiple of the floor's."""
CHUNK_LIMIT = 1.0
"""Per streamed chunk: at most the fastest other's."""

CHECK_CASES = ("chat", "chat_async")
TOLERANCE = 0.05
"""``--check`` fails when a share grew by more than this fraction of the one checked in."""

LAYOUTS = 3
"""Each variant is counted in this many memory layouts and the median kept: CPython's
method cache and its sets of objects hash by address, so one layout can count 0.1 % more
than another (up to 2 % of a share), and the median leaves out one unlucky layout."""
LAYOUT_VARIABLE = "LLMMETER_BENCH_LAYOUT"
LAYOUT_STEP = 33

DOCS_MARKS = ("<!-- instructions:start -->", "<!-- instructions:end -->")
TIMEOUT = 3600.0


class CountError(Exception):
    """The counts cannot be read as asked (a mark missing, a floor that adds nothing)."""


# --- sizes and the arithmetic -----------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Calls per case: ``warmup`` before the counted span, then counts at ``n1`` and ``n2``."""

    warmup: int = 20
    n1: int = 20
    n2: int = 120

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.n1 < 1 or self.n2 <= self.n1:
            raise ValueError(
                f"need warmup >= 0 and 0 < n1 < n2, got warmup={self.warmup}, "
                f"n1={self.n1}, n2={self.n2}"
            )

    def for_case(self, case: bench.Case) -> Sizes:
        """A quarter of the calls for a stream (at least one warm-up and two counts)."""
        if not case.stream:
            return self
        n1 = max(1, self.n1 // STREAM_SHARE)
        return Sizes(
            warmup=max(1, self.warmup // STREAM_SHARE),
            n1=n1,
            n2=max(n1 + 1, self.n2 // STREAM_SHARE),
        )


@dataclass(frozen=True)
class Counted:
    """One case of one variant: the instructions of calls 1..N1 and of calls N1+1..N2."""

    first: int
    second: int
    sizes: Sizes

    @property
    def per_call(self) -> float:
        """(count at N2 - count at N1) / (N2 - N1)."""
        return self.second / (self.sizes.n2 - self.sizes.n1)

    @property
    def first_per_call(self) -> float:
        """The same from the first N1 calls: a cross-check, not the figure."""
        return self.first / self.sizes.n1


@dataclass(frozen=True)
class Dump:
    """The header of one callgrind dump: which one, whose thread, why, how much."""

    part: int
    thread: int
    trigger: str
    instructions: int


def read_dump(path: Path) -> Dump | None:
    """A dump's header (the lines before its first cost line); None if it has none."""
    fields: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            key, colon, value = line.partition(":")
            if not colon:
                continue
            key, value = key.strip(), value.strip()
            if key == "desc" and value.startswith("Trigger:"):
                fields["trigger"] = value.removeprefix("Trigger:").strip()
            elif key in ("part", "thread", "summary"):
                fields[key] = value
            if key == "summary":
                break
    if "summary" not in fields:
        return None
    return Dump(
        part=int(fields.get("part", "1")),
        thread=int(fields.get("thread", "1")),
        trigger=fields.get("trigger", ""),
        instructions=int(fields["summary"]),
    )


def marked_counts(directory: Path) -> list[int]:
    """The calling thread's count up to each mark, in order: one per ``os.getsid`` call."""
    dumps = [d for p in sorted(directory.glob("callgrind.*")) if (d := read_dump(p)) is not None]
    marked = [d for d in dumps if d.thread == 1 and d.trigger == f"--dump-before={MARK}"]
    return [d.instructions for d in sorted(marked, key=lambda d: d.part)]


def segments(counts: Sequence[int], cases: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per case, three marks: before call 1, after N1, after N2; the two spans between."""
    if len(counts) != 3 * len(cases):
        raise CountError(
            f"callgrind dumped {len(counts)} times at {MARK}(), the child marked "
            f"{3 * len(cases)} ({len(cases)} case(s) x 3): something else called {MARK}()"
        )
    return {case: (counts[3 * i + 1], counts[3 * i + 2]) for i, case in enumerate(cases)}


# --- the child: one variant, the selected cases, marked ---------------------------------


def mark() -> None:
    """Where a count ends (callgrind dumps before ``getsid``)."""
    os.getsid(0)


def _settle() -> None:
    """Make the counted span the same from run to run (see the module docstring)."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(1000.0)
    random.seed(0)


def _count_sync(fn: Callable[[], Any], sizes: Sizes) -> None:
    for _ in range(sizes.warmup):
        fn()
    _settle()
    mark()
    for _ in range(sizes.n1):
        fn()
    mark()
    for _ in range(sizes.n2 - sizes.n1):
        fn()
    mark()


async def _count_async(fn: Callable[[], Any], sizes: Sizes) -> None:
    for _ in range(sizes.warmup):
        await fn()
    _settle()
    mark()
    for _ in range(sizes.n1):
        await fn()
    mark()
    for _ in range(sizes.n2 - sizes.n1):
        await fn()
    mark()


def run_child(target: str, cases: Sequence[bench.Case], sizes: Sizes) -> dict[str, Any]:
    """Set the variant up, make each case's calls between marks, check its telemetry."""
    report: dict[str, Any] = {"variant": target, "cases": {}}
    for each in bench.case_calls(target, cases):
        case_sizes = sizes.for_case(each.case)
        before = each.pipeline.snapshot()
        if each.case.is_async:
            asyncio.run(_count_async(each.call, case_sizes))
        else:
            _count_sync(each.call, case_sizes)
        calls = case_sizes.warmup + case_sizes.n2
        evidence = each.pipeline.evidence(calls, before)
        report["cases"][each.case.name] = {
            "calls": calls,
            "spans": evidence.spans,
            "problems": each.check.problems(each.case, evidence),
        }
    return report


OPENAI_FIRST = "openai_first"
LLMMETER_FIRST = "llmmeter_first"
STARTUP_ORDERS = (OPENAI_FIRST, LLMMETER_FIRST)

_STARTUP_CODE = """
import os
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
tracer_provider, meter_provider = TracerProvider(), MeterProvider()
os.getsid(0)
if {openai_first}:
    import openai
    os.getsid(0)
import llmmeter
llmmeter.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
os.getsid(0)
if not {openai_first}:
    import openai
    os.getsid(0)
"""
"""A fresh interpreter: the application's providers, then two marked imports in ``order``."""


def startup_code(order: str) -> str:
    return _STARTUP_CODE.format(openai_first=order == OPENAI_FIRST)


# --- the parent: jobs under valgrind ----------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One process under callgrind: a variant over cases, or a start-up order."""

    venv: str
    """``main``, an instrumentation's name, or ``startup``."""
    variant: str
    """The name in the tables (``bare``, ``floor``, ``llmmeter``, the instrumentation's,
    or a start-up order)."""
    target: str
    """What the child sets up: a ``bench.py`` variant, or (start-up) the order."""
    python: str
    cases: tuple[str, ...] = ()
    layout: int = 0
    """Which memory layout (``child_env``): the same job in another gives slightly other counts."""


@dataclass
class JobResult:
    job: Job
    seconds: float
    cases: dict[str, dict[str, Any]]
    """Per case: the counts, the per-call figures and the telemetry problems."""
    error: str = ""


def valgrind_version() -> str | None:
    path = shutil.which("valgrind")
    if path is None:
        return None
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "valgrind"


def _callgrind(out_dir: Path) -> list[str]:
    setarch = shutil.which("setarch")
    fixed = [setarch, platform.machine(), "--addr-no-randomize"] if setarch else []
    return [
        *fixed,
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={MARK}",
        "--separate-threads=yes",
        "--dump-instr=no",
        "--dump-line=no",
        f"--callgrind-out-file={out_dir / 'callgrind.%p'}",
    ]


def child_env(layout: int = 0) -> dict[str, str]:
    """``bench.child_env()``; a span processor that exports only when flushed (its thread,
    waking on a timer, ran a varying number of times before the counted span and left the
    heap a little different from run to run); and ``layout`` as a padding variable, which
    moves what the interpreter allocates at start and so where everything after lands."""
    never = str(10**9)  # milliseconds, and spans: the flush after each case comes first
    env = bench.child_env() | {"OTEL_BSP_SCHEDULE_DELAY": never, "OTEL_BSP_MAX_QUEUE_SIZE": never}
    env[LAYOUT_VARIABLE] = "x" * (LAYOUT_STEP * layout)
    return env


def _tail(stderr: str) -> str:
    """The child's own last lines (valgrind's ``==PID==`` lines are not the cause)."""
    own = [line for line in stderr.strip().splitlines() if not line.startswith("==")]
    return "\n".join(own[-15:])


def run_job(job: Job, sizes: Sizes) -> JobResult:
    """Run ``job`` under callgrind; its counts per case (or per start-up segment)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmmeter-callgrind-") as tmp:
        out_dir = Path(tmp)
        report_file = out_dir / "child.json"
        if job.venv == STARTUP:
            command = [job.python, "-c", startup_code(job.target)]
        else:
            command = [job.python, str(Path(__file__).resolve()), "--child", job.target]
            command += ["--case", ",".join(job.cases), "--warmup", str(sizes.warmup)]
            command += ["--n1", str(sizes.n1), "--n2", str(sizes.n2), "--out", str(report_file)]
        try:
            proc = subprocess.run(
                [*_callgrind(out_dir), *command],
                env=child_env(job.layout),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return JobResult(job, TIMEOUT, {}, f"timed out after {TIMEOUT:.0f} s")
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            return JobResult(job, seconds, {}, f"exit {proc.returncode}: {_tail(proc.stderr)}")
        try:
            if job.venv == STARTUP:
                counts = marked_counts(out_dir)
                if len(counts) != 3:
                    raise CountError(f"callgrind dumped {len(counts)} times at {MARK}(), not 3")
                return JobResult(
                    job, seconds, {job.target: {"first": counts[1], "then": counts[2]}}
                )
            spans = segments(marked_counts(out_dir), job.cases)
            report = json.loads(report_file.read_text(encoding="utf-8"))
        except (CountError, OSError, ValueError) as exc:
            return JobResult(job, seconds, {}, str(exc))
    cases: dict[str, dict[str, Any]] = {}
    for name, (first, second) in spans.items():
        counted = Counted(first, second, sizes.for_case(bench.CASES_BY_NAME[name]))
        cases[name] = {
            "per_call": round(counted.per_call, 1),
            "first_per_call": round(counted.first_per_call, 1),
            "first": first,
            "second": second,
            "sizes": [counted.sizes.warmup, counted.sizes.n1, counted.sizes.n2],
            "problems": report["cases"][name]["problems"],
        }
    return JobResult(job, seconds, cases)


def merge_layouts(runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One variant's cases over its layouts: the median per call, every layout's figure, and
    every layout's telemetry problems."""
    merged: dict[str, dict[str, Any]] = {}
    for case in dict.fromkeys(case for run in runs for case in run):
        entries = [run[case] for run in runs if case in run]
        figures = [float(entry["per_call"]) for entry in entries]
        merged[case] = {
            "per_call": round(statistics.median(figures), 1),
            "layouts": figures,
            "first_per_call": round(
                statistics.median(float(entry["first_per_call"]) for entry in entries), 1
            ),
            "sizes": entries[0]["sizes"],
            "problems": [p for entry in entries for p in entry["problems"]],
        }
    return merged


def compile_bytecode(python: str) -> None:
    """Byte code for src/, benchmarks/ and ``python``'s site-packages, written now (a module
    without it is compiled at each start, and that would be counted)."""
    code = (
        "import compileall, sys, sysconfig\n"
        "for path in [sysconfig.get_paths()['purelib'], *sys.argv[1:]]:\n"
        "    compileall.compile_dir(path, quiet=2, workers=0)\n"
    )
    subprocess.run(
        [python, "-c", code, str(ROOT / "src"), str(HERE)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_jobs(jobs: Sequence[Job], sizes: Sizes, workers: int) -> list[JobResult]:
    """All at once up to ``workers``: callgrind's counts do not depend on the load."""
    for python in dict.fromkeys(job.python for job in jobs):
        compile_bytecode(python)

    def one(job: Job) -> JobResult:
        result = run_job(job, sizes)
        state = "ok" if not result.error else "FAILED"
        _progress(f"{job.venv}/{job.variant}: {state} in {result.seconds:.0f} s")
        return result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, jobs))


# --- what a run yields, and what it says -------------------------------------------------


def per_call(venv: Mapping[str, Any], variant: str, case: str) -> float | None:
    entry = venv["variants"].get(variant, {}).get(case)
    return None if entry is None else float(entry["per_call"])


def over_bare(venv: Mapping[str, Any], variant: str, case: str) -> float | None:
    """Instructions ``variant`` adds per call of ``case`` over the same interpreter's bare."""
    ours, bare = per_call(venv, variant, case), per_call(venv, "bare", case)
    return None if ours is None or bare is None else ours - bare


def chunks_between() -> int:
    return bench.CASES_BY_NAME[LONG_STREAM].chunks - bench.CASES_BY_NAME[SHORT_STREAM].chunks


def per_chunk(venv: Mapping[str, Any], variant: str) -> float | None:
    """The slope (stream_50 - stream_10) / 40: what one more chunk costs."""
    long, short = per_call(venv, variant, LONG_STREAM), per_call(venv, variant, SHORT_STREAM)
    return None if long is None or short is None else (long - short) / chunks_between()


def chunk_over_bare(venv: Mapping[str, Any], variant: str) -> float | None:
    ours, bare = per_chunk(venv, variant), per_chunk(venv, "bare")
    return None if ours is None or bare is None else ours - bare


@dataclass(frozen=True)
class Goal:
    """One goal of issue 19: llmmeter's instructions over bare against a reference's."""

    case: str
    against: str
    """``floor`` or the fastest other instrumentation's name."""
    ours: float
    theirs: float
    limit: float
    """At most this multiple of ``theirs``."""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.theirs if self.theirs > 0 else None

    @property
    def met(self) -> bool | None:
        """None when the reference adds nothing: there is no multiple to judge."""
        return None if self.theirs <= 0 else self.ours <= self.limit * self.theirs

    @property
    def excess(self) -> float:
        """Instructions llmmeter would have to shed to meet the goal (<= 0: met)."""
        return self.ours - self.limit * self.theirs

    def verdict(self, unit: str = "call") -> str:
        if self.met is None:
            return "no verdict (the reference adds nothing over bare)"
        if self.met:
            return "met"
        share = f", {self.excess / self.ours:.0%} of llmmeter's" if self.ours > 0 else ""
        return f"**not met**: {self.excess:,.0f} instructions per {unit} over{share}"


def anchors(results: Mapping[str, Any]) -> list[str]:
    return [name for name in results["venvs"] if name != MAIN]


def added(venv: Mapping[str, Any], variant: str, case: str) -> float | None:
    """What ``variant`` adds over bare: per call of ``case``, or per chunk (``PER_CHUNK``)."""
    return chunk_over_bare(venv, variant) if case == PER_CHUNK else over_bare(venv, variant, case)


def fastest_anchor(results: Mapping[str, Any], case: str) -> tuple[str, float, float] | None:
    """The other instrumentation adding the least to ``case``, with what it adds and what
    llmmeter adds in its virtualenv; None when none was counted there."""
    best: tuple[str, float, float] | None = None
    for name in anchors(results):
        venv = results["venvs"][name]
        theirs, ours = added(venv, name, case), added(venv, "llmmeter", case)
        if theirs is None or ours is None:
            continue
        if best is None or theirs < best[1]:
            best = (name, theirs, ours)
    return best


def goals(results: Mapping[str, Any]) -> list[Goal]:
    """Every goal this run can judge: per case against the floor and the fastest other, and
    per chunk against the fastest other."""
    out: list[Goal] = []
    main = results["venvs"].get(MAIN)
    for case in (*GOAL_CASES, PER_CHUNK):
        if main is not None and case != PER_CHUNK:
            ours, floor = over_bare(main, "llmmeter", case), over_bare(main, "floor", case)
            if ours is not None and floor is not None:
                out.append(Goal(case, "floor", ours, floor, FLOOR_LIMIT))
        fastest = fastest_anchor(results, case)
        if fastest is not None:
            name, theirs, ours = fastest
            limit = CHUNK_LIMIT if case == PER_CHUNK else ANCHOR_LIMIT
            out.append(Goal(case, name, ours, theirs, limit))
    return out


# --- the check: llmmeter's share of the floor's ----------------------------------------


def share(bare: float, floor: float, ours: float) -> float:
    """llmmeter's instructions over bare as a multiple of the floor's."""
    if floor <= bare:
        raise CountError(
            f"the floor adds nothing over bare ({floor:,.0f} vs {bare:,.0f} instructions "
            "per call): no share to compare"
        )
    return (ours - bare) / (floor - bare)


@dataclass(frozen=True)
class ShareCheck:
    case: str
    measured: float
    recorded: float | None
    """The share checked in; None when the file has none for this case."""
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        return self.recorded is not None and self.measured <= self.recorded * (1 + self.tolerance)

    def line(self, figures: str) -> str:
        """One line naming both figures (``FAILED`` first when the check fails)."""
        head = "instructions" if self.passed else "FAILED instructions"
        measured = f"llmmeter adds {self.measured:.3f}x the floor's instructions over bare"
        if self.recorded is None:
            return f"{head}: {self.case}: {measured}; {figures} has none (--check --update)"
        growth = f"{self.measured / self.recorded - 1:+.1%}" if self.recorded > 0 else "up"
        return (
            f"{head}: {self.case}: {measured}, {growth} against the {self.recorded:.3f}x "
            f"checked in ({figures}; at most {self.tolerance:+.0%})"
        )


def measured_shares(venv: Mapping[str, Any], cases: Sequence[str]) -> dict[str, float]:
    out = {}
    for case in cases:
        counts = [per_call(venv, variant, case) for variant in MAIN_VARIANTS]
        if any(count is None for count in counts):
            raise CountError(f"{case}: not counted for every one of {', '.join(MAIN_VARIANTS)}")
        bare, floor, ours = (float(count or 0) for count in counts)
        out[case] = share(bare, floor, ours)
    return out


def judge(
    measured: Mapping[str, float], recorded: Mapping[str, Any], tolerance: float = TOLERANCE
) -> list[ShareCheck]:
    """Each measured share against the one checked in (``recorded["cases"][case]["share"]``)."""
    cases = recorded.get("cases", {})
    return [
        ShareCheck(case, value, cases[case]["share"] if case in cases else None, tolerance)
        for case, value in measured.items()
    ]


def figures_document(
    venv: Mapping[str, Any], measured: Mapping[str, float], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``--update`` writes: the shares, the counts they come from, the environment."""
    return {
        "about": (
            "llmmeter's instructions per call over bare as a multiple of the floor's, counted "
            "by `make check-instructions` (benchmarks/instructions.py --check), which fails "
            f"when one grows more than {TOLERANCE:.0%}; `--check --update` rewrites this file."
        ),
        "tolerance": TOLERANCE,
        "cases": {
            case: {
                "share": round(value, 4),
                "per_call": {v: per_call(venv, v, case) for v in MAIN_VARIANTS},
            }
            for case, value in measured.items()
        },
        "environment": {
            key: meta[key]
            for key in (
                "date",
                "commit",
                "valgrind",
                "cpu",
                "machine",
                "python",
                "sizes",
                "layouts",
            )
            if key in meta
        }
        | {"versions": venv.get("versions", {})},
    }


# --- rendering --------------------------------------------------------------------------


def _count(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+,.0f}" if sign else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _venv_title(name: str, venv: Mapping[str, Any]) -> str:
    versions = venv.get("versions", {})
    openai = f"openai {versions.get('openai', '?')}"
    if name == MAIN:
        return f"main .venv ({openai}, OpenTelemetry SDK {versions.get('opentelemetry-sdk', '?')})"
    return f"{name} {versions.get(venv.get('package', ''), '?')} ({openai})"


def counts_table(results: Mapping[str, Any], cases: Sequence[str]) -> list[str]:
    """Per virtualenv: bare's instructions per call, then what each variant adds to it."""
    chunk = SHORT_STREAM in cases and LONG_STREAM in cases
    columns = [*cases, *([PER_CHUNK] if chunk else [])]
    lines = [
        "| virtualenv | variant | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, venv in results["venvs"].items():
        title = _venv_title(name, venv)
        for variant in venv["variants"]:
            cells = []
            for case in cases:
                if variant == "bare":
                    cells.append(_count(per_call(venv, variant, case)))
                elif case in venv.get("skipped_cases", ()) and variant == name:
                    cells.append("not instrumented")
                else:
                    cells.append(_count(over_bare(venv, variant, case), sign=True))
            if chunk:
                if variant == "bare":
                    cells.append(_count(per_chunk(venv, variant)))
                else:
                    cells.append(_count(chunk_over_bare(venv, variant), sign=True))
            lines.append(f"| {title} | {variant} | " + " | ".join(cells) + " |")
            title = ""
    return lines


def goals_table(found: Sequence[Goal]) -> list[str]:
    lines = [
        "| case | goal | llmmeter | reference | llmmeter / reference | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for goal in found:
        unit = "chunk" if goal.case == PER_CHUNK else "call"
        reference = "the floor" if goal.against == "floor" else f"the fastest other, {goal.against}"
        lines.append(
            f"| {goal.case} | ≤ {goal.limit:g}x {reference} | {_count(goal.ours, sign=True)} "
            f"| {_count(goal.theirs, sign=True)} | {_ratio(goal.ratio)} "
            f"| {goal.verdict(unit)} |"
        )
    return lines


def startup_table(startup: Mapping[str, Any]) -> list[str]:
    first, then = startup.get(OPENAI_FIRST), startup.get(LLMMETER_FIRST)
    if first is None:
        return []
    openai = first["first"]
    lines = [
        "| what | instructions | over `import openai` |",
        "| --- | ---: | ---: |",
        f"| `import openai` (the application's SDK providers already built) | {openai:,} | - |",
        f"| `import llmmeter` + `instrument()` after `import openai` | {first['then']:,} "
        f"| {first['then'] / openai:.1%} |",
    ]
    if then is not None:
        added = then["then"] - openai
        total = then["first"] + added
        lines += [
            f"| `import llmmeter` + `instrument()` before `import openai` | {then['first']:,} "
            f"| {then['first'] / openai:.1%} |",
            f"| ... then `import openai` (patched as it loads): added to it | {added:+,} "
            f"| {added / openai:+.1%} |",
            f"| ... together | {total:,} | {total / openai:.1%} |",
        ]
    return lines


def render(results: Mapping[str, Any], cases: Sequence[str]) -> str:
    meta = results["meta"]
    sizes = meta["sizes"]
    lines = [
        f"- Counted: {meta['date']}, {meta['valgrind']} (callgrind), {meta['cpu']} "
        f"({meta['machine']}), Python {meta['python']}, llmmeter at {meta['commit']}",
        f"- Per case: {sizes['warmup']} warm-up calls, then per call = (count at "
        f"{sizes['n2']} calls - count at {sizes['n1']}) / {sizes['n2'] - sizes['n1']}, "
        "on the calling thread (streams: a quarter of the calls); per chunk = "
        f"({LONG_STREAM} - {SHORT_STREAM}) / {chunks_between()}; each figure the median of "
        f"{meta.get('layouts', 1)} memory layout(s)",
        "- One figure again: `python benchmarks/instructions.py --only NAME --cases CASE` "
        f"(NAME `{MAIN}` for bare, floor and llmmeter in the main .venv, or an "
        f"instrumentation's: its bare and llmmeter come with it; `{STARTUP}` for start-up)",
    ]
    if results["venvs"]:
        lines += [
            "",
            "**Instructions per call**: `bare`'s own, then what each variant adds to the `bare` "
            "of the same virtualenv (the others do not ask for usage on streams, so their "
            "streams carry no usage chunk; llmmeter and the floor ask for it and hide it):",
            "",
            *counts_table(results, cases),
        ]
    found = goals(results)
    if found:
        lines += [
            "",
            f"**Goals**: llmmeter's instructions over bare at most {FLOOR_LIMIT:g}x the floor's "
            f"(main .venv) and at most {ANCHOR_LIMIT:g}x the fastest other instrumentation's "
            "(llmmeter counted in that one's virtualenv); per streamed chunk at most the "
            "fastest other's:",
            "",
            *goals_table(found),
        ]
    startup = results.get("startup") or {}
    table = startup_table(startup)
    if table:
        lines += ["", "**Start-up**, in fresh interpreters (main .venv):", "", *table]
    notes = [
        f"- {name}: {note}"
        for name, venv in results["venvs"].items()
        for note in venv.get("notes", ())
    ]
    if notes:
        lines += ["", "Notes:", *notes]
    lines.append("")
    bad = [*results["failures"], *results["problems"]]
    if bad:
        lines += ["FAILED OR INVALID (these figures do not count):", *(f"- {b}" for b in bad)]
    else:
        lines.append(
            "Telemetry valid: every variant exported the spans and metric points it promises, "
            "for every call of every case."
        )
    return "\n".join(lines)


# --- putting a run together -------------------------------------------------------------


def _commit() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} + changes" if git("status", "--porcelain", "--untracked-files=no") else head


def environment(sizes: Sizes, valgrind: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "valgrind": valgrind,
        "cpu": bench.cpu_model(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "sizes": {"warmup": sizes.warmup, "n1": sizes.n1, "n2": sizes.n2},
    }


def plan(
    names: Sequence[str], cases: Sequence[str], python: str, layouts: int = LAYOUTS
) -> tuple[list[Job], dict[str, Any], list[str]]:
    """The jobs for ``names`` (each counted variant once per layout; start-up, in millions,
    once), the virtualenvs they run in, and what could not be built."""
    jobs: list[Job] = []
    venvs: dict[str, Any] = {}
    failures: list[str] = []
    for name in names:
        if name == STARTUP:
            jobs += [Job(STARTUP, order, order, python) for order in STARTUP_ORDERS]
            continue
        if name == MAIN:
            venvs[MAIN] = {"python": python, "package": "llmmeter", "variants": {}}
            jobs += [
                Job(MAIN, v, v, python, tuple(cases), layout)
                for layout in range(layouts)
                for v in MAIN_VARIANTS
            ]
            continue
        inst = compare.INSTRUMENTATIONS[name]
        py, error = compare.ensure_venv(inst, python)
        if error is not None:
            failures.append(f"{name}: virtualenv: {error}")
            continue
        venvs[name] = {
            "python": str(py),
            "package": inst.package,
            "skipped_cases": list(inst.skip_cases),
            "notes": list(inst.notes),
            "variants": {},
        }
        own = tuple(c for c in cases if c not in inst.skip_cases)
        for layout in range(layouts):
            jobs += [
                Job(name, "bare", "bare", str(py), tuple(cases), layout),
                Job(name, name, inst.setup, str(py), own, layout),
                Job(name, "llmmeter", "llmmeter", str(py), tuple(cases), layout),
            ]
    return jobs, venvs, failures


def collect(
    jobs: Sequence[Job], outcomes: Sequence[JobResult], venvs: dict[str, Any]
) -> dict[str, Any]:
    """The run's results: counts per virtualenv and variant, start-up, what went wrong."""
    failures: list[str] = []
    problems: list[str] = []
    startup: dict[str, Any] = {}
    for venv in venvs.values():
        venv["variants"] = {}
    for job in jobs:  # the tables' order: the plan's, not completion's
        venvs.get(job.venv, {}).get("variants", {}).setdefault(job.variant, {})
    counted: dict[tuple[str, str], list[dict[str, dict[str, Any]]]] = {}
    for outcome in outcomes:
        job = outcome.job
        if outcome.error:
            failures.append(f"{job.venv}/{job.variant}, layout {job.layout}: {outcome.error}")
        elif job.venv == STARTUP:
            startup.update(outcome.cases)
        else:
            counted.setdefault((job.venv, job.variant), []).append(outcome.cases)
    for (venv_name, variant), runs in counted.items():
        merged = merge_layouts(runs)
        venvs[venv_name]["variants"][variant] = merged
        for case, entry in merged.items():
            problems += [f"{venv_name}/{variant}/{case}: {p}" for p in entry["problems"]]
    for name, venv in venvs.items():
        packages = [venv["package"], *compare.REPORTED]
        venv["versions"] = compare.installed_versions(Path(venv["python"]), packages)
        if name == MAIN:
            extra = ["opentelemetry-api", "pydantic", bench.http_name()]
            venv["versions"] |= compare.installed_versions(Path(venv["python"]), extra)
    return {"venvs": venvs, "startup": startup, "failures": failures, "problems": problems}


def count(
    names: Sequence[str], cases: Sequence[str], sizes: Sizes, workers: int, layouts: int = LAYOUTS
) -> dict[str, Any]:
    valgrind = valgrind_version()
    if valgrind is None:
        print("valgrind not found: install it (apt-get install valgrind)", file=sys.stderr)
        raise SystemExit(2)
    started = time.perf_counter()
    jobs, venvs, failures = plan(names, cases, sys.executable, layouts)
    outcomes = run_jobs(jobs, sizes, workers)
    results = collect(jobs, outcomes, venvs)
    results["failures"][:0] = failures
    results["meta"] = environment(sizes, valgrind) | {
        "layouts": layouts,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return results


def check(args: argparse.Namespace, sizes: Sizes) -> int:
    """``--check``: llmmeter's share of the floor's on the check cases, against the file."""
    figures = Path(args.figures)
    shown = figures.relative_to(ROOT) if figures.is_relative_to(ROOT) else figures
    results = count([MAIN], CHECK_CASES, sizes, args.jobs, args.layouts)
    bad = [*results["failures"], *results["problems"]]
    if bad:
        print("\n".join(f"instructions: {b}" for b in bad))
        return 1
    venv = results["venvs"][MAIN]
    try:
        measured = measured_shares(venv, CHECK_CASES)
    except CountError as exc:
        print(f"instructions: {exc}")
        return 1
    seconds = results["meta"]["seconds"]
    if args.update:
        document = figures_document(venv, measured, results["meta"])
        figures.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        for case, value in measured.items():
            print(
                f"instructions: {case}: llmmeter adds {value:.3f}x the floor's; written to {shown}"
            )
        print(f"instructions: counted in {seconds:.0f} s")
        return 0
    try:
        recorded = json.loads(figures.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"instructions: cannot read {shown}: {exc} (--check --update writes it)")
        return 1
    verdicts = judge(measured, recorded, float(recorded.get("tolerance", TOLERANCE)))
    for verdict in verdicts:
        print(verdict.line(str(shown)))
    print(f"instructions: counted in {seconds:.0f} s")
    return 0 if all(v.passed for v in verdicts) else 1


# --- command line -----------------------------------------------------------------------


def child_main(args: argparse.Namespace, sizes: Sizes) -> int:
    cases = [
        bench.CASES_BY_NAME[n]
        for n in bench.pick_names(args.case, list(bench.CASES_BY_NAME), "case")
    ]
    report = run_child(args.child, cases, sizes)
    Path(args.out).write_text(json.dumps(report), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="See the module docstring for the method, and docs/performance.md.",
    )
    known = [MAIN, *compare.INSTRUMENTATIONS, STARTUP]
    parser.add_argument("--only", help=f"comma-separated, of {','.join(known)} (default: all)")
    parser.add_argument("--cases", help=f"comma-separated, of {','.join(CASES)} (default: all)")
    parser.add_argument("--warmup", type=int, default=Sizes.warmup, help="warm-up calls")
    parser.add_argument("--n1", type=int, default=Sizes.n1, help="calls at the first count")
    parser.add_argument("--n2", type=int, default=Sizes.n2, help="calls at the second count")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="children at once")
    parser.add_argument(
        "--layouts", type=int, default=LAYOUTS, help="memory layouts per variant (the median)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    parser.add_argument(
        "--write-docs", metavar="FILE", help="replace the instructions section of FILE"
    )
    parser.add_argument(
        "--from-json", metavar="FILE", help="no run: show (or --write-docs) a saved --json run"
    )
    parser.add_argument("--check", action="store_true", help="the CI check (see the docstring)")
    parser.add_argument("--update", action="store_true", help="with --check: write the figures")
    parser.add_argument("--figures", default=str(FIGURES), help="the figures --check reads")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        sizes = Sizes(args.warmup, args.n1, args.n2)
    except ValueError as exc:
        parser.error(str(exc))
    if args.layouts < 1:
        parser.error(f"--layouts must be at least 1, got {args.layouts}")
    if args.child:
        return child_main(args, sizes)
    if args.update and not args.check:
        parser.error("--update goes with --check")
    if args.check:
        return check(args, sizes)

    if args.from_json:
        results = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        cases, command = results["cases"], results["command"]
    else:
        names = bench.pick_names(args.only, known, "name")
        cases = bench.pick_names(args.cases, list(bench.CASES_BY_NAME), "case", CASES)
        results = count(names, cases, sizes, args.jobs, args.layouts)
        command = compare.shown_command(
            argv if argv is not None else sys.argv[1:], "benchmarks/instructions.py"
        )
        results |= {"cases": cases, "command": command}
    report = render(results, cases)
    print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.write_docs:
        bench.write_docs(Path(args.write_docs), report, command, DOCS_MARKS)
    return 1 if results["failures"] or results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
