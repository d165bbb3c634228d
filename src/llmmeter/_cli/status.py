"""``llmmeter policy status`` and ``llmmeter policy promote``: the fleet's evidence per rule.

The processes of a fleet each count, per rule, the calls it routed or shadowed, the fallbacks,
the shadow evaluations and their agreement. ``status`` sums those counters over a window,
fleet-wide (Prometheus, or OTLP JSON metrics files a collector wrote), weighs the agreement
with its Wilson lower bound, and recommends a step for each rule. ``promote`` makes that step
in the policy file: it edits only the ``mode`` and ``sample`` lines of the rules concerned, so
comments and layout survive, checks that the edited file loads and means exactly the intended
change, and (with ``--write``) replaces the file atomically. Running processes pick the new
file up through their usual reload: the file stays the one place a decision lives.

The counters and where they are read from live in ``status_sources``, the advice in
``recommend``, the textual edit in ``policy_edit``; this module is the two commands.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import tomllib
from collections.abc import Sequence
from typing import Any

from llmmeter._config import LLMMETER_PROMETHEUS_URL
from llmmeter._configfile import read_config
from llmmeter._prometheus import PrometheusURL
from llmmeter._rules import RulePolicy
from llmmeter.exceptions import ConfigError

from . import progress, table
from .common import UsageError, Writer, exit_codes, format_cost, parse_number
from .policy_edit import EditError, changed, edit_policy, write_atomically
from .recommend import (
    DEFAULT_MAX_FALLBACK_RATE,
    DEFAULT_MIN_EVALUATIONS,
    DEFAULT_STEPS,
    RuleStatus,
    Thresholds,
    percent,
    rule_status,
    sample_text,
)
from .status_sources import (
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
    EVALUATION_COST,
    EVALUATION_DROPPED,
    EVALUATION_ERRORS,
    FALLBACKS,
    ROUTED,
    SAVED,
    SHADOWED,
    WOULD_SAVE,
    OtlpSource,
    PrometheusSource,
    Source,
    parse_window,
    window_seconds,
)

# --- the commands ---------------------------------------------------------------------------


def _source(args: argparse.Namespace) -> Source:
    if args.otlp:
        return OtlpSource(args.otlp, args.window)
    raw = args.prometheus or os.environ.get(LLMMETER_PROMETHEUS_URL, "").strip()
    if not raw:
        raise UsageError(
            f"give --prometheus URL or --otlp FILE... (or set {LLMMETER_PROMETHEUS_URL}) "
            f"(see '{args.prog} --help')"
        )
    try:
        url = PrometheusURL.parse(raw)
    except ValueError as exc:
        raise UsageError(
            f"argument --prometheus: expected the http(s) base URL of Prometheus, such as "
            f"http://prometheus:9090; {exc}"
        ) from None
    return PrometheusSource(url, args.window, args.timeout)


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(
        min_evaluations=args.min_evaluations,
        max_fallback_rate=args.max_fallback_rate,
        steps=args.steps,
    )


def _load(path: str) -> RulePolicy:
    try:
        return RulePolicy.load(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _statuses(args: argparse.Namespace, policy: RulePolicy) -> list[RuleStatus]:
    names = {rule.name for rule in policy.rules}
    unknown = [name for name in args.rule or () if name not in names]
    if unknown:
        raise UsageError(f"--rule {unknown[0]}: {args.file} has no such rule")
    source = _source(args)
    thresholds = _thresholds(args)
    rules = [rule for rule in policy.rules if not args.rule or rule.name in args.rule]
    steps = progress.Steps("policy status", "rules", len(rules))  # a query per counter each
    statuses = []
    for rule in rules:
        statuses.append(rule_status(policy, rule, source, thresholds))
        steps.step()
    steps.finish()
    args.source = source
    return statuses


def _optional(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _status_json(status: RuleStatus) -> dict[str, Any]:
    step = status.recommendation
    agreement = status.agreement
    return {
        "rule": status.rule.name,
        "mode": status.mode,
        "sample": status.rule.sample,
        "evaluate": status.rule.evaluate,
        "agreement_target": status.rule.agreement_target,
        "calls": round(status.calls, 3),
        "routed": round(status[ROUTED], 3),
        "shadowed": round(status[SHADOWED], 3),
        "fallbacks": round(status[FALLBACKS], 3),
        "fallback_rate": _optional(status.fallback_rate),
        "evaluations": agreement.n,
        "agreement": _optional(agreement.point),
        "agreement_low": round(agreement.low, 6),
        "agreement_high": round(agreement.high, 6),
        "evaluation_errors": round(status[EVALUATION_ERRORS], 3),
        "evaluations_dropped": round(status[EVALUATION_DROPPED], 3),
        "evaluation_cost_usd": round(status[EVALUATION_COST], 9),
        "saved_usd": round(status[SAVED], 9),
        "would_save_usd": round(status[WOULD_SAVE], 9),
        "recommendation": {
            "action": step.action,
            "reason": step.reason,
            "mode": step.mode,
            "sample": step.sample,
        },
    }


def _count(value: float) -> str:
    return f"{round(value):,}"


def _usd_or_dash(value: float) -> str:
    return format_cost(value) if value > 0 else "-"


def _status_rows(statuses: Sequence[RuleStatus]) -> list[list[str]]:
    rows = []
    for status in statuses:
        agreement = status.agreement
        rate = status.fallback_rate
        rows.append(
            [
                status.rule.name,
                status.mode,
                "all" if status.rule.sample >= 1.0 else sample_text(status.rule.sample),
                _count(status.calls),
                f"{agreement.n:,}",
                "-" if agreement.point is None else percent(agreement.point),
                "-" if agreement.n == 0 else percent(agreement.low),
                percent(status.rule.agreement_target),
                "-" if rate is None else percent(rate),
                _usd_or_dash(status[SAVED]),
                _usd_or_dash(status[WOULD_SAVE]),
                status.recommendation.action.replace("_", " "),
            ]
        )
    return rows


def _heading(args: argparse.Namespace) -> str:
    source: Source = args.source
    return f"Policy {args.file}; {source.words()}, last {args.window}, all processes"


def _notes(statuses: Sequence[RuleStatus]) -> list[str]:
    lines = []
    for status in statuses:
        lines.append(f"{status.rule.name}: {status.recommendation.reason}")
        problems = []
        if status[EVALUATION_ERRORS] > 0:
            problems.append(f"{_count(status[EVALUATION_ERRORS])} evaluation errors")
        if status[EVALUATION_DROPPED] > 0:
            problems.append(f"{_count(status[EVALUATION_DROPPED])} evaluations dropped")
        if status[EVALUATION_COST] > 0:
            problems.append(f"evaluation cost {format_cost(status[EVALUATION_COST])}")
        if problems:
            lines.append(f"  ({'; '.join(problems)})")
    return lines


def _policy_status(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy status``: per rule, the fleet's evidence and the next step."""
    if args.file is None:
        raise UsageError(f"give a policy FILE or set LLMMETER_POLICY (see '{args.prog} --help')")
    statuses = _statuses(args, _load(args.file))
    to_change = any(status.recommendation.changes for status in statuses)
    if args.json:
        doc = {
            "file": args.file,
            "source": args.source.describe(),
            "window": args.window,
            "window_seconds": window_seconds(args.window),
            "min_evaluations": args.min_evaluations,
            "max_fallback_rate": args.max_fallback_rate,
            "steps": list(args.steps),
            "rules": [_status_json(status) for status in statuses],
        }
        out(json.dumps(doc, indent=2))
        return 1 if to_change else 0
    out(_heading(args))
    if not statuses:
        out("The policy has no rules.")
        return 0
    headers = [
        "rule",
        "mode",
        "sample",
        "calls",
        "evaluations",
        "agreement",
        "lower bound",
        "target",
        "fallbacks",
        "saved",
        "would save",
        "recommendation",
    ]
    for line in table.fit(table.columns(*headers, wrap=("rule",)), _status_rows(statuses)):
        out(line)
    for line in _notes(statuses):
        out(line)
    if to_change:
        out(f"To apply: llmmeter policy promote {args.file} (add --write to write the file)")
    return 1 if to_change else 0


def _read_text(path: str) -> tuple[bytes, str]:
    """The policy file as it is now: the bytes the write compares against, and their text."""
    try:
        raw, _ = read_config(path, "policy file")  # as RulePolicy.load: a regular file only
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError:  # RulePolicy.load read it as UTF-8: it changed since
        raise changed(path) from None


def _change_words(status: RuleStatus) -> str:
    step = status.recommendation
    old_sample = "all" if status.rule.sample >= 1.0 else sample_text(status.rule.sample)
    new_sample = "all" if step.sample is None or step.sample >= 1.0 else sample_text(step.sample)
    return (
        f"{status.rule.name}: {step.action} {status.mode} (sample {old_sample}) -> "
        f"{step.mode} (sample {new_sample}): {step.reason}"
    )


def _policy_promote(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy promote``: make the recommended steps in the policy file."""
    _load(args.file)  # the file's mistakes, worded as the running processes would say them
    raw, text = _read_text(args.file)
    try:  # decide on exactly the bytes the write will compare against, not an earlier read
        policy = RulePolicy.from_dict(tomllib.loads(text), source=args.file)
    except (ConfigError, tomllib.TOMLDecodeError, RecursionError):  # valid a moment ago
        raise changed(args.file) from None
    statuses = _statuses(args, policy)
    index_of = {rule.name: index for index, rule in enumerate(policy.rules)}
    changes = {
        index_of[status.rule.name]: status.recommendation
        for status in statuses
        if status.recommendation.changes
    }
    try:
        edited = edit_policy(text, changes) if changes else text
    except (EditError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot edit {args.file} safely: {exc}; edit it by hand") from None
    try:
        RulePolicy.from_dict(tomllib.loads(edited), source=args.file)
    except ConfigError as exc:  # never write a file the processes would refuse
        raise UsageError(f"the edited policy would be invalid, nothing written: {exc}") from None
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            edited.splitlines(keepends=True),
            fromfile=args.file,
            tofile=f"{args.file} (promoted)",
        )
    )
    written = False
    if changes and args.write:
        write_atomically(args.file, edited.encode("utf-8"), raw)
        written = True
    if args.json:
        doc = {
            "file": args.file,
            "source": args.source.describe(),
            "window": args.window,
            "changes": [
                {
                    "rule": status.rule.name,
                    "action": status.recommendation.action,
                    "from": {"mode": status.mode, "sample": status.rule.sample},
                    "to": {
                        "mode": status.recommendation.mode,
                        "sample": status.recommendation.sample,
                    },
                    "reason": status.recommendation.reason,
                }
                for status in statuses
                if status.recommendation.changes
            ],
            "unchanged": [
                {
                    "rule": status.rule.name,
                    "action": status.recommendation.action,
                    "reason": status.recommendation.reason,
                }
                for status in statuses
                if not status.recommendation.changes
            ],
            "diff": diff,
            "written": written,
        }
        out(json.dumps(doc, indent=2))
        return 1 if changes and not written else 0
    out(_heading(args))
    for status in statuses:
        if status.recommendation.changes:
            out(_change_words(status))
        else:
            out(f"{status.rule.name}: unchanged: {status.recommendation.reason}")
    if not changes:
        out("Nothing to change.")
        return 0
    out(diff.rstrip("\n"))
    if written:
        out(f"Wrote {args.file}; running processes load it at their next reload.")
        return 0
    out(f"Nothing was written; add --write to write {args.file}.")
    return 1


# --- the parsers ----------------------------------------------------------------------------


def _parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return value


def _parse_rate(text: str) -> float:
    return parse_number(text, "a fraction from 0 to 1", lambda value: 0.0 <= value <= 1.0)


def _parse_steps(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(part) for part in text.split(","))
    except ValueError:
        steps = ()
    if (
        not steps
        or any(not 0.0 < step <= 1.0 for step in steps)
        or list(steps) != sorted(set(steps))
    ):
        raise argparse.ArgumentTypeError(
            f"expected increasing fractions in (0, 1] separated by commas, such as "
            f"0.05,0.25,0.5,1; got {text!r}"
        )
    return steps if steps[-1] == 1.0 else (*steps, 1.0)


def _parse_timeout(text: str) -> float:
    return parse_number(
        text, "seconds (a number > 0)", lambda value: value > 0 and math.isfinite(value)
    )


def _add_evidence_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help=(
            "base URL of the Prometheus that scrapes the fleet "
            f"(default: ${LLMMETER_PROMETHEUS_URL})"
        ),
    )
    source.add_argument(
        "--otlp",
        nargs="+",
        metavar="FILE",
        help="OTLP JSON metrics files from the collector's file exporter instead ('-': stdin)",
    )
    parser.add_argument(
        "--window",
        type=parse_window,
        default=DEFAULT_WINDOW,
        help=f"how far back to count, such as 1h, 24h or 7d (default: {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--rule", action="append", metavar="NAME", help="only this rule (repeatable)"
    )
    parser.add_argument(
        "--min-evaluations",
        type=_parse_count,
        default=DEFAULT_MIN_EVALUATIONS,
        metavar="N",
        help=f"evaluations a rule needs before it is promoted (default: {DEFAULT_MIN_EVALUATIONS})",
    )
    parser.add_argument(
        "--max-fallback-rate",
        type=_parse_rate,
        default=DEFAULT_MAX_FALLBACK_RATE,
        metavar="RATE",
        help=(
            "fallbacks per routed call above which an enforced rule is demoted, and at or "
            f"below which its sample may grow (default: {DEFAULT_MAX_FALLBACK_RATE})"
        ),
    )
    parser.add_argument(
        "--steps",
        type=_parse_steps,
        default=DEFAULT_STEPS,
        metavar="S1,S2,...",
        help="the samples a promoted rule goes through (default: 0.05,0.25,0.5,1)",
    )
    parser.add_argument(
        "--timeout",
        type=_parse_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds each Prometheus query may take (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


_STATUS_EPILOG = """\
examples:
  llmmeter policy status policy.toml --prometheus http://prometheus:9090
  llmmeter policy status policy.toml --prometheus http://prometheus:9090 --window 24h
  llmmeter policy status policy.toml --otlp metrics.json --window 7d
"""

_PROMOTE_EPILOG = """\
examples:
  llmmeter policy promote policy.toml --prometheus http://prometheus:9090          the diff
  llmmeter policy promote policy.toml --prometheus http://prometheus:9090 --write  write it
"""


def add_status_parsers(subcommands: Any) -> None:
    """``llmmeter policy status`` and ``llmmeter policy promote``."""
    status = subcommands.add_parser(
        "status",
        help="per rule, the fleet's evidence over a window and the recommended next step",
        description=(
            "Per rule of the policy file: calls, evaluations, agreement with its Wilson lower\n"
            "bound, fallback rate and savings, summed over every process (Prometheus, or OTLP\n"
            "JSON metrics files), and a recommendation: keep, promote or demote."
        ),
        epilog=_STATUS_EPILOG
        + "\n"
        + exit_codes((0, "no rule needs a change"), (1, "some rule should be promoted or demoted")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=os.environ.get("LLMMETER_POLICY") or None,
        help="the TOML policy file (default: $LLMMETER_POLICY)",
    )
    _add_evidence_options(status)
    status.set_defaults(handler=_policy_status, prog=status.prog)

    promote = subcommands.add_parser(
        "promote",
        help="make the recommended steps in the policy file (shadow -> canary -> enforce)",
        description=(
            "Apply status's recommendations to the policy file: a rule whose agreement\n"
            "meets its target goes from shadow to enforce at a canary sample, then up the\n"
            "steps to every call; one that falls short goes back to shadow. Only the rules'\n"
            "mode and sample lines change. Prints the diff; --write replaces the file\n"
            "atomically, and running processes reload it."
        ),
        epilog=_PROMOTE_EPILOG
        + "\n"
        + exit_codes(
            (0, "nothing to change, or the file was written"),
            (1, "changes to make, not written (no --write), as diff does"),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("file", metavar="FILE", help="the TOML policy file")
    _add_evidence_options(promote)
    promote.add_argument(
        "--write", action="store_true", help="write the file (default: only print the diff)"
    )
    promote.set_defaults(handler=_policy_promote, prog=promote.prog)
