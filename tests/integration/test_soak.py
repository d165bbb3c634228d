"""Long runs stay flat: a short soak produces all its telemetry, and every container llmmeter
keeps beyond one call stays within its cap however many distinct keys flow through it.

The audit (what lives longer than a call, and what bounds it):

- ``_runtime.Runtime._counted``: Responses ids; LRU of ``MAX_REMEMBERED``.
- ``_runtime.Runtime._rejected``: servers that refused ``stream_options``; ``MAX_REMEMBERED``,
  then not remembered.
- ``_runtime.Runtime._client_kinds``: client classes; ``MAX_CLIENT_KINDS``, then not remembered.
- ``_runtime.Runtime._servers``: base URL objects with their host and port; ``MAX_SERVERS``,
  then cleared.
- ``_runtime.Runtime._shapes``: (method, model, server, task, Azure) with their constant
  attributes; ``MAX_SHAPES``, then cleared.
- ``_pricing.PriceTable._models``: model names; ``_MAX_NAMES``, then not cached.
- ``_pricing.PriceTable._rates``: (name, tier, batch, day); ``_MAX_NAMES``, then cleared.
- ``_pricing.PriceTable._warned``: unpriced names warned about; ``_MAX_NAMES``.
- ``_rules._Compiled.by_model``: model names; ``_MAX_CACHED_MODELS``, then cleared.
- ``_guard.Guard._seen``: site names (llmmeter's code) and up to ``_MAX_WARNED`` warning
  names (one is built from data: a policy's target model).
- ``_guard.Guard._sites``: site names, literals in llmmeter's code.
- ``_bootstrap._ExporterLog._first``: exporter logger names, a fixed tuple.
- ``_instrumentor.Registry._applied``: patched methods, rows of ``_targets``.

Per-call state (``Call``, ``Outcome``, ``CallView``, stream and raw proxies) is counted by
tests/integration/test_memory.py and by the soak. The caps are lowered here so that a few
hundred calls through the real SDK reach them; the values themselves are pinned by the last
tests.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import llmmeter
from llmmeter import _guard, _pricing, _rules, _runtime
from llmmeter._instrumentor import REGISTRY
from tests.conftest import make_telemetry

# Runs by itself (tests/conftest.py): a long run of calls whose memory is measured.
pytestmark = pytest.mark.alone

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "llmmeter_bench_soak", ROOT / "benchmarks/soak.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    pytest.importorskip("openai")
    module = _load_soak()
    yield module
    sys.modules.pop(module.__name__, None)


# --- the soak ------------------------------------------------------------------------------


def test_short_soak_produces_valid_telemetry_and_every_sample(soak: ModuleType) -> None:
    """Every call exported its span, priced where it got usage; nothing per-call survives."""
    report = soak.run(3000, 1000, warmup=400, trace_from=2000, strict=True)
    assert report.valid, [c for c in report.checks if not c.ok]
    assert {c.name for c in report.checks} >= {"spans", "priced spans", "abandoned streams"}
    samples = report.samples
    assert [s.calls for s in samples] == [0, 1000, 2000, 3000]
    assert [s.spans for s in samples] == [400, 1400, 2400, 3400]
    assert [s.traced_mib is not None for s in samples] == [False, False, True, True]
    assert all(s.rss_mib > 0 for s in samples)
    assert report.top  # the tracemalloc growth lines were computed
    assert samples[-1].live == samples[0].live
    assert report.kinds["abandon"] * 10 == sum(
        n for kind, n in report.kinds.items() if "stream" in kind or kind == "abandon"
    )
    assert REGISTRY.runtime() is None  # run() uninstrumented


def test_soak_command_line_prints_json_and_exits_zero(
    soak: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = soak.main(["--calls", "40", "--every", "20", "--warmup", "0", "--frames", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["valid"] is True
    assert [s["calls"] for s in report["samples"]] == [0, 20, 40]
    assert report["trace_from"] is None
    assert report["top"] == []


# --- an API that answers every key with a new one --------------------------------------------


class EchoAPI:
    """A ``MockTransport`` handler: every answer names the requested model (plus a suffix)
    and carries a fresh id; with ``reject_stream_options`` it refuses ``stream_options`` with
    the 400 some OpenAI-compatible servers send."""

    def __init__(self, httpx_mod: Any, *, reject_stream_options: bool = False) -> None:
        self.httpx = httpx_mod
        self.reject_stream_options = reject_stream_options
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        self.requests += 1
        body = json.loads(request.content)
        model = f"{body['model']}-answered"
        usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        if self.reject_stream_options and "stream_options" in body:
            error = {
                "message": "Unrecognized request argument supplied: stream_options",
                "type": "invalid_request_error",
                "param": "stream_options",
                "code": None,
            }
            return self.httpx.Response(400, json={"error": error})
        if request.url.path.endswith("/responses"):
            return self.httpx.Response(200, json=_response(f"resp_{self.requests}", model))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if body.get("stream"):
            chunk = {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [{**choice, "delta": {"role": "assistant", "content": "Hi"}}],
            }
            sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            return self.httpx.Response(
                200, content=sse, headers={"content-type": "text/event-stream"}
            )
        message = {"role": "assistant", "content": "Hi", "refusal": None}
        answer = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{**choice, "message": message}],
            "usage": usage,
        }
        return self.httpx.Response(200, json=answer)


def _response(rid: str, model: str) -> dict[str, Any]:
    text = {"type": "output_text", "text": "Hi", "annotations": []}
    message = {
        "id": f"msg_{rid}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [text],
    }
    return {
        "id": rid,
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": model,
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 9,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 12,
        },
    }


def _httpx() -> Any:
    import importlib

    import openai

    # httpx2 from openai 3.x on, httpx before; both may be installed side by side.
    major = int(openai.__version__.split(".")[0])
    return importlib.import_module("httpx2" if major >= 3 else "httpx")


def _client(api: EchoAPI, cls: Any = None, **options: Any) -> Any:
    openai = pytest.importorskip("openai")
    http_client = api.httpx.Client(transport=api.httpx.MockTransport(api))
    options = {"api_key": "sk-test-key", "max_retries": 0, **options}
    if cls is None:
        cls = openai.OpenAI
        options.setdefault("base_url", "http://echo.example/v1")  # not local: priced
    return cls(http_client=http_client, **options)


@pytest.fixture
def instrumented() -> Iterator[Callable[..., Any]]:
    """Instrument (strict) into in-memory telemetry; returns the live runtime."""
    tel = make_telemetry()

    def instrument(**kwargs: Any) -> Any:
        tel.instrument(**kwargs)
        return REGISTRY.runtime()

    yield instrument
    llmmeter.uninstrument()
    tel.meter_provider.shutdown()
    tel.tracer_provider.shutdown()


class Peak:
    """The largest size each container reached, read after every call."""

    def __init__(self, **containers: Callable[[], int]) -> None:
        self.containers = containers
        self.peak = dict.fromkeys(containers, 0)

    def read(self) -> None:
        for name, size in self.containers.items():
            self.peak[name] = max(self.peak[name], size())


def _code_sites() -> set[str]:
    """Every ``guard.site("...")`` name written in llmmeter's code."""
    names: set[str] = set()
    for path in (ROOT / "src/llmmeter").rglob("*.py"):
        names.update(re.findall(r"\.site\(\"([^\"]+)\"\)", path.read_text()))
    return names


# --- the audit -----------------------------------------------------------------------------


def test_distinct_models_leave_price_and_policy_caches_within_their_caps(
    instrumented: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each call names two new models (requested, answered): none priced, all remembered
    only up to the cap, and the policy's candidate cache clears when full."""
    monkeypatch.setattr(_pricing, "_MAX_NAMES", 50)
    monkeypatch.setattr(_rules, "_MAX_CACHED_MODELS", 40)
    caplog.set_level(logging.ERROR, logger="llmmeter")  # one unpriced warning per name
    policy = llmmeter.RulePolicy(
        [{"name": "to-mini", "from": ["gpt-4o*"], "to": "gpt-4o-mini"}], mode="shadow"
    )
    runtime = instrumented(policy=policy)
    prices = runtime.prices
    peak = Peak(
        models=lambda: len(prices._models),
        rates=lambda: len(prices._rates),
        warned=lambda: len(prices._warned),
        candidates=lambda: len(policy._state.by_model),
    )
    with _client(EchoAPI(_httpx())) as client:
        for i in range(200):
            client.chat.completions.create(model=f"gpt-4o-soak-{i}", messages=MESSAGES)
            peak.read()
    assert peak.peak == {"models": 50, "rates": 50, "warned": 50, "candidates": 40}
    assert set(runtime.guard._sites) <= _code_sites()


def test_distinct_response_ids_and_servers_leave_remembered_keys_within_the_cap(
    instrumented: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Responses ids (remembered against double counting) and servers that rejected
    ``stream_options`` (remembered so the next stream goes out as written) are capped."""
    monkeypatch.setattr(_runtime, "MAX_REMEMBERED", 30)
    runtime = instrumented()
    peak = Peak(ids=lambda: len(runtime._counted), rejected=lambda: len(runtime._rejected))
    api = EchoAPI(_httpx(), reject_stream_options=True)
    with _client(api) as client:
        for i in range(120):
            client.responses.create(model="gpt-4o-mini", input="Say hello")
            client.base_url = f"http://server-{i}.local/v1"
            for _ in client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ):
                pass
            peak.read()
    assert peak.peak == {"ids": 30, "rejected": 30}
    assert api.requests == 120 * 3  # each stream: refused once, then re-sent as written
    assert set(runtime.guard._sites) <= _code_sites()


def test_client_classes_and_warned_names_stay_within_their_caps(
    instrumented: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A class per client (as ``unittest.mock`` makes) and a policy naming a new model on
    every call (warned once each, on Azure without a deployment for it) are capped."""
    openai = pytest.importorskip("openai")
    monkeypatch.setattr(_runtime, "MAX_CLIENT_KINDS", 8)
    monkeypatch.setattr(_guard, "_MAX_WARNED", 10)

    class Anywhere:
        """Routes each gpt-4o call to a new model that no deployment serves."""

        deployments = {"gpt-4o": "prod-gpt4o"}

        def __init__(self) -> None:
            self.calls = 0

        def decide(self, call: llmmeter.CallView) -> llmmeter.Route | None:
            if call.model != "gpt-4o":
                return None
            self.calls += 1
            return llmmeter.Route(model=f"target-{self.calls}", rule="anywhere")

    policy = Anywhere()
    runtime = instrumented(policy=policy)
    peak = Peak(kinds=lambda: len(runtime._client_kinds), warned=lambda: len(runtime.guard._seen))
    api = EchoAPI(_httpx())
    for i in range(30):
        cls = type(f"Client{i}", (openai.OpenAI,), {})
        with _client(api, cls, base_url="http://echo.local/v1") as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        peak.read()
    caplog.set_level(logging.WARNING, logger="llmmeter")
    azure = _client(
        api, openai.AzureOpenAI, api_version="2024-10-21", azure_endpoint="http://azure.local"
    )
    with azure:
        for _ in range(40):
            azure.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
            peak.read()
    assert policy.calls == 40
    warned = [r for r in caplog.records if "no Azure deployment" in r.getMessage()]
    assert len(warned) == 10
    assert peak.peak == {"kinds": 8, "warned": 10}


def test_new_base_urls_and_task_labels_keep_shape_caches_within_their_caps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Base URLs and task labels (the user's: any number) are remembered with their constant
    attributes only up to a cap; a client given a new ``base_url`` is labelled by it at once."""
    monkeypatch.setattr(_runtime, "MAX_SERVERS", 6)
    monkeypatch.setattr(_runtime, "MAX_SHAPES", 9)
    tel = make_telemetry()
    tel.instrument()
    try:
        runtime = REGISTRY.runtime()
        assert runtime is not None
        peak = Peak(servers=lambda: len(runtime._servers), shapes=lambda: len(runtime._shapes))
        api = EchoAPI(_httpx())
        with _client(api) as client:
            for i in range(40):
                client.base_url = f"http://server-{i}.local/v1"
                with llmmeter.task(f"task-{i % 13}"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                span = tel.exporter.get_finished_spans()[-1]
                assert span.attributes is not None
                assert span.attributes["server.address"] == f"server-{i}.local"
                assert span.attributes["llmmeter.task"] == f"task-{i % 13}"
                peak.read()
        assert peak.peak == {"servers": 6, "shapes": 9}
    finally:
        llmmeter.uninstrument()
        tel.meter_provider.shutdown()
        tel.tracer_provider.shutdown()


CAPS: list[tuple[ModuleType, str, int]] = [
    (_runtime, "MAX_REMEMBERED", 10_000),
    (_runtime, "MAX_CLIENT_KINDS", 64),
    (_runtime, "MAX_SERVERS", 64),
    (_runtime, "MAX_SHAPES", 512),
    (_pricing, "_MAX_NAMES", 10_000),
    (_rules, "_MAX_CACHED_MODELS", 4096),
    (_guard, "_MAX_WARNED", 1024),
]
"""Every cap, where the code reads it: the tests above patch these module attributes."""


@pytest.mark.parametrize(("module", "name", "value"), CAPS)
def test_caps_are_the_audited_values(module: ModuleType, name: str, value: int) -> None:
    assert getattr(module, name) == value


@pytest.mark.parametrize(("module", "name", "value"), CAPS)
def test_each_cap_is_read_at_run_time_by_the_module_the_tests_patch(
    module: ModuleType, name: str, value: int
) -> None:
    """A patched constant that its module no longer reads (moved elsewhere, or copied into
    another module by an import) would let the cap tests pass without capping anything."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    reads = [
        node
        for function in functions
        for node in ast.walk(function)
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)
    ]
    assert reads, f"{module.__name__} never reads {name} inside a function"
