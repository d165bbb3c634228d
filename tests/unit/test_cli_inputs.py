"""``llmmeter._cli.inputs``: every read within its bound, progress only on long reads.

Time is a fake clock here: the progress tests say what is shown after how many seconds,
never wait for them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from llmmeter._cli import inputs, main, progress
from llmmeter._cli.common import UsageError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- lines and documents ---------------------------------------------------------------------


def test_a_line_of_exactly_the_bound_is_read_one_byte_more_is_not() -> None:
    data = b"a" * 8 + b"\n" + b"b" * 8 + b"\n" + b"c" * 9 + b"\n"
    read = inputs.lines("f.json", io.BytesIO(data), limit=8)
    assert [next(read), next(read)] == [(1, b"a" * 8 + b"\n"), (2, b"b" * 8 + b"\n")]
    with pytest.raises(UsageError) as raised:
        next(read)
    assert str(raised.value) == (
        "f.json, line 3: longer than 8 bytes, the most llmmeter reads as one line; nothing of "
        "it was used"
    )


def test_a_stream_without_newlines_is_read_no_further_than_the_bound() -> None:
    """/dev/zero, or a gzip bomb: what the bound costs is the bound, then one error."""

    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            buffer[:] = b"\0" * len(buffer)
            self.served += len(buffer)
            return len(buffer)

    endless = Endless()
    with pytest.raises(UsageError, match=r"^<stdin>, line 1: longer than 1 MiB"):
        list(inputs.lines("<stdin>", io.BufferedReader(endless), limit=1 << 20))
    assert endless.served <= (1 << 20) + io.DEFAULT_BUFFER_SIZE


def test_a_document_read_whole_has_its_own_bound() -> None:
    assert inputs.read_rest("f", io.BytesIO(b"bc"), b"a", limit=3) == b"abc"
    with pytest.raises(UsageError) as raised:
        inputs.read_rest("f", io.BytesIO(b"bcd"), b"a", limit=3)
    assert str(raised.value) == (
        "f: a document longer than 3 bytes, the most llmmeter reads as one; write one JSON "
        "document a line (jq -c . FILE)"
    )


def test_a_small_file_read_whole_is_bounded_and_named(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"x" * 10)
    assert inputs.read_file(str(path), "the policy file", limit=10) == b"x" * 10
    with pytest.raises(UsageError) as raised:
        inputs.read_file(str(path), "the policy file", limit=9)
    assert str(raised.value) == (
        f"the policy file {path}: longer than 9 bytes, the most llmmeter reads of it"
    )
    with pytest.raises(UsageError, match=r"^cannot read the policy file .*: Is a directory"):
        inputs.read_file(str(tmp_path), "the policy file")


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ([], 1),
        ({"a": [1, {"b": []}]}, 4),
        ([[[]], []], 3),
        (json.loads("[" * 500 + "]" * 500), 500),
    ],
)
def test_nesting_counts_levels_without_recursion(value: object, depth: int) -> None:
    assert inputs.nesting(value) == depth


@pytest.mark.parametrize(
    ("size", "words"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"), (1536, "1.5 KiB"),
     (64 << 20, "64 MiB"), (3 << 30, "3 GiB"), (5 << 40, "5120 GiB")],
)  # fmt: skip
def test_sizes_for_people(size: int, words: str) -> None:
    assert inputs.size_words(size) == words


# --- progress --------------------------------------------------------------------------------


def test_progress_on_a_terminal_is_one_line_rewritten_after_the_first_second(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spans.json"
    path.write_bytes(b"x" * 1000)
    clock, terminal = Clock(), Terminal()
    with path.open("rb") as source:
        progress = inputs.Progress("report", "spans.json", source, stream=terminal, clock=clock)
        source.read(250)
        clock.now = 0.5
        progress.update(10, 250)
        assert terminal.getvalue() == ""  # a read that ends now printed nothing
        clock.now = 1.0
        progress.update(20, 500)
        clock.now = 1.5
        progress.update(30, 750)  # within a second of the last: not shown
        clock.now = 2.0
        source.read(750)
        progress.update(40, 1000)
        progress.finish()
    assert terminal.getvalue() == (
        "\rllmmeter report: spans.json: 20 lines, 500 bytes (25% of the file)\x1b[K"
        "\rllmmeter report: spans.json: 40 lines, 1000 bytes (100% of the file)\x1b[K\n"
    )


def test_progress_in_a_log_is_a_line_every_ten_seconds_without_escapes() -> None:
    clock, log = Clock(), io.StringIO()
    progress = inputs.Progress("evaluate", "<stdin>", None, stream=log, clock=clock)
    for second in range(1, 26):
        clock.now = float(second)
        progress.update(second * 1000, second << 20)
    progress.finish()
    assert log.getvalue() == (
        "llmmeter evaluate: <stdin>: 10,000 lines, 10 MiB\n"
        "llmmeter evaluate: <stdin>: 20,000 lines, 20 MiB\n"
    )


def test_report_shows_progress_on_stderr_and_the_table_on_stdout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read as long as the wait before progress: every line is shown as read."""
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    path = tmp_path / "spans.json"
    path.write_text('{"resourceSpans": []}\n' * 3)
    code = main(["report", str(path), "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.splitlines() == [
        f"llmmeter report: {path}: 1 line, 22 bytes (33% of the file)",
        f"llmmeter report: {path}: 2 lines, 44 bytes (66% of the file)",
        f"llmmeter report: {path}: 3 lines, 66 bytes (100% of the file)",
        f"llmmeter: note: no spans in {path}",
    ]
    assert captured.out.startswith("model,calls,")
