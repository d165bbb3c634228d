"""The command line within its memory bound, as a user runs it: a fresh process under a 1 GiB
address-space limit (``RLIMIT_AS``), fed what used to exhaust it or its stack.

Each bad input must end as one ``llmmeter: error:`` line and exit code 2, never a
``MemoryError`` or ``RecursionError`` traceback; a valid file near the bound must still be
read under the same limit. Two real ``policy promote --write`` processes at once must never
both report success.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

LIMIT = 1 << 30
MIB = 1 << 20
# The command in a fresh interpreter, its address space capped before llmmeter is imported.
RUN_LIMITED = (
    "import resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT})); "
    "sys.argv = ['llmmeter', *sys.argv[1:]]; "
    "runpy.run_module('llmmeter', run_name='__main__')"
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and FIFOs")


def llmmeter(*argv: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_LIMITED, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def one_error(code: int, out: str, err: str) -> str:
    assert (code, out) == (2, ""), err[-2000:]
    assert err.count("\n") == 1 and err.startswith("llmmeter: error: "), err[-2000:]
    return err.removeprefix("llmmeter: error: ").rstrip("\n")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1 MB of gzip that expands to 1 GiB without a newline."""
    path = tmp_path_factory.mktemp("bounds") / "spans.json.gz"
    chunk = b"a" * MIB
    with gzip.open(path, "wb", compresslevel=9) as file:
        for _ in range(1024):
            file.write(chunk)
    return path


def test_a_gzip_bomb_is_one_error_at_the_bound(bomb: Path) -> None:
    assert one_error(*llmmeter("report", bomb)) == (
        f"{bomb}, line 1: longer than 64 MiB, the most llmmeter reads as one line; nothing of "
        "it was used"
    )


@pytest.mark.parametrize("argv", [["report"], ["policy", "status", "--otlp"]])
def test_dev_zero_is_one_error_at_the_bound(argv: list[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n')
    if argv[0] == "policy":
        argv = ["policy", "status", str(policy), "--otlp"]
    assert one_error(*llmmeter(*argv, "/dev/zero")).startswith(
        "/dev/zero, line 1: longer than 64 MiB"
    )


@pytest.fixture
def endless_fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO a writer fills with random lines until the reader goes away."""
    path = tmp_path / "spans.fifo"
    os.mkfifo(path)

    def write() -> None:
        line = os.urandom(200).replace(b"\n", b" ") + b"\n"
        try:
            with path.open("wb") as fifo:
                while True:
                    fifo.write(line * 1000)
        except OSError:  # BrokenPipeError: the reader is done
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield path
    writer.join(timeout=60)


def test_a_fifo_that_never_ends_stops_at_a_thousand_lines_of_junk(endless_fifo: Path) -> None:
    assert one_error(*llmmeter("report", endless_fifo)) == (
        f"{endless_fifo}: not OTLP JSON trace data (line 1: not UTF-8 text)"
    )


def test_64_mib_of_junk_lines_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    line = b"2026-11-25 09:00:01 INFO request served in 12 ms " + b"x" * 77 + b"\n"
    path.write_bytes(line * (64 * MIB // len(line)))
    assert one_error(*llmmeter("report", path)) == (
        f"{path}: not OTLP JSON trace data (line 1: invalid JSON: Extra data at column 5)"
    )


def test_json_nested_50000_deep_is_one_error(tmp_path: Path) -> None:
    deep = "[" * 50_000 + "]" * 50_000 + "\n"
    spans = tmp_path / "spans.json"
    spans.write_text(deep)
    assert one_error(*llmmeter("report", spans)) == (
        f"{spans}: not OTLP JSON trace data (line 1: nested too deeply)"
    )
    dataset = tmp_path / "sample.jsonl"
    dataset.write_text(deep)
    argv = ["evaluate", dataset, "--from", "gpt-4o", "--to", "gpt-4o-mini"]
    assert one_error(*llmmeter(*argv, env={"OPENAI_API_KEY": "sk-test"})) == (
        f"{dataset}, line 1: expected a request nested at most 100 levels deep; this one is deeper"
    )


def test_a_valid_line_near_the_bound_is_read_under_the_same_limit(tmp_path: Path) -> None:
    """60 MiB of real-looking spans on one line: parsed, it takes about ten times that."""
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o-2024-08-06"}},
        {"key": "llmmeter.task", "value": {"stringValue": "classify"}},
        {"key": "server.address", "value": {"stringValue": "api.openai.com"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
        {"key": "gen_ai.usage.cost.amount", "value": {"doubleValue": 0.003}},
    ]
    start = 1_764_000_000 * 10**9

    def span(index: int) -> str:
        return json.dumps(
            {
                "traceId": f"{index + 1:032x}",
                "spanId": f"{index + 1:016x}",
                "name": "chat gpt-4o",
                "kind": 3,
                "startTimeUnixNano": str(start + index),
                "endTimeUnixNano": str(start + index + 500_000_000),
                "attributes": attributes,
                "status": {},
            }
        )

    one = len(span(0)) + 1
    count = 60 * MIB // one
    path = tmp_path / "spans.json"
    with path.open("w") as file:
        file.write('{"resourceSpans": [{"scopeSpans": [{"spans": [')
        file.write(",".join(span(index) for index in range(count)))
        file.write("]}]}]}\n")
    assert 58 * MIB < path.stat().st_size < 64 * MIB
    code, out, err = llmmeter("report", path, "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["total"]["calls"] == count


# --- two promotes at once ----------------------------------------------------------------------

POLICY = """\
[[rules]]
name = "classify-to-mini"
from = "gpt-4o"
to = "gpt-4o-mini"
mode = "shadow"
evaluate = 0.1
"""


SHADOW = {"llmmeter.policy.action": "shadow"}


def metrics_line(name: str, value: float, **labels: str) -> str:
    attributes = [{"key": "llmmeter.policy.rule", "value": {"stringValue": "classify-to-mini"}}]
    attributes += [{"key": k, "value": {"stringValue": v}} for k, v in labels.items()]
    now = 1_764_000_000 * 10**9
    point = {
        "attributes": attributes,
        "startTimeUnixNano": str(now - 600 * 10**9),
        "timeUnixNano": str(now),
        "asDouble": value,
    }
    metric = {"name": name, "sum": {"dataPoints": [point], "aggregationTemporality": 2}}
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]})


def test_two_promote_writes_at_once_never_both_succeed(tmp_path: Path) -> None:
    """The issue's race, 20 rounds: before the lock, both could report success and one
    edit was lost. Now at most one writes; the other exits 2 naming the file."""
    evidence = tmp_path / "metrics.json"
    evidence.write_text(
        "\n".join(
            [
                metrics_line("llmmeter.policy.decisions", 5000, **SHADOW),
                metrics_line("llmmeter.evaluations", 400),
                metrics_line("llmmeter.evaluation.agreement", 392),
            ]
        )
        + "\n"
    )  # fmt: skip
    policy = tmp_path / "policy.toml"
    argv = [sys.executable, "-m", "llmmeter", "policy", "promote", str(policy)]
    argv += ["--otlp", str(evidence), "--write"]
    for _ in range(20):
        policy.write_text(POLICY)
        both = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        finished = [(p.wait(timeout=120), *p.communicate()) for p in both]
        codes = sorted(code for code, _, _ in finished)
        assert codes in ([0, 0], [0, 2]), finished
        if codes == [0, 0]:
            # Only when one ran after the other had written: then it found nothing to change.
            assert any("Nothing to change." in out for _, out, _ in finished), finished
        for code, _, err in finished:
            if code == 2:
                assert err.startswith(f"llmmeter: error: {policy} "), err
                assert err.endswith("nothing was written: run promote again\n") or (
                    "is locked by another process" in err
                ), err
        assert 'mode = "enforce"' in policy.read_text()
