"""The prompt pre-check (literal search before the regex) answers exactly as ``re.search``.

A rule's prompt patterns are not run at every position of a 2 KB prompt: llmmeter first looks
for the literal text a match must contain or start with (``_rules._scan``), in the prompt or
its aligned lower-cased copy (``_policy._fold``). That is only an optimisation, so it must
never change an answer: this file compares it with a plain ``regex.search`` on generated
patterns and texts (flags, groups, lookarounds, repeats, alternations and the characters
where case folding is treacherous), and on hand-picked cases.
"""

from __future__ import annotations

import random
import re

import pytest

from llmmeter import _rules
from llmmeter._policy import _fold
from llmmeter._rules import _patterns, _scan

# Characters whose case folding differs between str.lower() and re: long s, dotless i,
# dotted capital I (lowers to two characters), the Kelvin sign, sharp s, sigma, e acute.
TRICKY = ["\u017f", "\u0131", "\u0130", "\u212a", "\u00df", "\u03a3", "\u03c3", "\u00e9", "\u2019"]
ALPHA = [*"abcstikAIKS ;\n.-", *TRICKY]
WORDS = ["ab", "st", "kit", "sis", "Tik", "a b", "IKS", "ss", "\u017fit", "K", "\u0130s", "\u00e9t"]


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def atom(self, depth: int) -> str:
        rng = self.rng
        r = rng.random()
        if depth > 2 or r < 0.35:
            return re.escape(rng.choice(WORDS + ALPHA[:14]))
        if r < 0.45:
            return rng.choice([r"\b", r"\B", "^", "$", r"\A", r"\Z"])
        if r < 0.55:
            return rng.choice(["[a-c]", "[^s]", ".", r"\w", r"\s", "[Kk]", "[\u017fS]"])
        if r < 0.7:
            return "(?:" + "|".join(self.seq(depth + 1) for _ in range(rng.randint(2, 3))) + ")"
        if r < 0.75:
            return "(" + self.seq(depth + 1) + ")"
        if r < 0.8:
            return "(?" + rng.choice(["i", "-i", "a", "ai"]) + ":" + self.seq(depth + 1) + ")"
        if r < 0.85:
            look = rng.choice(["=", "!", "<=", "<!"])
            return "(?" + look + re.escape(rng.choice(WORDS[:6])) + ")"
        if r < 0.9:
            return "(?>" + self.seq(depth + 1) + ")"
        quantifier = rng.choice(["?", "*", "+", "{2}", "{1,2}", "??", "+?", "*+", "++"])
        return self.atom(depth + 1) + quantifier

    def seq(self, depth: int) -> str:
        return "".join(self.atom(depth) for _ in range(self.rng.randint(1, 4)))

    def pattern(self) -> str:
        body = "|".join(self.seq(0) for _ in range(self.rng.randint(1, 3)))
        return self.rng.choice(["", "(?i)", "(?i)", "(?m)", "(?s)", "(?a)", "(?ai)"]) + body

    def text(self) -> str:
        count = self.rng.randint(0, 40)
        return "".join(self.rng.choice(WORDS + ALPHA) for _ in range(count))


def _compiled(patterns: list[str]) -> tuple[re.Pattern[str], ...] | None:
    """The rule's regexes as the loader builds them (joined when safe), or None if invalid."""
    usable = []
    for pattern in patterns:
        try:
            if re.compile(pattern).search("") is None:
                usable.append(pattern)
        except re.error:
            continue
    if not usable:
        return None
    try:
        return _patterns("test", "prompt", usable)
    except Exception:
        return None


@pytest.mark.parametrize("probes", [64, 1])
@pytest.mark.parametrize("seed", range(4))
def test_prescan_agrees_with_re_search_on_generated_patterns(
    seed: int, probes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rules, "_MAX_PROBES", probes)  # 1: the many-candidates path too
    gen = _Generator(seed)
    checked = analysed = 0
    for _ in range(600):
        regexes = _compiled([gen.pattern() for _ in range(gen.rng.randint(1, 3))])
        if regexes is None:
            continue
        scans = [_scan(regex) for regex in regexes]
        analysed += sum(scan.branches is not None for scan in scans)
        for _ in range(8):
            text = gen.text()
            want = any(regex.search(text) for regex in regexes)
            got = any(scan.search(text, _fold(text)) for scan in scans)
            assert got == want, ([r.pattern for r in regexes], text)
            checked += 1
    assert checked > 3000
    assert analysed > 300, "the generated patterns must exercise the pre-check, not bypass it"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"(?i)\bclassify\b", "Please CLASSIFY this", True),
        (r"(?i)\bclassify\b", "reclassify this", False),
        (r"(?i)kit", "\u212ait", True),  # the Kelvin sign matches k case-insensitively
        (r"(?i)sit", "\u017fit", True),  # so does long s for s
        (r"(?i)is", "\u0130s", True),  # re folds dotted capital I to i; str.lower() differs
        (r"(?i)\bsentiment\b", "Sentiment \u2019of\u2019 this", True),
        (r"(?i)(?:positive|negative)\b", "It is NEGATIVE.", True),
        (r"\d{3}-\d{4}", "call 555-1234", True),  # no literal: the plain search
        (r"(?<=order )#\d+", "order #42", True),
        (r"(?i)translate (?:to|into) \w+", "Translate into French", True),
    ],
)
def test_prescan_hand_picked_cases(pattern: str, text: str, matches: bool) -> None:
    regex = re.compile(pattern)
    assert (regex.search(text) is not None) is matches
    assert _scan(regex).search(text, _fold(text)) is matches


def test_fold_refuses_texts_where_lowering_would_misalign() -> None:
    assert _fold("Hello") == "hello"
    assert _fold("caf\u00e9 \u212a") == "caf\u00e9 k"
    assert _fold("\u0130stanbul") is None  # lowers to two characters
    assert _fold("\u017fit") is None  # re folds long s to s; str.lower() does not
