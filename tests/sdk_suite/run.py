"""Run the installed openai SDK's own test suite plain, instrumented, and instrumented strict.

The promise checked: an application never changes because of llmmeter. The SDK's suite is
the largest body of tests of the SDK's behaviour that nobody on our team wrote; every test
that passes without llmmeter must pass with it. Steps:

1. Find the installed openai version, download that version's sdist from PyPI into
   ``build/sdk-suite/`` and unpack it (once; later runs reuse it).
2. Install what its tests need (its dev dependencies and every extra, less the linters and
   type checkers) into this interpreter's virtualenv, with everything already installed
   pinned, so openai, llmmeter and the OpenTelemetry SDK stay exactly as they are.
3. Run the same selection three times, writing JUnit XML per run: plain (without llmmeter),
   instrumented (``-p llmmeter_sdk_suite``), and instrumented with ``strict=True``.
4. Compare outcomes per test id. A test that passes plain and not instrumented is run again,
   alone, both ways; a difference that holds fails this script (exit 1).

Tests that need what the sdist does not ship are deselected in every run (``DESELECTED``
below says which and why). Run with this virtualenv's Python:
``.venv/bin/python tests/sdk_suite/run.py [-n 2] [-- extra pytest args]``; ``make sdk-suite``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_CACHE = ROOT / "build" / "sdk-suite"

RUNS = ("plain", "instrumented", "strict")

# What the SDK's own CI installs for its tests but only lints or type-checks with.
LINT_ONLY = frozenset({"ty", "ruff", "mypy", "pyright", "nox", "pandas-stubs"})


@dataclass(frozen=True)
class Rule:
    """Tests deselected in every run: ``path`` (a folder or file, left out with
    ``--ignore``), ``server`` (the tests under a path that call the SDK's mock server, i.e.
    do not mock HTTP themselves with the suite's respx fixture), ``uses`` (tests whose code
    uses a global name) or ``id`` (one test, with all its parameters)."""

    kind: str
    target: str
    reason: str


MOCK_SERVER = (
    "call the SDK's mock server (its tests that mock HTTP themselves run): scripts/mock runs "
    "Steady (npm @stdy/cli) on the OpenAPI spec the SDK is generated from, which the sdist "
    "does not ship (its address is in a hidden stats file the sdist leaves out) and no "
    "registry reachable here carries"
)
RECORDED_STREAMS = (
    "compare against recorded API streams kept as inline-snapshot external files "
    "(.inline-snapshot/external/, a hidden folder the sdist leaves out)"
)

HIDDEN_GITHUB = (
    "read the SDK repository's {}, a hidden file the sdist leaves out (the suite's other "
    "workflow tests skip themselves without it; these do not)"
)
_UV_WORKFLOWS = "tests/test_uv_workflows.py::"

DESELECTED: tuple[Rule, ...] = (
    Rule("server", "tests/api_resources/", MOCK_SERVER),
    Rule("server", "tests/lib/test_fine_tuning_positional_arguments.py", MOCK_SERVER),
    Rule("uses", "external", RECORDED_STREAMS),
    *(
        Rule("id", _UV_WORKFLOWS + test, HIDDEN_GITHUB.format(".github/workflows/ci.yml"))
        for test in (
            "test_source_builds_only_allowed_in_trusted_experimental_compatibility",
            "test_fork_build_provenance_uses_immutable_pull_request_identity",
            "test_security_dependency_policy_is_directly_testable_after_the_trusted_gate",
        )
    ),
    Rule(
        "id",
        _UV_WORKFLOWS + "test_routine_dependency_updates_preserve_lock_only_strategy",
        HIDDEN_GITHUB.format(".github/dependabot.yml"),
    ),
)


@dataclass
class RunResult:
    """One pytest run's outcomes per test id, and what the plugin reported."""

    name: str
    outcomes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    reports: list[dict[str, Any]] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)

    def total(self, key: str) -> int:
        return sum(int(report.get(key, 0)) for report in self.reports)

    def merged(self, key: str) -> Counter[str]:
        merged: Counter[str] = Counter()
        for report in self.reports:
            merged.update(report.get(key, {}))
        return merged


def log(message: str) -> None:
    print(message, flush=True)


def pip(*args: str, logfile: Path) -> bool:
    """Run this interpreter's pip; its output goes to ``logfile``; True on success."""
    with logfile.open("a") as out:
        out.write(f"\n$ pip {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [sys.executable, "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    return done.returncode == 0


def fetch_sdist(version: str, cache: Path) -> Path:
    """The unpacked sdist of openai ``version`` (downloaded from PyPI the first time)."""
    tree = cache / f"openai-{version}"
    if (tree / "pyproject.toml").exists() and (tree / "tests").is_dir():
        return tree
    dist = cache / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"openai-{version}.tar.gz"
    if not archive.exists():
        log(f"== downloading the openai {version} sdist")
        args = ("download", "-q", "--no-deps", "--no-binary", ":all:", f"openai=={version}")
        if not pip(*args, "-d", str(dist), logfile=cache / "pip.log"):
            sys.exit(f"could not download the openai {version} sdist (see {cache / 'pip.log'})")
    if not archive.exists():
        sys.exit(f"pip downloaded no {archive.name} into {dist}")
    if tree.exists():
        shutil.rmtree(tree)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    if not (tree / "tests").is_dir():
        sys.exit(f"the openai {version} sdist ships no tests/ folder: nothing to run")
    return tree


def test_requirements(tree: Path) -> list[Requirement]:
    """What the suite's tests need: the sdist's dev dependencies (PEP 735
    ``[dependency-groups] dev``, or rye's ``dev-dependencies`` in 1.x and 2.x) and every
    extra (the SDK's CI runs its tests with all extras), less linters and type stubs."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())
    dev = project.get("dependency-groups", {}).get("dev")
    if dev is None:
        dev = project.get("tool", {}).get("rye", {}).get("dev-dependencies", [])
    extras = project.get("project", {}).get("optional-dependencies", {})
    wanted: list[Requirement] = []
    for text in [*dev, *(spec for specs in extras.values() for spec in specs)]:
        if not isinstance(text, str):  # {include-group = ...}
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name in LINT_ONLY or name.startswith("types-") or name == "openai":
            continue
        wanted.append(requirement)
    return wanted


def install_requirements(tree: Path, version: str, cache: Path) -> list[str]:
    """Install the suite's test dependencies, changing no installed package; return what
    could not be installed. A pin this machine's index lacks (``botocore==1.44.9``) is
    relaxed to the other specifiers of the same name."""
    wanted = test_requirements(tree)
    stamp_key = hashlib.sha256(
        f"{sys.prefix}\n{version}\n{sorted(map(str, wanted))}".encode()
    ).hexdigest()[:16]
    stamp = cache / f".installed-{stamp_key}"
    if stamp.exists():
        return [str(name) for name in json.loads(stamp.read_text())]
    log(f"== installing the openai {version} suite's test dependencies into {sys.prefix}")
    installed: dict[str, str] = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    installed.pop("llmmeter", None)  # editable: not a version pip can look up
    constraints = cache / f"constraints-{stamp_key}.txt"
    constraints.write_text("".join(f"{name}=={ver}\n" for name, ver in sorted(installed.items())))
    logfile = cache / "pip.log"
    base = ("install", "-q", "-c", str(constraints))
    by_name: dict[str, list[Requirement]] = {}
    for requirement in wanted:
        by_name.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    relaxed = {name: relax(name, group) for name, group in by_name.items()}
    missing: list[str] = []
    if not pip(*base, *map(str, wanted), logfile=logfile) and not pip(
        *base, *relaxed.values(), logfile=logfile
    ):
        # One name at a time, to install all but what cannot be had without changing
        # something installed.
        for name, group in by_name.items():
            if not any(
                pip(*base, *attempt, logfile=logfile)
                for attempt in ([str(r) for r in group], [relaxed[name]])
            ):
                missing.append(name)
    after = importlib.metadata.version("openai")
    if after != version:
        sys.exit(f"installing the suite's dependencies changed openai {version} to {after}")
    stamp.write_text(json.dumps(missing))
    return missing


def relax(name: str, group: list[Requirement]) -> str:
    """One requirement for ``name`` without its exact pins: ``botocore>=1.40.0,<2`` from
    ``botocore==1.44.9`` (dev) and ``botocore>=1.40.0,<2`` (the bedrock extra)."""
    extras = sorted({extra for requirement in group for extra in requirement.extras})
    specs = [str(s) for r in group for s in r.specifier if s.operator not in ("==", "===")]
    return name + (f"[{','.join(extras)}]" if extras else "") + ",".join(specs)


def parse_junit(path: Path, tree: Path) -> dict[str, str]:
    """Outcome per pytest node id: passed, failed, error or skipped (xfail counts as
    skipped, as pytest's JUnit writer records it)."""
    outcomes: dict[str, str] = {}
    if not path.exists():
        return outcomes
    for case in ET.parse(path).getroot().iter("testcase"):
        outcomes[node_id(case.attrib, tree)] = _outcome(case)
    return outcomes


def _outcome(case: ET.Element) -> str:
    tags = {child.tag for child in case}
    if "failure" in tags:
        return "failed"
    if "error" in tags:
        return "error"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def node_id(attrib: dict[str, str], tree: Path) -> str:
    """pytest's node id back from JUnit's dotted ``classname`` (the node id's module path,
    then its classes) and ``name``: the longest dotted prefix that is a file of the suite is
    the module. (The ``file`` attribute names where a test is defined, which is another
    module for tests a module imports from a shared one.)"""
    name = attrib.get("name", "")
    parts = attrib.get("classname", "").split(".")
    for end in range(len(parts), 0, -1):
        module = "/".join(parts[:end]) + ".py"
        if (tree / module).is_file():
            return "::".join([module, *parts[end:], name])
    return "::".join([*filter(None, parts), name])


def run_pytest(
    name: str,
    mode: str,
    tree: Path,
    out: Path,
    *,
    workers: int,
    timeout: float,
    ignores: list[str],
    extra: list[str],
    rules_file: Path,
    quiet: bool = False,
) -> RunResult:
    """One run of the suite in ``mode`` (plain, instrumented or strict); its output goes to
    ``out/<name>.log``."""
    result = RunResult(name)
    xml = out / f"{name}.xml"
    report_dir = out / f"{name}-report"
    for stale in (xml, report_dir):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LLMMETER_", "OTEL_", "PYTEST_")) and key != "CI"
    }  # CI=true would run the suite's packaging checks in CI only: same selection everywhere
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env["DEFER_PYDANTIC_BUILD"] = "false"  # as the SDK's scripts/test runs it
    env["LLMMETER_SDK_SUITE_DESELECT"] = str(rules_file)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "llmmeter_sdk_select"]
    args += ["-o", "junit_family=xunit1", f"--junitxml={xml}", "-q", "--durations=10"]
    args += ["-n", str(workers)]  # 0: no workers (the suite's addopts name -n, so keep xdist)
    if mode != "plain":
        args += ["-p", "llmmeter_sdk_suite"]
        env["LLMMETER_SDK_SUITE_REPORT"] = str(report_dir)
        if mode == "strict":
            env["LLMMETER_SDK_SUITE_STRICT"] = "1"
    args += [f"--ignore={path}" for path in ignores] + extra
    logfile = out / f"{name}.log"
    started = time.monotonic()
    with logfile.open("w") as output:
        output.write(" ".join(args) + "\n")
        output.flush()
        process = subprocess.Popen(
            args, cwd=tree, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            result.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    result.seconds = time.monotonic() - started
    result.outcomes = parse_junit(xml, tree)
    if report_dir.is_dir():
        result.reports = [json.loads(p.read_text()) for p in sorted(report_dir.glob("*.json"))]
    if not quiet:
        last = logfile.read_text().strip().splitlines()[-1:] or [""]
        state = "TIMED OUT" if result.timed_out else f"exit {result.returncode}"
        log(f"   {name}: {state} in {result.seconds:.0f} s: {last[0].strip('= ')}")
    return result


def deselected_ids(rules_file: Path) -> dict[str, list[str]]:
    """The ids the selection plugin dropped per rule, as the first worker saw them (every
    worker collects the same tests)."""
    for path in sorted(rules_file.parent.glob(f"{rules_file.name}.*.out.json")):
        return dict(json.loads(path.read_text()))
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--workers", type=int, default=2, help="xdist workers (0: none)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="sdists and results")
    parser.add_argument(
        "--budget", type=float, default=40.0, help="minutes for the three runs together"
    )
    parser.add_argument("--runs", default=",".join(RUNS), help="which runs, comma-separated")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    runs = [run for run in args.runs.split(",") if run]
    if unknown := set(runs) - set(RUNS):
        parser.error(f"unknown runs {sorted(unknown)}; choose from {', '.join(RUNS)}")

    # A shell without job control starts background jobs with SIGINT and SIGQUIT ignored,
    # and children inherit that: the suite's Ctrl-C tests would then fail in every run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    version = importlib.metadata.version("openai")
    cache: Path = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    log(f"== the openai {version} SDK's own test suite, plain and with llmmeter instrumented")
    began = time.monotonic()
    tree = fetch_sdist(version, cache)
    missing = install_requirements(tree, version, cache)
    out = cache / f"results-{version}"
    out.mkdir(parents=True, exist_ok=True)
    rules = [rule for rule in DESELECTED if rule.kind != "path"]
    ignores = [rule.target for rule in DESELECTED if rule.kind == "path"]
    ignores = [path for path in ignores if (tree / path).exists()]
    rules_file = out / "deselect.json"
    for stale in out.glob("deselect.json.*"):
        stale.unlink()
    rules_file.write_text(json.dumps([rule.__dict__ for rule in rules]))

    deadline = time.monotonic() + args.budget * 60
    results: dict[str, RunResult] = {}
    for index, name in enumerate(runs):
        remaining = deadline - time.monotonic()
        timeout = max(remaining / (len(runs) - index), 60.0)
        results[name] = run_pytest(
            name,
            name,
            tree,
            out,
            workers=args.workers,
            timeout=timeout,
            ignores=ignores,
            extra=args.pytest_args,
            rules_file=rules_file,
        )

    plain = results.get("plain")
    differing: dict[str, dict[str, str]] = {}
    if plain is not None:
        for name, result in results.items():
            if name == "plain":
                continue
            for test, outcome in plain.outcomes.items():
                if outcome == "passed" and result.outcomes.get(test) != "passed":
                    differing.setdefault(test, {})[name] = result.outcomes.get(test, "missing")
    confirmed = confirm(differing, tree, out, ignores=ignores, rules_file=rules_file)

    summary = summarize(version, results, differing, confirmed, ignores, rules_file, missing)
    summary["seconds"] = round(time.monotonic() - began, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, out)
    if any(result.timed_out for result in results.values()):
        return 2
    if unloaded := [name for name, r in results.items() if name != "plain" and not r.reports]:
        log(f"   FAIL: the llmmeter plugin reported nothing in {', '.join(unloaded)}: not loaded?")
        return 2
    return 1 if confirmed else 0


def confirm(
    differing: dict[str, dict[str, str]],
    tree: Path,
    out: Path,
    *,
    ignores: list[str],
    rules_file: Path,
) -> dict[str, dict[str, str]]:
    """Run the tests that passed plain and not instrumented again, without xdist, plain and in
    each failing mode: a difference that does not hold (a timing test under load, a test that
    fails plain too when run alone) is reported, not failed on. Past 200 tests, or when a
    re-run cannot run, every difference counts."""
    if not differing or len(differing) > 200:
        return differing
    log(f"== re-running the {len(differing)} test(s) that differ, without xdist")
    ids = sorted(differing)
    confirmed: dict[str, dict[str, str]] = {}
    modes = sorted({mode for modes in differing.values() for mode in modes})
    again = {
        mode: run_pytest(
            f"rerun-{mode}",
            mode,
            tree,
            out,
            workers=0,
            timeout=600,
            ignores=ignores,
            extra=ids,
            rules_file=rules_file,
        )
        for mode in ["plain", *modes]
    }
    if any(result.returncode not in (0, 1) for result in again.values()):
        log("   the re-run did not run (see its log): every difference counts")
        return differing
    for test, failed in differing.items():
        if again["plain"].outcomes.get(test) in ("failed", "error", "skipped"):
            continue  # does not pass plain either when run alone: not llmmeter's doing
        held = {mode: again[mode].outcomes.get(test, "missing") for mode in failed}
        held = {mode: outcome for mode, outcome in held.items() if outcome != "passed"}
        if held:
            confirmed[test] = held
    return confirmed


def summarize(
    version: str,
    results: dict[str, RunResult],
    differing: dict[str, dict[str, str]],
    confirmed: dict[str, dict[str, str]],
    ignores: list[str],
    rules_file: Path,
    missing: list[str],
) -> dict[str, Any]:
    dropped = deselected_ids(rules_file)
    deselected = [
        {"rule": rule.kind, "target": rule.target, "reason": rule.reason}
        | ({"tests": len(dropped.get(rule.target, []))} if rule.kind != "path" else {})
        for rule in DESELECTED
        if rule.target in ignores or dropped.get(rule.target)
    ]
    return {
        "openai": version,
        "python": sys.version.split()[0],
        "runs": {
            name: {
                "tests": len(result.outcomes),
                "passed": result.count("passed"),
                "failed": result.count("failed") + result.count("error"),
                "skipped": result.count("skipped"),
                "seconds": round(result.seconds, 1),
                "exit": result.returncode,
                "timed_out": result.timed_out,
                "spans": result.total("spans") if name != "plain" else None,
                "metric_points": result.total("metric_points") if name != "plain" else None,
                "span_operations": dict(result.merged("span_operations")),
                "internal_error_sites": dict(result.merged("internal_errors")),
                "openai_imported_before_instrument": any(
                    report.get("openai_imported_before_instrument") for report in result.reports
                ),
            }
            for name, result in results.items()
        },
        "differing": differing,
        "confirmed": confirmed,
        "deselected": deselected,
        "deselected_ids": dropped,
        "not_installed": missing,
    }


def print_summary(summary: dict[str, Any], out: Path) -> None:
    log(f"== summary: openai {summary['openai']}'s own suite (Python {summary['python']})")
    log(
        f"   {'run':<13} {'tests':>6} {'passed':>7} {'failed':>7} {'skipped':>8} "
        f"{'spans':>7} {'time':>7}"
    )
    for name, run in summary["runs"].items():
        spans = "-" if run["spans"] is None else str(run["spans"])
        log(
            f"   {name:<13} {run['tests']:>6} {run['passed']:>7} {run['failed']:>7} "
            f"{run['skipped']:>8} {spans:>7} {run['seconds']:>6.0f}s"
            + ("  TIMED OUT" if run["timed_out"] else "")
        )
    for name, run in summary["runs"].items():
        if run["internal_error_sites"]:
            sites = ", ".join(f"{k} ({v})" for k, v in sorted(run["internal_error_sites"].items()))
            log(f"   {name}: llmmeter reported internal errors at: {sites}")
        if run["openai_imported_before_instrument"]:
            log(f"   {name}: openai was imported before the plugin instrumented")
    log(
        "   deselected in every run:" + ("" if summary["deselected"] else " none of this selection")
    )
    for rule in summary["deselected"]:
        count = f" ({rule['tests']} tests)" if "tests" in rule else ""
        log(f"     {rule['target']}{count}: {rule['reason']}")
    if summary["not_installed"]:
        log(f"   test dependencies not installed: {', '.join(summary['not_installed'])}")
    flaky = sorted(set(summary["differing"]) - set(summary["confirmed"]))
    if flaky:
        log(f"   {len(flaky)} test(s) differed once but passed both ways when run again:")
        for test in flaky:
            log(f"     {test}: {summary['differing'][test]}")
    if summary["confirmed"]:
        log(f"   FAIL: {len(summary['confirmed'])} test(s) pass plain and not with llmmeter:")
        for test, modes in sorted(summary["confirmed"].items()):
            log(f"     {test}: " + ", ".join(f"{m} {o}" for m, o in sorted(modes.items())))
    else:
        log("   every test that passes plain passes instrumented")
    log(f"   {summary['seconds']:.0f} s in all (download, install, runs); details: {out}")


if __name__ == "__main__":
    sys.exit(main())
