"""What every command's output looks like (issue 21): tables that fit the terminal, progress on
stderr only, ``--json`` everywhere, help with exit codes, and numbers that tell the truth
(shadow-evaluation requests are no traffic; zero output tokens is traffic; span values as a
trace UI shows them)."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmmeter._cli import app, progress, table
from llmmeter._cli.demo import trace_value
from llmmeter._cli.summary import SpanRecord, render_projection, render_table, summarize
from tests.cli_runner import DATE, run_cli

# --- the table renderer ---------------------------------------------------------------------

WIDE = [
    ["text-embedding-3-small", "2", "0", "349", "0", "$0.000007", "42 ms", "0", "-"],
    ["gpt-4o-mini", "29", "0", "2,211", "238", "$0.000474", "187 ms", "29", "$0.007433"],
]
WIDE_COLUMNS = [
    table.Column("model", wrap=True),
    *(
        table.Column(header, "right")
        for header in ("calls", "errors", "tokens in", "tokens out", "cost", "p50", "routed")
    ),
    table.Column("saved", "right", wrap=True),
]


def test_a_table_that_fits_is_one_line_per_row_whatever_the_width() -> None:
    natural = table.render(WIDE_COLUMNS, WIDE, width=None)
    assert table.render(WIDE_COLUMNS, WIDE, width=200) == natural
    assert len(natural) == 3  # the header and one line per row
    assert all("\x1b" not in line for line in natural)


def test_at_80_columns_headers_wrap_then_long_names_after_a_hyphen() -> None:
    lines = table.render(WIDE_COLUMNS, WIDE, width=80)
    assert max(map(len, lines)) <= 80
    assert lines[:2] == [
        "                            tokens  tokens",
        "model        calls  errors      in     out       cost     p50  routed      saved",
    ]
    assert lines[2].startswith("text-  ") and lines[3].startswith("embedding-")
    assert lines[4].startswith("3-small") and lines[5].startswith("gpt-4o-mini")


def test_too_many_columns_split_into_tables_that_repeat_the_key() -> None:
    headers = ["rule", *(f"column {n}" for n in range(1, 13))]
    rows = [["classify-to-mini", *(f"{n}.0%" for n in range(1, 13))]]
    lines = table.render(table.columns(*headers, wrap=("rule",)), rows, width=60)
    assert max(map(len, lines)) <= 60
    blocks = "\n".join(lines).split("\n\n")
    assert len(blocks) > 1
    for block in blocks:
        assert block.splitlines()[-1].startswith("classify-to-mini  ")  # no cell wrapped
    shown = " ".join(blocks).split()
    assert all(f"{n}.0%" in shown for n in range(1, 13))


def test_a_message_row_spans_the_columns_left_and_wraps_to_the_width() -> None:
    columns = table.columns("", "model", "per call", "source", wrap=("source",))
    rows = [
        ["requested", "gpt-4o", "$0.00258", "genai-prices 0.2.3"],
        ["target", "acme-llm", "no price known (did you mean acme-llm-2?)"],
    ]
    assert table.render(columns, rows, width=None)[2] == (
        "target     acme-llm  no price known (did you mean acme-llm-2?)"
    )
    narrow = table.render(columns, rows, width=40)
    assert narrow == [
        "           model     per call  source",
        "requested  gpt-4o    $0.00258  genai-",
        "                               prices",
        "                               0.2.3",
        "target     acme-llm  no price known (did",
        "                     you mean",
        "                     acme-llm-2?)",
    ]


def test_the_width_is_the_terminals_on_a_terminal_else_columns_else_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert table.output_width() is None  # piped: one line per row, for grep and awk
    monkeypatch.setenv("COLUMNS", "100")
    assert table.output_width() == 100
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setenv("COLUMNS", "80")  # shutil.get_terminal_size reads it first
    assert table.output_width() == 80


# --- every command's tables at 80 columns ---------------------------------------------------

POLICY = """\
mode = "shadow"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["classify"]

[[rules]]
name = "long-reports-to-the-small-model"
from = "gpt-4.1"
to = "gpt-4.1-mini"
min_input_tokens = 2000
"""


def _table_lines(out: str) -> list[str]:
    """The lines of ``out`` that are table lines: prose lines (a heading, a decision, a
    note) end with a period or hold a colon followed by a space, and are not tables."""
    return [line for line in out.splitlines() if ": " not in line and not line.endswith(".")]


@pytest.mark.parametrize(
    "argv",
    [
        ["prices", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small", *DATE],
        [
            "prices",
            "--compare",
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "--daily-input",
            "1M",
            *DATE,
        ],
        ["policy", "check", "{policy}"],
        ["policy", "explain", "{policy}", "--model", "acme-llm", "--prompt", "hi", *DATE],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_tables_fit_80_columns_and_read_whole_when_piped(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    argv = [arg.replace("{policy}", str(tmp_path / "policy.toml")) for arg in argv]
    _, piped, _ = run_cli(capsys, *argv)
    monkeypatch.setenv("COLUMNS", "80")
    _, narrow, _ = run_cli(capsys, *argv)
    assert "\x1b" not in piped + narrow
    assert max(len(line) for line in _table_lines(piped)) > 80  # each needs fitting
    assert max(len(line) for line in _table_lines(narrow)) <= 80
    # Piped, a row is one line, the same words in the same order.
    assert len(piped.splitlines()) < len(narrow.splitlines())


def _otlp_line(spans: list[dict[str, Any]]) -> str:
    def attribute(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"key": key, "value": {"boolValue": value}}
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        if isinstance(value, float):
            return {"key": key, "value": {"doubleValue": value}}
        return {"key": key, "value": {"stringValue": value}}

    encoded = [
        {
            "traceId": f"{index + 1:032x}",
            "spanId": f"{index + 1:016x}",
            "startTimeUnixNano": str(1_764_000_000 * 10**9 + index * 10**6),
            "endTimeUnixNano": str(1_764_000_000 * 10**9 + index * 10**6 + 250 * 10**6),
            "attributes": [attribute(key, value) for key, value in span.items()],
        }
        for index, span in enumerate(spans)
    ]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": encoded}]}]})


def _call(model: str, cost: float, **more: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cost.amount": cost,
        **more,
    }


def test_report_table_fits_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The issue's complaint: a 98-column table wrapped by an 80-column terminal."""
    spans = [
        _call("gpt-4o", 0.0026),
        _call("text-embedding-3-small", 0.000007),
        _call(
            "gpt-4o-mini",
            0.000474,
            **{"llmmeter.policy.action": "route", "llmmeter.policy.savings": 0.007433},
        ),
    ]
    monkeypatch.chdir(tmp_path)
    Path("spans.json").write_text(_otlp_line(spans) + "\n")
    _, piped, _ = run_cli(capsys, "report", "spans.json")
    assert max(map(len, piped.splitlines())) > 80  # the natural table is wider
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(capsys, "report", "spans.json")
    assert (code, err) == (0, "")
    assert max(map(len, out.splitlines())) <= 80
    assert "text-" in out and "embedding-" in out and "$0.007433" in out


# --- numbers that tell the truth -------------------------------------------------------------


def _record(cost: float, *, evaluation: bool = False) -> SpanRecord:
    return SpanRecord(
        model="gpt-4o-mini" if evaluation else "gpt-4o",
        task="classify",
        service=None,
        rule="classify-to-mini",
        action="evaluate" if evaluation else None,
        input_tokens=100,
        output_tokens=20,
        cost=cost,
        savings=None,
        duration=0.2,
        error=False,
        evaluation=evaluation,
    )


def _issue_shape() -> list[SpanRecord]:
    """The issue's run with evaluate = 1.0: 52 spans, of which 20 are evaluation requests;
    the 32 real calls cost $0.00812 ($254 a day at 1M requests), evaluating $0.000304."""
    real = [_record(0.00812 / 32) for _ in range(32)]
    evaluations = [_record(0.000304 / 20, evaluation=True) for _ in range(20)]
    return real + evaluations


def test_shadow_evaluation_requests_are_not_traffic_in_the_projection() -> None:
    summary = summarize(_issue_shape())
    assert (summary.total.calls, summary.total.evaluations) == (32, 20)
    assert summary.total.cost == pytest.approx(0.00812)
    assert summary.total.evaluation_cost == pytest.approx(0.000304)
    assert summary.projection is not None
    assert summary.projection.with_policy == pytest.approx(253.75)  # was $162: 52 "calls"
    assert summary.projection.evaluation == pytest.approx(0.000304 / 32 * 1e6)
    assert render_projection(summary.projection) == [
        "At 1,000,000 requests a day like these:",
        "  without the policy  $254 a day",
        "  with the policy     $254 a day",
        "  shadow evaluation   $9.50 a day on top",
    ]
    lines = render_table(summary, projection=False, width=None)
    assert lines[-1] == (
        "Not counted above: 20 shadow-evaluation requests ($0.000304), what evaluating the "
        "rules cost."
    )
    assert [line.split()[:2] for line in lines[2:-3]] == [["gpt-4o", "32"]]  # no 0-call row


def test_report_counts_evaluation_spans_apart(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    evaluation = {"llmmeter.evaluation": True, "llmmeter.policy.action": "evaluate"}
    spans = [_call("gpt-4o", 0.00812 / 32) for _ in range(32)]
    spans += [_call("gpt-4o-mini", 0.000304 / 20, **evaluation) for _ in range(20)]
    path = tmp_path / "spans.json"
    path.write_text(_otlp_line(spans) + "\n")
    code, out, err = run_cli(capsys, "report", str(path))
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith(f"{path}: 32 calls and 20 shadow-evaluation requests, ")
    assert "  with the policy     $254 a day\n" in out
    assert "$162" not in out
    doc = json.loads(run_cli(capsys, "report", str(path), "--json")[1])
    assert (doc["total"]["calls"], doc["total"]["evaluation_requests"]) == (32, 20)
    assert doc["projection"]["cost_per_day_with_policy_usd"] == 253.75
    assert doc["projection"]["evaluation_cost_per_day_usd"] == 9.5


def test_prices_compare_takes_zero_daily_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prices", "--compare", "gpt-4o", "gpt-4o-mini", "--daily-input", "10M", *DATE]
    code, out, err = run_cli(capsys, *argv, "--daily-output", "0")
    assert (code, err) == (0, "")
    assert "10,000,000 input tokens (0 cached), 0 output tokens" in out
    assert "$25.00" in out  # gpt-4o: 10M input tokens at $2.50, no output
    doc = json.loads(run_cli(capsys, *argv, "--daily-output", "0", "--json")[1])
    assert doc["daily_output_tokens"] == 0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (8.249999999999999e-06, "0.00000825"),
        (("stop",), '["stop"]'),
        (("stop", "length"), '["stop", "length"]'),
        ("chat", '"chat"'),
        (True, "true"),
        (51, "51"),
        (0.00012925, "0.00012925"),
        (2.5, "2.5"),
        (0.0, "0"),
        ((0.1 + 0.2,), "[0.3]"),
        ("line\nbreak", '"line\\nbreak"'),
    ],
)
def test_span_values_read_as_a_trace_ui_shows_them(value: object, shown: str) -> None:
    assert trace_value(value) == shown


# --- --json, help and exit codes --------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, by its words (``policy status``)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: str) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            found[words] = parser
            return
        for name, child in groups[0].choices.items():
            walk(child, f"{words} {name}".strip())

    walk(app._build_parser(), "")
    return found


def test_every_command_that_prints_data_takes_json() -> None:
    commands = _commands()
    assert set(commands) == {
        "prices", "report", "demo", "evaluate",
        "policy check", "policy explain", "policy status", "policy promote",
    }  # fmt: skip
    for words, parser in commands.items():
        options = {option for action in parser._actions for option in action.option_strings}
        assert "--json" in options, words


def test_report_json_is_format_json_and_refuses_another_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "spans.json"
    path.write_text(_otlp_line([_call("gpt-4o", 0.001)]) + "\n")
    assert run_cli(capsys, "report", str(path), "--json") == run_cli(
        capsys, "report", str(path), "--format", "json"
    )
    code, out, err = run_cli(capsys, "report", str(path), "--json", "--format", "csv")
    assert (code, out) == (2, "")
    assert err == "llmmeter: error: --json and --format csv cannot be combined\n"


@pytest.mark.parametrize("argv", [[], ["policy"]], ids=["llmmeter", "llmmeter policy"])
def test_a_command_group_alone_prints_its_help(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: {' '.join(['llmmeter', *argv])} [-h]")
    assert "exit codes:" in out


def test_policy_help_names_all_four_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "policy", "--help")
    assert code == 0
    for command in ("check", "explain", "status", "promote"):
        assert f"\n    {command} " in out
        assert f"({command})" in out  # the description says what each does


@pytest.mark.parametrize("words", sorted(_commands()))
def test_every_commands_help_states_its_exit_codes(
    capsys: pytest.CaptureFixture[str], words: str
) -> None:
    code, out, _ = run_cli(capsys, *words.split(), "--help")
    assert code == 0
    codes = out[out.index("\nexit codes:\n") :]
    assert "\n  0    " in codes
    assert "\n  2    bad arguments or input: one 'llmmeter: error:' line on stderr" in codes
    assert "\n  130  interrupted (Ctrl-C)" in codes


def test_neither_import_llmmeter_nor_the_command_line_loads_tomlkit() -> None:
    """tomlkit is loaded by `policy promote` alone, when it edits a file."""
    code = "import sys, llmmeter, llmmeter._cli.app; print('tomlkit' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


# --- progress -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_steps_off_a_terminal_are_a_line_every_ten_seconds_and_the_last() -> None:
    """evaluate off a terminal (a CI log) shows progress too, never an escape code."""
    clock, log = Clock(), io.StringIO()
    steps = progress.Steps(
        "evaluate", "requests", 40, progress.Status(stream=log, clock=clock, delay=0.0)
    )
    for second in range(40):
        clock.now = float(second)
        steps.step()
    steps.finish(" done")
    assert log.getvalue() == (
        "llmmeter evaluate: 1/40 requests\n"
        "llmmeter evaluate: 11/40 requests\n"
        "llmmeter evaluate: 21/40 requests\n"
        "llmmeter evaluate: 31/40 requests\n"
        "llmmeter evaluate: 40/40 requests done\n"
    )


def test_steps_on_a_terminal_rewrite_one_line_with_a_bar() -> None:
    clock, terminal = Clock(), Terminal()
    steps = progress.Steps("demo", "calls", 4, progress.Status(stream=terminal, clock=clock))
    steps.step()  # within the first second: nothing yet
    clock.now = 1.0
    steps.step()
    clock.now = 1.5
    steps.step()  # within a second of the last update
    steps.step()
    steps.finish()
    assert terminal.getvalue() == "\rllmmeter demo: [##########..........] 2/4 calls\x1b[K\n"


def test_a_short_run_prints_no_progress() -> None:
    log = io.StringIO()
    steps = progress.Steps("policy status", "rules", 3, progress.Status(stream=log))
    for _ in range(3):
        steps.step()
    steps.finish()
    assert log.getvalue() == ""
