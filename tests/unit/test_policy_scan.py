"""The prompt pre-check (literal search before RE2) answers exactly as a plain RE2 search.

A rule's prompt patterns do not run RE2 over every prompt: llmmeter first looks for literal
text that a match must contain or begin with (``_patterns.PromptPatterns.branches``, read
with Python's pattern parser), in the prompt or its aligned lower-cased copy
(``_policy._fold``), and tries RE2 only where a match can begin. That is only an
optimisation, so it must never change an answer: this file compares it with a plain RE2
search on generated patterns and texts (flags, groups, repeats, alternations, RE2-only syntax
and the characters where case folding is treacherous), and on hand-picked cases.
"""

from __future__ import annotations

import random
import re
import sys

import pytest
import re2

from llmmeter import _patterns
from llmmeter._patterns import PatternError, compile_prompt
from llmmeter._policy import _fold

# Characters whose case folding differs between str.lower(), re and RE2: long s, dotless i,
# dotted capital I (lowers to two characters), the Kelvin sign, sharp s, sigma, e acute.
TRICKY = ["\u017f", "\u0131", "\u0130", "\u212a", "\u00df", "\u03a3", "\u03c3", "\u00e9", "\u2019"]
ALPHA = [*"abcstikAIKS ;\n.-{},3", *TRICKY]
WORDS = ["ab", "st", "kit", "sis", "Tik", "a b", "IKS", "ss", "\u017fit", "K", "\u0130s", "\u00e9t"]


def _plain(patterns: list[str]) -> list[re2._Regexp]:
    options = re2.Options()
    options.log_errors = False
    return [re2.compile(pattern, options) for pattern in patterns]


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def atom(self, depth: int) -> str:
        rng = self.rng
        r = rng.random()
        if depth > 2 or r < 0.35:
            return re.escape(rng.choice(WORDS + ALPHA[:14]))
        if r < 0.45:
            return rng.choice([r"\b", r"\B", "^", "$", r"\A"])
        if r < 0.55:
            return rng.choice(["[a-c]", "[^s]", ".", r"\w", r"\s", "[Kk]", "[\u017fS]"])
        if r < 0.57:  # RE2-only syntax: the pattern then gets no pre-check
            return rng.choice([r"\pL", r"\x{e9}", r"\z"])
        if r < 0.7:
            return "(?:" + "|".join(self.seq(depth + 1) for _ in range(rng.randint(2, 3))) + ")"
        if r < 0.75:
            return "(" + self.seq(depth + 1) + ")"
        if r < 0.85:
            return "(?" + rng.choice(["i", "-i", "s", "is"]) + ":" + self.seq(depth + 1) + ")"
        if r < 0.88:
            return "k{,3}"  # a repeat for re, literal text for RE2
        quantifier = rng.choice(["?", "*", "+", "{2}", "{1,2}", "??", "+?"])
        return self.atom(depth + 1) + quantifier

    def seq(self, depth: int) -> str:
        return "".join(self.atom(depth) for _ in range(self.rng.randint(1, 4)))

    def pattern(self) -> str:
        body = "|".join(self.seq(0) for _ in range(self.rng.randint(1, 3)))
        return self.rng.choice(["", "(?i)", "(?i)", "(?m)", "(?s)", "(?is)"]) + body

    def text(self) -> str:
        count = self.rng.randint(0, 40)
        return "".join(self.rng.choice(WORDS + ALPHA) for _ in range(count))


@pytest.mark.parametrize("probes", [3, 0])
@pytest.mark.parametrize("seed", range(3))
def test_precheck_agrees_with_plain_re2_search_on_generated_patterns(
    seed: int, probes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_patterns, "MAX_PROBES", probes)  # 0: the many-candidates path too
    gen = _Generator(seed)
    checked = gated = 0
    for _ in range(500):
        patterns = [gen.pattern() for _ in range(gen.rng.randint(1, 3))]
        try:
            compiled = compile_prompt(patterns)
        except PatternError:
            continue
        plain = _plain(patterns)
        gated += compiled.branches is not None
        for _ in range(8):
            text = gen.text()
            data = text.encode("utf-8", "surrogatepass")
            want = any(regex.search(data) is not None for regex in plain)
            assert compiled.search(text, _fold(text)) is want, (patterns, text)
            checked += 1
    assert checked > 2000
    assert gated > 100, "the generated patterns must exercise the pre-check, not bypass it"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"(?i)\bclassify\b", "Please CLASSIFY this", True),
        (r"(?i)\bclassify\b", "reclassify this", False),
        (r"(?i)kit", "\u212ait", True),  # the Kelvin sign matches k case-insensitively
        (r"(?i)sit", "\u017fit", True),  # so does long s for s
        (r"(?i)is", "\u0130s", False),  # re folds dotted capital I to i; RE2 does not
        (r"(?i)\bsentiment\b", "Sentiment \u2019of\u2019 this", True),
        (r"(?i)(?:positive|negative)\b", "It is NEGATIVE.", True),
        (r"\d{3}-\d{4}", "call 555-1234", True),  # no literal: RE2 searches alone
        (r"(?i)translate (?:to|into) \w+", "Translate into French", True),
        (r"k{,3}", "k{,3}", True),  # RE2 reads {,3} as text; re as a repeat
        (r"k{,3}", "kk", False),
        (r"\pL+ly\b", "surely", True),  # RE2-only syntax: no pre-check, same answer
        (r"done\z", "done\n", False),
        (r"done$", "done\n", False),  # RE2's $ is the end of the text, as \z
        (r"(?m)done$", "done\nnext", True),
        (r"caf\x{e9}", "caf\u00e9", True),
        (r"a.c", "a\ud800c", True),  # a lone surrogate in a prompt: bytes, no error
    ],
)
def test_precheck_hand_picked_cases(pattern: str, text: str, matches: bool) -> None:
    assert compile_prompt([pattern]).search(text, _fold(text)) is matches
    assert compile_prompt([pattern]).search(text, None) is matches  # RE2 alone


def test_re2_case_folds_of_ascii_letters_are_ones_fold_keeps_aligned() -> None:
    """The pre-check looks a case-insensitive literal up in ``_fold(prompt)``; that is only
    sound if every character RE2 matches to an ASCII letter case-insensitively either lowers
    to that letter or makes ``_fold`` give up. Checked for every code point."""
    every = "".join(
        chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF
    ).encode()
    for letter in "abcdefghijklmnopqrstuvwxyz":
        for found in re2.compile(f"(?i){letter}").findall(every):
            char = found.decode()
            assert _fold(char) in (None, letter), (letter, char)


def test_fold_refuses_texts_where_lowering_would_misalign() -> None:
    assert _fold("Hello") == "hello"
    assert _fold("caf\u00e9 \u212a") == "caf\u00e9 k"
    assert _fold("\u0130stanbul") is None  # lowers to two characters
    assert _fold("\u017fit") is None  # re and RE2 fold long s to s; str.lower() does not
