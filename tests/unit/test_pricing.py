"""Dollar cost: hand-computed prices, dates, tiers, overrides, unknown models, bad files."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter import ConfigError
from llmmeter._pricing import PriceTable, load_overrides
from llmmeter._usage import Usage
from tests.conftest import Telemetry, make_telemetry

NOW = datetime(2026, 11, 1, tzinfo=UTC)
M = 1_000_000

# (model, usage, options, expected input USD, expected output USD) — computed by hand from the
# published per-1M rates: gpt-4o $2.50/$10 (cached $1.25), gpt-4o-mini $0.15/$0.60 (cached
# $0.075), gpt-4o-2024-05-13 $5/$15, o3 $2/$8 since 2025-06-10 ($10/$40 before),
# text-embedding-3-small $0.02, gpt-4o batch $1.25/$5.
HAND_COMPUTED: list[tuple[str, Usage, dict[str, Any], float, float]] = [
    ("gpt-4o", Usage(input_tokens=M, output_tokens=M), {}, 2.50, 10.00),
    ("gpt-4o-2024-08-06", Usage(input_tokens=2000, output_tokens=500), {}, 0.005, 0.005),
    ("gpt-4o-mini", Usage(input_tokens=10_000, output_tokens=2_000), {}, 0.0015, 0.0012),
    ("gpt-4o-mini-2024-07-18", Usage(input_tokens=M, output_tokens=0), {}, 0.15, 0.0),
    ("gpt-4o-2024-05-13", Usage(input_tokens=M, output_tokens=M), {}, 5.00, 15.00),
    # o3 with reasoning tokens: they are part of output_tokens and billed as output.
    ("o3", Usage(input_tokens=1000, output_tokens=3000, reasoning_tokens=2500), {}, 0.002, 0.024),
    (
        "o3",
        Usage(input_tokens=1000, output_tokens=3000),
        {"at": datetime(2025, 5, 1, tzinfo=UTC)},
        0.010,
        0.120,
    ),
    ("text-embedding-3-small", Usage(input_tokens=50_000), {}, 0.001, 0.0),
    # Cached input: 1000 in, 800 of them cached.
    (
        "gpt-4o",
        Usage(input_tokens=1000, cache_read_tokens=800, output_tokens=0),
        {},
        200 * 2.5e-6 + 800 * 1.25e-6,
        0.0,
    ),
    ("gpt-4o", Usage(input_tokens=M, output_tokens=M), {"batch": True}, 1.25, 5.00),
    ("o3", Usage(input_tokens=M, output_tokens=M), {"service_tier": "flex"}, 1.00, 4.00),
]


@pytest.mark.parametrize(("model", "usage", "options", "cost_in", "cost_out"), HAND_COMPUTED)
def test_price_matches_hand_computed_cost(
    model: str, usage: Usage, options: dict[str, Any], cost_in: float, cost_out: float
) -> None:
    options = {"at": NOW, **options}
    cost = llmmeter.price(model, usage, **options)
    assert cost is not None
    assert cost.input == pytest.approx(cost_in, rel=1e-12)
    assert cost.output == pytest.approx(cost_out, rel=1e-12)
    assert cost.total == pytest.approx(cost_in + cost_out, rel=1e-12)
    assert cost.ref.startswith("genai-prices ")


def test_price_accepts_openai_usage_shapes() -> None:
    chat = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    responses = {"input_tokens": 1000, "output_tokens": 500}
    assert llmmeter.price("gpt-4o-mini", chat, at=NOW) == llmmeter.price(
        "gpt-4o-mini", responses, at=NOW
    )


def test_tiered_rates_are_a_cliff_on_input_tokens() -> None:
    table = PriceTable.load()
    rates = table.rates("gpt-5.6-sol", when=NOW.timestamp())
    assert rates is not None
    assert isinstance(rates.input, tuple)
    below = table.price(
        Usage(input_tokens=272_000, output_tokens=0), ("gpt-5.6-sol",), when=NOW.timestamp()
    )
    above = table.price(
        Usage(input_tokens=272_001, output_tokens=0), ("gpt-5.6-sol",), when=NOW.timestamp()
    )
    assert below is not None and above is not None
    assert below.input == pytest.approx(272_000 * rates.input[0][1])
    assert above.input == pytest.approx(272_001 * rates.input[1][1])


def test_unknown_model_is_never_priced_at_zero() -> None:
    assert llmmeter.price("no-such-model-anywhere", {"prompt_tokens": 10}) is None


def test_unknown_model_span_has_unknown_ref_no_cost_and_counts_unpriced(
    telemetry: Telemetry, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """On OpenAI's own host (a local server's unknown model is ``local`` instead)."""
    server.add_model("house-model-7")
    with server.client_as("openai") as client:
        for _ in range(2):
            client.chat.completions.create(
                model="house-model-7", messages=[{"role": "user", "content": "hi"}]
            )
    spans = telemetry.spans()
    for span in spans:
        attrs = span.attributes or {}
        assert attrs["llmmeter.price.ref"] == "unknown"
        assert not any(k.startswith(("gen_ai.usage.cost", "llmmeter.cost")) for k in attrs)
        assert attrs["gen_ai.usage.input_tokens"] > 0
    (unpriced,) = telemetry.points("llmmeter.cost.unpriced")
    assert unpriced.value == 2
    assert telemetry.points("llmmeter.cost.usd") == []
    warnings = [r for r in caplog.records if "house-model-7" in r.getMessage()]
    assert len(warnings) == 1


def test_cost_counter_sums_span_costs_with_bounded_labels(
    telemetry: Telemetry, client: Any
) -> None:
    for _ in range(3):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    spent = sum(s.attributes["gen_ai.usage.cost.amount"] for s in telemetry.spans())
    (point,) = telemetry.points("llmmeter.cost.usd")
    assert point.value == pytest.approx(spent)
    assert set(point.attributes) == {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "server.address",
        "server.port",
    }
    assert telemetry.metric("llmmeter.cost.usd").unit == "{USD}"


def test_response_model_price_wins_over_request_model(telemetry: Telemetry, client: Any) -> None:
    """gpt-4o answers as a dated snapshot; the snapshot's price is the one used."""
    result = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    expected = llmmeter.price(result.model, result.usage)
    assert expected is not None
    assert telemetry.span().attributes["gen_ai.usage.cost.amount"] == pytest.approx(expected.total)


# --- overrides -------------------------------------------------------------------------

GOOD = """
[models."house-model-7"]
input = 1.0
cached_input = 0.5
output = 4.0

[models."ft:gpt-4o-mini:acme:*"]
input = 0.3
output = 1.2

[models."gpt-4o"]
input = 2.0
output = 8.0

[aliases]
"prod-deployment" = "gpt-4o-mini"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


def test_override_rates_and_globs_win_over_the_data(tmp_path: Path) -> None:
    table = PriceTable.load(str(_write(tmp_path, GOOD)))
    usage = Usage(input_tokens=M, output_tokens=M)
    own = table.price(usage, ("house-model-7",))
    tuned = table.price(usage, ("ft:gpt-4o-mini:acme:support:abc123",))
    data_model = table.price(usage, ("gpt-4o",))
    assert own is not None and tuned is not None and data_model is not None
    assert (own.total, own.ref) == (pytest.approx(5.0), "override")
    assert tuned.total == pytest.approx(1.5)
    assert data_model.total == pytest.approx(10.0)  # the override's 2 + 8, not the data's


def test_alias_maps_an_azure_deployment_to_a_model(
    tmp_path: Path, server: Any, openai_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployment answers with a model the data does not know: the request model (the
    deployment name) is priced through its alias."""
    server.add_model("house-gpt")
    server.add_deployment("prod-deployment", "house-gpt")
    monkeypatch.setenv("LLMMETER_PRICES", str(_write(tmp_path, GOOD)))
    tel = make_telemetry()
    tel.instrument()
    try:
        with openai_module.AzureOpenAI(
            azure_endpoint=server.url,
            api_key="k",
            api_version="2024-10-21",
            azure_deployment="prod-deployment",
        ) as azure:
            azure.chat.completions.create(
                model="prod-deployment", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        llmmeter.uninstrument()
    attrs = tel.span().attributes or {}
    assert attrs["gen_ai.response.model"] == "house-gpt"
    usage = Usage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        output_tokens=attrs["gen_ai.usage.output_tokens"],
    )
    expected = llmmeter.price("gpt-4o-mini", usage)
    assert expected is not None
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(expected.total)
    assert attrs["llmmeter.price.ref"].startswith("genai-prices")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\ninput = 1\n", r"key models\.'x': expected an 'output' rate"),
        ("[models.x]\ninput = -1\noutput = 1\n", r"models\.'x'\.input: expected a non-negative"),
        ("[models.x]\ninput = 'cheap'\noutput = 1\n", r"got 'cheap'"),
        (
            "[models.x]\ninput = 1\noutput = 1\noutptu = 2\n",
            r"models\.'x'\.outptu: expected one of",
        ),
        ("[aliases]\ndep = 'no-such-model-anywhere'\n", r"aliases\.'dep': expected a model with a"),
        ("[pricing]\nx = 1\n", r"key 'pricing': expected only \[models\] and \[aliases\]"),
        ("models = [", r"prices\.toml: not valid TOML: "),
    ],
)
def test_bad_prices_file_fails_instrument_naming_file_key_expected_got(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        llmmeter.instrument(prices=str(path))
    assert str(path) in str(info.value)
    from llmmeter._instrumentor import LLMMeterInstrumentor

    assert not LLMMeterInstrumentor().is_instrumented_by_opentelemetry


def test_missing_prices_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the prices file"):
        load_overrides(tmp_path / "absent.toml")


def test_unpriced_warning_is_logged_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable.load()
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(3):
            table.warn_unpriced("mystery-1")
        table.warn_unpriced("mystery-2")
    assert len(caplog.records) == 2


DOCS = Path(__file__).resolve().parents[2] / "docs" / "pricing.md"


def test_docs_pricing_examples_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The TOML example loads as documented; the script example prints what it says."""
    import re

    text = DOCS.read_text()
    local_block, toml_block = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    local = PriceTable.load(str(_write(tmp_path, local_block))).rates("llama3.2")
    assert local is not None
    assert (local.per_million("input"), local.per_million("output")) == (0.05, 0.1)
    table = PriceTable.load(str(_write(tmp_path, toml_block)))
    tuned = table.price(Usage(input_tokens=M, output_tokens=M), ("ft:gpt-4o-mini:acme:x",))
    assert tuned is not None
    assert tuned.total == pytest.approx(1.5)
    (python_block,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    exec(compile(python_block, str(DOCS), "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip() == "0.00045"
    (error_line,) = re.findall(r"```\n(prices\.toml: .*?)\n```", text, flags=re.DOTALL)
    bad = tmp_path / "prices.toml"
    bad.write_text('[models."gpt-4o"]\ninput = 1\noutput = 1\noutptu = 2\n')
    with pytest.raises(ConfigError) as info:
        load_overrides(bad)
    assert str(info.value) == error_line.replace("prices.toml", str(bad), 1)


def test_rate_cache_stays_bounded_and_keeps_caching_across_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys carry the day: a long-running process must not fill the cache and stop using it."""
    from llmmeter import _pricing

    monkeypatch.setattr(_pricing, "_MAX_NAMES", 3)
    table = PriceTable.load()
    for day in range(10):
        when = NOW.timestamp() + day * 86400
        rates = table.rates("gpt-4o", when=when)
        assert table._rates[("openai", "gpt-4o", None, False, int(when // 86400))] is rates
        assert len(table._rates) <= 3
