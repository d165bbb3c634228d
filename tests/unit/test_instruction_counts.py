"""``benchmarks/instructions.py`` without valgrind: how counts become figures and verdicts.

The per-call arithmetic (the span between the counts at N1 and N2), reading callgrind's
dumps in order and on the calling thread only, the per-chunk slope, the goals against the
floor and the fastest other instrumentation (and by how much a missed one is missed), and
the CI check's share and 5 % threshold. The counting itself, under valgrind, is
``tests/integration/test_instruction_counts.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402
import instructions  # noqa: E402
from instructions import (  # noqa: E402
    Counted,
    CountError,
    Goal,
    Sizes,
    judge,
    share,
)

CHAT = bench.CASES_BY_NAME["chat"]
STREAM = bench.CASES_BY_NAME["stream_50"]


def entry(per_call: float) -> dict[str, Any]:
    return {"per_call": per_call, "problems": []}


def venv(variants: dict[str, dict[str, float]], **extra: Any) -> dict[str, Any]:
    """A virtualenv's results as ``collect`` shapes them: per variant, per case, per call."""
    return {
        "variants": {v: {c: entry(n) for c, n in cases.items()} for v, cases in variants.items()},
        "versions": {"openai": "3.63.0", "opentelemetry-sdk": "1.45.2", "llmmeter": "0.1"},
        "package": "llmmeter",
        **extra,
    }


# --- per call ---------------------------------------------------------------------------


def test_per_call_is_the_count_between_n1_and_n2_over_the_calls_between() -> None:
    counted = Counted(first=2_000, second=9_000, sizes=Sizes(warmup=20, n1=20, n2=120))
    assert counted.per_call == 90.0  # 9,000 / (120 - 20)
    assert counted.first_per_call == 100.0  # 2,000 / 20: the cross-check, not the figure


def test_start_up_and_warm_up_stay_outside_the_counted_spans() -> None:
    start_up, n1, n2 = 3_000_000_000, 140_000, 700_000
    counts = [start_up, n1, n2, 5_000_000, 210_000, 1_050_000]
    assert instructions.segments(counts, ["chat", "embeddings"]) == {
        "chat": (n1, n2),
        "embeddings": (210_000, 1_050_000),
    }


@pytest.mark.parametrize("counts", [[1, 2], [1, 2, 3, 4]])
def test_a_mark_missing_or_extra_is_an_error_not_a_figure(counts: list[int]) -> None:
    with pytest.raises(CountError, match=f"dumped {len(counts)} times at getsid"):
        instructions.segments(counts, ["chat"])


def write_dump(path: Path, *, part: int, thread: int, trigger: str, summary: int) -> None:
    path.write_text(
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 123\n"
        f"cmd:  python child.py\npart: {part}\nthread: {thread}\n\n"
        f"desc: I1 cache: \ndesc: Trigger: {trigger}\n\npositions: line\nevents: Ir\n"
        f"summary: {summary}\n\n\nob=(1) python\nfn=(1) main\n0 {summary}\n",
        encoding="utf-8",
    )


def test_dumps_are_read_in_part_order_on_the_calling_thread_only(tmp_path: Path) -> None:
    marked = "--dump-before=getsid"
    write_dump(tmp_path / "callgrind.123.10-01", part=10, thread=1, trigger=marked, summary=10)
    write_dump(tmp_path / "callgrind.123.2-01", part=2, thread=1, trigger=marked, summary=2)
    write_dump(tmp_path / "callgrind.123.9-01", part=9, thread=1, trigger=marked, summary=9)
    # The export thread, and the dumps at exit, are not counts of the calls.
    write_dump(tmp_path / "callgrind.123.3-02", part=3, thread=2, trigger=marked, summary=99)
    write_dump(
        tmp_path / "callgrind.123-01", part=11, thread=1, trigger="Program termination", summary=7
    )
    (tmp_path / "callgrind.123").write_text("", encoding="utf-8")  # callgrind's empty base file
    assert instructions.marked_counts(tmp_path) == [2, 9, 10]


# --- sizes ------------------------------------------------------------------------------


def test_streams_make_a_quarter_of_the_calls() -> None:
    sizes = Sizes(warmup=20, n1=20, n2=120)
    assert sizes.for_case(CHAT) == sizes
    assert sizes.for_case(STREAM) == Sizes(warmup=5, n1=5, n2=30)


def test_a_small_stream_still_counts_one_call_between_the_marks() -> None:
    assert Sizes(warmup=2, n1=2, n2=6).for_case(STREAM) == Sizes(warmup=1, n1=1, n2=2)


@pytest.mark.parametrize(("warmup", "n1", "n2"), [(20, 20, 20), (20, 0, 10), (-1, 1, 2)])
def test_sizes_refuse_counts_that_cannot_give_a_difference(warmup: int, n1: int, n2: int) -> None:
    with pytest.raises(ValueError, match="0 < n1 < n2"):
        Sizes(warmup, n1, n2)


# --- what variants add ------------------------------------------------------------------


def test_overhead_is_over_the_bare_of_the_same_virtualenv() -> None:
    main = venv({"bare": {"chat": 7_000_000.0}, "llmmeter": {"chat": 7_900_000.0}})
    assert instructions.over_bare(main, "llmmeter", "chat") == 900_000.0
    assert instructions.over_bare(main, "llmmeter", "responses") is None


def test_per_chunk_is_the_slope_between_the_two_stream_lengths() -> None:
    main = venv(
        {
            "bare": {"stream_10": 10_000_000.0, "stream_50": 42_000_000.0},
            "llmmeter": {"stream_10": 11_000_000.0, "stream_50": 44_000_000.0},
        }
    )
    assert instructions.per_chunk(main, "bare") == 800_000.0  # (42 M - 10 M) / 40
    assert instructions.per_chunk(main, "llmmeter") == 825_000.0
    assert instructions.chunk_over_bare(main, "llmmeter") == 25_000.0


# --- goals ------------------------------------------------------------------------------


def run_results() -> dict[str, Any]:
    """main, and two others: ``slow`` adds 1,000 everywhere, ``quick`` 800 (no Responses)."""
    cases = ("chat", "responses")
    bare = dict.fromkeys(cases, 10_000.0)
    return {
        "venvs": {
            "main": venv(
                {
                    "bare": bare,
                    "floor": dict.fromkeys(cases, 10_400.0),
                    "llmmeter": dict.fromkeys(cases, 10_500.0),
                }
            ),
            "slow": venv(
                {
                    "bare": bare,
                    "slow": dict.fromkeys(cases, 11_000.0),
                    "llmmeter": dict.fromkeys(cases, 10_600.0),
                },
                package="slow-instrumentation",
            ),
            "quick": venv(
                {
                    "bare": bare,
                    "quick": {"chat": 10_800.0},
                    "llmmeter": dict.fromkeys(cases, 10_700.0),
                },
                package="quick-instrumentation",
                skipped_cases=["responses"],
            ),
        },
        "startup": {},
        "failures": [],
        "problems": [],
    }


def test_goals_compare_with_the_floor_and_the_fastest_other_in_its_own_virtualenv() -> None:
    found = {(g.case, g.against): g for g in instructions.goals(run_results())}
    assert set(found) == {
        ("chat", "floor"),
        ("chat", "quick"),
        ("responses", "floor"),
        ("responses", "slow"),  # quick does not instrument Responses
    }
    floor = found["chat", "floor"]
    assert (floor.ours, floor.theirs, floor.limit) == (500.0, 400.0, 1.25)
    assert floor.met  # 1.25x exactly
    quick = found["chat", "quick"]
    assert (quick.ours, quick.theirs) == (700.0, 800.0)  # llmmeter as counted beside quick
    assert quick.ratio == pytest.approx(0.875)
    assert quick.met is False
    slow = found["responses", "slow"]
    assert slow.met  # 600 <= 0.8 x 1,000


def test_a_missed_goal_says_by_how_many_instructions_it_is_missed() -> None:
    goal = Goal("chat", "quick", ours=700.0, theirs=800.0, limit=0.8)
    assert goal.excess == pytest.approx(60.0)  # 700 - 0.8 x 800
    assert goal.verdict() == "**not met**: 60 instructions per call over, 9% of llmmeter's"
    assert (
        Goal("per chunk", "q", 30.0, 20.0, 1.0)
        .verdict("chunk")
        .startswith("**not met**: 10 instructions per chunk over")
    )


def test_a_reference_that_adds_nothing_gives_no_verdict() -> None:
    goal = Goal("chat", "floor", ours=500.0, theirs=0.0, limit=1.25)
    assert goal.met is None
    assert goal.ratio is None
    assert goal.verdict().startswith("no verdict")


def test_the_per_chunk_goal_is_against_the_fastest_others_chunk() -> None:
    streams = ("stream_10", "stream_50")
    results: dict[str, Any] = {
        "venvs": {
            "other": venv(
                {
                    "bare": dict(zip(streams, (1_000.0, 41_000.0), strict=True)),
                    "other": dict(zip(streams, (1_100.0, 41_900.0), strict=True)),
                    "llmmeter": dict(zip(streams, (1_200.0, 42_000.0), strict=True)),
                }
            )
        }
    }
    (chunk,) = [g for g in instructions.goals(results) if g.case == instructions.PER_CHUNK]
    # other: (41,900 - 1,100) / 40 - 1,000 = 20; llmmeter: (42,000 - 1,200) / 40 - 1,000 = 20
    assert (chunk.against, chunk.ours, chunk.theirs, chunk.limit) == ("other", 20.0, 20.0, 1.0)
    assert chunk.met


# --- the check --------------------------------------------------------------------------


def test_share_is_llmmeters_overhead_as_a_multiple_of_the_floors() -> None:
    assert share(bare=7_000_000, floor=7_700_000, ours=7_910_000) == pytest.approx(1.3)


def test_a_floor_that_adds_nothing_is_an_error_not_a_division() -> None:
    with pytest.raises(CountError, match="the floor adds nothing over bare"):
        share(bare=7_000_000, floor=7_000_000, ours=7_500_000)


def test_a_share_up_to_five_percent_over_the_checked_in_passes() -> None:
    (check,) = judge({"chat": 1.05}, {"cases": {"chat": {"share": 1.0}}})
    assert check.passed
    assert check.line("benchmarks/instructions.json") == (
        "instructions: chat: llmmeter adds 1.050x the floor's instructions over bare, +5.0% "
        "against the 1.000x checked in (benchmarks/instructions.json; at most +5%)"
    )


def test_a_share_more_than_five_percent_over_fails_with_one_line_naming_both() -> None:
    checks = judge(
        {"chat": 1.3, "chat_async": 1.1},
        {"cases": {"chat": {"share": 1.2}, "chat_async": {"share": 1.1}}},
    )
    failed = [c for c in checks if not c.passed]
    assert [c.case for c in failed] == ["chat"]
    line = failed[0].line("benchmarks/instructions.json")
    assert "\n" not in line
    assert line.startswith("FAILED instructions: chat:")
    assert "1.300x" in line
    assert "1.200x checked in" in line
    assert "+8.3%" in line


def test_a_shrinking_share_passes() -> None:
    (check,) = judge({"chat": 0.9}, {"cases": {"chat": {"share": 1.3}}})
    assert check.passed


def test_a_case_with_no_checked_in_figure_fails_and_says_how_to_write_one() -> None:
    (check,) = judge({"chat_async": 1.2}, {"cases": {"chat": {"share": 1.3}}})
    assert not check.passed
    assert "--check --update" in check.line("figures.json")


def test_the_tolerance_checked_in_is_the_one_applied() -> None:
    (check,) = judge({"chat": 1.08}, {"cases": {"chat": {"share": 1.0}}}, tolerance=0.1)
    assert check.passed


def test_the_figures_update_writes_are_the_ones_the_check_then_passes() -> None:
    main = venv(
        {
            "bare": {"chat": 7_000_000.0, "chat_async": 7_100_000.0},
            "floor": {"chat": 7_700_000.0, "chat_async": 7_850_000.0},
            "llmmeter": {"chat": 7_910_000.0, "chat_async": 8_000_000.0},
        }
    )
    measured = instructions.measured_shares(main, ["chat", "chat_async"])
    assert measured == pytest.approx({"chat": 1.3, "chat_async": 1.2})
    meta = {"date": "2026-12-07 12:00 UTC", "valgrind": "valgrind-3.19.0", "python": "3.11.7"}
    written = json.loads(json.dumps(instructions.figures_document(main, measured, meta)))
    assert written["cases"]["chat"]["per_call"]["floor"] == 7_700_000.0
    assert written["environment"]["valgrind"] == "valgrind-3.19.0"
    assert written["environment"]["versions"]["openai"] == "3.63.0"
    assert all(check.passed for check in judge(measured, written, written["tolerance"]))
    grown = {case: value * 1.06 for case, value in measured.items()}
    assert not any(check.passed for check in judge(grown, written, written["tolerance"]))


def test_a_variant_not_counted_is_an_error_not_a_share() -> None:
    main = venv({"bare": {"chat": 1.0}, "llmmeter": {"chat": 2.0}})
    with pytest.raises(CountError, match="chat: not counted"):
        instructions.measured_shares(main, ["chat"])


# --- the record -------------------------------------------------------------------------


def test_the_table_shows_every_variant_what_it_adds_and_the_goals() -> None:
    results = run_results()
    results["meta"] = {
        "date": "2026-12-07 12:00 UTC",
        "valgrind": "valgrind-3.19.0",
        "cpu": "cpu",
        "machine": "x86_64",
        "python": "3.11.7",
        "commit": "abc1234",
        "sizes": {"warmup": 20, "n1": 20, "n2": 120},
    }
    text = instructions.render(results, ["chat", "responses"])
    assert (
        "| main .venv (openai 3.63.0, OpenTelemetry SDK 1.45.2) | bare | 10,000 | 10,000 |" in text
    )
    assert "|  | llmmeter | +500 | +500 |" in text
    assert "|  | quick | +800 | not instrumented |" in text
    assert "| chat | ≤ 0.8x the fastest other, quick | +700 | +800 | 0.88x | **not met**" in text
    assert "(count at 120 calls - count at 20) / 100" in text
    assert "Telemetry valid" in text


def test_the_docs_section_is_replaced_between_its_own_marks(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(
        "# Performance\n<!-- bench:start -->\nbench table\n<!-- bench:end -->\n"
        "<!-- instructions:start -->\nold counts\n<!-- instructions:end -->\ntail\n",
        encoding="utf-8",
    )
    bench.write_docs(
        page, "new counts", "python benchmarks/instructions.py", instructions.DOCS_MARKS
    )
    text = page.read_text(encoding="utf-8")
    assert "bench table" in text
    assert "old counts" not in text
    assert "Recorded with `python benchmarks/instructions.py`.\n\nnew counts" in text
    assert text.endswith("<!-- instructions:end -->\ntail\n")


# --- layouts ----------------------------------------------------------------------------


def layout_run(per_call: float, problems: list[str] | None = None) -> dict[str, Any]:
    return {
        "per_call": per_call,
        "first_per_call": per_call - 10,
        "sizes": [20, 20, 120],
        "problems": problems or [],
    }


def test_each_figure_is_the_median_over_layouts_and_keeps_every_layouts_figure() -> None:
    runs = [
        {"chat": layout_run(7_000_000.0)},
        {"chat": layout_run(7_009_000.0, ["exported 0 spans for 140 calls"])},  # unlucky
        {"chat": layout_run(7_001_000.0)},
    ]
    merged = instructions.merge_layouts(runs)["chat"]
    assert merged["per_call"] == 7_001_000.0
    assert merged["layouts"] == [7_000_000.0, 7_009_000.0, 7_001_000.0]
    assert merged["first_per_call"] == 7_000_990.0
    assert merged["problems"] == ["exported 0 spans for 140 calls"]  # any layout's counts


def test_layouts_differ_only_by_the_padding_variable() -> None:
    first, second = instructions.child_env(0), instructions.child_env(2)
    assert first[instructions.LAYOUT_VARIABLE] == ""
    assert len(second[instructions.LAYOUT_VARIABLE]) == 2 * instructions.LAYOUT_STEP
    assert {k: v for k, v in first.items() if k != instructions.LAYOUT_VARIABLE} == {
        k: v for k, v in second.items() if k != instructions.LAYOUT_VARIABLE
    }
    assert first["PYTHONHASHSEED"] == "0"
    assert int(first["OTEL_BSP_SCHEDULE_DELAY"]) >= 10**9  # no timer thread in the counts


def test_every_counted_variant_runs_once_per_layout_and_start_up_once() -> None:
    jobs, venvs, failures = instructions.plan(
        ["main", "startup"], ["chat"], sys.executable, layouts=3
    )
    assert failures == []
    assert set(venvs) == {"main"}
    counted = sorted((job.variant, job.layout) for job in jobs if job.venv == "main")
    assert counted == sorted((v, n) for v in ("bare", "floor", "llmmeter") for n in range(3))
    assert sorted(job.target for job in jobs if job.venv == "startup") == [
        "llmmeter_first",
        "openai_first",
    ]
