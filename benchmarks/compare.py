"""llmmeter against the OpenAI instrumentations a user would pick instead: `make bench-compare`.

    python benchmarks/compare.py [--only NAME[,NAME]] [--smoke] [--rounds R] [--calls N]
                                 [--json FILE] [--write-docs docs/performance-compare.md]

Each other instrumentation gets its own virtualenv under ``build/bench-compare/NAME/``, with
this repository (editable), the instrumentation and the packages that decide its speed pinned
exactly (``INSTRUMENTATIONS`` below). In that one virtualenv ``benchmarks/bench.py`` times
three variants, ``bare``, ``llmmeter`` and the instrumentation (its setup is in
``benchmarks/others.py``), round by round, with the same cases, client, transport and
telemetry checks as ``make bench``. Every comparison is therefore within one environment:
the instrumentation's overhead over ``bare`` next to llmmeter's over the same ``bare``.

openlit requires ``openai<3``, so its virtualenv has openai 2.x, and its ``bare`` and
``llmmeter`` are on 2.x too; the others use the openai 3.x of ``make bench``.

A virtualenv is built once and rebuilt when its pins or ``pyproject.toml`` change
(``.pins.json`` in it records them). The exit status is 1 when a virtualenv could not be
built, a child failed, or some telemetry was invalid; no speed is ever asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench

ROOT = bench.ROOT
BUILD = ROOT / "build" / "bench-compare"

OPENAI_3 = "3.57.0"
"""The openai of the main ``.venv`` (``make bench``)."""
OPENAI_2 = "2.54.0"
"""The newest 2.x, for openlit (``openai<3``); the Makefile's ``OPENAI_2`` too."""

# What decides the speed of the SDK and of telemetry, pinned alike in every virtualenv.
_COMMON = {"pydantic": "2.14.4", "wrapt": "2.5.2"}
_OPENAI_3 = {"openai": OPENAI_3, "httpx2": "2.16.2"}
_OPENAI_2 = {"openai": OPENAI_2, "httpx": "0.28.1"}
_OTEL = {  # the main .venv's OpenTelemetry
    "opentelemetry-api": "1.45.2",
    "opentelemetry-sdk": "1.45.2",
    "opentelemetry-exporter-otlp": "1.45.2",
    "opentelemetry-instrumentation": "0.66b2",
    "opentelemetry-semantic-conventions": "0.66b2",
}
_OTEL_66B1 = {  # openlit's contrib instrumentations (flask, tornado, ...) stop at 0.66b1
    "opentelemetry-api": "1.45.1",
    "opentelemetry-sdk": "1.45.1",
    "opentelemetry-exporter-otlp": "1.45.1",
    "opentelemetry-instrumentation": "0.66b1",
    "opentelemetry-semantic-conventions": "0.66b1",
}


@dataclass(frozen=True)
class Instrumentation:
    """One other instrumentation: how to install it and how bench.py runs it."""

    name: str
    package: str
    """The distribution whose version the tables show."""
    setup: str
    """The variant, ``module:function`` (``benchmarks/others.py``)."""
    pins: Mapping[str, str]
    """Exact versions: the instrumentation, its own dependencies, openai, OpenTelemetry."""
    skip_cases: tuple[str, ...] = ()
    """Cases the library does not instrument (they are not timed for it)."""
    notes: tuple[str, ...] = field(default=())


INSTRUMENTATIONS: dict[str, Instrumentation] = {
    i.name: i
    for i in (
        Instrumentation(
            "genai-openai",
            "opentelemetry-instrumentation-genai-openai",
            "others:setup_genai_openai",
            {
                "opentelemetry-instrumentation-genai-openai": "1.3b0",
                "opentelemetry-util-genai": "1.3b0",
                **_OPENAI_3,
                **_OTEL,
                **_COMMON,
            },
        ),
        Instrumentation(
            "openai-v2",
            "opentelemetry-instrumentation-openai-v2",
            "others:setup_openai_v2",
            {
                "opentelemetry-instrumentation-openai-v2": "2.4b0",
                # 1.2b0 and later renamed opentelemetry.util.genai.instruments, which it imports.
                "opentelemetry-util-genai": "1.1b0",
                # It imports httpx, which openai 3.x (on httpx2) no longer brings.
                "httpx": "0.28.1",
                **_OPENAI_3,
                **_OTEL,
                **_COMMON,
            },
            skip_cases=("responses",),
            notes=("no Responses API instrumentation",),
        ),
        Instrumentation(
            "openllmetry",
            "opentelemetry-instrumentation-openai",
            "others:setup_openllmetry",
            {
                "opentelemetry-instrumentation-openai": "0.62.4",
                "opentelemetry-semantic-conventions-ai": "0.5.1",
                **_OPENAI_3,
                **_OTEL,
                **_COMMON,
            },
        ),
        Instrumentation(
            "openinference",
            "openinference-instrumentation-openai",
            "others:setup_openinference",
            {
                "openinference-instrumentation-openai": "0.1.66",
                "openinference-instrumentation": "0.1.72",
                "openinference-semantic-conventions": "0.1.42",
                **_OPENAI_3,
                **_OTEL,
                **_COMMON,
            },
            notes=("traces only: records no metrics",),
        ),
        Instrumentation(
            "openlit",
            "openlit",
            "others:setup_openlit",
            {"openlit": "1.45.0", **_OPENAI_2, **_OTEL_66B1, **_COMMON},
            notes=("openai 2.x (openlit requires openai<3)",),
        ),
    )
}

REPORTED = ("openai", "opentelemetry-sdk", "llmmeter")


# --- virtualenvs -----------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def venv_python(inst: Instrumentation) -> Path:
    return BUILD / inst.name / "bin" / "python"


def ensure_venv(inst: Instrumentation, python: str) -> tuple[Path, str | None]:
    """Build (or reuse) the instrumentation's virtualenv: its python, or why it failed."""
    home = BUILD / inst.name
    marker = home / ".pins.json"
    # llmmeter is installed editable, but its dependencies come from pyproject.toml.
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = json.dumps({"pins": dict(sorted(inst.pins.items())), "pyproject": pyproject})
    py = venv_python(inst)
    if py.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return py, None
    if home.exists():
        shutil.rmtree(home)
    started = time.perf_counter()
    _progress(f"{inst.name}: building {home}")
    steps = [
        [python, "-m", "venv", str(home)],
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            str(ROOT),
            *(f"{name}=={version}" for name, version in inst.pins.items()),
        ],
    ]
    for command in steps:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            output = (proc.stderr + proc.stdout).splitlines()
            # pip.conf here names local indexes that may be missing: noise, not the cause.
            kept = [line[:300] for line in output if not line.startswith("WARNING: Location")]
            tail = "\n".join(kept[-15:])
            return py, f"{' '.join(command[:5])} ... exited {proc.returncode}:\n{tail}"
    marker.write_text(wanted, encoding="utf-8")
    _progress(f"{inst.name}: built in {time.perf_counter() - started:.0f} s")
    return py, None


def installed_versions(py: Path, packages: Sequence[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n"
        "    try:\n"
        "        return m.version(p)\n"
        "    except m.PackageNotFoundError:\n"
        "        return 'not installed'\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))\n"
    )
    proc = subprocess.run(
        [str(py), "-c", code, *packages], capture_output=True, text=True, check=True
    )
    versions: dict[str, str] = json.loads(proc.stdout)
    return versions


def disk_usage_mib(path: Path) -> float:
    """What ``du`` says: allocated blocks, symlinks not followed."""
    total = sum(p.lstat().st_blocks for p in path.rglob("*"))
    return total * 512 / 2**20


# --- running ---------------------------------------------------------------------------


@dataclass
class Options:
    """How much to time: ``None`` takes ``bench.Config``'s default, as ``make bench`` does."""

    rounds: int | None = None
    calls: int | None = None
    warmup: int | None = None
    batches: int | None = None
    smoke: bool = False
    cpu: int | None = None

    @classmethod
    def for_smoke(cls, cpu: int | None) -> Options:
        """One round of a few calls, children at once: the setups and checks, no timing."""
        return cls(rounds=1, calls=40, warmup=5, batches=2, smoke=True, cpu=cpu)


def run_one(inst: Instrumentation, py: Path, options: Options) -> dict[str, Any]:
    """bare, llmmeter and the instrumentation, in the instrumentation's virtualenv."""
    python = str(py)
    variants = [
        bench.VariantSpec("bare", "bare", python),
        bench.VariantSpec("llmmeter", "llmmeter", python),
        bench.VariantSpec(inst.name, inst.setup, python),
    ]
    cases = [c for c in bench.CASES if c.name not in inst.skip_cases]
    sizes = {
        k: v
        for k, v in (
            ("rounds", options.rounds),
            ("calls", options.calls),
            ("warmup", options.warmup),
            ("batches", options.batches),
        )
        if v is not None
    }
    config = bench.Config(
        variants=variants,
        cases=cases,
        soak_calls=0,
        cpu=options.cpu,
        smoke=options.smoke,
        parallel=options.smoke,
        micro=False,
        imports=False,
        **sizes,
    )
    started = time.perf_counter()
    results = bench.run_benchmark(config)
    versions = installed_versions(py, [inst.package, *REPORTED])
    return {
        "name": inst.name,
        "package": inst.package,
        "versions": versions,
        "pins": dict(inst.pins),
        "skipped_cases": list(inst.skip_cases),
        "notes": list(inst.notes),
        "cases": [c.name for c in cases],
        "aggregate": results["aggregate"],
        "problems": results["problems"],
        "failures": results["failures"],
        "meta": {k: v for k, v in results["meta"].items() if k not in REPORTED},
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- the tables ------------------------------------------------------------------------

TABLE_CASES = ("chat", "chat_async", "responses", "embeddings", "stream_10", "stream_usage")

OVERHEAD = "over_bare_us"
"""``bench.aggregate``'s overhead over ``bare``, paired within each round."""


def _over(run: Mapping[str, Any], case: str, variant: str) -> float | None:
    value = run["aggregate"].get(case, {}).get(variant, {}).get(OVERHEAD)
    return None if value is None else float(value)


def _chunk(run: Mapping[str, Any], variant: str) -> float | None:
    value = run["aggregate"].get("per_chunk", {}).get(variant, {}).get(OVERHEAD)
    return None if value is None else float(value)


def _us(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:+,.{digits}f}"


def _ratio(other: float | None, ours: float | None) -> str:
    if other is None or ours is None or ours <= 0:
        return "-"
    return f"{other / ours:.1f}x"


def _measured(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [run for run in runs if "aggregate" in run]


def overhead_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per instrumentation, then llmmeter's row from the same virtualenv."""
    lines = [
        "| instrumentation | version | openai | " + " | ".join(TABLE_CASES) + " | per chunk |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in TABLE_CASES) + " | ---: |",
    ]
    for run in _measured(runs):
        name, versions = run["name"], run["versions"]
        cells, ours_cells = [], []
        for case in TABLE_CASES:
            other, ours = _over(run, case, name), _over(run, case, "llmmeter")
            if case in run["skipped_cases"]:
                cells.append("not instrumented")
            else:
                cells.append(f"{_us(other)} ({_ratio(other, ours)})")
            ours_cells.append(_us(ours))
        other_chunk, ours_chunk = _chunk(run, name), _chunk(run, "llmmeter")
        openai = versions.get("openai", "?")
        lines.append(
            f"| {name} | {versions.get(run['package'], '?')} | {openai} | "
            + " | ".join(cells)
            + f" | {_us(other_chunk, 2)} ({_ratio(other_chunk, ours_chunk)}) |"
        )
        lines.append(
            f"| llmmeter (same venv) | {versions.get('llmmeter', '?')} | {openai} | "
            + " | ".join(ours_cells)
            + f" | {_us(ours_chunk, 2)} |"
        )
    return lines


def bare_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """``bare`` per virtualenv: the SDK's own time, how much it varied by round, the load."""
    lines = [
        "| virtualenv | openai | " + " | ".join(TABLE_CASES) + " | load before / after |",
        "| --- | --- | " + " | ".join("---:" for _ in TABLE_CASES) + " | --- |",
    ]
    for run in _measured(runs):
        cells = []
        for case in TABLE_CASES:
            row = run["aggregate"].get(case, {}).get("bare")
            if row is None:
                cells.append("-")
                continue
            typical = row.get("typical_best_us", row["median_us"])
            cells.append(f"{typical:,.0f} (±{row['spread_pct'] / 2:.0f}%)")
        meta = run["meta"]
        lines.append(
            f"| {run['name']} | {run['versions'].get('openai', '?')} | "
            + " | ".join(cells)
            + f" | {meta.get('load_before', '?')} / {meta.get('load_after', '?')} |"
        )
    return lines


def targets(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The issue's target: llmmeter's non-streaming overhead at most half the fastest other's.

    llmmeter's overhead is the one measured in the fastest other's virtualenv and rounds."""
    lines = [
        "| case | llmmeter | fastest other | llmmeter / other | verdict (≤ 0.5) |",
        "| --- | ---: | --- | ---: | --- |",
    ]
    measured = False
    for case in bench.NON_STREAMING:
        fastest: tuple[float, float, str] | None = None
        for run in _measured(runs):
            if case in run["skipped_cases"]:
                continue
            other, ours = _over(run, case, run["name"]), _over(run, case, "llmmeter")
            if other is None or ours is None:
                continue
            if fastest is None or other < fastest[0]:
                fastest = (other, ours, run["name"])
        if fastest is None or fastest[0] <= 0:
            continue
        measured = True
        other, ours, name = fastest
        verdict = "met" if ours / other <= 0.5 else "**not met**"
        lines.append(
            f"| `{case}` | {_us(ours)} µs | {name} {_us(other)} µs | {ours / other:.2f} "
            f"| {verdict} |"
        )
    return lines if measured else []


def render(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: overhead over bare per case, llmmeter's in the same virtualenv, the ratio."""
    meta: Mapping[str, Any] = next((r["meta"] for r in _measured(runs)), {})
    lines = [
        f"Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, "
        f"{meta.get('pinned', '?')}; Python {meta.get('python', '?')}",
        f"Run: {meta.get('date', '?')}, {meta.get('rounds', '?')} round(s) x "
        f"{meta.get('calls', '?')} calls per case (stream_200: a fifth), "
        f"{meta.get('batches', '?')} batches, {meta.get('warmup', '?')} warm-up calls"
        f"{'; SMOKE: numbers are not measurements' if meta.get('smoke') else ''}",
        "",
        "µs added per call over `bare` in the same virtualenv: per round, the variant's "
        "fastest batch minus bare's, then the median over rounds (`bench.aggregate`). Each "
        "instrumentation's row is followed by llmmeter's, measured in the same rounds; "
        "`(2.0x)` is the instrumentation's overhead as a multiple of llmmeter's. Per chunk: "
        "(stream_200 - stream_10) / 190, over bare's.",
        "",
        *overhead_table(runs),
        "",
        "`bare`, µs per call (median over rounds of the fastest batch, ± half its range over "
        "rounds), and the load average before and after that virtualenv's rounds:",
        "",
        *bare_table(runs),
    ]
    target_lines = targets(runs)
    if target_lines:
        lines += [
            "",
            "**Target**: llmmeter's non-streaming overhead at most half of the fastest other "
            "instrumentation's.",
            "",
            *target_lines,
        ]
    notes = [f"- {run['name']}: {note}" for run in runs for note in run.get("notes", [])]
    if notes:
        lines += ["", "Notes:", *notes]
    problems = [
        f"- {run['name']}: {p}"
        for run in runs
        for p in [*run.get("failures", []), *run.get("problems", [])]
    ]
    lines.append("")
    if problems:
        lines += ["FAILED OR INVALID (these numbers do not count):", *problems]
    else:
        lines.append(
            "Telemetry valid: every variant and case exported the spans, attributes and metric "
            "points it promised, with no message content on any span."
        )
    return "\n".join(lines)


def per_chunk_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per-chunk µs over bare for each instrumentation, and llmmeter's median across runs."""
    measured = _measured(runs)
    out = {
        run["name"]: value for run in measured if (value := _chunk(run, run["name"])) is not None
    }
    ours = [v for run in measured if (v := _chunk(run, "llmmeter")) is not None]
    if ours:
        out["llmmeter"] = statistics.median(ours)
    return out


# --- command line ----------------------------------------------------------------------


def run_all(names: Sequence[str], options: Options, python: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for name in names:
        inst = INSTRUMENTATIONS[name]
        py, error = ensure_venv(inst, python)
        if error is not None:
            _progress(f"{name}: virtualenv FAILED")
            runs.append({"name": name, "failures": [f"virtualenv: {error}"], "problems": []})
            continue
        _progress(f"{name}: timing bare, llmmeter and {name}")
        runs.append(run_one(inst, py, options))
    return runs


def shown_command(argv: Sequence[str], script: str = "benchmarks/compare.py") -> str:
    """The command as the docs show it: the options that shape the run, not output files."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--json", "--write-docs"):
            skip = True
        elif not arg.startswith(("--json=", "--write-docs=")):
            shown.append(arg)
    return " ".join([f"python {script}", *shown])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="See the module docstring, and docs/performance-compare.md.",
    )
    parser.add_argument(
        "--only", help=f"comma-separated, of {','.join(INSTRUMENTATIONS)} (default: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="1 round of a few calls per case")
    parser.add_argument("--rounds", type=int, help="rounds (default: bench.py's)")
    parser.add_argument("--calls", type=int, help="timed calls per case per round")
    parser.add_argument("--warmup", type=int, help="warm-up calls per case")
    parser.add_argument("--batches", type=int, help="timed batches per case")
    parser.add_argument("--cpu", type=int, help="CPU to pin children to (-1: do not pin)")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter the virtualenvs are made from"
    )
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    parser.add_argument(
        "--from-json", metavar="FILE", help="render a run saved with --json; run nothing"
    )
    parser.add_argument("--write-docs", metavar="FILE", help="replace the bench section of FILE")
    args = parser.parse_args(argv)

    names = [n.strip() for n in (args.only or ",".join(INSTRUMENTATIONS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in INSTRUMENTATIONS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (known: {', '.join(INSTRUMENTATIONS)})")
    if args.from_json:
        payload = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        runs = payload["runs"]
        seconds, disk = payload["seconds"], payload["disk_mib"]
        command = payload.get("command", "python benchmarks/compare.py")
    else:
        if args.smoke:
            options = Options.for_smoke(args.cpu)
        else:
            options = Options(args.rounds, args.calls, args.warmup, args.batches, cpu=args.cpu)
        started = time.perf_counter()
        runs = run_all(names, options, args.python)
        seconds = time.perf_counter() - started
        disk = disk_usage_mib(BUILD) if BUILD.exists() else 0.0
        command = shown_command(argv if argv is not None else sys.argv[1:])
    report = render(runs)
    footer = f"Took {seconds / 60:.1f} min; build/bench-compare/ holds {disk:,.0f} MiB."
    print(report)
    print()
    print(footer)
    if args.json:
        payload = {
            "runs": runs,
            "per_chunk": per_chunk_summary(runs),
            "seconds": round(seconds, 1),
            "disk_mib": round(disk, 1),
            "command": command,
        }
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    if args.write_docs:
        bench.write_docs(Path(args.write_docs), f"{report}\n\n{footer}", command)
    bad = any(run.get("failures") or run.get("problems") for run in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
