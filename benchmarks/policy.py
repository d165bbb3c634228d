"""Cost of one routing decision: building the ``CallView`` and ``RulePolicy.decide``.

Measured as the instrumentation makes it (``_routing.Router.route``): a fresh view per call, its
task and key read from ``llmmeter.task``'s context variables, then the decision. The policy is a
realistic 10-rule TOML file (model globs with dated snapshots, tasks, ``(?i)`` word-boundary
prompt patterns, token limits, ``allow_tools = false``, a 25% canary), and the calls carry a
~2 KB chat prompt (a system message and a user message).

The targets: a decision with 10 rules over a 2 KB prompt costs at most a few microseconds
when nothing matches and stays well under 20 microseconds with regex rules. Each median is
marked PASS (at or below its target) or OVER TARGET; timings are reported, never asserted
(the exit status is 0 either way).

Then the worst cases (issue 18), against a target of about a millisecond per decision:
1 MB prompts, the issue's ``(a+)+$`` (under Python's ``re`` its prompt of 29 characters
never returned; prompt patterns now run under RE2), and the costliest pattern we know that
the loader accepts, on a text built against it. Their figures are in docs/performance.md.

    python benchmarks/policy.py [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

ROUNDS = 7
FEW_US = 5.0
"""'At most a few microseconds': the target of the cases that run no prompt pattern."""
REGEX_US = 20.0
"""'Well under 20 microseconds': the target of the cases that scan the prompt."""

POLICY_TOML = r"""
mode = "enforce"
fallback = "on-error"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["classify", "tag", "route-ticket"]

[[rules]]
name = "extract-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*", "gpt-4-turbo*"]
to = "gpt-4o-mini"
tasks = ["extract"]
allow_tools = false

[[rules]]
name = "short-to-nano"
from = ["gpt-4o-mini", "gpt-4o-mini-2024-*"]
to = "gpt-4.1-nano"
max_input_tokens = 300

[[rules]]
name = "translate-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
prompt = [
  '(?i)\btranslate\b',
  '(?i)\b(?:into|to) (?:french|german|spanish|japanese|portuguese)\b',
]

[[rules]]
name = "small-talk"
from = ["gpt-4o*", "gpt-4.1-mini*"]
to = "gpt-4.1-nano"
max_input_tokens = 200
prompt = ['(?i)^\s*(?:hi|hello|hey|thanks|thank you)\b']

[[rules]]
name = "summarise-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*", "o1", "o1-2024-*"]
to = "gpt-4o-mini"
allow_tools = false
prompt = [
  '(?i)\bsummari[sz]e\b',
  '(?i)\btl;?dr\b',
  '(?i)\bin (?:one|two|three|a few) sentences?\b',
]

[[rules]]
name = "reasoning-lint"
from = ["o1", "o1-2024-*", "o3", "o3-2025-*"]
to = "o4-mini"
tasks = ["lint", "format"]

[[rules]]
name = "grammar-to-nano"
from = ["gpt-4o*"]
to = "gpt-4.1-nano"
apis = ["chat_completions", "responses"]
prompt = [
  '(?i)\b(?:fix|correct|check) (?:the |my )?(?:grammar|spelling|typos?)\b',
  '(?i)\bproofread\b',
]

[[rules]]
name = "mini-canary"
from = ["gpt-4o-mini", "gpt-4o-mini-2024-*"]
to = "gpt-4.1-mini"
sample = 0.25

[[rules]]
name = "legacy-to-current"
from = ["gpt-4-0613", "gpt-4-turbo*", "gpt-3.5-turbo*"]
to = "gpt-4o-mini"
"""

SYSTEM = (
    "You are the customer support assistant for Northwind Outfitters, an online retailer of "
    "hiking, camping and climbing gear. Answer in a friendly, concise and professional tone. "
    "Use only the order and policy information provided in this conversation; if something "
    "is not there, say so and offer to hand the conversation over to a human agent. Never "
    "promise refunds, replacements or delivery dates that the policy below does not allow. "
    "Returns: unused items may be returned within 60 days of delivery with the original tags; "
    "worn footwear and opened fuel canisters cannot be returned. Exchanges are free within the "
    "United States and Canada. Refunds go back to the original payment method within five to "
    "seven business days after the warehouse receives the parcel. Shipping: standard orders "
    "leave the warehouse within two business days; expedited orders placed before noon Pacific "
    "time leave the same day. Warranty: tents, packs and sleeping bags carry a lifetime "
    "warranty against defects in materials and workmanship, not against wear and tear or "
    "accidents. When a customer is upset, acknowledge the problem before explaining the "
    "policy. Format answers as short paragraphs; use a bulleted list only for steps."
)
USER = (
    "Hi, I ordered the Ridgeline 45L backpack and a pair of Summit trail boots on the 3rd of "
    "last month (order NW-448213). The backpack arrived fine but one of the hip-belt buckles "
    "cracked on my second day out, and the boots are half a size too small, although I only "
    "wore them around the house for an afternoon to check. I would like to get the buckle "
    "fixed or the pack replaced, whichever is faster, because I have another trip planned in "
    "three weeks. For the boots, can I swap them for the next size up, and do I need to pay "
    "for the return label? I live in Vancouver, so I am not sure whether the free exchange "
    "applies to me. Also, the tracking page for my order still says 'label created' even "
    "though both parcels were delivered, which is a little confusing. What do I need to send "
    "you, and what happens next?"
)
USER_SUMMARY = USER + " Please summarize the steps for me in three sentences."
MB = 1_000_000
WORST_US = 1000.0
"""'About a millisecond': the target of a worst-case decision (issue 18)."""

ADVERSARIAL_TOML = r"""
[[rules]]
name = "issue-18"
from = ["gpt-4o"]
to = "gpt-4o-mini"
prompt = ['(a+)+$']

[[rules]]
name = "wide-ascii"
from = ["gpt-4o-2024-08-06"]
to = "gpt-4o-mini"
prompt = ['a[ab]{0,490}x']

[[rules]]
name = "wide-emoji"
from = ["gpt-4o-2024-11-20"]
to = "gpt-4o-mini"
prompt = ['\x{1F600}[\x{1F600}\x{1F601}]{0,190}x']
"""
"""``issue-18``: catastrophic under a backtracking engine. ``wide-*``: the costliest patterns
we know that the loader accepts, each just under its cap of places a match can be at. On a
random run of the repeated characters (after one 'x', to let the literal pre-check through),
RE2's automaton meets a new state at nearly every byte; the emoji's four UTF-8 bytes make
its 8,193-character window 32 KB."""


def _random(choices: str, length: int) -> str:
    import random

    rng = random.Random(18)
    return "".join(rng.choices(choices, k=length))


def _chat(user: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "temperature": 0.2,
    }


def _responses(user: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "input": [
            {"role": "system", "content": [{"type": "input_text", "text": SYSTEM}]},
            {"role": "user", "content": [{"type": "input_text", "text": user}]},
        ],
    }


class Case(NamedTuple):
    name: str
    endpoint: str
    model: str
    kwargs: Mapping[str, Any]
    task: str | None
    key: str | None
    rule: str | None
    """The rule expected to decide (``None``: none applies)."""
    target_us: float


CASES = (
    Case("no rule names the model", "chat", "gpt-4.1", _chat(USER), None, None, None, FEW_US),
    Case(
        "globs match, nothing else (regex scans)",
        "chat",
        "gpt-4o-2024-08-06",
        _chat(USER),
        None,
        None,
        None,
        REGEX_US,
    ),
    Case(
        "glob + task match (first rule)",
        "chat",
        "gpt-4o",
        _chat(USER),
        "classify",
        None,
        "classify-to-mini",
        FEW_US,
    ),
    Case(
        "prompt regex match",
        "chat",
        "gpt-4o",
        _chat(USER_SUMMARY),
        None,
        None,
        "summarise-to-mini",
        REGEX_US,
    ),
    Case(
        "sampled rule, sticky key",
        "chat",
        "gpt-4o-mini-2024-07-18",
        _chat(USER),
        "support-chat",
        "conv-7f3a9c1e-5b2d-4e8a-9d61-0c4b8e2f7a13",
        "mini-canary",  # routes or not, as the key falls inside its 25% or not
        REGEX_US,
    ),
    Case(
        "responses input list (regex scans)",
        "responses",
        "gpt-4o-2024-08-06",
        _responses(USER),
        None,
        None,
        None,
        REGEX_US,
    ),
)


class Worst(NamedTuple):
    name: str
    policy: str
    """``main`` (the 10-rule file) or ``adversarial``."""
    model: str
    text: Callable[[], str]
    rule: str | None
    calls: int


WORST = (
    Worst(
        "issue 18: (a+)+$ on 'a' * 28 + 'b'",
        "adversarial",
        "gpt-4o",
        lambda: "a" * 28 + "b",
        None,
        2000,
    ),
    Worst(
        "issue 18: (a+)+$ on 1 MB of 'a', then 'b'",
        "adversarial",
        "gpt-4o",
        lambda: "a" * MB + "b",
        None,
        50,
    ),
    Worst(
        "10 rules, globs match, 1 MB prompt",
        "main",
        "gpt-4o-2024-08-06",
        lambda: (USER + " ") * (MB // (len(USER) + 1)),
        None,
        50,
    ),
    Worst(
        "a[ab]{0,490}x on x + 1 MB of random a/b",
        "adversarial",
        "gpt-4o-2024-08-06",
        lambda: "x" + _random("ab", MB),
        None,
        20,
    ),
    Worst(
        "emoji {0,190} on x + 1 MB of random emoji",
        "adversarial",
        "gpt-4o-2024-11-20",
        lambda: "x" + _random("\U0001f600\U0001f601", MB),
        None,
        20,
    ),
)


def _worst_cases(
    folder: Path,
    main_policy: Any,
    view: Callable[[Case], Any],
    decision: Callable[[Callable[[Any], Any], Case], Callable[[], Any]],
    calls: int,
) -> dict[str, Any]:
    """Each of ``WORST``: its median and best microseconds per decision, and a verdict."""
    from llmmeter._rules import RulePolicy

    adversarial = folder / "adversarial.toml"
    adversarial.write_text(ADVERSARIAL_TOML, encoding="utf-8")
    policies = {"main": main_policy, "adversarial": RulePolicy.load(adversarial)}
    out: dict[str, Any] = {}
    for worst in WORST:
        chosen = policies[worst.policy]
        text = worst.text()
        kwargs = {"model": worst.model, "messages": [{"role": "user", "content": text}]}
        case = Case(worst.name, "chat", worst.model, kwargs, None, None, worst.rule, WORST_US)
        explained = chosen.explain(view(case))
        decider = explained.rule.name if explained.rule is not None else None
        if decider != worst.rule:
            raise SystemExit(f"{worst.name}: expected {worst.rule!r}; got {decider!r}")
        rounds = max(worst.calls * calls // 20_000, 3)
        median_us, best_us = _timings(decision(chosen.decide, case), rounds)
        out[worst.name] = {
            "median_us": round(median_us, 1),
            "best_us": round(best_us, 1),
            "target_us": WORST_US,
            "verdict": _mark(median_us, WORST_US),
            "prompt_chars": len(text),
        }
    return out


def _timings(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Median and best of ROUNDS rounds, microseconds per call."""
    rounds = []
    for _ in range(ROUNDS):
        gc.collect()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds), min(rounds)


def _mark(median_us: float, target_us: float) -> str:
    return "PASS" if median_us <= target_us else "OVER TARGET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import llmmeter
    from llmmeter._policy import CallView
    from llmmeter._rules import RulePolicy
    from llmmeter._task import current_key, current_task

    def view(case: Case) -> CallView:  # as _routing.Router.route builds it
        return CallView(
            endpoint=case.endpoint,
            operation="chat",
            model=case.model,
            kwargs=case.kwargs,
            task=current_task.get(),
            key=current_key.get(),
        )

    def decision(decide: Callable[[CallView], Any], case: Case) -> Callable[[], Any]:
        """One routing decision as a call makes it: a fresh view, then the policy."""
        endpoint, model, kwargs = case.endpoint, case.model, case.kwargs

        def fresh() -> Any:
            return decide(
                CallView(
                    endpoint=endpoint,
                    operation="chat",
                    model=model,
                    kwargs=kwargs,
                    task=current_task.get(),
                    key=current_key.get(),
                )
            )

        return fresh

    results: dict[str, Any] = {"calls": args.calls, "rounds": ROUNDS, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.toml"
        path.write_text(POLICY_TOML, encoding="utf-8")
        policy = RulePolicy.load(path)
        assert len(policy.rules) == 10
        decide = policy.decide

        for case in CASES:
            labelled = llmmeter.task(case.task, key=case.key) if case.task else nullcontext()
            with labelled:
                explained = policy.explain(view(case))
                decider = explained.rule.name if explained.rule is not None else None
                if decider != case.rule:
                    raise SystemExit(
                        f"{case.name}: expected {case.rule!r} to decide; got {decider!r}"
                    )
                route = decide(view(case))
                median_us, best_us = _timings(decision(decide, case), args.calls)
                results["cases"][case.name] = {
                    "median_us": round(median_us, 2),
                    "best_us": round(best_us, 2),
                    "target_us": case.target_us,
                    "verdict": _mark(median_us, case.target_us),
                    "rule": decider,
                    "route": route.model if route is not None else None,
                    "prompt_chars": len(view(case).prompt),
                }
                if case is CASES[1]:  # the worst no-match: every check of every rule runs
                    reused = partial(decide, view(case))
                    reused_median, reused_best = _timings(reused, args.calls)
                    results["fresh_vs_reused_view"] = {
                        "case": case.name,
                        "fresh_median_us": round(median_us, 2),
                        "reused_median_us": round(reused_median, 2),
                        "reused_best_us": round(reused_best, 2),
                        "view_and_extraction_us": round(median_us - reused_median, 2),
                    }

        results["worst"] = _worst_cases(Path(tmp), policy, view, decision, args.calls)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    chars = results["cases"][CASES[1].name]["prompt_chars"]
    print(
        f"CallView + RulePolicy.decide, 10 rules, {chars}-char prompt, "
        f"{args.calls} calls x {ROUNDS} rounds, us per decision"
    )
    print(
        f"targets: <= {FEW_US:g} us when no prompt pattern runs ('a few microseconds'), "
        f"< {REGEX_US:g} us with regex rules"
    )
    width = max(len(name) for name in results["cases"])
    for name, entry in results["cases"].items():
        outcome = entry["route"] or "no route"
        if entry["rule"] is not None:
            outcome = f"{outcome} ({entry['rule']})"
        print(
            f"  {name:<{width}}  median {entry['median_us']:6.2f}  best {entry['best_us']:6.2f}"
            f"  target {entry['target_us']:4g}  {entry['verdict']:<11}  -> {outcome}"
        )
    print(f"worst cases (issue 18), target about {WORST_US:g} us per decision:")
    width = max(len(name) for name in results["worst"])
    for name, entry in results["worst"].items():
        print(
            f"  {name:<{width}}  median {entry['median_us']:9.1f}  best {entry['best_us']:9.1f}"
            f"  {entry['verdict']}"
        )
    reuse = results["fresh_vs_reused_view"]
    print(
        f"  same 10 rules, {reuse['case']}: fresh view {reuse['fresh_median_us']:.2f} us, "
        f"view reused {reuse['reused_median_us']:.2f} us (so building the view and its lazy "
        f"prompt/token extraction cost {reuse['view_and_extraction_us']:.2f} us)"
    )


if __name__ == "__main__":
    main()
