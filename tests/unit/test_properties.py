"""Property tests over everything that reads untrusted input (issue 8, "Bad input").

- The policy loader and the prices loader, fed arbitrary values, arbitrary TOML and arbitrary
  bytes, either load or raise exactly :class:`llmmeter.ConfigError`; a policy that loads
  decides any call without raising.
- The usage extractor, fed arbitrary response, chunk and usage shapes, never raises, and every
  token count it reports is a non-negative int found verbatim in the input (never invented).
- Every ``OTEL_*``/``LLMMETER_*`` variable llmmeter reads, set to an invalid value, raises a
  ``ConfigError`` naming it, or takes its documented fallback (docs/configuration.md).

Deterministic: ``derandomize=True`` and no example database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmmeter import ConfigError
from llmmeter._bootstrap import (
    _METRIC_EXPORTERS,
    _TRACE_EXPORTERS,
    _exporter_names,
    _prometheus_address,
    _protocol,
)
from llmmeter._config import DEFAULT_CONTENT_MAX_LENGTH, resolve_settings
from llmmeter._policy import CallView
from llmmeter._pricing import PriceTable, load_overrides, usage_from
from llmmeter._rules import _RULE_KEYS, _TOP_KEYS, RulePolicy
from llmmeter._usage import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    Outcome,
    Usage,
    read_chunk,
    read_response,
    read_usage,
)

PROPS = settings(
    max_examples=max(150, settings.default.max_examples),  # LLMMETER_FUZZ=long: more
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPS, max_examples=max(60, settings.default.max_examples // 2))

# --- strategies ------------------------------------------------------------------------

_PRICE_KEYS = (
    "models",
    "aliases",
    "input",
    "output",
    "cached_input",
    "cache_write",
    "input_audio",
    "output_audio",
    "input_image",
    "output_image",
)
_USAGE_KEYS = (
    "usage",
    "input_tokens",
    "output_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens_details",
    "input_token_details",
    "output_tokens_details",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "image_tokens",
)
_SHAPE_KEYS = (
    "id",
    "model",
    "object",
    "choices",
    "index",
    "finish_reason",
    "message",
    "delta",
    "content",
    "text",
    "refusal",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "type",
    "response",
    "status",
    "output",
    "incomplete_details",
    "reason",
    "service_tier",
    "system_fingerprint",
    "data",
    "embedding",
    "call_id",
)
_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "ft:gpt-4o-mini:acme:x", "house-model-7")
_EVENT_TYPES = (
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.output_text.delta",
    "response.output_item.added",
)

_big_ints = st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400)])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    _big_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "enforce",
            "shadow",
            "off",
            "on-error",
            "chat_completions",
            "responses",
            "completions",
            *_MODELS,
            "gpt-*",
            "[z-a]",
            "[",
            "]",
            "(?i)\\btranslate\\b",
            "(" * 1000 + "a" + ")" * 1000,
            "a{99999999999999999999}",
            "\\1",
            "(?P<x>a)",
            "a|",
            "x\n",
            "-1",
            "12",
        ]
    ),
)


def json_values(keys: tuple[str, ...], *, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-like values whose dict keys are mostly real key names."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(key, children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


# Policy-shaped data: mostly valid pieces, each replaceable by junk, so that generation
# reaches the deep checks (globs, regexes, limits, sample) and not only the first one.
def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, valid, scalars)


_rule_names = st.one_of(st.from_regex(r"\A[a-z][a-z0-9_.:-]{0,10}\Z"), st.text(max_size=10))
_string_lists = st.one_of(
    st.lists(st.sampled_from([*_MODELS, "gpt-*", "o?", "[a-z]*", "[!x]y"]), min_size=1),
    st.lists(st.text(max_size=6), max_size=3),
)
_rule_tables = st.fixed_dictionaries(
    {
        "name": _maybe(_rule_names),
        "from": _maybe(_string_lists),
        "to": _maybe(st.sampled_from(_MODELS)),
    },
    optional={
        "mode": _maybe(st.sampled_from(["enforce", "shadow", "off"])),
        "apis": _maybe(st.lists(st.sampled_from(["chat_completions", "responses", "completions"]))),
        "tasks": _maybe(st.lists(st.sampled_from(["classify", "chat", "summarise"]), min_size=1)),
        "prompt": _maybe(
            st.lists(
                st.one_of(
                    st.sampled_from(["(?i)\\btranslate\\b", "hello|bye", "^sum", "[0-9]{3}"]),
                    st.text(max_size=8),
                ),
                min_size=1,
                max_size=3,
            )
        ),
        "min_input_tokens": _maybe(st.integers(min_value=0, max_value=5000)),
        "max_input_tokens": _maybe(st.integers(min_value=1, max_value=5000)),
        "max_output_tokens": _maybe(st.integers(min_value=1, max_value=5000)),
        "allow_tools": _maybe(st.booleans()),
        "allow_images": _maybe(st.booleans()),
        "allow_response_format": _maybe(st.booleans()),
        "sample": _maybe(st.floats(min_value=0, max_value=1)),
        "evaluate": scalars,
    },
)
policy_shaped = st.fixed_dictionaries(
    {},
    optional={
        "mode": _maybe(st.sampled_from(["enforce", "shadow", "off"])),
        "fallback": _maybe(st.sampled_from(["on-error", "off"])),
        "deployments": _maybe(st.dictionaries(st.sampled_from(_MODELS), st.text(max_size=6))),
        "rules": _maybe(st.lists(_rule_tables, max_size=3)),
        "extra": scalars,
    },
)
policy_data = st.one_of(policy_shaped, policy_shaped, json_values(_TOP_KEYS + _RULE_KEYS))

_rates = st.dictionaries(
    st.one_of(st.sampled_from(_PRICE_KEYS[2:]), st.text(max_size=6)),
    _maybe(st.floats(min_value=0, max_value=100)),
    max_size=4,
)
prices_shaped = st.fixed_dictionaries(
    {},
    optional={
        "models": _maybe(
            st.dictionaries(
                st.one_of(st.sampled_from([*_MODELS, "ft:*", "a b"]), st.text(max_size=6)),
                _maybe(_rates),
                max_size=3,
            )
        ),
        "aliases": _maybe(
            st.dictionaries(
                st.one_of(st.sampled_from(["prod-gpt4o", "x y"]), st.text(max_size=6)),
                _maybe(st.sampled_from([*_MODELS, "no-such-model", ""])),
                max_size=3,
            )
        ),
        "extra": scalars,
    },
)
prices_data = st.one_of(prices_shaped, prices_shaped, json_values(_PRICE_KEYS))


# --- TOML serialisation (ours: no writer in the standard library) -----------------------


def _toml_key(key: Any) -> str:
    return _toml_string(str(key))


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("?")  # a lone surrogate cannot be written as UTF-8
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str | None:
    """``value`` as an inline TOML value, or ``None`` where TOML has no spelling (null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        items = [_toml_value(item) for item in value]
        return "[" + ", ".join(item for item in items if item is not None) + "]"
    if isinstance(value, dict):
        pairs = [(k, _toml_value(v)) for k, v in value.items()]
        return "{" + ", ".join(f"{_toml_key(k)} = {v}" for k, v in pairs if v is not None) + "}"
    raise AssertionError(value)


def to_toml(data: Any) -> str:
    """A document: top-level tables as ``[section]`` headers, the rest inline; a value that
    is not a table is written as ``value = ...`` (still valid TOML, rejected by the loaders)."""
    if not isinstance(data, dict):
        spelled = _toml_value(data)
        return "" if spelled is None else f"value = {spelled}\n"
    lines = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif key == "rules" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for table in value:
                tables.append(("[rules]", table))
        else:
            spelled = _toml_value(value)
            if spelled is not None:
                lines.append(f"{_toml_key(key)} = {spelled}")
    for key, table in tables:
        header = "[[rules]]" if key == "[rules]" else f"[{_toml_key(key)}]"
        lines.append(header)
        for name, value in table.items():
            spelled = _toml_value(value)
            if spelled is not None:
                lines.append(f"{_toml_key(name)} = {spelled}")
    return "\n".join(lines) + "\n"


_junk_documents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"a = " + b"[" * 3000 + b"]" * 3000,
            b"a = " + b"{b=" * 2000 + b"1" + b"}" * 2000,
            b"[[rules]]\nname = 'x'\nfrom = 'gpt-4o'\nto = 'gpt-4o-mini'\nsample = 1e999\n",
            b'[models."gpt-4o"]\ninput = 99999999999999999999999999\noutput = 1\n',
            b"\xff\xfe",
            b'mode = "enforce"\nmode = "shadow"\n',
        ]
    ),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return PriceTable()  # the bundled data, imported once for the whole module


# --- 1. the policy loader -------------------------------------------------------------

_calls = st.builds(
    lambda endpoint, model, text, extra, task, key: CallView(
        endpoint=endpoint,
        operation="chat",
        model=model,
        kwargs={
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "input": text,
            "prompt": text,
            **extra,
        },
        task=task,
        key=key,
    ),
    st.sampled_from([CHAT, RESPONSES, COMPLETIONS]),
    st.one_of(st.sampled_from(_MODELS), st.text(max_size=10)),
    st.text(max_size=60),
    st.fixed_dictionaries(
        {},
        optional={
            "tools": st.sampled_from([[{"type": "function"}], [], None]),
            "max_tokens": st.one_of(st.none(), st.integers(0, 10_000)),
            "max_completion_tokens": st.integers(0, 10_000),
            "response_format": st.sampled_from([{"type": "json_object"}, None]),
            "user": st.text(max_size=5),
            "stream": st.booleans(),
        },
    ),
    st.one_of(st.none(), st.sampled_from(["classify", "chat"])),
    st.one_of(st.none(), st.text(max_size=5)),
)


def _check_policy(policy: RulePolicy, calls: list[CallView]) -> None:
    for call in calls:
        policy.decide(call)
        policy.explain(call)


@PROPS
@given(data=policy_data, calls=st.lists(_calls, max_size=3))
def test_policy_from_dict_raises_only_config_error(data: Any, calls: list[CallView]) -> None:
    try:
        policy = RulePolicy.from_dict(data)
    except ConfigError:
        return
    _check_policy(policy, calls)


@PROPS
@given(data=policy_data, mode=st.sampled_from([None, "enforce", "shadow", "off"]))
def test_policy_file_raises_only_config_error(scratch: Path, data: Any, mode: str | None) -> None:
    path = scratch / "policy.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    try:
        policy = RulePolicy.load(path, mode=mode)
    except ConfigError:
        return
    _check_policy(
        policy, [CallView(endpoint=CHAT, operation="chat", model=m, kwargs={}) for m in _MODELS]
    )


@FEW
@given(document=_junk_documents)
def test_policy_file_of_junk_raises_only_config_error(scratch: Path, document: bytes) -> None:
    path = scratch / "junk-policy.toml"
    path.write_bytes(document)
    with contextlib.suppress(ConfigError):
        RulePolicy.load(path)


def test_policy_loader_reaches_success_and_known_edge_cases(scratch: Path) -> None:
    valid = {"rules": [{"name": "r", "from": ["gpt-4o"], "to": "gpt-4o-mini", "sample": 0.5}]}
    path = scratch / "valid.toml"
    path.write_text(to_toml(valid), encoding="utf-8")
    assert RulePolicy.load(path).rules[0].sample == 0.5  # the serialiser writes loadable TOML
    base = {"name": "r", "from": ["gpt-4o"], "to": "gpt-4o-mini"}
    for extra in (
        {"sample": 10**400},  # used to overflow math.isfinite
        {"prompt": ["a{1001}"]},  # RE2 counts up to 1000
        {"prompt": ["a{99999999999999999999}"]},  # re: OverflowError; RE2 would read it as text
    ):
        with pytest.raises(ConfigError, match=r"rules\[0\]"):
            RulePolicy.from_dict({"rules": [{**base, **extra}]})
    for pattern in ("(" * 1000 + "a" + ")" * 1000,):  # hit RecursionError in re; RE2 compiles it
        assert RulePolicy.from_dict({"rules": [{**base, "prompt": [pattern]}]}).rules[0].prompt
    path.write_bytes(b"a = " + b"[" * 3000 + b"]" * 3000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        RulePolicy.load(path)


# --- 2. the prices loader --------------------------------------------------------------


def _load_prices(path: Path, table: PriceTable) -> None:
    """What ``PriceTable.load(path)`` does, with the bundled data loaded once."""
    overrides = load_overrides(path, known_model=lambda name: table._data.find(name) is not None)
    for name, rates in overrides.models:
        assert rates.input >= 0 and rates.output >= 0, name
        assert math.isfinite(rates.input) and math.isfinite(rates.output), name


@PROPS
@given(data=prices_data)
def test_prices_file_raises_only_config_error(
    scratch: Path, price_table: PriceTable, data: Any
) -> None:
    path = scratch / "prices.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    with contextlib.suppress(ConfigError):
        _load_prices(path, price_table)


@FEW
@given(document=_junk_documents)
def test_prices_file_of_junk_raises_only_config_error(
    scratch: Path, price_table: PriceTable, document: bytes
) -> None:
    path = scratch / "junk-prices.toml"
    path.write_bytes(document)
    with contextlib.suppress(ConfigError):
        _load_prices(path, price_table)


def test_price_table_load_entry_point(scratch: Path) -> None:
    """``instrument()``'s own entry point, on the edge cases the properties found."""
    path = scratch / "edge-prices.toml"
    for document in (
        b'[models."gpt-4o"]\ninput = ' + b"9" * 400 + b"\noutput = 1\n",
        b"a = " + b"[" * 3000 + b"]" * 3000,
        b'[aliases]\n"prod" = "no-such-model-anywhere"\n',
    ):
        path.write_bytes(document)
        with pytest.raises(ConfigError, match=r"edge-prices\.toml"):
            PriceTable.load(str(path))
    path.write_bytes(b'[models."house-7"]\ninput = 1\noutput = 2\n[aliases]\n"prod" = "gpt-4o"\n')
    assert PriceTable.load(str(path)).rates("prod") is not None


# --- 3. the usage extractor ------------------------------------------------------------

_counts = st.one_of(
    st.integers(min_value=-5, max_value=10**6),
    _big_ints,
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["12", "-3", "1e3", "", "NaN"]),
    st.lists(st.integers(0, 5), max_size=2),
    st.dictionaries(st.sampled_from(_USAGE_KEYS), st.integers(0, 9), max_size=2),
)
_details = st.one_of(
    st.none(),
    scalars,
    st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            ("cached_tokens", "cache_write_tokens", "audio_tokens", "image_tokens"), _counts
        ),
    ),
    st.fixed_dictionaries({}, optional={"reasoning_tokens": _counts, "audio_tokens": _counts}),
)
_usage_dicts = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(
            ("input_tokens", "output_tokens", "prompt_tokens", "completion_tokens", "total_tokens"),
            _counts,
        ),
        **dict.fromkeys(
            (
                "input_tokens_details",
                "input_token_details",
                "output_tokens_details",
                "prompt_tokens_details",
                "completion_tokens_details",
            ),
            _details,
        ),
        "junk": json_values(_USAGE_KEYS, max_leaves=5),
    },
)
usages = st.one_of(_usage_dicts, _usage_dicts, json_values(_USAGE_KEYS, max_leaves=10))
_junk = json_values(_SHAPE_KEYS + _USAGE_KEYS, max_leaves=8)
_str_or_junk = st.one_of(st.text(max_size=8), scalars)
_tool_calls = st.one_of(
    _junk,
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "index": _junk,
                "id": _str_or_junk,
                "function": st.one_of(
                    _junk,
                    st.fixed_dictionaries(
                        {}, optional={"name": _str_or_junk, "arguments": _str_or_junk}
                    ),
                ),
            },
        ),
        max_size=2,
    ),
)
_choices = st.one_of(
    _junk,
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "index": st.one_of(st.integers(-2, 3), _junk),
                "finish_reason": _str_or_junk,
                "text": _str_or_junk,
                "message": st.one_of(
                    _junk,
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "content": _str_or_junk,
                            "refusal": _str_or_junk,
                            "tool_calls": _tool_calls,
                        },
                    ),
                ),
                "delta": st.one_of(
                    _junk,
                    st.fixed_dictionaries(
                        {}, optional={"content": _str_or_junk, "tool_calls": _tool_calls}
                    ),
                ),
            },
        ),
        max_size=3,
    ),
)
_output_items = st.one_of(
    _junk,
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(
                    st.sampled_from(["message", "function_call", "web_search_call"]), _junk
                ),
                "content": st.one_of(
                    _junk,
                    st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "type": st.sampled_from(["output_text", "refusal"]),
                                "text": _str_or_junk,
                                "refusal": _str_or_junk,
                            },
                        ),
                        max_size=2,
                    ),
                ),
                "call_id": _str_or_junk,
                "name": _str_or_junk,
                "arguments": _str_or_junk,
            },
        ),
        max_size=3,
    ),
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "id": _str_or_junk,
        "model": _str_or_junk,
        "object": _str_or_junk,
        "service_tier": _str_or_junk,
        "system_fingerprint": _str_or_junk,
        "usage": st.one_of(usages, usages, _junk),
        "choices": _choices,
        "status": st.one_of(
            st.sampled_from(["completed", "incomplete", "failed", "queued"]), _junk
        ),
        "output": _output_items,
        "incomplete_details": st.one_of(
            _junk, st.fixed_dictionaries({}, optional={"reason": _str_or_junk})
        ),
        "data": _junk,
    },
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(_EVENT_TYPES), _junk),
        "response": st.one_of(_bodies, _junk),
    },
)
responses = st.one_of(_bodies, _bodies, _junk)
chunks = st.one_of(_bodies, _events, _events, _junk)
_endpoints = st.sampled_from([CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS, "images", "audio"])


def _ints_in(value: Any, found: set[int] | None = None) -> set[int]:
    """Every non-negative, non-bool int anywhere in ``value`` (JSON-like or namespaces)."""
    found = set() if found is None else found
    if isinstance(value, bool):
        return found
    if isinstance(value, int):
        if value >= 0:
            found.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _ints_in(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _ints_in(item, found)
    elif isinstance(value, SimpleNamespace):
        _ints_in(vars(value), found)
    return found


def _check_usage(usage: Usage | None, source: Any) -> None:
    if usage is None:
        return
    allowed = _ints_in(source)
    for item in dataclasses.fields(usage):
        count = getattr(usage, item.name)
        if count is None:
            continue
        assert type(count) is int, (item.name, count)
        assert count >= 0, (item.name, count)
        assert count in allowed, f"{item.name}={count} was invented"


def _as_objects(value: Any) -> Any:
    """The same data as attribute objects (the SDK's pydantic models are read by getattr)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): _as_objects(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_as_objects(item) for item in value]
    return value


@PROPS
@given(usage=usages)
def test_read_usage_never_raises_nor_invents(usage: Any) -> None:
    _check_usage(read_usage(usage), usage)
    _check_usage(read_usage(_as_objects(usage)), usage)


@PROPS
@given(usage=usages)
def test_negative_bool_string_float_counts_are_omitted(usage: Any) -> None:
    result = read_usage(usage)
    if not isinstance(usage, dict) or result is None:
        return
    for name in ("input_tokens", "prompt_tokens", "output_tokens", "completion_tokens"):
        value = usage.get(name)
        if value is not None and (
            isinstance(value, (bool, str, float)) or (isinstance(value, int) and value < 0)
        ):
            assert value not in (result.input_tokens, result.output_tokens) or (
                isinstance(value, int) and value >= 0
            )
    assert all(
        getattr(result, f.name) is None or getattr(result, f.name) >= 0
        for f in dataclasses.fields(result)
    )


@PROPS
@given(endpoint=_endpoints, body=responses, capture=st.booleans(), objects=st.booleans())
def test_read_response_never_raises_nor_invents(
    endpoint: str, body: Any, capture: bool, objects: bool
) -> None:
    outcome = Outcome()
    read_response(endpoint, _as_objects(body) if objects else body, outcome, capture=capture)
    _check_usage(outcome.usage, body)


@PROPS
@given(
    endpoint=_endpoints,
    stream=st.lists(chunks, min_size=1, max_size=4),
    capture=st.booleans(),
    objects=st.booleans(),
)
def test_read_chunk_never_raises_nor_invents(
    endpoint: str, stream: list[Any], capture: bool, objects: bool
) -> None:
    outcome = Outcome()
    for chunk in stream:
        result = read_chunk(
            endpoint, _as_objects(chunk) if objects else chunk, outcome, capture=capture
        )
        assert isinstance(result, bool)
    _check_usage(outcome.usage, stream)
    assert outcome.chunks == len(stream)


@PROPS
@given(usage=usages)
def test_usage_from_raises_only_its_documented_type_error(usage: Any) -> None:
    """``llmmeter.price``'s reader: a ``TypeError`` for what is not usage, by design."""
    try:
        result = usage_from(usage)
    except TypeError:
        return
    _check_usage(result, usage)


def test_extractor_edge_cases() -> None:
    """Shapes the properties found raising before the fix (non-list lists, unhashable
    event types) and token counts that must be omitted."""
    outcome = Outcome()
    read_response(CHAT, {"choices": 5, "usage": {"prompt_tokens": -1}}, outcome, capture=True)
    assert outcome.usage is None  # no usable count: no usage at all (and no $0 cost)
    read_response(RESPONSES, {"status": "completed", "output": 3}, outcome, capture=True)
    read_chunk(RESPONSES, {"type": ["response.completed"]}, outcome, capture=True)
    read_chunk(CHAT, {"choices": [{"delta": {"tool_calls": 1.5}}]}, outcome, capture=True)
    read_response(CHAT, {"choices": [{"message": {"tool_calls": True}}]}, outcome, capture=True)
    usage = read_usage(
        {
            "input_tokens": -3,
            "output_tokens": True,
            "input_tokens_details": {"cached_tokens": "7", "audio_tokens": 2.0},
            "output_tokens_details": {"reasoning_tokens": -1},
        }
    )
    assert usage is None


# --- 4. environment variables ----------------------------------------------------------


def _config_error(check: Callable[[], object]) -> str | None:
    """The message of the ``ConfigError`` ``check`` raises, or ``None`` if it succeeds (any
    other exception propagates and fails the test)."""
    try:
        check()
    except ConfigError as exc:
        return str(exc)
    return None


# (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is shared with other instrumentations:
# an unknown value is logged once and records nothing, see test_config.py.)
_SETTINGS_INVALID = {
    "LLMMETER_INJECT_STREAM_USAGE": ["maybe", "-1", "nope"],
    "LLMMETER_STRICT": ["maybe", "strict", "10"],
    "LLMMETER_CONTENT_MAX_LENGTH": ["0", "-5", "abc", "1.5", "1e3", "9" * 5000],
    "LLMMETER_POLICY_MODE": ["enforced", "on", "true", "none"],
}


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, values in _SETTINGS_INVALID.items() for value in values],
)
def test_invalid_setting_raises_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        resolve_settings(environ={name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Documented fallbacks: an empty (or blank) value is the default, as unset.
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", ""),
        ("LLMMETER_INJECT_STREAM_USAGE", ""),
        ("LLMMETER_STRICT", "  "),
        ("LLMMETER_CONTENT_MAX_LENGTH", ""),
        ("LLMMETER_POLICY_MODE", ""),
        ("LLMMETER_PRICES", ""),
        ("LLMMETER_POLICY", ""),
    ],
)
def test_empty_setting_is_its_default(name: str, value: str) -> None:
    got = resolve_settings(environ={name: value})
    assert got.content_max_length == DEFAULT_CONTENT_MAX_LENGTH
    assert got.policy_mode is None and got.prices_path is None and got.policy_path is None
    assert got.strict is False and got.capture_content is False
    assert got.inject_stream_usage == "auto"


@pytest.mark.parametrize("name", ["LLMMETER_PRICES", "LLMMETER_POLICY"])
def test_path_variables_are_validated_when_loaded(scratch: Path, name: str) -> None:
    """Paths are not checked by resolve_settings; the loaders reject a bad one."""
    missing = str(scratch / "does-not-exist.toml")
    assert resolve_settings(environ={name: missing}) is not None
    load = PriceTable.load if name == "LLMMETER_PRICES" else RulePolicy.load
    with pytest.raises(ConfigError, match=r"does-not-exist\.toml"):
        load(missing)


@FEW
@given(value=st.text(max_size=30))
def test_any_setting_value_is_accepted_or_a_config_error(value: str) -> None:
    for name in _SETTINGS_INVALID:
        message = _config_error(lambda: resolve_settings(environ={name: value}))  # noqa: B023
        assert message is None or name in message


_EXPORTERS = {"OTEL_TRACES_EXPORTER": _TRACE_EXPORTERS, "OTEL_METRICS_EXPORTER": _METRIC_EXPORTERS}


@pytest.mark.parametrize("name", sorted(_EXPORTERS))
@pytest.mark.parametrize("value", ["jaeger", "otlp,zipkin", "otlp;console", "prometheus2"])
def test_invalid_exporter_raises_config_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _exporter_names({name: value}, name, _EXPORTERS[name])


@pytest.mark.parametrize("name", sorted(_EXPORTERS))
@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_empty_exporter_list_is_the_documented_default_otlp(name: str, value: str) -> None:
    assert _exporter_names({name: value}, name, _EXPORTERS[name]) == ["otlp"]


@pytest.mark.parametrize(
    "key",
    [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ],
)
@pytest.mark.parametrize("value", ["http/json", "http", "", "grpcs", "HTTP/PROTOBUF2"])
def test_invalid_protocol_raises_config_error(key: str, value: str) -> None:
    signal = "METRICS" if "METRICS" in key else "TRACES"
    with pytest.raises(ConfigError, match=key):
        _protocol({key: value}, signal)


@pytest.mark.parametrize("value", ["-1", "65536", "http", "", "80.5", "9" * 5000])
def test_invalid_prometheus_port_raises_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        _prometheus_address({"OTEL_EXPORTER_PROMETHEUS_PORT": value})


@FEW
@given(
    traces=st.text(max_size=20),
    metrics=st.text(max_size=20),
    protocol=st.text(max_size=20),
    port=st.text(max_size=12),
)
def test_any_exporter_value_is_accepted_or_a_config_error(
    traces: str, metrics: str, protocol: str, port: str
) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": traces,
        "OTEL_METRICS_EXPORTER": metrics,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_PROMETHEUS_PORT": port,
    }
    checks = [
        (
            "OTEL_TRACES_EXPORTER",
            lambda: _exporter_names(env, "OTEL_TRACES_EXPORTER", _TRACE_EXPORTERS),
        ),
        (
            "OTEL_METRICS_EXPORTER",
            lambda: _exporter_names(env, "OTEL_METRICS_EXPORTER", _METRIC_EXPORTERS),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", lambda: _protocol(env, "TRACES")),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", lambda: _prometheus_address(env)),
    ]
    for name, check in checks:
        message = _config_error(check)
        assert message is None or name in message
