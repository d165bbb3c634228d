"""Policy ``prompt`` patterns: run by RE2, so no pattern can make a call hang.

A policy file is configuration, often written by someone other than the app's author, and its
patterns run on every call. Python's ``re`` backtracks: ``(a+)+$`` takes exponential time on
a 29-character prompt, and nothing can interrupt it. RE2 (the ``google-re2`` package) runs a
pattern as an automaton instead, so a search takes time proportional to the text's length
times the pattern's size, never more. Bounds keep that product small: the text is the call
view's prompt window (``PROMPT_WINDOW`` characters), a rule's patterns compile to at most
:data:`MAX_PROGRAM_SIZE` RE2 instructions and :data:`MAX_PLACES` places a match can be at,
and RE2 gets :data:`MAX_MEMORY` to cache automaton states, so that even a prompt built
against a pattern stays on its fast path.

RE2 has no backtracking features (backreferences, lookaround, atomic groups, possessive
quantifiers, conditionals); a pattern using one is refused when the policy loads, with the
reason and what to write instead. So is a ``\\b`` next to a non-ASCII character: RE2's word
boundary knows ASCII word characters only, so ``\\bcafé\\b`` would silently never match
"café".

Searching stays cheap on the hot path: each top-level alternative of a pattern is reduced
(with Python's own pattern parser) to literal text that any match of it must contain, and
that it must begin with. ``str`` substring search, far faster than any regex, looks them up:
an alternative whose literal is absent cannot match, and when the remaining ones can only
begin at a few places, RE2 tries just those. Case-insensitive literals are ASCII and looked
up in the lower-cased prompt, which ``CallView._lower_prompt`` keeps aligned with the prompt
(or ``None``: then RE2 searches). Anything the analysis does not know makes it give up: the
answer is always RE2's.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

MAX_PROGRAM_SIZE: Final = 3000
"""The most RE2 instructions a rule's prompt patterns may compile to, together. Typical
patterns take 10-200; a Unicode class such as ``\\pL`` about 1,200 (UTF-8 byte ranges)."""
MAX_PLACES: Final = 1000
"""The most places a match of a rule's prompt patterns can be at (RE2 instructions with
each character class counted once). Each place a match can be at makes RE2's automaton
states bigger: with this cap and :data:`MAX_MEMORY`, no prompt we could build makes a search
of the window leave RE2's fast path (benchmarks/policy.py, docs/performance.md)."""
MAX_MEMORY: Final = 64 << 20
"""Bytes one compiled rule's RE2 may use, its cache of automaton states included (RE2's
default is 8 MiB). A prompt built against a pattern with a wide counted repetition, such as
``a[ab]{0,500}x``, makes RE2 meet a new state at nearly every byte; when the states of one
search outgrow the cache, RE2 falls back to a simulation 100-500 times slower (tens of
milliseconds on the 8 KB window). 64 MiB keeps such searches in the cache up to the size
cap; the memory is only taken as states are met, and a search of ordinary text meets few."""
MAX_PROBES: Final = 3
"""Places a match can begin that are tried one by one (each an anchored RE2 match, about a
quarter of a search over a 2 KB prompt) before one search over the prompt is cheaper."""
_UNTERMINATED_QUOTE: Final = "\\Q"
"""RE2's ``\\Q...`` quotes to the end of the pattern when no ``\\E`` closes it; a pattern with
one is searched on its own, since joined it would swallow the patterns after it."""

Literals = tuple[tuple[str, bool], ...]
"""Literal texts, each with whether it is matched case-insensitively (then lower-cased)."""


class PatternError(ValueError):
    """A pattern that cannot be a prompt pattern; the message says why and what to write."""

    def __init__(self, position: int | None, message: str) -> None:
        super().__init__(message)
        self.position = position
        """The pattern's index in the rule's list, or ``None`` for the list as a whole."""


@dataclass(frozen=True, slots=True, eq=False)
class PromptPatterns:
    """A rule's compiled ``prompt`` patterns: at least one must be found in the prompt."""

    regexes: tuple[Any, ...]
    """RE2 regexes (one alternation of every pattern, unless one cannot be joined)."""
    branches: tuple[tuple[tuple[Literals, ...], Literals | None], ...] | None
    """Per top-level alternative of every pattern: sets of literals such that its matches
    contain one of each set (most selective first), and the literals one of which they begin
    with (``None`` when unknown); ``None`` overall: always run RE2 over the prompt."""
    program_size: int
    """RE2 instructions of all the patterns together."""

    def search(self, text: str, lowered: str | None) -> bool:
        """Whether some pattern is found in ``text``; ``lowered`` is ``text`` lower-cased
        character for character, or ``None``. (Plain loops: this runs on every call.)"""
        branches = self.branches
        if branches is None or lowered is None:
            return self._search(text)
        starts: list[tuple[str, bool]] = []
        for required, begins in branches:
            possible = True
            for literals in required:
                for literal, folded in literals:
                    if literal in (lowered if folded else text):
                        break
                else:
                    possible = False
                    break
            if not possible:
                continue  # this alternative cannot match
            if begins is None:
                return self._search(text)  # it could begin anywhere
            starts += begins
        if not starts:
            return False  # no alternative's literal text is in the prompt
        if not text.isascii():
            return self._search(text)  # character and byte offsets differ
        data = b""
        budget = MAX_PROBES
        for literal, folded in starts:
            haystack = lowered if folded else text
            at = haystack.find(literal)
            while at >= 0:
                if budget == 0:
                    return self._search(text)  # one search is cheaper than more probes
                budget -= 1
                data = data or text.encode()
                # An anchored match sees the text before it (for \b and ^) as the search
                # does; no match can begin anywhere but at one of these places.
                for regex in self.regexes:
                    if regex.match(data, at) is not None:
                        return True
                at = haystack.find(literal, at + 1)
        return False

    def _search(self, text: str) -> bool:
        # UTF-8 bytes: RE2's own text, and no offset bookkeeping for str in the binding. A
        # lone surrogate (possible in a str, never in a pattern) becomes bytes that only
        # classes such as '.' or [^a] match, instead of an error.
        data = text.encode("utf-8", "surrogatepass")
        return any(regex.search(data) is not None for regex in self.regexes)


def compile_prompt(patterns: Sequence[str]) -> PromptPatterns:
    """Compile a rule's ``prompt`` patterns with RE2, refusing what it cannot run safely.

    Raises:
        PatternError: naming the position of the first bad pattern (or ``None`` when the
            patterns are fine one by one but too large together), with the reason.
    """
    re2 = _engine()
    options = _options(re2)
    compiled = []
    sizes = []
    for position, pattern in enumerate(patterns):
        regex = _compile(re2, options, position, pattern)
        if regex.search(b"") is not None:
            raise PatternError(
                position,
                "a pattern that does not match every prompt (this one matches the empty "
                "string; leave 'prompt' out to match all)",
            )
        problem = _repeat_problem(pattern) or _boundary_problem(pattern)
        if problem:
            raise PatternError(position, problem)
        size = (regex.programsize, _places(re2, pattern, regex))
        problem = _size_problem(*size, one=True)
        if problem:
            raise PatternError(position, problem)
        compiled.append(regex)
        sizes.append(size)
    total = (sum(size[0] for size in sizes), sum(size[1] for size in sizes))
    problem = _size_problem(*total, one=False)
    if problem:
        raise PatternError(None, f"{problem}; join them into fewer, simpler patterns")
    regexes: tuple[Any, ...] = tuple(compiled)
    if len(compiled) > 1 and not any(_UNTERMINATED_QUOTE in p for p in patterns):
        # One pass over the prompt instead of one per pattern; RE2 keeps each pattern's
        # inline flags inside its group.
        regexes = (re2.compile("|".join(f"(?:{p})" for p in patterns), options),)
    return PromptPatterns(regexes=regexes, branches=_branches(patterns), program_size=total[0])


def compile_label(pattern: str) -> Any:
    """Compile a ``label`` comparator's regex with RE2: it runs on every judged answer, in
    the evaluation thread or ``llmmeter evaluate``, and a backtracking pattern there would
    hold the interpreter's lock for as long as it runs, freezing the application's threads.
    Captures are kept (the label is group 1 when there is one); the same syntax and size
    rules as prompt patterns apply.

    Raises:
        PatternError: with the reason (position 0).
    """
    re2 = _engine()
    options = _options(re2)
    options.never_capture = False
    regex = _compile(re2, options, 0, pattern)
    problem = (
        _repeat_problem(pattern)
        or _boundary_problem(pattern)
        or _size_problem(regex.programsize, _places(re2, pattern, regex), one=True)
    )
    if problem:
        raise PatternError(0, problem)
    return regex


def _size_problem(instructions: int, places: int, one: bool) -> str | None:
    which = "this one" if one else "these together"
    if instructions > MAX_PROGRAM_SIZE:
        return (
            f"patterns that compile to at most {MAX_PROGRAM_SIZE} RE2 instructions ({which}: "
            f"{instructions}; a Unicode class such as \\pL takes about 1,200, and a counted "
            "repetition such as \\pL{2,40} repeats its part that many times)"
        )
    if places > MAX_PLACES:
        return (
            f"patterns with at most {MAX_PLACES} places a match can be at ({which}: {places}; "
            "a counted repetition such as [ab]{0,500} repeats its part that many times; "
            "write [ab]* or a smaller count)"
        )
    return None


def _places(re2: Any, pattern: str, regex: Any) -> int:
    """About how many places in ``pattern`` a match can be at: its RE2 program with each
    character class one instruction (compiled over Latin-1, where a class is a few byte
    ranges). Code points past U+00FF have no Latin-1 form: then its UTF-8 program size."""
    options = _options(re2)
    options.encoding = re2.Options.Encoding.LATIN1
    try:
        return int(re2.compile(pattern.encode("utf-8"), options).programsize)
    except Exception:
        return int(regex.programsize)


def _engine() -> Any:
    try:
        return importlib.import_module("re2")
    except ImportError as exc:
        raise PatternError(
            0,
            "a pattern for RE2, which is not importable here (install google-re2, which "
            f"llmmeter depends on: {exc})",
        ) from None


def _options(re2: Any) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern and its error to stderr
    options.never_capture = True  # only whether there is a match counts: cheaper to run
    options.max_mem = MAX_MEMORY
    return options


def _compile(re2: Any, options: Any, position: int, pattern: str) -> Any:
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise PatternError(position, _unsupported(_message(exc))) from None
    except Exception as exc:  # e.g. a lone surrogate cannot be UTF-8 for RE2
        raise PatternError(position, f"a regular expression RE2 can compile ({exc})") from None


def _message(exc: BaseException) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


# RE2's error for a construct it does not have -> the construct, named for the reader.
_UNSUPPORTED: Final = {
    "invalid perl operator: (?=": "lookahead (?=...)",
    "invalid perl operator: (?!": "negative lookahead (?!...)",
    "invalid perl operator: (?<=": "lookbehind (?<=...)",
    "invalid perl operator: (?<!": "negative lookbehind (?<!...)",
    "invalid perl operator: (?>": "atomic groups (?>...)",
    "invalid perl operator: (?P": "named backreferences (?P=name)",
    "invalid perl operator: (?(": "conditionals (?(1)...|...)",
    "invalid escape sequence: \\k": "named backreferences \\k<name>",
}
_FLAGS: Final = "RE2's inline flags are i, m, s and U, and it has no (?#...) comments"


def _unsupported(message: str) -> str:
    """What a pattern must be, given RE2's error for it, made actionable."""
    construct = _UNSUPPORTED.get(message)
    if construct is None and message.startswith("bad repetition operator: ") and message[-1] == "+":
        construct = f"possessive quantifiers ({message.rsplit(' ', 1)[-1]})"
    if construct is None and message[-1:].isdigit() and "escape sequence: \\" in message:
        construct = f"backreferences ({message.rsplit(' ', 1)[-1]})"
    if construct is not None:
        return (
            f"a regular expression without {construct}: RE2 has none, because they need "
            "backtracking, whose time can explode"
        )
    hint = {
        "invalid escape sequence: \\Z": "RE2 writes the end of the text \\z",
        "invalid escape sequence: \\u": "RE2 writes a code point \\x{00e9}, not \\u00e9",
        "invalid escape sequence: \\U": "RE2 writes a code point \\x{1f600}, not \\U0001f600",
    }.get(message)
    if hint is None and message.startswith("invalid perl operator: (?"):
        hint = _FLAGS
    if hint is None and message.startswith("invalid repetition size"):
        hint = "RE2 counts up to {1000}"
    return f"a regular expression RE2 can compile ({message}{'; ' + hint if hint else ''})"


# --- what Python's parser tells about a pattern ------------------------------------------
#
# RE2's binding exposes no parse tree, so the literal pre-check and the \b check read the
# pattern with ``re``'s parser. A pattern it cannot read (RE2-only syntax such as \pL or
# \x{e9}) simply gets neither. Where both parsers read a pattern, they agree on what is a
# literal character (``{,n}``, a repeat for ``re``, is literal text for RE2: ``re`` then
# sees less literal text, never more), and RE2's case-insensitive matches of an ASCII letter
# (the letter, its other case, the Kelvin sign and long s) are a subset of ``re``'s.


def _parse(pattern: str) -> tuple[Any, Any] | None:
    """(``re._constants``, the parsed pattern), or ``None`` when ``re`` cannot read it."""
    try:
        parser = importlib.import_module("re._parser")
        sre = importlib.import_module("re._constants")
        return sre, parser.parse(pattern, 0)
    except Exception:  # RE2-only syntax, or another Python's parser
        return None


_COUNT: Final = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")
MAX_COUNT: Final = 1000
"""RE2's largest repeat count."""


def _repeat_problem(pattern: str) -> str | None:
    """Why a counted repetition would not repeat, or ``None``: RE2 reads ``a{N}`` with a count
    too large to parse as the literal text ``a{N}`` (Python's ``re`` as a repetition), so
    the pattern would silently mean something else."""
    i, end, in_class = 0, len(pattern), False
    while i < end:
        char = pattern[i]
        if pattern.startswith("\\Q", i):  # quoted text up to \E is literal
            stop = pattern.find("\\E", i + 2)
            i = end if stop < 0 else stop + 2
            continue
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)  # a ']' first in a class is itself
            continue
        elif char == "{" and i > 0:
            match = _COUNT.match(pattern, i)
            if match and any(_too_many(count) for count in match.groups() if count):
                shown = match.group()
                shown = shown if len(shown) <= 40 else f"{shown[:30]}...{shown[-5:]}"
                return (
                    f"counted repetitions up to {{{MAX_COUNT}}} (this one: {shown}; "
                    "RE2 would read a count it cannot hold as literal text)"
                )
        i += 1
    return None


def _too_many(count: str) -> bool:
    digits = count.lstrip("0")
    return len(digits) > len(str(MAX_COUNT)) or int(digits or "0") > MAX_COUNT


def _boundary_problem(pattern: str) -> str | None:
    """Why ``\\b``/``\\B`` next to a non-ASCII character would not do what it says, or
    ``None``."""
    parsed = _parse(pattern)
    if parsed is None:
        return None
    sre, tree = parsed
    try:
        found = _boundary_next_to_non_ascii(sre, list(tree))
    except RecursionError:  # nested deeper than Python's stack: RE2 decides alone
        return None
    if found is None:
        return None
    return (
        f"\\b and \\B only next to ASCII characters (this one touches {found!r}): RE2's word "
        "boundary knows ASCII word characters only, so it never sees one there; write "
        "(?:^|[\\s\\pP]) before a word and (?:[\\s\\pP]|$) after it"
    )


def _boundary_next_to_non_ascii(sre: Any, items: list[Any]) -> str | None:
    boundaries = (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY)
    for index, (op, av) in enumerate(items):
        if op is sre.AT and av in boundaries:
            for neighbour, first in ((index + 1, True), (index - 1, False)):
                if 0 <= neighbour < len(items):
                    found = _edge_non_ascii(sre, items[neighbour], first)
                    if found is not None:
                        return found
        for inner in _children(sre, op, av):
            found = _boundary_next_to_non_ascii(sre, inner)
            if found is not None:
                return found
    return None


def _children(sre: Any, op: Any, av: Any) -> list[list[Any]]:
    if op is sre.SUBPATTERN:
        return [list(av[3])]
    if op is sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        return [list(av[2])]
    if op is sre.ATOMIC_GROUP:
        return [list(av)]
    return []


def _edge_non_ascii(sre: Any, item: tuple[Any, Any], first: bool) -> str | None:
    """A non-ASCII character that can be the first (or last) one ``item`` matches."""
    op, av = item
    if op is sre.LITERAL:
        return chr(av) if av > 0x7F else None
    if op is sre.IN:
        for kind, value in av:
            if kind is sre.LITERAL and value > 0x7F:
                return chr(value)
            if kind is sre.RANGE and value[1] > 0x7F:
                return chr(max(value[0], 0x80))
        return None
    for inner in _children(sre, op, av):
        if inner:
            found = _edge_non_ascii(sre, inner[0] if first else inner[-1], first)
            if found is not None:
                return found
    return None


def _branches(
    patterns: Sequence[str],
) -> tuple[tuple[tuple[Literals, ...], Literals | None], ...] | None:
    try:
        return _analysed(patterns)
    except RecursionError:  # nested deeper than Python's stack: RE2 searches alone
        return None


def _analysed(
    patterns: Sequence[str],
) -> tuple[tuple[tuple[Literals, ...], Literals | None], ...] | None:
    branches: list[tuple[tuple[Literals, ...], Literals | None]] = []
    for pattern in patterns:
        parsed = _parse(pattern)
        if parsed is None:
            return None
        sre, tree = parsed
        for items, flags in _alternatives(sre, list(tree), tree.state.flags):
            starts = _starts(sre, items, flags)
            required = tuple(
                literals
                for literals in sorted(_candidates(sre, items, flags), key=_selectivity)[::-1]
                # a set of starts is looked up anyway, by the probes
                if starts is None or not set(literals) <= set(starts)
            )
            branches.append((required, starts))
    if all(not required and starts is None for required, starts in branches):
        return None
    return tuple(branches)


def _selectivity(literals: Literals) -> tuple[int, int]:
    """Longer literals are rarer; fewer of them are fewer lookups."""
    return min(len(literal) for literal, _ in literals), -len(literals)


def _alternatives(sre: Any, items: list[Any], flags: int) -> list[tuple[list[Any], int]]:
    """The top-level alternatives of a parsed pattern, with the flags in force in each."""
    if len(items) == 1:
        op, av = items[0]
        if op is sre.BRANCH:
            return [alt for branch in av[1] for alt in _alternatives(sre, list(branch), flags)]
        if op is sre.SUBPATTERN:
            _group, add, remove, inner = av
            return _alternatives(sre, list(inner), (flags | add) & ~remove)
    return [(items, flags)]


def _literal(sre: Any, op: Any, av: Any, flags: int) -> tuple[str, bool] | None:
    """A literal character as looked up (lower-cased if case-insensitive), or ``None``."""
    if op is not sre.LITERAL:
        return None
    char = chr(av)
    if flags & sre.SRE_FLAG_IGNORECASE:
        return (char.lower(), True) if char.isascii() else None
    return char, False


def _required(sre: Any, items: list[Any], flags: int) -> Literals | None:
    """Literals one of which every match of ``items`` contains (the most selective set
    found), or ``None``."""
    return max(_candidates(sre, items, flags), key=_selectivity, default=None)


def _candidates(sre: Any, items: list[Any], flags: int) -> list[Literals]:
    """Sets of literals such that every match of ``items`` contains one of each set."""
    candidates: list[Literals] = []
    run: list[str] = []
    run_folded = False

    def flush() -> None:
        if run:
            candidates.append((("".join(run), run_folded),))
            run.clear()

    for op, av in items:
        char = _literal(sre, op, av, flags)
        if char is not None:
            if run and char[1] != run_folded:
                flush()
            run.append(char[0])
            run_folded = char[1]
            continue
        if op is sre.AT:  # zero-width: the literals around it are adjacent in the text
            continue
        flush()
        found: Literals | None = None
        if op is sre.SUBPATTERN:
            _group, add, remove, inner = av
            found = _required(sre, list(inner), (flags | add) & ~remove)
        elif op is sre.BRANCH:
            found = _union([_required(sre, list(branch), flags) for branch in av[1]])
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
            found = _required(sre, list(av[2]), flags)
        if found:
            candidates.append(found)
    flush()
    return candidates


def _starts(sre: Any, items: list[Any], flags: int) -> Literals | None:
    """Literals one of which every match of ``items`` begins with, or ``None``."""
    position = 0
    while position < len(items) and items[position][0] is sre.AT:
        position += 1
    if position == len(items):
        return None
    op, av = items[position]
    if op is sre.SUBPATTERN:
        _group, add, remove, inner = av
        return _starts(sre, list(inner), (flags | add) & ~remove)
    if op is sre.BRANCH:
        return _union([_starts(sre, list(branch), flags) for branch in av[1]])
    run: list[str] = []
    folded = False
    for op, av in items[position:]:
        char = _literal(sre, op, av, flags)
        if char is None or (run and char[1] != folded):
            break
        run.append(char[0])
        folded = char[1]
    return (("".join(run), folded),) if run else None


def _union(sets: list[Literals | None]) -> Literals | None:
    if not sets or any(not found for found in sets):
        return None
    return tuple(dict.fromkeys(literal for found in sets if found for literal in found))
