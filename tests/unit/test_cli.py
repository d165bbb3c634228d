"""The `llmmeter prices` command: rates, the model list, comparisons, JSON, and its errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from llmmeter._cli import main
from llmmeter._cli.common import format_cost, format_rate, parse_tokens
from tests.cli_runner import DATE, rows, run_cli, without_data_version

OVERRIDES = """\
[models."acme-llm"]
input = 1.0
cached_input = 0.1
output = 4.0

[aliases]
"prod-4o" = "gpt-4o"
"""


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDES)
    return path


# --- rates ---------------------------------------------------------------------------


def test_rates_table_shows_hand_checked_rates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "prices", "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-05-13", *DATE)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "USD per 1M tokens, 2026-11-01, standard tier"
    assert rows(out)["model"] == [
        "input",
        "cached input",
        "cache write",
        "output",
        "resolved model",
        "source",
    ]
    table = rows(out)
    assert table["gpt-4o"][:4] == ["$2.50", "$1.25", "-", "$10.00"]
    assert table["gpt-4o-mini"][:4] == ["$0.15", "$0.075", "-", "$0.60"]
    assert table["gpt-4o-2024-05-13"][:4] == ["$5.00", "-", "-", "$15.00"]
    assert table["gpt-4o"][4] == "gpt-4o"
    assert table["gpt-4o"][5].startswith("genai-prices ")


def test_rates_resolve_a_dated_name_and_honour_batch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "prices", "gpt-4o-2024-08-06", "--batch", *DATE)
    assert code == 0
    assert out.splitlines()[0] == "USD per 1M tokens, 2026-11-01, standard tier, batch"
    assert rows(out)["gpt-4o-2024-08-06"][:5] == ["$1.25", "$1.25", "-", "$5.00", "gpt-4o"]


def test_models_after_an_option_are_still_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "prices", "gpt-4o", *DATE, "gpt-4o-mini")
    assert code == 0
    assert {"gpt-4o", "gpt-4o-mini"} <= rows(out).keys()


def test_media_columns_appear_only_when_a_model_has_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, plain, _ = run_cli(capsys, "prices", "gpt-4o", *DATE)
    assert "audio" not in plain and "image" not in plain
    _, out, _ = run_cli(capsys, "prices", "gpt-4o", "gpt-4o-realtime-preview", *DATE)
    assert rows(out)["model"][4:6] == ["audio in", "audio out"]
    assert rows(out)["gpt-4o-realtime-preview"][4:6] == ["$40.00", "$80.00"]
    assert "image" not in out


def test_tiered_rates_are_marked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "prices", "gpt-5.4", *DATE)
    assert code == 0
    assert rows(out)["gpt-5.4"][:4] == ["$2.50*", "$0.25*", "-", "$15.00*"]
    assert "above 272,000 input tokens per call" in out


def test_unknown_model_says_so_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "prices", "gpt-4o", "gpt4o", "zzz-model", "whisper-1", *DATE)
    assert (code, err) == (1, "")
    table = rows(out)
    assert table["gpt4o"] == ["no price known (did you mean gpt-4o?)"]
    assert table["zzz-model"] == ["no price known"]
    assert table["whisper-1"] == ["no per-token price known"]
    assert table["gpt-4o"][0] == "$2.50"  # the known model is still shown
    assert "$0.00" not in out


# --- list ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["prices"], ["prices", "--list"]])
def test_list_shows_sorted_known_models(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = run_cli(capsys, *argv, *DATE)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Known models, USD per 1M tokens, 2026-11-01, standard tier")
    names = [line.split()[0] for line in lines[2:] if not line.startswith("*")]
    assert names == sorted(names)
    table = rows(out)
    assert table["gpt-4o"] == ["$2.50", "$10.00"]
    assert table["gpt-4o-mini"] == ["$0.15", "$0.60"]
    assert table["whisper-1"] == ["no per-token price"]


# --- compare -------------------------------------------------------------------------


def test_compare_daily_and_monthly_cost(capsys: pytest.CaptureFixture[str]) -> None:
    """gpt-4o: 10 x $2.50 + 2 x $10 = $45/day; gpt-4o-mini: 10 x $0.15 + 2 x $0.60 = $2.70."""
    code, out, err = run_cli(
        capsys,
        "prices",
        "--compare",
        "gpt-4o",
        "gpt-4o-mini",
        "--daily-input",
        "10M",
        "--daily-output",
        "2M",
        *DATE,
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        "Daily traffic: 10,000,000 input tokens (0 cached), 2,000,000 output tokens; "
        "2026-11-01, standard tier; a month is 30 days"
    )
    table = rows(out)
    assert table["model"][:3] == ["per day", "per month", "vs gpt-4o"]
    assert table["gpt-4o"][:3] == ["$45.00", "$1,350.00", "baseline"]
    assert table["gpt-4o-mini"][:3] == ["$2.70", "$81.00", "16.67x cheaper"]


def test_compare_with_cached_share_and_a_dearer_model(capsys: pytest.CaptureFixture[str]) -> None:
    """Half cached: gpt-4o 5 x $2.50 + 5 x $1.25 + 2 x $10 = $38.75; o1 6x that."""
    code, out, _ = run_cli(
        capsys,
        "prices",
        "--compare",
        "gpt-4o",
        "o1",
        "--daily-input",
        "10M",
        "--daily-output",
        "2M",
        "--cached-share",
        "0.5",
        *DATE,
    )
    assert code == 0
    assert "(5,000,000 cached)" in out
    assert rows(out)["gpt-4o"][:2] == ["$38.75", "$1,162.50"]
    assert rows(out)["o1"][:3] == ["$232.50", "$6,975.00", "6.00x the cost"]


def test_compare_prices_tiered_models_per_call_under_the_cliff(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """10M input a day is 37 calls under gpt-5.4's 272k cliff: base rates, $25 + $30."""
    code, out, _ = run_cli(
        capsys,
        "prices",
        "--compare",
        "gpt-4o",
        "gpt-5.4",
        "--daily-input",
        "10M",
        "--daily-output",
        "2M",
        "--json",
        *DATE,
    )
    assert code == 0
    entry = json.loads(out)["models"][1]
    assert entry["per_day"] == {"input": 25.0, "output": 30.0, "total": 55.0}
    assert entry["calls_per_day_assumed"] == 37


def test_compare_with_an_unknown_model_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "prices", "--compare", "nope-model", "gpt-4o", "--daily-input", "1M", *DATE
    )
    assert code == 1
    table = rows(out)
    assert table["nope-model"][0].startswith("no price known")
    assert table["gpt-4o"][:3] == ["$2.50", "$75.00", "n/a (the first model has no price)"]


# --- JSON ----------------------------------------------------------------------------


def test_rates_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "prices", "gpt-4o", "nope-model", "--json", *DATE)
    assert code == 1
    doc = json.loads(out)
    assert {k: doc[k] for k in ("date", "service_tier", "batch", "currency", "unit")} == {
        "date": "2026-11-01",
        "service_tier": None,
        "batch": False,
        "currency": "USD",
        "unit": "USD per 1M tokens",
    }
    known, unknown = doc["models"]
    assert known["rates_per_1m"] == {
        "input": 2.5,
        "cached_input": 1.25,
        "cache_write": None,
        "output": 10.0,
        "input_audio": None,
        "output_audio": None,
        "input_image": None,
        "output_image": None,
    }
    assert known["model"] == known["resolved_model"] == "gpt-4o"
    assert known["known"] is True
    assert known["tiers_per_1m"] == {}
    assert unknown == {
        "model": "nope-model",
        "known": False,
        "resolved_model": None,
        "ref": None,
        "rates_per_1m": None,
        "tiers_per_1m": None,
    }


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "prices", "--list", "--json", "--service-tier", "flex", *DATE)
    assert code == 0
    doc = json.loads(out)
    assert doc["service_tier"] == "flex"
    by_name = {m["model"]: m for m in doc["models"]}
    assert by_name["gpt-5"]["input_per_1m"] == 0.625  # flex halves gpt-5's $1.25
    assert by_name["whisper-1"]["input_per_1m"] is None
    assert list(by_name) == sorted(by_name)


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "prices",
        "--compare",
        "gpt-4o",
        "gpt-4o-mini",
        "--daily-input",
        "10M",
        "--daily-output",
        "2M",
        "--json",
        *DATE,
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["daily_input_tokens"] == 10_000_000
    assert doc["daily_output_tokens"] == 2_000_000
    assert doc["daily_cached_input_tokens"] == 0
    assert doc["days_per_month"] == 30
    first, second = doc["models"]
    assert first["per_day"] == {"input": 25.0, "output": 20.0, "total": 45.0}
    assert first["per_month"]["total"] == 1350.0
    assert first["ratio_to_first"] == 1.0
    assert second["per_day"]["total"] == 2.7
    assert second["per_month"]["total"] == 81.0
    assert second["ratio_to_first"] == 0.06  # 1/16.67


# --- overrides -----------------------------------------------------------------------


def check_overrides(out: str) -> None:
    table = rows(out)
    assert table["acme-llm"] == ["$1.00", "$0.10", "-", "$4.00", "acme-llm", "override"]
    assert table["prod-4o"][:5] == ["$2.50", "$1.25", "-", "$10.00", "gpt-4o"]


def test_overrides_file_via_option(capsys: pytest.CaptureFixture[str], overrides: Path) -> None:
    code, out, _ = run_cli(
        capsys, "prices", "acme-llm", "prod-4o", "--prices", str(overrides), *DATE
    )
    assert code == 0
    check_overrides(out)


def test_overrides_file_via_environment(
    capsys: pytest.CaptureFixture[str], overrides: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_PRICES", str(overrides))
    code, out, _ = run_cli(capsys, "prices", "acme-llm", "prod-4o", *DATE)
    assert code == 0
    check_overrides(out)
    _, listed, _ = run_cli(capsys, "prices", "--list", *DATE)
    assert rows(listed)["acme-llm"] == ["$1.00", "$4.00", "override"]


def test_prices_option_wins_over_environment(
    capsys: pytest.CaptureFixture[str],
    overrides: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LLMMETER_PRICES", str(tmp_path / "missing.toml"))
    code, out, _ = run_cli(capsys, "prices", "acme-llm", "--prices", str(overrides), *DATE)
    assert code == 0
    assert rows(out)["acme-llm"][0] == "$1.00"


# --- bad arguments -------------------------------------------------------------------


def bad_file(tmp_path: Path) -> str:
    path = tmp_path / "bad.toml"
    path.write_text('[models."x"]\ninput = "cheap"\n')
    return str(path)


BAD_ARGUMENTS: list[tuple[list[str], str]] = [
    (["prices", "gpt-4o", "--bogus"], "unrecognized arguments: --bogus"),
    (
        ["prices", "--compare", "gpt-4o", "gpt-4o-mini", "--daily-input", "10X"],
        "argument --daily-input: expected a positive whole number of tokens",
    ),
    (
        ["prices", "--compare", "gpt-4o", "gpt-4o-mini", "--daily-input", "0"],
        "argument --daily-input: expected a positive whole number of tokens",
    ),
    (
        [
            "prices",
            "--compare",
            "gpt-4o",
            "gpt-4o-mini",
            "--daily-input",
            "1M",
            "--daily-output",
            "-5",
        ],
        "argument --daily-output: expected a whole number of tokens, 0 or more,",
    ),
    (
        ["prices", "--compare", "gpt-4o", "--daily-input", "10M"],
        "--compare needs at least two models; got 1",
    ),
    (
        ["prices", "--compare", "gpt-4o", "gpt-4o-mini", "--daily-output", "2M"],
        "--compare needs --daily-input",
    ),
    (["prices", "gpt-4o", "--daily-input", "10M"], "--daily-input only applies with --compare"),
    (
        ["prices", "--compare", "a", "b", "--daily-input", "1M", "--cached-share", "1.5"],
        "argument --cached-share: expected a number from 0 to 1; got '1.5'",
    ),
    (
        ["prices", "gpt-4o", "--date", "2026-13-01"],
        "argument --date: expected a date as YYYY-MM-DD",
    ),
    (["prices", "gpt-4o", "--date", "tomorrow"], "argument --date: expected a date as YYYY-MM-DD"),
    (["prices", "gpt-4o", "--service-tier", "flx"], "argument --service-tier: invalid choice"),
    (["prices", "--list", "gpt-4o"], "--list takes no MODEL"),
    (["prices", "gpt-4o", "--prices", "/nonexistent/prices.toml"], "cannot read the prices file"),
    (["prices", "gpt-4o", "--prices", "BAD_FILE"], "key models.'x'.input: expected a non-negative"),
    (
        ["prices", "x", "--prices", "HUGE_RATE_FILE"],
        "key models.'x'.input: expected a non-negative number up to 1,000,000 (USD per 1M "
        "tokens); got 1e+308",
    ),
    (
        ["prices", "--compare", "a", "b", "--daily-input", "99999999999999999999999999B"],
        "argument --daily-input: expected at most 1000000B tokens (10^15); got "
        "'99999999999999999999999999B'",
    ),
    (
        ["prices", "--compare", "a", "b", "--daily-input", "1M", "--daily-output", "1" * 5000],
        "argument --daily-output: expected at most 1000000B tokens (10^15)",
    ),
    (["bill"], "invalid choice: 'bill'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bad_arguments_give_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    files = {"BAD_FILE": 'input = "cheap"', "HUGE_RATE_FILE": "input = 1e308\noutput = 1"}
    for name, rates in files.items():
        (tmp_path / f"{name}.toml").write_text(f'[models."x"]\n{rates}\n')
    argv = [str(tmp_path / f"{arg}.toml") if arg in files else arg for arg in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llmmeter: error: ")
    assert message in lines[0]


def test_bad_prices_file_from_environment_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_PRICES", bad_file(tmp_path))
    code, _, err = run_cli(capsys, "prices", "gpt-4o")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("llmmeter: error: ")


@pytest.mark.parametrize("argv", [["--help"], ["prices", "--help"], ["--version"]])
def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.startswith(("usage: llmmeter", "llmmeter "))


# --- formatting and parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("10M", 10_000_000),
        ("2.5M", 2_500_000),
        ("300k", 300_000),
        ("300K", 300_000),
        ("1B", 1_000_000_000),
        ("1500", 1500),
        ("1_000_000", 1_000_000),
    ],
)
def test_token_amounts(text: str, tokens: int) -> None:
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize(
    ("value", "rate", "cost"),
    [
        (2.5, "$2.50", "$2.50"),
        (0.075, "$0.075", "$0.075"),
        (10.0, "$10.00", "$10.00"),
        (1.125, "$1.125", "$1.13"),
        (0.0042, "$0.0042", "$0.0042"),
        (1350.0, "$1,350.00", "$1,350.00"),
        (2.4749999999999996, "$2.475", "$2.48"),  # float noise does not round down
    ],
)
def test_money_formats(value: float, rate: str, cost: str) -> None:
    assert (format_rate(value), format_cost(value)) == (rate, cost)


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        (1e26, "$100,000,000,000,000,000,000,000,000.00"),  # past Decimal's default 28 digits
        (1.5e308, "$150" + ",000" * 102 + ".00"),
        (5e-324, "$0." + "0" * 323 + "494"),
        (math.inf, "n/a"),
        (math.nan, "n/a"),
    ],
)
def test_money_formats_any_float_without_raising(value: float, cost: str) -> None:
    assert format_cost(value).replace(",", "") == cost.replace(",", "")


# --- docs/cli.md ---------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def doc_examples() -> list[tuple[str, str]]:
    """(command line, shown output) of each ```console block in docs/cli.md."""
    text = DOCS.read_text()
    blocks = re.findall(r"```console\n\$ ((?:COLUMNS=\d+ )?llmmeter .*?)\n(.*?)```", text, re.S)
    return [(command, output) for command, output in blocks]


@pytest.mark.parametrize(("command", "shown"), doc_examples(), ids=lambda v: str(v)[:60])
def test_docs_show_real_output(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
    shown: str,
) -> None:
    """Each example in docs/cli.md prints what the page says ("..." ends a shortened one)."""
    toml = re.search(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert toml is not None
    (tmp_path / "prices.toml").write_text(toml[1])
    monkeypatch.chdir(tmp_path)
    width, _, command = command.rpartition("llmmeter ")
    if width:  # COLUMNS=80: the width a terminal would give
        monkeypatch.setenv(*width.strip().split("="))
    main(command.split())
    captured = capsys.readouterr()
    printed = without_data_version(captured.out + captured.err)
    shown = without_data_version(shown)
    if shown.endswith("...\n"):
        shown = shown.removesuffix("...\n")
        printed = printed[: len(shown)]
    assert printed == shown


def test_ctrl_c_ends_a_command_with_one_line_and_code_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C on a long read (a huge file, a pipe that never ends): no traceback."""
    import llmmeter._cli as cli

    def interrupted(argv: object = None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == 130
    assert capsys.readouterr() == ("", "\nllmmeter: interrupted\n")
