"""``llmmeter policy check`` and ``llmmeter policy explain``: routing-policy files from a shell.

``check`` validates a policy file as ``instrument()`` would and lists its rules; ``explain``
runs the file's rules on a call built the way the instrumentation builds its view of a
request, so its decision is the one a real call would get, and prices both sides of it with
the price layer spans use. The shared parser and number helpers live in ``common``, tables
in ``table``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from llmmeter._config import LLMMETER_PROMETHEUS_URL, resolve_settings
from llmmeter._policy import CallView, stable_fraction
from llmmeter._pricing import Cost, PriceTable
from llmmeter._rules import APIS, MODES, Explanation, Rule, RulePolicy, describe
from llmmeter._spend import FixedSpend
from llmmeter._usage import CHAT, COMPLETIONS, RESPONSES, Usage
from llmmeter.exceptions import ConfigError

from . import inputs, table
from .common import (
    Query,
    UsageError,
    Writer,
    exit_codes,
    format_cost,
    parse_date,
    parse_number,
    parse_tokens,
    plural,
)

# --- `policy check` and `policy explain` -------------------------------------------------

DEFAULT_OUTPUT_TOKENS: Final = 256
"""Output tokens per call that ``policy explain`` assumes for its cost estimate."""
CALLS_PER_ESTIMATE: Final = 1_000_000
# What `explain` puts in a request for --tools and --images: a stand-in, never sent anywhere.
_IMAGE_URL: Final = "https://example.com/image.png"
_TOOL_NAME: Final = "lookup"


def _load_policy(path: str, mode: str | None) -> tuple[RulePolicy, RulePolicy]:
    """(the policy in force, the policy as the file says): they differ only under --mode.

    ``LLMMETER_POLICY_MODE`` is deliberately not read: the command shows the file, and
    ``--mode`` shows what an override would change.
    """
    try:
        written = RulePolicy.load(path)
        return (written.with_mode(mode) if mode is not None else written), written
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def _conditions(rule: Rule) -> list[str]:
    """A rule's conditions beyond ``from``, in words; only those that differ from the default."""
    parts: list[str] = []
    if rule.daily_budget_usd is not None:
        parts.append(f"fleet 24 h spend over {format_cost(rule.daily_budget_usd)}")
    if rule.apis is not None:
        parts.append("apis " + ", ".join(sorted(rule.apis)))
    if rule.tasks is not None:
        parts.append("tasks " + ", ".join(sorted(rule.tasks)))
    if rule.prompt:
        parts.append("prompt " + " or ".join(f"/{pattern}/" for pattern in rule.prompt))
    low, high = rule.min_input_tokens, rule.max_input_tokens
    if low is not None and high is not None:
        parts.append(f"input {low:,}-{high:,} tokens")
    elif low is not None:
        parts.append(f"input >= {low:,} tokens")
    elif high is not None:
        parts.append(f"input <= {high:,} tokens")
    if rule.max_output_tokens is not None:
        parts.append(f"output cap <= {rule.max_output_tokens:,} tokens")
    if not rule.allow_tools:
        parts.append("no tools")
    if not rule.allow_images:
        parts.append("no images")
    if not rule.allow_response_format:
        parts.append("no structured output")
    if rule.evaluate > 0.0:
        parts.append(
            f"evaluate {_percent(rule.evaluate)} ({rule.comparator.name}, "
            f"target {_percent(rule.agreement_target)})"
        )
    return parts


def _rule_json(policy: RulePolicy, rule: Rule) -> dict[str, Any]:
    guard = (
        {"when_spend_over": {"daily_budget_usd": rule.daily_budget_usd}}
        if rule.daily_budget_usd is not None
        else {}
    )
    return {
        "name": rule.name,
        "from": list(rule.models),
        "to": rule.to,
        "mode": policy.rule_mode(rule),
        "own_mode": rule.mode,
        "apis": sorted(rule.apis) if rule.apis is not None else None,
        "tasks": sorted(rule.tasks) if rule.tasks is not None else None,
        "prompt": list(rule.prompt),
        "min_input_tokens": rule.min_input_tokens,
        "max_input_tokens": rule.max_input_tokens,
        "max_output_tokens": rule.max_output_tokens,
        "allow_tools": rule.allow_tools,
        "allow_images": rule.allow_images,
        "allow_response_format": rule.allow_response_format,
        "sample": rule.sample,
        "evaluate": rule.evaluate,
        "compare": rule.comparator.name,
        "agreement_target": rule.agreement_target,
        **guard,
    }


def _mode_words(policy: RulePolicy, written: RulePolicy, override: str | None) -> str:
    if override is None:
        return policy.mode
    return f"{policy.mode} (--mode {override}; the file says {written.mode})"


def _policy_check(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy check``: validate a policy file and show what is in force."""
    policy, written = _load_policy(args.file, args.mode)
    rules = policy.rules
    routes_nothing = all(policy.rule_mode(rule) == "off" for rule in rules)
    if args.json:
        doc = {
            "file": args.file,
            "valid": True,
            "mode": policy.mode,
            "file_mode": written.mode,
            "mode_override": args.mode,
            "fallback": policy.fallback,
            "deployments": dict(policy.deployments),
            "routes_nothing": routes_nothing,
            "rules": [_rule_json(policy, rule) for rule in rules],
        }
        out(json.dumps(doc, indent=2))
        return 0

    order = " (the first rule a call matches decides)" if len(rules) > 1 else ""
    out(f"{args.file}: valid, {plural(len(rules), 'rule')}{order}")
    out(f"mode: {_mode_words(policy, written, args.mode)}")
    if policy.fallback == "on-error":
        out("fallback: on-error (a failed routed call is re-sent once to the requested model)")
    else:
        out("fallback: off (a routed call that fails raises its error)")
    deployments = ", ".join(f"{model} -> {name}" for model, name in policy.deployments.items())
    out(f"deployments: {deployments or 'none'}")
    if not rules:
        out("note: no rules, so this policy routes nothing")
        return 0
    rows: list[list[str]] = []
    own_mode = False
    for index, rule in enumerate(rules, 1):
        in_force = policy.rule_mode(rule)
        # marked: the rule's own mode is in force and differs from the policy-wide one above
        mark = "*" if rule.mode is not None and in_force == rule.mode != policy.mode else ""
        own_mode |= bool(mark)
        sample = "all" if rule.sample >= 1.0 else _percent(rule.sample)
        conditions = "; ".join(_conditions(rule)) or "any call"
        models = ", ".join(rule.models)
        rows.append([str(index), rule.name, models, rule.to, in_force + mark, sample, conditions])
    headers = ["#", "rule", "from", "to", "mode", "sample", "conditions"]
    for line in table.fit(table.columns(*headers, wrap=("rule", "from", "conditions")), rows):
        out(line)
    if own_mode:
        out("* the rule's own mode, not the policy's")
    if routes_nothing:
        out("note: every rule is off, so this policy routes nothing")
    if any(rule.daily_budget_usd is not None for rule in rules):
        out(
            "note: a rule with a fleet spend guard applies only while the fleet's 24 h spend, "
            "read from Prometheus, is over its budget; without a figure it does not apply"
        )
        if not os.environ.get(LLMMETER_PROMETHEUS_URL, "").strip():
            out(
                f"note: {LLMMETER_PROMETHEUS_URL} is not set here; instrument() refuses a "
                "policy with spend guards without it"
            )
    return 0


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        text: str = args.prompt
        return text
    path: str = args.prompt_file
    try:
        if path != "-":
            text = inputs.read_file(path, "--prompt-file").decode("utf-8")
            return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
        text = sys.stdin.read(inputs.MAX_FILE + 1)  # characters, not bytes: bounded all the same
    except UnicodeDecodeError:
        raise UsageError(f"--prompt-file {path}: expected UTF-8 text") from None
    if len(text) > inputs.MAX_FILE:
        raise UsageError(
            f"--prompt-file -: longer than {inputs.size_words(inputs.MAX_FILE)}, the most "
            "llmmeter reads of it"
        )
    return text


def _build_call(args: argparse.Namespace) -> CallView:
    """The view the instrumentation would build for the call the options describe."""
    api: str = args.api
    features = {
        "--system": args.system is not None,
        "--tools": args.tools,
        "--images": args.images,
        "--response-format": args.response_format,
    }
    if api == "completions":
        given = [flag for flag, on in features.items() if on]
        if given:
            raise UsageError(
                f"{given[0]} does not apply to --api completions (a legacy completion is one "
                "prompt string)"
            )
    prompt = _read_prompt(args)
    schema = {"type": "object", "properties": {}}
    kwargs: dict[str, Any] = {"model": args.model}
    endpoint, operation = CHAT, "chat"
    if api == "chat_completions":
        user: Any = prompt
        if args.images:
            image = {"type": "image_url", "image_url": {"url": _IMAGE_URL}}
            user = [{"type": "text", "text": prompt}, image]
        system = [{"role": "system", "content": args.system}] if args.system is not None else []
        kwargs["messages"] = [*system, {"role": "user", "content": user}]
        if args.tools:
            function = {"name": _TOOL_NAME, "parameters": schema}
            kwargs["tools"] = [{"type": "function", "function": function}]
        if args.response_format:
            kwargs["response_format"] = {"type": "json_object"}
        cap = "max_completion_tokens"
    elif api == "responses":
        endpoint = RESPONSES
        if args.images:
            parts = [
                {"type": "input_text", "text": prompt},
                {"type": "input_image", "image_url": _IMAGE_URL},
            ]
            kwargs["input"] = [{"role": "user", "content": parts}]
        else:
            kwargs["input"] = prompt
        if args.system is not None:
            kwargs["instructions"] = args.system
        if args.tools:
            kwargs["tools"] = [{"type": "function", "name": _TOOL_NAME, "parameters": schema}]
        if args.response_format:
            kwargs["text"] = {"format": {"type": "json_object"}}
        cap = "max_output_tokens"
    else:
        endpoint, operation = COMPLETIONS, "text_completion"
        kwargs["prompt"] = prompt
        cap = "max_tokens"
    if args.max_output_tokens is not None:
        kwargs[cap] = args.max_output_tokens
    return CallView(
        endpoint=endpoint,
        operation=operation,
        model=args.model,
        kwargs=kwargs,
        task=args.task,
        key=args.key,
    )


def _describe_call(call: CallView) -> str:
    parts = [
        call.api,
        f"model {call.model}",
        "no task" if call.task is None else f"task {call.task}",
        "no key" if call.key is None else f"key {call.key!r}",
        f"~{call.input_tokens:,} input tokens (estimate)",
    ]
    if call.tools:
        parts.append("offers tools")
    if call.images:
        parts.append("image input")
    if call.response_format:
        parts.append("structured output")
    if call.max_output_tokens is not None:
        parts.append(f"output cap {call.max_output_tokens:,} tokens")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What ``explain`` decided, in the terms the output uses."""

    model: str
    """The model the call asks for."""
    rule: Rule | None = None
    """The rule that decides: the first that matches and is not off."""
    mode: str | None = None
    """The deciding rule's mode in force (``enforce`` or ``shadow``)."""
    target: str | None = None
    """Where the deciding rule sends calls, unless that is the requested model."""
    share: float = 0.0
    """The fraction of calls like this one that go to ``target``: 1 or 0 with a key (or no
    sampling), the rule's ``sample`` when each call is drawn on its own."""
    position: float | None = None
    """Where the key falls for a sampled rule (``stable_fraction``), if there is a key."""

    @property
    def routed(self) -> bool | None:
        """Whether this call is routed; ``None`` when it depends on a per-call draw."""
        if self.target is None or self.share <= 0.0:
            return False
        return True if self.share >= 1.0 else None

    @property
    def model_sent(self) -> str | None:
        """The model the request goes out with; ``None`` when a per-call draw decides."""
        routed = self.routed
        if routed is None:
            return None
        return self.target if routed and self.mode == "enforce" else self.model


def _outcome(policy: RulePolicy, found: Explanation, call: CallView) -> _Outcome:
    rule = found.rule
    if rule is None:
        return _Outcome(call.model)
    mode = policy.rule_mode(rule)
    if rule.to == call.model:
        return _Outcome(call.model, rule, mode)
    position = None
    if 0.0 < rule.sample < 1.0 and call.key is not None:
        position = stable_fraction(rule.name, call.key)
    share = 1.0 if found.route is not None else 0.0
    if found.in_sample is None:  # a sampled rule and no key: each call is drawn on its own
        share = rule.sample
    return _Outcome(call.model, rule, mode, rule.to, share, position)


def _decision_words(
    outcome: _Outcome, found: Explanation, call: CallView, fallback: bool
) -> list[str]:
    """The decision in sentences: which rule, why, where the call goes, under which mode."""
    rule, model, target = outcome.rule, call.model, outcome.target
    if rule is None:
        if any(reason is None for _, reason in found.verdicts):
            return [f"Decision: every rule that matches is off; the call stays on {model}."]
        return [f"Decision: no rule matches; the call stays on {model}."]
    skipped = False  # a rule before it matches too, but is off
    for each, reason in found.verdicts:
        if each is rule:
            break
        skipped |= reason is None
    which = "the first rule that matches and is not off" if skipped else "the first that matches"
    first = f"Decision: rule {rule.name} ({which})"
    if target is None:
        return [f"{first} routes to {model}, the model requested: the call stays on it."]
    if rule.sample <= 0.0:
        return [
            f"{first} has sample = 0, so it routes no calls: the call stays on {model}, and "
            "the rules after it are not tried."
        ]
    verb = "routes" if outcome.mode == "enforce" else "would route"
    sample = _percent(rule.sample)
    if rule.sample >= 1.0:
        decision = f"{first} {verb} the call to {target}."
    elif outcome.position is None:
        decision = (
            f"{first} {verb} {sample} of such calls to {target} and leaves the rest on "
            f"{model}. Without --key each call is drawn on its own; give --key to see the "
            "decision for a conversation."
        )
    elif not outcome.routed:
        return [
            f"{first} {verb} {sample} of calls to {target}, but key {call.key!r} falls "
            f"outside that canary (position {outcome.position:.4f}, not below "
            f"{rule.sample:g}): the call stays on {model}, and the rules after it are not "
            "tried."
        ]
    else:
        decision = (
            f"{first} {verb} the call to {target}: key {call.key!r} falls inside its "
            f"{sample} canary (position {outcome.position:.4f}, below {rule.sample:g}); the "
            "same key gets the same decision in every process."
        )
    if outcome.mode == "shadow":
        mode = (
            f"Mode: shadow: the request goes out unchanged to {model}; the span records the "
            "route and what it would save."
        )
    else:
        again = f"; if it fails it is re-sent once to {model}" if fallback else ""
        mode = f"Mode: enforce: the request goes out to {target}{again}."
    return [decision, mode]


def _cost_json(name: str, cost: Cost | None) -> dict[str, Any]:
    if cost is None:
        return {
            "model": name,
            "known": False,
            "resolved_model": None,
            "ref": None,
            "per_call": None,
            "per_1m_calls": None,
        }
    return {
        "model": name,
        "known": True,
        "resolved_model": cost.model,
        "ref": cost.ref,
        "per_call": {
            "input": round(cost.input, 12),
            "output": round(cost.output, 12),
            "total": round(cost.total, 12),
        },
        "per_1m_calls": round(cost.total * CALLS_PER_ESTIMATE, 6),
    }


def _saving_words(outcome: _Outcome, saving: float) -> str:
    """The saving per call and per 1M calls; an "extra cost" when the target costs more."""
    more = saving < 0
    amount = format_cost(abs(saving))
    per_million = format_cost(abs(saving) * CALLS_PER_ESTIMATE)
    label = "Extra cost" if more else "Saving"
    if outcome.mode == "shadow" and outcome.share > 0:
        label += " (shadow mode: reported on spans, not realised)"
    if outcome.share >= 1.0:
        return f"{label}: {amount} per call, {per_million} per 1M calls."
    if outcome.share <= 0.0:
        would = f"cost {amount} more" if more else f"save {amount}"
        return (
            f"{label}: none for this call; a routed call would {would} "
            f"({per_million} per 1M routed calls)."
        )
    expected = format_cost(abs(saving) * outcome.share * CALLS_PER_ESTIMATE)
    return (
        f"{label}: {amount} per routed call; with {_percent(outcome.share)} of calls routed, "
        f"{expected} per 1M calls like this one."
    )


def _verdict(
    policy: RulePolicy,
    found: Explanation,
    rule: Rule,
    reason: str | None,
    call: CallView,
    *,
    spend: float | None,
) -> str:
    if reason is not None:
        return describe(rule, reason, call, spend)
    if rule is found.rule:
        return "matches: this rule decides"
    if policy.rule_mode(rule) == "off":
        return "matches, but the rule is off"
    assert found.rule is not None  # a matching rule that is on and does not decide comes later
    return f"matches, but rule {found.rule.name} comes first"


@dataclass(frozen=True, slots=True)
class _Estimate:
    """The cost of one call like the explained one, at the requested model and the target."""

    query: Query
    usage: Usage
    requested: Cost | None
    target: Cost | None

    @property
    def saving(self) -> float | None:
        """Requested minus target cost per routed call; ``None`` when either has no price."""
        if self.requested is None or self.target is None:
            return None
        return self.requested.total - self.target.total


def _policy_explain(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy explain``: every rule's verdict on one call, the decision, its cost."""
    call = _build_call(args)
    policy, written = _load_policy(args.file, args.mode)
    try:
        prices = PriceTable.load(resolve_settings(prices=args.prices).prices_path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    day: date = args.date or datetime.now(UTC).date()
    query = Query(table=prices, day=day, service_tier=None, batch=False)
    found = policy.explain(call, FixedSpend(args.spend))
    outcome = _outcome(policy, found, call)
    usage = Usage(input_tokens=call.input_tokens, output_tokens=args.output_tokens)
    target = outcome.target
    estimate = _Estimate(
        query=query,
        usage=usage,
        requested=prices.price(usage, (call.model,), when=query.when),
        target=prices.price(usage, (target,), when=query.when) if target else None,
    )
    verdicts = [
        (rule, reason, _verdict(policy, found, rule, reason, call, spend=args.spend))
        for rule, reason in found.verdicts
    ]
    if args.json:
        doc = {
            "file": args.file,
            "mode": policy.mode,
            "mode_override": args.mode,
            "fleet_spend_usd": args.spend,
            "call": {
                "api": call.api,
                "model": call.model,
                "task": call.task,
                "key": call.key,
                "input_tokens": call.input_tokens,
                "output_tokens": usage.output_tokens,
                "tools": call.tools,
                "images": call.images,
                "response_format": call.response_format,
                "max_output_tokens": call.max_output_tokens,
            },
            "rules": [
                {
                    "name": rule.name,
                    "to": rule.to,
                    "mode": policy.rule_mode(rule),
                    "matches": reason is None,
                    "decides": rule is found.rule,
                    "reason": reason,
                    "explanation": words,
                }
                for rule, reason, words in verdicts
            ],
            "decision": _decision_json(outcome),
            "cost": _estimate_json(outcome, estimate),
        }
        out(json.dumps(doc, indent=2))
        return 0

    out(f"Policy: {args.file}, mode {_mode_words(policy, written, args.mode)}")
    out(f"Call: {_describe_call(call)}")
    if any(rule.daily_budget_usd is not None for rule in policy.rules):
        spend = "unknown (give --spend)" if args.spend is None else format_cost(args.spend)
        out(f"Fleet 24 h spend: {spend}")
    rows = [
        [str(index), rule.name, rule.to, policy.rule_mode(rule), words]
        for index, (rule, _, words) in enumerate(verdicts, 1)
    ]
    if rows:
        headers = table.columns("#", "rule", "to", "mode", "verdict", wrap=("rule", "verdict"))
        for line in table.fit(headers, rows):
            out(line)
    else:
        out("The policy has no rules.")
    for line in _decision_words(outcome, found, call, policy.fallback == "on-error"):
        out(line)
    for line in _estimate_words(outcome, estimate):
        out(line)
    return 0


def _decision_json(outcome: _Outcome) -> dict[str, Any]:
    rule = outcome.rule
    return {
        "rule": rule.name if rule else None,
        "target": outcome.target,
        "mode": outcome.mode,
        "routed": outcome.routed,
        "model_sent": outcome.model_sent,
        "routed_share": outcome.share,
        "sample": rule.sample if rule else None,
        "key_position": outcome.position,
    }


def _estimate_json(outcome: _Outcome, estimate: _Estimate) -> dict[str, Any]:
    saving = estimate.saving
    target = outcome.target
    return {
        **estimate.query.header(),
        "input_tokens": estimate.usage.input_tokens,
        "output_tokens": estimate.usage.output_tokens,
        "requested": _cost_json(outcome.model, estimate.requested),
        "target": _cost_json(target, estimate.target) if target else None,
        "saving_per_routed_call": round(saving, 12) if saving is not None else None,
        "saving_per_1m_calls": (
            round(saving * outcome.share * CALLS_PER_ESTIMATE, 6) if saving is not None else None
        ),
    }


def _estimate_words(outcome: _Outcome, estimate: _Estimate) -> list[str]:
    usage = estimate.usage
    lines = [
        f"Estimated cost per call: ~{usage.input_tokens:,} input and {usage.output_tokens:,} "
        f"output tokens, prices of {estimate.query.day.isoformat()}"
    ]
    rows: list[list[str]] = []
    for role, name, cost in (
        ("requested", outcome.model, estimate.requested),
        ("target", outcome.target, estimate.target),
    ):
        if name is None:
            continue
        if cost is None:
            rows.append([role, name, estimate.query.unpriced(name)])
        else:
            per_million = format_cost(cost.total * CALLS_PER_ESTIMATE)
            rows.append([role, name, format_cost(cost.total), per_million, cost.model, cost.ref])
    headers = ("", "model", "per call", "per 1M calls", "priced as", "source")
    lines += table.fit(table.columns(*headers, wrap=("model", "priced as", "source")), rows)
    if outcome.target is not None:
        saving = estimate.saving
        if saving is None:
            unpriced = outcome.model if estimate.requested is None else outcome.target
            lines.append(f"Saving: unknown, since {unpriced} has no price.")
        else:
            lines.append(_saving_words(outcome, saving))
    return lines


def _parse_usd(text: str) -> float:
    return parse_number(
        text, "US dollars (a number >= 0)", lambda value: value >= 0 and math.isfinite(value)
    )


_CHECK_EPILOG = """\
examples:
  llmmeter policy check policy.toml
  llmmeter policy check policy.toml --mode shadow     what LLMMETER_POLICY_MODE=shadow changes
"""

_EXPLAIN_EPILOG = """\
examples:
  llmmeter policy explain policy.toml --model gpt-4o --task classify --prompt "Classify: ..."
  llmmeter policy explain policy.toml --model gpt-4o --prompt-file prompt.txt --key user-42
"""


def add_policy_parsers(commands: Any) -> tuple[Any, Any]:
    """``llmmeter policy check`` and ``explain``; returns the ``policy`` parser and its
    subcommands, where the parser root adds ``status`` and ``promote`` (module ``status``)."""
    policy = commands.add_parser(
        "policy",
        help="check or explain a routing policy file; its rules' status; promote them",
        description=(
            "Check a routing policy file (check), explain what it decides for a call\n"
            "(explain), show how each rule does across the fleet (status), and make the\n"
            "recommended step in the file (promote)."
        ),
        epilog=exit_codes(
            (0, "done"),
            (1, "status: some rule should change; promote: changes not written"),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = policy.add_subparsers(dest="policy_command", metavar="COMMAND")
    mode_help = (
        "override the file's mode and every rule's (a rule set to off stays off), as "
        "LLMMETER_POLICY_MODE does; the variable itself is not read here"
    )
    check = subcommands.add_parser(
        "check",
        help="validate a policy file and show its rules",
        description=(
            "Validate a policy file exactly as instrument() does and show what is in force:\n"
            "mode, fallback, deployments and the rules in order. An invalid file gives one\n"
            "error line naming the key, and exit code 2."
        ),
        epilog=_CHECK_EPILOG + "\n" + exit_codes((0, "the file is valid")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the TOML policy file")
    check.add_argument("--mode", choices=MODES, help=mode_help)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_policy_check, prog=check.prog)

    explain = subcommands.add_parser(
        "explain",
        help="show which rule decides a call, where it goes and what that saves",
        description=(
            "Build the call the options describe, the way the instrumentation sees a request,\n"
            "run the policy's rules on it and show each rule's verdict, the decision, and the\n"
            "estimated cost per call at the requested model and at the target (prices from\n"
            "the bundled data plus --prices or LLMMETER_PRICES)."
        ),
        epilog=_EXPLAIN_EPILOG
        + "\n"
        + exit_codes((0, "explained (also when no rule matches or a model has no price)")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("file", metavar="FILE", help="the TOML policy file")
    explain.add_argument("--model", required=True, help="the model the call asks for")
    prompt = explain.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="the user prompt")
    prompt.add_argument(
        "--prompt-file", metavar="PATH", help="read the user prompt from a file ('-': stdin)"
    )
    explain.add_argument("--task", help="the llmmeter.task label the call runs under")
    explain.add_argument(
        "--key", help="the stickiness key (llmmeter.task key, prompt_cache_key or user)"
    )
    explain.add_argument(
        "--api", choices=APIS, default="chat_completions", help="default: chat_completions"
    )
    explain.add_argument(
        "--system", metavar="TEXT", help="a system message (instructions for responses)"
    )
    explain.add_argument("--tools", action="store_true", help="the call offers a tool")
    explain.add_argument("--images", action="store_true", help="the call has an image input")
    explain.add_argument(
        "--response-format", action="store_true", help="the call asks for JSON output"
    )
    explain.add_argument(
        "--max-output-tokens",
        type=parse_tokens,
        metavar="N",
        help="the call's cap on output tokens (default: none)",
    )
    explain.add_argument(
        "--output-tokens",
        type=parse_tokens,
        default=DEFAULT_OUTPUT_TOKENS,
        metavar="N",
        help=f"output tokens per call for the cost estimate (default: {DEFAULT_OUTPUT_TOKENS})",
    )
    explain.add_argument("--mode", choices=MODES, help=mode_help)
    explain.add_argument(
        "--spend",
        type=_parse_usd,
        metavar="USD",
        help=(
            "the fleet's 24 h spend that when_spend_over guards compare with their budgets "
            "(default: unknown, so guarded rules do not apply, as in a process that has no "
            "figure from Prometheus)"
        ),
    )
    explain.add_argument(
        "--date",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="price as on this day, UTC (default: today)",
    )
    explain.add_argument(
        "--prices", metavar="FILE", help="TOML price overrides file (default: $LLMMETER_PRICES)"
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(handler=_policy_explain, prog=explain.prog)
    return policy, subcommands
