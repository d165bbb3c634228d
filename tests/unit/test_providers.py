"""Providers reached through the OpenAI SDK: named from the base URL, priced at their list
price, local servers marked and left out of the unpriced count (docs/telemetry.md
"Providers", docs/pricing.md "Providers and local servers")."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter._providers import is_local, provider_named, provider_of
from llmmeter.testing import FakeOpenAI
from tests.cli_runner import DATE, rows, run_cli
from tests.conftest import Telemetry

MESSAGES = [{"role": "user", "content": "hi"}]

# family of the fake -> (gen_ai.provider.name, a model it serves)
HOSTED = {
    "openai": ("openai", "gpt-4o-mini"),
    "groq": ("groq", "llama-3.3-70b-versatile"),
    "deepseek": ("deepseek", "deepseek-chat"),
    "openrouter": ("openrouter", "meta-llama/llama-3.3-70b-instruct"),
    "together": ("together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "fireworks": ("fireworks_ai", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
    "mistral": ("mistral_ai", "mistral-small-latest"),
    "xai": ("x_ai", "grok-3-mini"),
    "perplexity": ("perplexity", "sonar"),
    "gemini": ("gcp.gemini", "gemini-2.0-flash"),
}
LOCAL = {
    "ollama": "llama3.2",
    "lmstudio": "qwen2.5-7b-instruct",
    "vllm": "meta-llama/Llama-3.1-8B-Instruct",
}


@pytest.mark.parametrize(
    ("host", "name", "prices"),
    [
        ("api.openai.com", "openai", "openai"),
        ("my-resource.openai.azure.com", "azure.ai.openai", "azure"),
        ("api.groq.com", "groq", "groq"),
        ("openrouter.ai", "openrouter", "openrouter"),
        ("api.deepseek.com", "deepseek", "deepseek"),
        ("api.together.xyz", "together_ai", "together"),
        ("api.fireworks.ai", "fireworks_ai", "fireworks"),
        ("api.mistral.ai", "mistral_ai", "mistral"),
        ("api.x.ai", "x_ai", "x-ai"),
        ("API.Perplexity.AI", "perplexity", "perplexity"),
        ("generativelanguage.googleapis.com", "gcp.gemini", "google"),
        ("us-central1-aiplatform.googleapis.com", "gcp.vertex_ai", "google"),
        ("llm-gateway.example.com", "openai", "openai"),
        ("groq.com.example.net", "openai", "openai"),
    ],
)
def test_provider_is_named_from_the_base_url_host(host: str, name: str, prices: str) -> None:
    provider = provider_of(host)
    assert (provider.name, provider.prices, provider.local) == (name, prices, False)


def test_the_sdk_azure_client_is_azure_whatever_its_host() -> None:
    assert provider_of("proxy.example.com", azure=True).name == "azure.ai.openai"


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "127.0.0.1",
        "::1",
        "[::1]",
        "0.0.0.0",
        "10.0.0.5",
        "172.17.0.1",
        "192.168.1.20",
        "169.254.10.1",
        "fd12:3456::1",
        "ollama",
        "gpu-box.local",
        "host.docker.internal",
        "vllm.default.svc.cluster.local",
    ],
)
def test_local_and_private_hosts_are_local(host: str) -> None:
    assert is_local(host)
    provider = provider_of(host)
    assert (provider.name, provider.local) == ("openai", True)


@pytest.mark.parametrize("host", ["api.example.com", "8.8.8.8", "2001:4860:4860::8888"])
def test_public_hosts_are_not_local(host: str) -> None:
    assert not is_local(host)
    assert not provider_of(host).local


def test_price_refuses_a_provider_nobody_knows() -> None:
    with pytest.raises(ValueError, match="got 'grok'"):
        llmmeter.price("grok-3-mini", {"prompt_tokens": 10}, provider="grok")
    assert llmmeter.price("llama3.1-8b", {"prompt_tokens": 10}, provider="cerebras") is not None


def test_providers_are_found_by_semconv_name_or_price_data_id() -> None:
    assert provider_named("x_ai") == provider_named("x-ai") == provider_of("api.x.ai")
    assert provider_named("gcp.gemini") == provider_named("google")
    assert provider_named("no-such-provider") is None


@pytest.mark.parametrize("family", sorted(HOSTED))
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_each_hosted_provider_is_named_and_priced_at_its_list_price(
    telemetry: Telemetry, server: FakeOpenAI, family: str, stream: bool
) -> None:
    name, model = HOSTED[family]
    with server.client_as(family) as client:
        answer = client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
        if stream:
            list(answer)
    attrs = dict(telemetry.span().attributes or {})
    usage = server.requests[-1].usage
    assert usage is not None
    cost = llmmeter.price(attrs["gen_ai.response.model"], usage, provider=name)
    assert cost is not None, f"{family}'s {model} has a list price"
    assert attrs["gen_ai.provider.name"] == name
    assert attrs["server.address"] == FakeOpenAI.providers[family].split("/")[2]
    assert "llmmeter.server.local" not in attrs
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(cost.total)
    assert attrs["llmmeter.price.ref"] == cost.ref
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.provider.name"] == name
    (spent,) = telemetry.points("llmmeter.cost.usd")
    assert spent.attributes["gen_ai.provider.name"] == name
    assert spent.value == pytest.approx(cost.total)
    assert telemetry.points("llmmeter.cost.unpriced") == []


def test_groq_is_priced_at_groq_list_price_not_as_openai(
    telemetry: Telemetry, server: FakeOpenAI
) -> None:
    """The issue's example: a Groq model that OpenAI's list does not have."""
    with server.client_as("groq") as client:
        client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)
    attrs = telemetry.span().attributes or {}
    tokens = {"prompt_tokens": attrs["gen_ai.usage.input_tokens"], "completion_tokens": 22}
    assert llmmeter.price("llama-3.3-70b-versatile", tokens) is None  # not OpenAI's
    groq = llmmeter.price("llama-3.3-70b-versatile", tokens, provider="groq")
    assert groq is not None
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(groq.total)


def test_groq_stream_not_asked_for_usage_is_counted_from_x_groq(
    server: FakeOpenAI,
) -> None:
    """Groq sends a stream's usage unasked in the last chunk's ``x_groq``: llmmeter asks no
    non-OpenAI server for usage by default, so this is where such a stream's tokens are."""
    telemetry = _instrumented(inject_stream_usage=None)
    try:
        with server.client_as("groq") as client:
            chunks = list(
                client.chat.completions.create(
                    model="llama-3.3-70b-versatile", messages=MESSAGES, stream=True
                )
            )
        assert "x_groq" in (chunks[-1].model_extra or {})
        assert "stream_options" not in (server.requests[-1].body or {})
        attrs = telemetry.span().attributes or {}
        usage = server.requests[-1].usage
        assert usage is not None
        assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
        assert attrs["gen_ai.usage.cost.amount"] > 0
    finally:
        _done(telemetry)


def test_deepseek_cache_hits_are_read_and_priced_at_the_cached_rate(
    telemetry: Telemetry, server: FakeOpenAI
) -> None:
    """DeepSeek reports cache hits as ``prompt_cache_hit_tokens``, not in
    ``prompt_tokens_details``: read as cached input, so they are not billed as fresh."""
    long_prompt = [{"role": "user", "content": "deepseek cache " * 800}]
    with server.client_as("deepseek") as client:
        for _ in range(2):
            client.chat.completions.create(model="deepseek-chat", messages=long_prompt)
    usage = server.requests[-1].usage
    assert usage is not None
    assert usage["prompt_cache_hit_tokens"] > 0
    assert "prompt_tokens_details" not in usage
    attrs = telemetry.spans()[-1].attributes or {}
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == usage["prompt_cache_hit_tokens"]
    cost = llmmeter.price("deepseek-chat", usage, provider="deepseek")
    fresh = llmmeter.price(
        "deepseek-chat",
        {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]},
        provider="deepseek",
    )
    assert cost is not None and fresh is not None
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(cost.total)
    assert cost.total < fresh.total


@pytest.mark.parametrize("family", sorted(LOCAL))
def test_local_servers_are_marked_local_unpriced_and_not_counted_as_unpriced(
    telemetry: Telemetry,
    server: FakeOpenAI,
    family: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="llmmeter"),
        server.client_as(family) as client,
    ):
        client.chat.completions.create(model=LOCAL[family], messages=MESSAGES)
    attrs = dict(telemetry.span().attributes or {})
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["llmmeter.server.local"] is True
    assert attrs["llmmeter.price.ref"] == "local"
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert not any(k.startswith(("gen_ai.usage.cost", "llmmeter.cost")) for k in attrs)
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.provider.name"] == "openai"
    assert telemetry.points("llmmeter.cost.unpriced") == []
    assert telemetry.points("llmmeter.cost.usd") == []
    assert not [r for r in caplog.records if "no price" in r.getMessage()]


def test_a_prices_file_gives_a_local_model_an_internal_rate(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama3.2"]\ninput = 0.05\noutput = 0.10\n')
    telemetry = _instrumented(prices=str(prices))
    try:
        with server.client_as("ollama") as client:
            client.chat.completions.create(model="llama3.2", messages=MESSAGES)
        attrs = telemetry.span().attributes or {}
        expected = (
            attrs["gen_ai.usage.input_tokens"] * 0.05 + attrs["gen_ai.usage.output_tokens"] * 0.10
        ) / 1_000_000
        assert attrs["llmmeter.server.local"] is True
        assert attrs["llmmeter.price.ref"] == "override"
        assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(expected)
        (spent,) = telemetry.points("llmmeter.cost.usd")
        assert spent.value == pytest.approx(expected)
    finally:
        _done(telemetry)


def test_a_local_gateway_answering_with_openai_models_is_priced_as_openai(
    telemetry: Telemetry, client: Any
) -> None:
    """A local server asked for a model OpenAI sells is a gateway or a mock in front of
    OpenAI (LiteLLM's proxy, this fake server): priced at OpenAI's list price, still local."""
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attrs = telemetry.span().attributes or {}
    cost = llmmeter.price(
        "gpt-4o-mini-2024-07-18",
        {
            "prompt_tokens": attrs["gen_ai.usage.input_tokens"],
            "completion_tokens": attrs["gen_ai.usage.output_tokens"],
        },
    )
    assert cost is not None
    assert attrs["llmmeter.server.local"] is True
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(cost.total)


def test_provider_is_resolved_once_per_client_not_per_call(
    telemetry: Telemetry, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmmeter import _runtime

    seen: list[str | None] = []
    real = _runtime.provider_of

    def counting(host: str | None, *, azure: bool = False) -> Any:
        seen.append(host)
        return real(host, azure=azure)

    monkeypatch.setattr(_runtime, "provider_of", counting)
    with server.client_as("groq") as client:
        for _ in range(5):
            client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)
    assert seen == ["api.groq.com"]
    assert len(telemetry.spans()) == 5


def _instrumented(**kwargs: Any) -> Telemetry:
    from tests.conftest import make_telemetry

    telemetry = make_telemetry()
    telemetry.instrument(**kwargs)
    return telemetry


def _done(telemetry: Telemetry) -> None:
    llmmeter.uninstrument()
    telemetry.meter_provider.shutdown()
    telemetry.tracer_provider.shutdown()


async def test_async_clients_answer_as_the_provider_too(
    telemetry: Telemetry, server: FakeOpenAI
) -> None:
    client = server.async_client_as("deepseek")
    try:
        await client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES)
    finally:
        await client.close()
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.provider.name"] == "deepseek"
    assert attrs["gen_ai.usage.reasoning.output_tokens"] > 0
    assert attrs["gen_ai.usage.cost.amount"] > 0


# --- llmmeter prices --provider / --base-url ---------------------------------------------


def test_prices_at_a_provider_show_its_list_price(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example: unknown to ``llmmeter prices`` before, Groq's list price now."""
    code, out, err = run_cli(capsys, "prices", "llama-3.3-70b-versatile", *DATE)
    assert (code, rows(out)["llama-3.3-70b-versatile"]) == (1, ["no price known"])
    code, out, err = run_cli(
        capsys, "prices", "--provider", "groq", "llama-3.3-70b-versatile", *DATE
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        "USD per 1M tokens, 2026-11-01, standard tier, provider groq (groq in the price data)"
    )
    assert rows(out)["llama-3.3-70b-versatile"][:4] == ["$0.59", "-", "-", "$0.79"]


def test_prices_by_base_url_name_the_provider_as_spans_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "prices", "--base-url", "https://api.x.ai/v1", "grok-3-mini", "--json", *DATE
    )
    doc = json.loads(out)
    assert code == 0
    assert (doc["provider"], doc["price_data_provider"], doc["local"]) == ("x_ai", "x-ai", False)
    assert doc["models"][0]["rates_per_1m"]["input"] == 0.3


def test_prices_for_a_local_server_price_only_openai_models_and_prices_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    local = ["--base-url", "http://localhost:11434/v1"]
    code, out, _ = run_cli(capsys, "prices", *local, "llama3.2", *DATE)
    assert code == 1
    assert rows(out)["llama3.2"] == [
        "no list price (a local server: a prices file can give it a rate)"
    ]
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama3.2"]\ninput = 0.05\noutput = 0.1\n')
    code, out, _ = run_cli(capsys, "prices", *local, "--prices", str(prices), "llama3.2", *DATE)
    assert code == 0
    assert rows(out)["llama3.2"][:4] == ["$0.05", "-", "-", "$0.10"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "nope"], "--provider: expected a provider name (openai, azure.ai.openai"),
        (["--base-url", "ftp://user:secret@x"], "--base-url: expected an http:// or https://"),
        (
            ["--provider", "groq", "--base-url", "https://api.groq.com"],
            "not allowed with argument",
        ),
    ],
)
def test_bad_provider_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, "prices", *argv, "gpt-4o")
    assert (code, out) == (2, "")
    assert message in err
    assert "secret" not in err
