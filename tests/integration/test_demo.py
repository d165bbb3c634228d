"""`llmmeter demo`: the newcomer's first command, run as they would run it."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest

import llmmeter
from llmmeter._cli import demo as _demo
from llmmeter._cli import main

from .test_bootstrap import Collector, collector  # noqa: F401  (the OTLP receiver fixture)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["demo", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _table(out: str, title: str) -> dict[str, list[str]]:
    """The rows of one table (`By model:` or `By task:`) by their first cell."""
    lines = out.split(f"{title}\n", 1)[1].splitlines()
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:
        if not line or line.startswith("-"):
            if rows and not line:
                break
            continue
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def test_demo_routes_classification_tagging_and_short_summaries_and_prints_the_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys)
    assert code == 0, err
    assert f"{_demo.CALLS} calls to llmmeter's built-in fake OpenAI server" in out
    assert f"{_demo.CALLS}/{_demo.CALLS} calls" in err  # progress goes to stderr
    by_task = _table(out, "By task:")
    routed = {task: int(cells[6]) for task, cells in by_task.items()}
    assert routed == {
        "classify": len(_demo.REVIEWS),
        "tagging": len(_demo.TICKETS),
        "summarize": 7,  # the three long documents stay on gpt-4o
        "math": 0,
        "code": 0,
        "search": 0,
        "total": len(_demo.REVIEWS) + len(_demo.TICKETS) + 7,
    }
    calls = {task: int(cells[0]) for task, cells in by_task.items()}
    assert calls["total"] == _demo.CALLS
    by_model = _table(out, "By model:")
    assert set(by_model) == {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "total"}
    assert int(by_model["gpt-4o-mini"][6]) == routed["total"]
    assert 'llmmeter.policy.action = "route"' in out  # the span shown is a routed one
    # Values as a trace UI shows them: no float noise, no Python tuples.
    dump = out.split("as a trace backend receives it", 1)[1].split("\n\n", 1)[0]
    assert 'gen_ai.response.finish_reasons = ["stop"]' in dump
    assert "e-0" not in dump and "('" not in dump
    cost = re.search(r"gen_ai\.usage\.cost\.amount = ([\d.]+)\n", dump)
    assert cost is not None and len(cost[1].rstrip("0").split(".")[1]) <= 12
    without, with_policy = (
        float(m.replace(",", "")) for m in re.findall(r"the policy\s+\$([\d,.]+) a day", out)
    )
    assert with_policy < without
    assert "saves $" in out


def test_demo_shadow_sends_everything_as_written_and_reports_the_what_if(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(capsys, "--shadow", "--by", "model")
    assert code == 0
    by_model = _table(out, "By model:")
    assert "gpt-4o-mini" not in by_model
    assert by_model["total"][6] == "0"
    assert by_model["total"][7].startswith("shadow $")
    assert "Shadow mode" in out
    assert "By task:" not in out


def test_demo_json_is_one_document_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--json", "--by", "model", "task")
    assert code == 0, err
    doc = json.loads(out)  # the introduction and progress went to stderr
    assert "calls to llmmeter's built-in fake OpenAI server" in err
    assert (doc["calls"], doc["mode"], doc["real"]) == (_demo.CALLS, "enforce", False)
    assert [table["by"] for table in doc["tables"]] == ["model", "task"]
    assert all(table["total"]["calls"] == _demo.CALLS for table in doc["tables"])
    assert doc["span"]["attributes"]["llmmeter.policy.action"] == "route"
    assert doc["span"]["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    projection = doc["projection"]
    assert (
        projection["cost_per_day_with_policy_usd"] < projection["cost_per_day_without_policy_usd"]
    )


def test_demo_json_and_html_together(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """--json keeps stdout one JSON document; --html still writes the page."""
    page = tmp_path / "demo.html"
    code, out, err = _run(capsys, "--json", "--html", str(page))
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["calls"], doc["evaluation_requests"]) == (_demo.CALLS, 0)
    assert err.endswith(f"llmmeter: wrote {page} ({page.stat().st_size:,} bytes)\n")
    html = page.read_text(encoding="utf-8")
    assert f"llmmeter demo: {_demo.CALLS} calls to llmmeter&#x27;s built-in fake" in html


def test_demo_policy_is_a_valid_policy_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--print-policy")
    assert code == 0
    policy = llmmeter.RulePolicy.from_dict(tomllib.loads(out))
    assert [rule.name for rule in policy.rules] == ["classify-to-mini", "short-summaries-to-mini"]


def test_demo_real_without_a_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = _run(capsys, "--real")
    assert code == 2
    assert err.strip() == (
        "llmmeter: error: --real needs OPENAI_API_KEY (the demo then calls the real API)"
    )


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert "--shadow" in out and "--real" in out and "OTEL_EXPORTER_OTLP_ENDPOINT" in out


def test_demo_sends_its_spans_and_metrics_to_the_collector_when_told_to(
    collector: Collector,  # noqa: F811
) -> None:
    env: dict[str, Any] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmmeter", "demo", "--by", "model"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "also go to the collector" in done.stdout
    spans = collector.spans()
    assert len(spans) == _demo.CALLS
    assert {resource["service.name"] for resource, _ in spans} == {"llmmeter-demo"}
    assert "llmmeter.cost.usd" in collector.metric_names()
