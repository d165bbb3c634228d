"""Fuzzing the command line's readers: no input makes them fail other than as documented.

``llmmeter report`` (and the OTLP metrics reader of ``policy status``) and the dataset reader
of ``llmmeter evaluate`` get files built from OTLP- and request-shaped JSON whose every value
may be wrong: numbers past 64 bits or with thousands of digits, NaN, nesting past Python's
stack, lines past the bound, bytes that are not UTF-8, gzip. Each must either read the file
or say what is wrong in its documented way (one ``llmmeter: error:`` line, exit 2; a
``UsageError`` naming the file): never another exception, never a traceback.

The bounds are patched down to a few KiB so that examples of a few KiB cross them; the
same code then guards the real 64 MiB.

Budget: the hypothesis profile of ``tests/conftest.py``: by default ``llmmeter-ci``, 150
examples a test here (seconds, derandomized, so CI is repeatable); ``LLMMETER_FUZZ=long``
selects ``llmmeter-long``, 5,000 a test here, random each run, for a longer hunt locally::

    LLMMETER_FUZZ=long .venv/bin/python -m pytest -q tests/unit/test_fuzz_cli_readers.py
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmmeter import _semconv as sc
from llmmeter._cli import inputs, main
from llmmeter._cli.common import UsageError
from llmmeter._cli.evaluate import load_dataset, sdk_options
from llmmeter._cli.status_sources import COUNTERS, OtlpSource
from llmmeter._compare import build_comparator

pytest.importorskip("openai")

FUZZ = settings(  # the budget is the profile of tests/conftest.py (LLMMETER_FUZZ)
    settings.default,
    max_examples=max(150, settings.default.max_examples // 4),  # ci: 150; long: 5,000
    suppress_health_check=[
        *settings.default.suppress_health_check,
        HealthCheck.function_scoped_fixture,
    ],
)
SMALL_LINE = 4096
"""The line and document bound while fuzzing: examples cross it often."""


@pytest.fixture(autouse=True)
def small_bounds() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "MAX_LINE", SMALL_LINE)
        patch.setattr(inputs, "MAX_DOCUMENT", 2 * SMALL_LINE)
        yield


# --- JSON with wrong values ------------------------------------------------------------------


class Raw:
    """JSON text written as is: what ``json.dumps`` will not write (a 5,000-digit number)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


ODD_NUMBERS = st.sampled_from(
    [
        Raw("1" * 5000),  # past int()'s 4,300 digits
        Raw("1e400"),
        Raw("-1e400"),
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-0"),
        Raw(str(1 << 64)),
        Raw(str(-(1 << 63) - 1)),
        Raw("1.5"),
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=1 << 40),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_NUMBERS,
)
ODD_INTEGER_TEXT = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70).map(str),
    st.sampled_from(["", "soon", "1" * 30, "NaN", "Infinity", "-Infinity", "0x10", "1e3"]),
)
NANOS = st.integers(min_value=1_700_000_000 * 10**9, max_value=1_800_000_000 * 10**9).map(str)
DEEP = st.integers(min_value=1, max_value=3000).map(lambda n: Raw("[" * n + "]" * n))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), ODD_INTEGER_TEXT)
ANY_JSON = (
    st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=12,
    )
    | DEEP
)


def replaced(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one part, anywhere in it (or the whole), replaced by any JSON."""
    if isinstance(value, (dict, list)) and value and draw(st.integers(0, 3)):
        copy: Any = dict(value) if isinstance(value, dict) else list(value)
        where = draw(st.sampled_from(list(copy) if isinstance(copy, dict) else range(len(copy))))
        copy[where] = replaced(draw, copy[where])
        return copy
    return draw(ANY_JSON)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid document, mostly, with up to two parts replaced by anything at all."""
    document = draw(valid)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        document = replaced(draw, document)
    return document


KEYS = st.sampled_from(
    [
        sc.GEN_AI_OPERATION_NAME,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.GEN_AI_USAGE_COST_AMOUNT,
        sc.LLMMETER_TASK,
        sc.LLMMETER_POLICY_RULE,
        sc.LLMMETER_POLICY_ACTION,
        sc.LLMMETER_POLICY_SAVINGS,
        "service.name",
        "llmmeter.evaluation",
    ]
)


def any_value(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda v: {"stringValue": v}, st.text(max_size=12)),
        st.builds(lambda v: {"intValue": v}, NUMBERS | NANOS | ODD_INTEGER_TEXT),
        st.builds(lambda v: {"doubleValue": v}, NUMBERS),
        st.builds(lambda v: {"boolValue": v}, st.booleans()),
        st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(children, max_size=3)),
        st.builds(
            lambda v: {"kvlistValue": {"values": v}},
            st.lists(st.fixed_dictionaries({"key": KEYS, "value": children}), max_size=3),
        ),
    )


ANY_VALUE = st.recursive(st.just({}), any_value, max_leaves=6)
NUMBER_ATTRIBUTE = st.builds(
    lambda key, kind, value: {"key": key, "value": {kind: value}},
    st.sampled_from(
        [
            sc.GEN_AI_USAGE_INPUT_TOKENS,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS,
            sc.GEN_AI_USAGE_COST_AMOUNT,
            sc.LLMMETER_POLICY_SAVINGS,
        ]
    ),
    st.sampled_from(["intValue", "doubleValue"]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-5"]) | ODD_NUMBERS | NUMBERS,
)
"""The numbers the table adds up, any of them absurd."""
ATTRIBUTES = st.lists(
    st.fixed_dictionaries({"key": KEYS, "value": ANY_VALUE}) | NUMBER_ATTRIBUTE, max_size=6
).map(lambda found: [{"key": sc.GEN_AI_OPERATION_NAME, "value": {"stringValue": "chat"}}, *found])
"""A span of ours (it has the operation name) whose other attributes may hold anything."""
IDS = st.one_of(st.binary(min_size=8, max_size=16).map(bytes.hex), st.text(max_size=24))
SPAN = st.builds(
    lambda start, duration, rest: {
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration),
        **rest,
    },
    st.integers(min_value=1_700_000_000 * 10**9, max_value=1_800_000_000 * 10**9),
    st.integers(min_value=0, max_value=10**11),
    st.fixed_dictionaries(
        {"attributes": ATTRIBUTES},
        optional={
            "traceId": IDS,
            "spanId": IDS,
            "status": st.fixed_dictionaries(
                {}, optional={"code": st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR", "2"])}
            ),
        },
    ),
)
RESOURCE = st.fixed_dictionaries(
    {}, optional={"attributes": st.lists(st.fixed_dictionaries({"key": KEYS, "value": ANY_VALUE}))}
)
TRACES = st.builds(
    lambda resource, spans: {
        "resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]
    },
    RESOURCE,
    st.lists(SPAN, min_size=1, max_size=4),
)
POINT = st.fixed_dictionaries(
    {"startTimeUnixNano": NANOS, "timeUnixNano": NANOS},
    optional={
        "attributes": st.lists(st.fixed_dictionaries({"key": KEYS, "value": ANY_VALUE})),
        "asDouble": NUMBERS,
        "asInt": NANOS | ODD_INTEGER_TEXT,
    },
)
METRICS = st.builds(
    lambda resource, name, points, temporality: {
        "resourceMetrics": [
            {
                "resource": resource,
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": name,
                                "sum": {
                                    "dataPoints": points,
                                    "aggregationTemporality": temporality,
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    },
    RESOURCE,
    st.sampled_from([counter.otel for counter in COUNTERS]),
    st.lists(POINT, min_size=1, max_size=4),
    st.sampled_from([1, 2, "AGGREGATION_TEMPORALITY_DELTA"]),
)


def line_of(document: Any, pretty: bool) -> bytes:
    text = dump(document)
    return (json.dumps(json.loads(text), indent=2) if pretty and _plain(text) else text).encode()


def _plain(text: str) -> bool:
    """JSON the standard library re-reads and re-writes as it is (no NaN, no deep lists)."""
    try:
        json.loads(text, parse_constant=lambda name: 1 / 0)
    except (ValueError, RecursionError, ZeroDivisionError):
        return False
    return True


ODD_LINES = st.one_of(
    st.builds(line_of, ANY_JSON, st.just(False)),
    st.binary(max_size=64),
    st.sampled_from([b"", b"   ", b"{", b"\xef\xbb\xbf{}", b"\xff\xfe"]),
    st.integers(min_value=SMALL_LINE - 2, max_value=SMALL_LINE + 2).map(lambda n: b"x" * n),
)
LINES = st.one_of(  # mostly export requests, so that the spans in them get read too
    st.builds(line_of, mutated(TRACES), st.just(False)),
    st.builds(line_of, mutated(TRACES), st.just(False)),
    st.builds(line_of, mutated(METRICS), st.just(False)),
    ODD_LINES,
)


@st.composite
def otlp_files(draw: st.DrawFn) -> bytes:
    """What a collector's file could hold after going wrong anywhere."""
    if draw(st.integers(0, 5)) == 0:  # a pretty-printed file: one or more documents
        documents = draw(st.lists(mutated(TRACES | METRICS), min_size=1, max_size=3))
        data = b"\n".join(line_of(document, pretty=True) for document in documents)
        if not data.startswith(b"{\n"):
            data = b"{\n}\n" + data
    else:
        data = b"\n".join(draw(st.lists(LINES, max_size=8)))
    if draw(st.booleans()):
        data += b"\n"
    return gzip.compress(data) if draw(st.integers(0, 4)) == 0 else data


# --- the OTLP readers ------------------------------------------------------------------------


@FUZZ
@given(content=otlp_files())
def test_report_reads_any_file_or_says_why_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "spans.json"
    path.write_bytes(content)
    for argv in (["report", str(path)], ["report", str(path), "--format", "json"]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (0, 2), err
        assert "Traceback" not in out + err
        assert all(line.startswith("llmmeter: ") for line in err.splitlines()), err
        if code == 2:
            assert out == ""
            assert err.count("\n") == 1 and err.startswith("llmmeter: error: "), err
        elif argv[-1] == "json":
            json.loads(out)


@FUZZ
@given(content=otlp_files())
def test_status_reads_any_metrics_file_or_says_why(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    try:
        source = OtlpSource([str(path)], "1h")
    except UsageError as exc:
        problem = str(exc)
    else:
        for counter in COUNTERS:
            assert isinstance(source.increase(counter, "classify-to-mini"), float)
        return
    assert problem.startswith((str(path), f"cannot read {path}")), problem


def test_a_line_past_the_bound_names_the_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The example the fuzzer makes often, pinned: the bound is one error, not a skip."""
    path = tmp_path / "spans.json"
    path.write_bytes(b'{"resourceSpans": []}\n' + b"x" * (SMALL_LINE + 1) + b"\n")
    assert main(["report", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"llmmeter: error: {path}, line 2: longer than 4 KiB, the most llmmeter reads as one "
        "line; nothing of it was used\n"
    )


# --- the evaluate dataset reader -------------------------------------------------------------

OPTIONS = sdk_options()
OPTION_NAMES = sorted(OPTIONS["chat"] | OPTIONS["responses"])
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system"]), "content": st.text(max_size=12)}
    ),
    min_size=1,
    max_size=3,
)
TOOL_CALLS = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(max_size=8)},
        optional={"arguments": st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=2)},
    ),
    min_size=1,
    max_size=2,
)
EXPECTED = st.one_of(
    st.text(max_size=12), st.sampled_from(["positive", "negative"]), TOOL_CALLS, ANY_JSON
)
REQUEST = st.builds(
    lambda body, options, extra: {**options, **body, **extra},
    st.one_of(
        st.builds(lambda m: {"messages": m}, MESSAGES),
        st.builds(lambda i: {"input": i}, st.text(min_size=1, max_size=10)),
    ),
    st.dictionaries(st.sampled_from(OPTION_NAMES), SCALARS, max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "expected": EXPECTED,
            "model": st.text(max_size=5),
            "stream": st.booleans(),
            "input": st.text(max_size=5),
        },
    ),
)
DATASET_LINES = st.one_of(
    st.builds(dump, mutated(REQUEST)).map(str.encode),
    st.builds(dump, mutated(REQUEST)).map(str.encode),
    st.builds(dump, ANY_JSON).map(str.encode),
    st.binary(max_size=32),
    st.integers(min_value=SMALL_LINE - 2, max_value=SMALL_LINE + 2).map(lambda n: b" " * n),
)
COMPARATORS = [
    build_comparator("exact", None),
    build_comparator("json", None),
    build_comparator("tool", None),
    build_comparator("label", r"(?i)\b(positive|negative)\b"),
]


@FUZZ
@given(
    lines=st.lists(DATASET_LINES, max_size=6),
    comparator=st.sampled_from(COMPARATORS),
    limit=st.none() | st.integers(1, 4),
)
def test_the_dataset_reader_takes_any_file_or_names_file_and_line(
    tmp_path: Path, lines: list[bytes], comparator: Any, limit: int | None
) -> None:
    path = tmp_path / "sample.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        items = load_dataset(str(path), comparator, OPTIONS, limit)
    except UsageError as exc:
        problem = str(exc)
    else:
        assert 0 < len(items) <= (limit or len(lines))
        for item in items:
            assert inputs.nesting(item.request) <= inputs.MAX_DEPTH
            json.dumps(item.request)  # what the SDK will serialize: it can
        return
    assert problem.startswith(str(path)), problem
    assert "\n" not in problem


def test_a_dataset_nested_past_the_bound_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sample.jsonl"
    deep = '{"messages": [{"role": "user", "content": "x"}], "metadata": ' + "[" * 200 + "]" * 200
    path.write_text('{"input": "hi"}\n' + deep + "}\n")
    with pytest.raises(UsageError) as raised:
        load_dataset(str(path), COMPARATORS[0], OPTIONS, None)
    assert str(raised.value) == (
        f"{path}, line 2: expected a request nested at most 100 levels deep; this one is deeper"
    )
