"""Fuzzing what llmmeter reads from outside: configuration files and API answers (issue 18).

``test_properties.py`` feeds the loaders well-formed TOML of every shape and the readers
JSON-like dicts and namespaces. This module goes under and beside that:

- the policy and prices *files*: valid documents mutated byte by byte and spliced with TOML
  fragments (long and hex integers, deep nesting, dates, escapes, stray brackets), arbitrary
  bytes, and paths that are not regular files, must give a ``RulePolicy`` / ``Overrides`` or a
  ``ConfigError``, nothing else; and the memory a load takes stays a bounded multiple of the
  file, whose size is bounded;
- the response and usage readers, fed the openai SDK's own pydantic models built with odd
  field values (``model_construct`` skips validation, as a changed API or a proxy can), and
  raw bodies of any bytes, never raise and never report a token count the input lacks.

The budget is the hypothesis profile (tests/conftest.py): ``llmmeter-ci`` by default, bounded
and reproducible; ``LLMMETER_FUZZ=long`` runs 20,000 examples a test with a fresh seed
(docs/testing.md).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmmeter import ConfigError
from llmmeter._configfile import MAX_CONFIG_BYTES
from llmmeter._policy import CallView
from llmmeter._pricing import Overrides, load_overrides
from llmmeter._rules import RulePolicy
from llmmeter._usage import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    Outcome,
    Usage,
    parse_json_body,
    read_chunk,
    read_response,
    read_usage,
)

# --- the files ---------------------------------------------------------------------------

POLICY_SEEDS = (
    b'[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n',
    b'mode = "shadow"\nfallback = "off"\nevaluation_budget_usd = 2.5\n'
    b'[deployments]\n"gpt-4o-mini" = "prod-mini"\n'
    b'[[rules]]\nname = "classify-to-mini"\nfrom = ["gpt-4o", "gpt-4.1*"]\nto = "gpt-4o-mini"\n'
    b'apis = ["chat_completions"]\ntasks = ["classify"]\nprompt = ["(?i)\\\\bclassify\\\\b"]\n'
    b"min_input_tokens = 10\nmax_input_tokens = 4000\nmax_output_tokens = 50\n"
    b'allow_tools = false\nsample = 0.25\nevaluate = 0.05\ncompare = "label"\n'
    b'label = "^(yes|no)"\nagreement_target = 0.9\n'
    b"when_spend_over = { daily_budget_usd = 100 }\n",
)
PRICES_SEEDS = (
    b'[models."house-7"]\ninput = 1\noutput = 2\n',
    b'[models."ft:gpt-4o-mini:acme:*"]\ninput = 0.3\ncached_input = 0.15\noutput = 1.2\n'
    b'input_audio = 40\n[aliases]\n"prod-house" = "house-7"\n'
    b'[models."house-7"]\ninput = 1\noutput = 2\n',
)
_FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            b"[",
            b"]",
            b"[[",
            b"]]",
            b"{",
            b"}",
            b"=",
            b",",
            b".",
            b'"',
            b"'",
            b'"""',
            b"'''",
            b"\n",
            b"#",
            b"\\",
            b"\\u0000",
            b"\\UFFFFFFFF",
            b"\xff",
            b"\xc3",
            b"\x00",
            b"inf",
            b"-nan",
            b"1e999",
            b"-0",
            b"0.0",
            b"true",
            b"1979-05-27T07:32:00Z",
            b"9999-99-99",
            b"07:32:60",
            b"rules",
            b"name",
            b"from",
            b"to",
            b"sample",
            b"prompt",
            b"models",
            b"aliases",
            b"input",
            b"output",
            b"(?P<x>",
            b"a{99999999999999999999}",
        ]
    ),
    st.integers(1, 6000).map(lambda n: b"9" * n),  # past the interpreter's 4300 digits
    st.integers(1, 5000).map(lambda n: b"0x" + b"f" * n),  # parses, too long to print
    st.integers(1, 4000).map(lambda n: b"[" * n),  # deeper than tomllib's recursion
    st.integers(1, 2000).map(lambda n: b"a={" * n),
)


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed document with a few random edits: splice a fragment, cut a range, flip a byte,
    repeat a line."""
    document = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(document)))
        edit = draw(st.sampled_from(["splice", "cut", "flip", "repeat"]))
        if edit == "splice":
            document[at:at] = draw(_FRAGMENTS)
        elif edit == "cut":
            del document[at : at + draw(st.integers(1, 40))]
        elif edit == "flip" and at < len(document):
            document[at] = draw(st.integers(0, 255))
        elif edit == "repeat":
            start = document.rfind(b"\n", 0, at) + 1
            end = document.find(b"\n", at)
            line = bytes(document[start : len(document) if end < 0 else end + 1])
            document[start:start] = line * draw(st.integers(1, 3))
    return bytes(document)


def documents(seeds: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(seeds), mutated(seeds), mutated(seeds), st.binary(max_size=300), st.just(b"")
    )


# What sits at the path: anything but a regular file must be refused without being read.
KINDS = (
    "regular",
    "link-to-regular",
    "missing",
    "directory",
    "link-to-directory",
    "dangling-link",
    "device",
    "socket",
    "over-the-bound",
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def _place(scratch: Path, kind: str, document: bytes) -> str:
    """Make ``kind`` at a fresh path in ``scratch`` and return the path."""
    base = Path(tempfile.mkdtemp(dir=scratch))
    path = base / "config.toml"
    target = base / "target"
    if kind in ("regular", "link-to-regular"):
        target.write_bytes(document)
    elif kind == "over-the-bound":
        target.write_bytes(document + b"\n#" + b"x" * MAX_CONFIG_BYTES)
    elif kind in ("directory", "link-to-directory"):
        target.mkdir()
    if kind in ("regular", "over-the-bound", "directory"):
        target.rename(path)
    elif kind.startswith("link-to") or kind == "dangling-link":
        try:
            path.symlink_to(target)
        except OSError:
            pytest.skip("no symbolic links here")
    elif kind == "device":
        if not os.path.exists(os.devnull) or os.name != "posix":
            pytest.skip("no character device here")
        return os.devnull
    elif kind == "socket":
        if not hasattr(socket, "AF_UNIX") or len(str(path)) > 100:
            pytest.skip("no Unix socket here")
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    return str(path)


_CALLS = [
    CallView(endpoint=CHAT, operation="chat", model=model, kwargs={"messages": messages})
    for model in ("gpt-4o", "gpt-4.1-mini", "house-7")
    for messages in ([], [{"role": "user", "content": "please classify this"}])
]


def _use_policy(policy: RulePolicy) -> None:
    """A policy that loaded decides and explains calls without raising."""
    try:
        for call in _CALLS:
            policy.decide(call)
            policy.explain(call)
    finally:
        policy.stop_watching()


# re warns (FutureWarning) of a set a future Python may read differently, such as "[[" in a
# prompt or label pattern; outside -W error that is a line on stderr, not a failed load.
RE_FUTURE_SETS = pytest.mark.filterwarnings("ignore:Possible (nested set|set ):FutureWarning")


@RE_FUTURE_SETS
@given(document=documents(POLICY_SEEDS))
@example(document=b"mode = " + b"9" * 5000 + b"\n")  # tomllib's bare ValueError
@example(document=POLICY_SEEDS[0] + b"sample = 0x" + b"f" * 4000 + b"\n")  # unprintable int
@example(document=b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n")
@example(document=POLICY_SEEDS[1].replace(b'label = "', b'label = "a{99999999999999999999}'))
def test_policy_file_loads_or_raises_config_error(scratch: Path, document: bytes) -> None:
    path = _place(scratch, "regular", document)
    policy, problem = _load(RulePolicy.load, path)
    if policy is None:
        assert problem.startswith(path), problem[:200]
    else:
        assert isinstance(policy, RulePolicy)
        _use_policy(policy)


@given(document=documents(PRICES_SEEDS))
@example(document=b'[models."m"]\ninput = ' + b"9" * 5000 + b"\noutput = 1\n")
@example(document=b'[models."m"]\ninput = 0x' + b"f" * 4000 + b"\noutput = 1\n")
def test_prices_file_loads_or_raises_config_error(scratch: Path, document: bytes) -> None:
    path = _place(scratch, "regular", document)
    overrides, problem = _load(load_overrides, path)
    if overrides is None:
        assert problem.startswith(path), problem[:200]
    else:
        assert isinstance(overrides, Overrides)


def _load(loader: Callable[[str], object], path: str) -> tuple[object | None, str]:
    """What ``loader`` returned, or ``None`` and its ``ConfigError``'s message (any other
    exception fails the test)."""
    try:
        return loader(path), ""
    except ConfigError as exc:
        return None, str(exc)


def _load_and_use_policy(path: str) -> RulePolicy:
    policy = RulePolicy.load(path)
    _use_policy(policy)
    return policy


LOADERS: dict[str, Callable[[str], object]] = {
    "policy": _load_and_use_policy,
    "prices": load_overrides,
}


@RE_FUTURE_SETS
@given(
    loader=st.sampled_from(sorted(LOADERS)),
    kind=st.sampled_from(KINDS),
    document=documents(POLICY_SEEDS + PRICES_SEEDS),
)
def test_whatever_sits_at_the_path_is_read_as_a_regular_file_or_refused(
    scratch: Path, loader: str, kind: str, document: bytes
) -> None:
    path = _place(scratch, kind, document)
    loaded, problem = _load(LOADERS[loader], path)
    if loaded is None:
        assert problem.startswith(path), problem[:200]
        if kind not in ("regular", "link-to-regular", "missing", "dangling-link"):
            assert "regular file" in problem or "at most 1 MiB" in problem, problem[:200]
    else:
        assert kind in ("regular", "link-to-regular"), f"{kind} was read"


# The shapes that take the most memory per byte of the file we know of (each a 1 MiB file
# peaks at 35-70 MiB of Python objects): many tiny values, tables and array tables.
_HEAVY_UNITS = (b"0,", b"[],", b"{},", b"'',")


@settings(max_examples=max(10, settings.default.max_examples // 10))  # tracemalloc is slow
@given(
    unit=st.sampled_from(_HEAVY_UNITS),
    size=st.integers(1024, 32 * 1024),
    table_rows=st.booleans(),
    loader=st.sampled_from(sorted(LOADERS)),
)
def test_the_memory_a_load_takes_is_a_bounded_multiple_of_the_file(
    scratch: Path, unit: bytes, size: int, table_rows: bool, loader: str
) -> None:
    """Files are at most 1 MiB, so this bounds what any configuration file can cost: at most
    128 times its size (the measured worst is 70; docs/reliability.md)."""
    if table_rows:
        document = b"[[a]]\n" * (size // 6)
    else:
        document = b"a = [" + unit * ((size - 7) // len(unit)) + b"]\n"
    path = _place(scratch, "regular", document)
    tracemalloc.start()
    try:
        LOADERS[loader](path)
    except ConfigError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 128 * len(document) + (2 << 20), (peak, len(document))


# --- the readers ---------------------------------------------------------------------------


def _sdk_models() -> list[type[Any]]:
    from openai.types import Completion, CompletionUsage, CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice
    from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
    from openai.types.chat.chat_completion_chunk import ChoiceDelta
    from openai.types.responses import (
        Response,
        ResponseCompletedEvent,
        ResponseOutputMessage,
        ResponseUsage,
    )

    return [
        ChatCompletion,
        ChatCompletionChunk,
        Choice,
        ChunkChoice,
        ChoiceDelta,
        ChatCompletionMessage,
        CompletionUsage,
        Completion,
        CreateEmbeddingResponse,
        Response,
        ResponseCompletedEvent,
        ResponseOutputMessage,
        ResponseUsage,
    ]


_KEYS = (
    "id",
    "model",
    "choices",
    "index",
    "finish_reason",
    "message",
    "delta",
    "content",
    "text",
    "tool_calls",
    "function",
    "arguments",
    "type",
    "response",
    "status",
    "output",
    "incomplete_details",
    "service_tier",
    "usage",
    "input_tokens",
    "output_tokens",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "image_tokens",
    "weird",
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.sampled_from([2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["stop", "length", "response.completed", "message", "completed"]),
)


def _constructed(model: type[Any], fields: dict[str, Any]) -> Any:
    """The SDK's model with these values, unvalidated, as a changed API could send them."""
    return model.model_construct(**fields)


def sdk_values(models: list[type[Any]]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(_KEYS), children, max_size=5),
            st.builds(
                _constructed,
                st.sampled_from(models),
                st.dictionaries(st.sampled_from(_KEYS), children, max_size=6),
            ),
        ),
        max_leaves=20,
    )


def _ints_in(value: Any, found: set[int] | None = None, depth: int = 0) -> set[int]:
    """Every non-negative int (not bool) anywhere in ``value``, models included."""
    found = set() if found is None else found
    if depth > 50 or isinstance(value, bool):
        return found
    if isinstance(value, int):
        if value >= 0:
            found.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _ints_in(item, found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _ints_in(item, found, depth + 1)
    elif hasattr(value, "__pydantic_extra__"):
        _ints_in(dict(value.__dict__), found, depth + 1)
        _ints_in(value.__pydantic_extra__ or {}, found, depth + 1)
    return found


def _check_usage(usage: Usage | None, source: Any) -> None:
    if usage is None:
        return
    allowed = _ints_in(source)
    for name in Usage.__dataclass_fields__:
        count = getattr(usage, name)
        assert count is None or (type(count) is int and count in allowed), (name, count)


@pytest.fixture(scope="module")
def models() -> list[type[Any]]:
    pytest.importorskip("openai")
    return _sdk_models()


_ENDPOINTS = st.sampled_from([CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS, "images", "audio"])


@given(data=st.data(), endpoint=_ENDPOINTS, capture=st.booleans())
def test_readers_take_sdk_models_with_odd_fields_without_raising(
    models: list[type[Any]], data: st.DataObject, endpoint: str, capture: bool
) -> None:
    values = sdk_values(models)
    body = data.draw(values, label="response")
    outcome = Outcome()
    read_response(endpoint, body, outcome, capture=capture)
    _check_usage(outcome.usage, body)
    _check_usage(read_usage(body), body)
    stream = data.draw(st.lists(values, min_size=1, max_size=4), label="stream")
    outcome = Outcome()
    for chunk in stream:
        assert isinstance(read_chunk(endpoint, chunk, outcome, capture), bool)
    _check_usage(outcome.usage, stream)
    assert outcome.chunks == len(stream)


_JSON_TEXT = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=15,
)


@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 200_000).map(lambda n: b'{"a":' * n),
        _JSON_TEXT.map(lambda value: json.dumps(value).encode()),
    ),
    endpoint=_ENDPOINTS,
)
@example(body=b"[" * 100_000, endpoint=CHAT)  # deeper than the JSON decoder's stack
def test_raw_bodies_parse_to_a_value_or_none_and_read_without_raising(
    body: bytes, endpoint: str
) -> None:
    """A raw HTTP body the SDK returned (``with_raw_response``) is parsed by us: whatever
    the bytes, it is JSON to read or ``None`` (no usage to read), never an exception."""
    parsed = parse_json_body(body)
    if parsed is not None:
        outcome = Outcome()
        read_response(endpoint, parsed, outcome, capture=True)
        _check_usage(outcome.usage, parsed)
