"""``llmmeter evaluate``: two models over real HTTP (the fake server), exact numbers.

Every prompt below is 8 characters, so by the fake server's token rule each request costs
3 + 3 + ceil(8 / 4) = 8 input tokens, Chat or Responses alike, and each one-word answer 1
output token. At the bundled prices (USD per 1M tokens: gpt-4o 2.50 in / 10.00 out,
gpt-4o-mini 0.15 in / 0.60 out) a request costs $0.00003 on gpt-4o and $0.0000018 on
gpt-4o-mini: $28.20 saved per 1M requests.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from llmmeter._cli import inputs, main
from llmmeter.testing import FakeOpenAI

pytest.importorskip("openai")

GPT_4O_REQUEST = 8 * 2.50e-6 + 1 * 10.00e-6
MINI_REQUEST = 8 * 0.15e-6 + 1 * 0.60e-6
SAVED_PER_1M = (GPT_4O_REQUEST - MINI_REQUEST) * 1_000_000  # $28.20

# Eight-character prompts; the cheap model gets the two "refund" ones wrong.
PROMPTS = ["great!!!", "love it!", "refund 1", "so good!", "amazing!",
           "refund 2", "perfect!", "best one", "superb!!", "top tier"]  # fmt: skip
WRONG_ON_LINES = [3, 6]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-evaluate")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def disagreeing(server: FakeOpenAI, env: None) -> FakeOpenAI:
    """gpt-4o always says "positive"; gpt-4o-mini says "negative" to refunds."""
    server.answer("gpt-4o-mini", "negative", prompt="refund")
    server.answer("gpt-4o*", "positive")
    return server


def write(tmp_path: Path, *records: dict[str, Any] | str) -> str:
    path = tmp_path / "sample.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def evaluate(
    capsys: pytest.CaptureFixture[str], server: FakeOpenAI, dataset: str, *options: str
) -> tuple[int, str, str]:
    code = main(
        [
            "evaluate", dataset, "--from", "gpt-4o", "--to", "gpt-4o-mini",
            "--base-url", server.base_url, *options,
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], **extra}


def test_agreement_decides_without_expected_answers(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    records = [chat(p) for p in PROMPTS[:-1]] + [{"input": PROMPTS[-1], "temperature": 0}]
    code, out, _ = evaluate(capsys, disagreeing, write(tmp_path, *records), "--json")
    report = json.loads(out)
    assert code == 1
    assert (report["n"], report["compared"], report["errors"]) == (10, 10, [])
    assert report["accuracy"] is None
    agreement = report["agreement"]
    assert (agreement["score"], agreement["n"], agreement["point"]) == (8.0, 10, 0.8)
    # Wilson 95% for 8 of 10: [0.4902, 0.9433] (Newcombe's method 3, by hand).
    assert (round(agreement["lower"], 4), round(agreement["upper"], 4)) == (0.4902, 0.9433)
    assert report["disagreements"] == WRONG_ON_LINES
    assert report["cost_usd"]["from"]["total"] == pytest.approx(10 * GPT_4O_REQUEST, rel=1e-12)
    assert report["cost_usd"]["to"]["mean"] == pytest.approx(MINI_REQUEST, rel=1e-12)
    assert report["savings_per_1m_requests_usd"] == pytest.approx(28.2, rel=1e-12)
    assert report["savings_per_1m_requests_usd"] == pytest.approx(SAVED_PER_1M, rel=1e-12)
    assert report["verdict"] == {
        "met": False,
        "measure": "agreement",
        "model": None,
        "lower": agreement["lower"],
        "target": 0.95,
    }
    assert [r.body["model"] for r in disagreeing.requests].count("gpt-4o-mini") == 10


def test_a_lower_target_is_met_by_the_same_evidence(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    dataset = write(tmp_path, *(chat(p) for p in PROMPTS))
    code, out, _ = evaluate(capsys, disagreeing, dataset, "--json", "--target", "0.49")
    assert code == 0
    assert json.loads(out)["verdict"]["met"] is True


def test_accuracy_of_the_cheaper_model_decides_with_expected_answers(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    records = [chat(p, expected="Positive") for p in PROMPTS]
    code, out, _ = evaluate(
        capsys, disagreeing, write(tmp_path, *records), "--json", "--target", "0.7"
    )
    report = json.loads(out)
    accuracy = report["accuracy"]
    assert (accuracy["from"]["model"], accuracy["from"]["score"], accuracy["from"]["n"]) == (
        "gpt-4o",
        10.0,
        10,
    )
    assert round(accuracy["from"]["lower"], 4) == 0.7225  # 10 of 10
    assert (accuracy["to"]["score"], round(accuracy["to"]["lower"], 4)) == (8.0, 0.4902)
    # gpt-4o's 72% would pass 0.7; gpt-4o-mini's accuracy decides, and fails.
    assert report["verdict"] == {
        "met": False,
        "measure": "accuracy",
        "model": "gpt-4o-mini",
        "lower": accuracy["to"]["lower"],
        "target": 0.7,
    }
    assert code == 1


def test_text_output_says_what_decided(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    records = [chat(p, expected="positive") for p in PROMPTS]
    code, out, _ = evaluate(capsys, disagreeing, write(tmp_path, *records))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("sample.jsonl: gpt-4o -> gpt-4o-mini, compared with exact")
    assert lines[1] == "compared: 10; errors: 0 failed requests"
    assert [line.split()[:4] for line in lines[4:7]] == [
        ["accuracy", "gpt-4o", "10/10", "="],
        ["accuracy", "gpt-4o-mini", "8/10", "="],
        ["agreement", "8/10", "=", "80.0%"],
    ]
    assert lines[5].split()[4:6] == ["80.0%", "49.0%"]
    assert "  gpt-4o: $0.0003 total, $0.00003 per request" in lines
    assert "  gpt-4o-mini: $0.000018 total, $0.0000018 per request" in lines
    assert "projected savings per 1M requests: $28.20" in lines
    assert (
        "verdict: target NOT met: lower bound 49.0% < target 95.0%; decided by the accuracy "
        "of gpt-4o-mini against 'expected' (10 lines)"
    ) in lines
    assert lines[-1] == "disagreements on lines: 3, 6"


def test_label_comparator_compares_extracted_labels(
    capsys: pytest.CaptureFixture[str], server: FakeOpenAI, env: None, tmp_path: Path
) -> None:
    server.answer("gpt-4o", "Sentiment: Positive.")
    server.answer("gpt-4o-mini", "positive")
    dataset = write(tmp_path, *(chat(p) for p in PROMPTS[:5]))
    label = r"(?i)\b(positive|negative)\b"
    code, out, _ = evaluate(
        capsys, server, dataset, "--compare", "label", "--label", label, "--target", "0.5"
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["agreement", "5/5", "=", "100.0%", "56.6%", "0"] in rows
    assert "compared with label (label (?i)\\b(positive|negative)\\b)" in out
    assert "verdict: target met: lower bound 56.6% >= target 50.0%" in out


def test_unjudgeable_pairs_are_counted_apart(
    capsys: pytest.CaptureFixture[str], server: FakeOpenAI, env: None, tmp_path: Path
) -> None:
    """An original answer without a label is no evidence either way."""
    server.answer("gpt-4o", "I am not sure", prompt="refund")
    server.answer("*", "negative")
    dataset = write(tmp_path, *(chat(p) for p in PROMPTS[:4]))
    code, out, _ = evaluate(
        capsys, server, dataset, "--compare", "label", "--label", "negative|positive", "--json"
    )
    agreement = json.loads(out)["agreement"]
    assert (agreement["score"], agreement["n"]) == (3.0, 3)
    assert agreement["unjudged"] == [{"line": 3, "reason": "no label in the original answer"}]
    assert code == 1


def test_a_failed_request_is_reported_apart_and_its_line_excluded(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    disagreeing.fail_next(400, model="gpt-4o-mini")
    dataset = write(tmp_path, *(chat(p) for p in PROMPTS))
    # One request at a time, in line order: line 1's gpt-4o-mini request takes the failure.
    code, out, _ = evaluate(capsys, disagreeing, dataset, "--json", "--concurrency", "1")
    report = json.loads(out)
    assert report["errors"] == [
        {"line": 1, "model": "gpt-4o-mini", "error": "BadRequestError (HTTP 400)"}
    ]
    assert (report["n"], report["compared"]) == (10, 9)
    assert (report["agreement"]["score"], report["agreement"]["n"]) == (7.0, 9)
    assert report["cost_usd"]["from"]["total"] == pytest.approx(9 * GPT_4O_REQUEST, rel=1e-12)
    assert report["savings_per_1m_requests_usd"] == pytest.approx(SAVED_PER_1M, rel=1e-12)
    assert code == 1


def test_an_unpriced_model_has_no_cost_and_no_savings(
    capsys: pytest.CaptureFixture[str], server: FakeOpenAI, env: None, tmp_path: Path
) -> None:
    server.add_model("acme-llm")
    dataset = write(tmp_path, chat(PROMPTS[0]))
    code = main(
        ["evaluate", dataset, "--from", "gpt-4o", "--to", "acme-llm", "--base-url",
         server.base_url, "--json", "--target", "0.1"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["cost_usd"]["to"] == {"model": "acme-llm", "total": None, "mean": None}
    assert report["savings_per_1m_requests_usd"] is None
    assert code == 0  # 1 of 1 agreed: Wilson lower bound 0.2065 >= 0.1


def test_limit_reads_only_the_first_requests(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    dataset = write(tmp_path, chat(PROMPTS[0]), chat(PROMPTS[1]), "this line is never read")
    code, out, _ = evaluate(capsys, disagreeing, dataset, "--json", "--limit", "2")
    assert json.loads(out)["n"] == 2
    assert len(disagreeing.requests) == 4
    assert code == 1  # 2 of 2: lower bound 0.342


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: expected a JSON object; not JSON (Expecting property name"),
        ("[1, 2]", "line 2: expected a JSON object; got an array"),
        ('{"prompt": "hi"}', "line 2: expected exactly one of 'messages' (Chat Completions)"),
        ('{"messages": [], "input": "x"}', "line 2: expected exactly one of 'messages'"),
        ('{"messages": "hi"}', "line 2: 'messages': expected a non-empty array of message"),
        ('{"input": 3}', "line 2: 'input': expected a non-empty string or array of input"),
        (
            '{"input": "hi", "max_tokens": 5}',
            "line 2: 'max_tokens': expected a request option that responses.create accepts",
        ),
        ('{"input": "hi", "model": "gpt-4o"}', "line 2: 'model': the model is set by --from"),
        ('{"input": "hi", "stream": true}', "line 2: 'stream': requests are sent unstreamed"),
        ('{"input": "hi", "expected": 3}', "line 2: 'expected': expected the right answer as a"),
        (
            "[" * 50_000 + "]" * 50_000,
            "line 2: expected a request nested at most 100 levels deep; this one is deeper",
        ),
        (
            '{"input": "hi", "metadata": ' + "[" * 150 + "]" * 150 + "}",
            "line 2: expected a request nested at most 100 levels deep; this one is deeper",
        ),
        (
            '{"input": "hi", "seed": ' + "1" * 5000 + "}",
            "line 2: expected a JSON object; not JSON (a number of more than 4300 digits)",
        ),
    ],
)
def test_a_bad_line_fails_before_any_request(
    capsys: pytest.CaptureFixture[str],
    disagreeing: FakeOpenAI,
    tmp_path: Path,
    line: str,
    message: str,
) -> None:
    dataset = write(tmp_path, chat(PROMPTS[0]), line, chat(PROMPTS[1]))
    code, out, err = evaluate(capsys, disagreeing, dataset)
    assert code == 2
    assert out == ""
    assert err.startswith(f"llmmeter: error: {dataset}, {message}")
    assert disagreeing.requests == []


def test_a_line_past_the_bound_is_one_error_naming_file_and_line(
    capsys: pytest.CaptureFixture[str],
    disagreeing: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inputs, "MAX_LINE", 1024)
    long = chat("x" * 2000)
    dataset = write(tmp_path, chat(PROMPTS[0]), long)
    code, out, err = evaluate(capsys, disagreeing, dataset)
    assert (code, out, disagreeing.requests) == (2, "", [])
    assert err == (
        f"llmmeter: error: {dataset}, line 2: longer than 1 KiB, the most llmmeter reads as one "
        "line; nothing of it was used\n"
    )


def test_expected_answers_are_checked_against_the_comparator(
    capsys: pytest.CaptureFixture[str], disagreeing: FakeOpenAI, tmp_path: Path
) -> None:
    dataset = write(tmp_path, chat(PROMPTS[0], expected="neutral"))
    code, _, err = evaluate(capsys, disagreeing, dataset, "--compare", "label", "--label", "pos")
    assert (code, disagreeing.requests) == (2, [])
    assert "line 1: 'expected': expected a text in which --label finds a label" in err
    dataset = write(tmp_path, chat(PROMPTS[0], expected={"name": "f"}))
    code, _, err = evaluate(capsys, disagreeing, dataset, "--compare", "tool")
    assert code == 2
    assert "with --compare tool, expected a non-empty array of" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--label", "x"], "--label: a label regex only applies to compare = 'label'"),
        (["--compare", "label"], "--label: compare = 'label' needs a label regex"),
        (["--compare", "label", "--label", "("], "--label: expected a regular expression"),
        (["--compare", "fuzzy"], "argument --compare: invalid choice: 'fuzzy'"),
        (["--target", "95"], "argument --target: expected a number from 0 to 1; got '95'"),
        (["--concurrency", "0"], "argument --concurrency: expected a whole number of at least"),
    ],
)
def test_bad_options_exit_2(
    capsys: pytest.CaptureFixture[str],
    disagreeing: FakeOpenAI,
    tmp_path: Path,
    options: list[str],
    message: str,
) -> None:
    code, _, err = evaluate(capsys, disagreeing, write(tmp_path, chat(PROMPTS[0])), *options)
    assert code == 2
    assert err.startswith(f"llmmeter: error: {message}")


def test_a_missing_dataset_or_api_key_exits_2(
    capsys: pytest.CaptureFixture[str],
    server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = evaluate(capsys, server, str(tmp_path / "absent.jsonl"))
    assert code == 2
    assert "cannot read" in err and "absent.jsonl" in err
    code, _, err = evaluate(capsys, server, write(tmp_path, chat(PROMPTS[0])))
    assert code == 2
    assert err == (
        "llmmeter: error: no API key: set OPENAI_API_KEY (any value for a server that needs none)\n"
    )
    assert server.requests == []


# --- docs/cli.md ---------------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def test_docs_example_prints_what_the_page_shows(
    capsys: pytest.CaptureFixture[str],
    server: FakeOpenAI,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    text = DOCS.read_text()
    section = text[text.index("## `llmmeter evaluate`") : text.index("## `llmmeter policy`")]
    found = re.search(r"```text\n\$ llmmeter (evaluate .*?)\n(.*?)```", section, re.S)
    dataset = re.search(r"```jsonl\n(.*?)```", section, re.S)
    assert found is not None and dataset is not None
    (tmp_path / "sample.jsonl").write_text(dataset[1])
    monkeypatch.chdir(tmp_path)
    server.answer("gpt-4o-mini", "Positive", prompt="Refund")
    server.answer("gpt-4o*", "Negative.", prompt="cracked|Refund")
    server.answer("gpt-4o*", "positive")
    code = main([*shlex.split(found[1]), "--base-url", server.base_url])
    assert capsys.readouterr().out == found[2]
    assert code == 1
