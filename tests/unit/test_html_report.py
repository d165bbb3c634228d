"""`llmmeter report --html` and `llmmeter demo --html`: one self-contained page with charts.

Real spans come from instrumented calls to the fake server, written as the collector's file
exporter writes them (the helpers of test_report.py); shadow evaluation's spans come from a
rule with ``evaluate = 1`` whose target model disagrees on some prompts. Expected numbers
come from the spans' own attributes or the text report, never from the page's code. That the
page renders in a real browser is tests/integration/test_html_browser.py's job.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan

import llmmeter
from llmmeter._cli import main
from llmmeter._cli.common import format_cost
from llmmeter._cli.evidence import proportion
from llmmeter._cli.html_report import build
from llmmeter._cli.summary import SpanRecord, summarize
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry
from tests.unit.test_report import collector_lines, make_workload, write

ORIGINAL = "gpt-4o"
TARGET = "gpt-4o-mini"
RULE = "sentiment-to-mini"
REVIEWS = [
    "Delivery was slow but the boots are great.",
    "Love the jacket, warm and light.",
    "The tent leaked on the first night.",
    "Shipping was slow and the box was crushed.",
    "Perfect fit, would buy again.",
    "The stove works as described.",
]
SLOW = sum("slow" in review for review in REVIEWS)


# --- workloads ---------------------------------------------------------------------------------


def evaluated_spans(fake: FakeOpenAI) -> list[ReadableSpan]:
    """A shadow rule with ``evaluate = 1``: every call is also sent to gpt-4o-mini, which
    disagrees ("negative") on the reviews that say "slow"."""
    fake.reset()
    fake.answer(TARGET, "negative", prompt="slow")
    fake.answer(f"{TARGET}*", "positive")
    fake.answer(f"{ORIGINAL}*", "positive")
    policy = llmmeter.RulePolicy(
        rules=[{"name": RULE, "from": ORIGINAL, "to": TARGET, "evaluate": 1.0}], mode="shadow"
    )
    tel = make_telemetry()
    tel.instrument(policy=policy)
    try:
        with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
            with llmmeter.task("sentiment"):
                for review in REVIEWS:
                    client.chat.completions.create(
                        model=ORIGINAL, messages=[{"role": "user", "content": review}]
                    )
            deadline = time.monotonic() + 30
            while len(tel.spans()) < 2 * len(REVIEWS):  # each call and its evaluation
                assert time.monotonic() < deadline, "the evaluations never finished"
                time.sleep(0.02)
    finally:
        llmmeter.uninstrument()
        fake.reset()
    spans = tel.spans()
    tel.meter_provider.shutdown()
    tel.tracer_provider.shutdown()
    return spans


@pytest.fixture(scope="module")
def spans(fake: FakeOpenAI) -> list[ReadableSpan]:
    """The report tests' two services, plus a third that shadow-evaluates every call."""
    return [*make_workload(fake).spans, *evaluated_spans(fake)]


@pytest.fixture(scope="module")
def page(spans: list[ReadableSpan], tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("html")
    source = write(tmp / "spans.json", collector_lines(spans))
    out = tmp / "report.html"
    assert main(["report", str(source), "--html", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def report_json(capsys: pytest.CaptureFixture[str], path: Path, by: str = "model") -> Any:
    capsys.readouterr()
    assert main(["report", str(path), "--by", by, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def record(**values: Any) -> SpanRecord:
    base: dict[str, Any] = {
        "model": "gpt-4o", "task": None, "service": None, "rule": None, "action": None,
        "input_tokens": 100, "output_tokens": 10, "cost": 0.001, "savings": None,
        "duration": 0.1, "error": False, "start": 1_764_000_000.0,
    }  # fmt: skip
    return SpanRecord(**{**base, **values})


# --- reading the page -----------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every table of the page as its caption and rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: str | None = None
        self._in: str | None = None
        self._row: list[str] = []
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("caption", "td", "th"):
            self._in, self._text = tag, ""
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._caption = self._text
            self.tables[self._caption] = []
        elif tag in ("td", "th"):
            self._row.append(self._text)
        elif tag == "tr" and self._caption is not None:
            self.tables[self._caption].append(self._row)
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data


def tables(page: str) -> dict[str, dict[str, dict[str, str]]]:
    """caption -> first cell -> column header -> cell."""
    parser = _Tables()
    parser.feed(page)
    return {
        caption: {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
        for caption, rows in parser.tables.items()
    }


def kpis(page: str) -> dict[str, str]:
    """The totals at the top: name -> value."""
    found = re.findall(
        r'<li><span class="value">([^<]*)</span><span class="name">([^<]*)</span></li>', page
    )
    return {name: value for value, name in found}


def usd(text: str) -> float:
    return float(text.lstrip("$").replace(",", ""))


def chart_ids(page: str) -> list[str]:
    return re.findall(r'<figure class="chart" id="([^"]+)"', page)


# --- shadow evaluation is not traffic ---------------------------------------------------------


def test_evaluation_requests_are_counted_apart_from_traffic() -> None:
    """20 evaluation requests among 32 calls: the rows, total and projection are the 32's."""
    traffic = [record(cost=0.002) for _ in range(32)]
    evaluations = [
        record(model=TARGET, rule=RULE, action="evaluate", evaluation=True, cost=0.0001, score=1.0)
        for _ in range(20)
    ]
    summary = summarize([*traffic, *evaluations])
    assert summary.total.calls == 32
    # The evaluated model's row holds the 20 requests apart: none of its calls or spend.
    assert [(row.key, row.calls, row.evaluations) for row in summary.rows] == [
        ("gpt-4o", 32, 0),
        (TARGET, 0, 20),
    ]
    assert [row.cost for row in summary.rows] == [pytest.approx(32 * 0.002), 0.0]
    assert summary.total.evaluations == 20
    assert summary.total.evaluation_cost == pytest.approx(20 * 0.0001)
    assert summary.projection is not None
    assert summary.projection.with_policy == pytest.approx(0.002 * 1_000_000)


def test_real_evaluation_spans_are_evaluations(spans: list[ReadableSpan]) -> None:
    evaluation = [s for s in spans if (s.attributes or {}).get("llmmeter.evaluation")]
    assert len(evaluation) == len(REVIEWS)
    records = [
        SpanRecord.from_attributes(dict(s.attributes or {}), duration=0, error=False, service=None)
        for s in evaluation
    ]
    assert all(r is not None and r.evaluation and r.score is not None for r in records)


def test_page_counts_evaluation_requests_apart(
    page: str, spans: list[ReadableSpan], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = report_json(capsys, write(tmp_path / "spans.json", collector_lines(spans)))
    llm = [s for s in spans if "gen_ai.operation.name" in (s.attributes or {})]
    assert doc["total"]["calls"] == len(llm) - len(REVIEWS)
    totals = kpis(page)
    assert totals["calls"] == f"{doc['total']['calls']:,}"
    calls = doc["total"]["calls"]
    assert f"spans.json: {calls} calls and {len(REVIEWS)} shadow-evaluation requests, " in page
    evaluation_cost = math.fsum(
        float((s.attributes or {})["gen_ai.usage.cost.amount"])
        for s in llm
        if (s.attributes or {}).get("llmmeter.evaluation")
    )
    assert totals[f"evaluation requests ({format_cost(evaluation_cost)})"] == str(len(REVIEWS))


# --- what the page shows ------------------------------------------------------------------------


def test_page_has_every_section_with_a_chart_and_a_table(page: str) -> None:
    assert chart_ids(page) == [
        "chart-over-time",
        "chart-by-model",
        "chart-by-task",
        "chart-by-provider",
        "chart-routing",
        "chart-agreement",
        "chart-projection",
    ]
    assert page.count("<table>") >= len(chart_ids(page))
    assert 'id="unpriced"' in page
    assert 'id="by-tenant"' not in page  # no span has llmmeter.tenant


def test_numbers_are_the_text_reports(
    page: str, spans: list[ReadableSpan], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "spans.json", collector_lines(spans))
    found = tables(page)
    for by in ("model", "task"):
        doc = report_json(capsys, source, by)
        shown = found[f"Spend and calls by {by}" + (" (llmmeter.task)" if by == "task" else "")]
        for row in [*doc["rows"], doc["total"]]:
            cells = shown[row["key"]]
            assert cells["calls"] == f"{row['calls']:,}"
            assert cells["tokens in"] == f"{row['input_tokens']:,}"
            # The page shows 3 significant digits, the JSON 6 decimals.
            assert usd(cells["spend"]) == pytest.approx(row["cost_usd"], rel=5e-3, abs=1e-6)
            assert cells["evaluation requests"] == f"{row['evaluation_requests']:,}"
            assert usd(cells["evaluation spend"]) == pytest.approx(
                row["evaluation_cost_usd"], rel=5e-3, abs=1e-6
            )
    doc = report_json(capsys, source)
    projection = found["Cost per day (USD)"]
    assert usd(projection["with the policy"]["per day"]) == pytest.approx(
        doc["projection"]["cost_per_day_with_policy_usd"], rel=5e-3
    )
    savings = found["Savings by rule (USD)"]
    rules = {row["key"]: row for row in report_json(capsys, source, "rule")["rows"]}
    assert set(savings) == {"classify-to-mini", "summaries-to-mini", RULE}
    for rule, cells in savings.items():
        assert cells["routed"] == str(rules[rule]["routed_calls"])


def test_agreement_has_its_lower_bound_and_target(page: str, spans: list[ReadableSpan]) -> None:
    scores = [
        float((s.attributes or {})["llmmeter.evaluation.score"])
        for s in spans
        if (s.attributes or {}).get("llmmeter.evaluation")
    ]
    assert sorted(scores) == [0.0] * SLOW + [1.0] * (len(REVIEWS) - SLOW)
    expected = proportion(sum(scores), len(scores))
    row = tables(page)["Shadow evaluation by rule"][RULE]
    assert row["evaluations"] == str(len(REVIEWS))
    assert row["agreement"] == f"{expected.successes / expected.n * 100:.1f}%"
    assert row["lower bound"] == f"{expected.low * 100:.1f}%"
    assert row["target"] == "95.0%"  # the default: no --policy
    assert row["meets target"] == "no"


def test_agreement_counts_the_evaluation_requests_as_the_text_report_does(
    page: str, spans: list[ReadableSpan], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "spans.json", collector_lines(spans))
    rules = {row["key"]: row for row in report_json(capsys, source, "rule")["rows"]}
    row = tables(page)["Shadow evaluation by rule"][RULE]
    judged, not_judged = int(row["evaluations"]), int(row["not judged"])
    assert judged + not_judged == rules[RULE]["evaluation_requests"] == len(REVIEWS)
    cost = rules[RULE]["evaluation_cost_usd"]  # the JSON's 6 decimals
    assert usd(row["evaluation cost"]) == pytest.approx(cost, rel=5e-3, abs=1e-6)


def test_projection_adds_what_shadow_evaluation_costs_a_day_on_top(
    page: str, spans: list[ReadableSpan], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = report_json(capsys, write(tmp_path / "spans.json", collector_lines(spans)))
    on_top = doc["projection"]["evaluation_cost_per_day_usd"]
    assert on_top > 0
    shown = tables(page)["Cost per day (USD)"]["shadow evaluation, on top"]["per day"]
    assert usd(shown) == pytest.approx(on_top, rel=5e-3)
    assert f"they would cost {shown} a day on top." in page


def test_html_and_json_together(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json keeps stdout one JSON document; the page goes to its file all the same."""
    source = write(tmp_path / "spans.json", collector_lines(spans))
    alone = report_json(capsys, source)
    out = tmp_path / "page.html"
    assert main(["report", str(source), "--json", "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == alone
    assert captured.err == f"llmmeter: wrote {out} ({out.stat().st_size:,} bytes)\n"
    assert f"spans.json: {alone['total']['calls']} calls and " in out.read_text()


def test_policy_gives_the_targets(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "spans.json", collector_lines(spans))
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[rules]]\nname = "{RULE}"\nfrom = "{ORIGINAL}"\nto = "{TARGET}"\n'
        "evaluate = 1.0\nagreement_target = 0.2\n"
    )
    out = tmp_path / "page.html"
    assert main(["report", str(source), "--html", str(out), "--policy", str(policy)]) == 0
    row = tables(out.read_text())["Shadow evaluation by rule"][RULE]
    assert row["target"] == "20.0%"
    assert row["meets target"] == "yes"


def test_provider_and_tenant_are_shown_where_the_spans_have_them() -> None:
    records = [
        record(provider="openai", tenant="acme", cost=0.003),
        record(provider="groq", tenant="globex", cost=0.001),
        record(provider="groq", tenant=None, cost=0.001),
    ]
    page = build(records, source="test")
    found = tables(page)
    assert found["Spend and calls by tenant (llmmeter.tenant)"]["acme"]["calls"] == "1"
    assert found["Spend and calls by tenant (llmmeter.tenant)"]["-"]["calls"] == "1"
    assert found["Spend and calls by provider (gen_ai.provider.name)"]["groq"]["calls"] == "2"
    assert "chart-by-task" not in chart_ids(page)  # no span has a task


def test_a_million_tenants_make_no_million_rows() -> None:
    """Past 12 bars and 200 table rows, the rest are one ``other``: the page stays small."""
    records = [record(tenant=f"tenant-{i:04}", cost=0.001 + i * 1e-6) for i in range(1000)]
    page = build(records, source="test")
    rows = tables(page)["Spend and calls by tenant (llmmeter.tenant)"]
    assert len(rows) == 200 + 2  # the other row and the total
    assert rows["other (800)"]["calls"] == "800"
    assert rows["total"]["calls"] == "1,000"
    bars = re.search(r'<figure class="chart" id="chart-by-tenant">.*?</figure>', page, re.S)
    assert bars is not None
    assert "other (988)" in bars.group()


def test_unpriced_calls_are_listed() -> None:
    page = build([record(model="acme-llm", cost=None), record()], source="test")
    assert tables(page)["Unpriced calls by model"]["acme-llm"]["unpriced calls"] == "1"
    assert kpis(page)["unpriced calls"] == "1"


def test_spend_over_time_adds_each_call_to_its_interval() -> None:
    start = 1_764_000_000.0
    records = [record(start=start + 60 * i, cost=0.001 * (i + 1)) for i in range(10)]
    rows = tables(build(records, source="test"))["Spend per 15 seconds (UTC)"]
    assert len(rows) == 37  # 9 minutes in 15-second intervals, both ends included
    assert math.fsum(usd(cells["traffic"]) for cells in rows.values()) == (pytest.approx(0.055))


# --- self-contained and safe -------------------------------------------------------------------


def test_page_fetches_nothing(page: str) -> None:
    assert "<script" not in page
    assert "<link" not in page
    assert "@import" not in page
    assert not re.search(r"\ssrc=", page)
    inside = {f"#{m}" for m in re.findall(r'id="([^"]+)"', page)}
    assert set(re.findall(r'href="([^"]*)"', page)) <= inside  # SVG's own <use> references
    assert set(re.findall(r"url\(([^)]*)\)", page)) <= inside
    # http(s) appears only as XML namespace names, which are never fetched.
    for match in re.finditer(r"https?://[^\s\"')]+", page):
        before = page[max(0, match.start() - 20) : match.start()]
        assert re.search(r'xmlns(:\w+)?="$', before), match.group()
    assert "default-src 'none'" in page


def test_every_id_is_unique(page: str) -> None:
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_charts_have_titles_and_descriptions(page: str) -> None:
    for chart in chart_ids(page):
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in page
        assert re.search(rf'<title id="{chart}-title">[^<]+</title>', page)
        assert re.search(rf'<desc id="{chart}-desc">[^<]+</desc>', page)


def test_names_from_a_file_are_text_never_markup() -> None:
    hostile = '<script>alert("x")</script> costs $5$ \\ \x1b[31m'
    page = build([record(model=hostile, task=hostile, rule=hostile, action="route")], source="t")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "\x1b" not in page


def test_names_in_any_script_are_drawn_without_a_warning() -> None:
    """Under ``filterwarnings = error`` a warning fails the test; the text stays text."""
    page = build([record(model="模型-東京"), record(task="θέμα")], source="t")
    assert "模型-東京" in page


def test_no_spans_is_a_page_that_says_so() -> None:
    page = build([], source="empty.json: 0 calls")
    assert "No llmmeter spans" in page
    assert chart_ids(page) == []


def test_the_same_spans_draw_the_same_page() -> None:
    records = [record(), record(model=TARGET, action="route", savings=0.001)]
    first = build(records, source="t", now=None)
    second = build(records, source="t", now=None)
    strip = re.compile(r"Made by llmmeter on [^<]+? UTC")
    assert strip.sub("", first) == strip.sub("", second)


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails


@pytest.mark.parametrize("command", [["report", "SPANS"], ["demo"]])
def test_without_the_extra_the_error_names_it(
    no_matplotlib: None,
    command: Sequence[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Said at once: before the demo's calls or the report's reading."""
    spans = write(tmp_path / "spans.json", [])
    out = tmp_path / "page.html"
    argv = [str(spans) if arg == "SPANS" else arg for arg in command]
    assert main([*argv, "--html", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "pip install 'llmmeter[report]'" in captured.err
    assert not out.exists()


def test_policy_without_html_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = write(tmp_path / "spans.json", [])
    assert main(["report", str(spans), "--policy", "policy.toml"]) == 2
    assert capsys.readouterr().err == (
        "llmmeter: error: --policy needs --html (it gives the page's agreement targets)\n"
    )


def test_an_unwritable_page_is_one_error(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "spans.json", collector_lines(spans[:3]))
    assert main(["report", str(source), "--html", str(tmp_path / "no" / "page.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmmeter: error: cannot write ")
    assert "No such file or directory" in err


def test_html_keeps_the_text_output(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "spans.json", collector_lines(spans))
    assert main(["report", str(source)]) == 0
    text = capsys.readouterr().out
    out = tmp_path / "page.html"
    assert main(["report", str(source), "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == text
    assert captured.err.endswith(f"llmmeter: wrote {out} ({out.stat().st_size:,} bytes)\n")


def test_docs_show_the_demo_page() -> None:
    """docs/cli.md's screenshot is there, a PNG, and small enough for a repository."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    images = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", (docs / "cli.md").read_text())
    assert images == ["html-report.png"]
    data = (docs / images[0]).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 150_000
