"""``benchmarks/instructions.py --check`` under valgrind, end to end, with a few calls.

bare, floor and llmmeter are counted on chat and async chat in this interpreter; against a
figures file where one case's checked-in share is far below any real one and the other's
far above, the check must fail on the first case alone, in one line naming both figures.
Skipped where valgrind is missing, except in CI (``CI=true``), which installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "instructions.py"
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    if shutil.which("valgrind") is None:
        if IN_CI:
            pytest.fail("valgrind is not installed; CI must install it")
        pytest.skip("valgrind is not installed")
    figures = tmp_path_factory.mktemp("instructions") / "figures.json"
    figures.write_text(
        json.dumps(
            {"tolerance": 0.05, "cases": {"chat": {"share": 0.01}, "chat_async": {"share": 100.0}}}
        ),
        encoding="utf-8",
    )
    small = ["--warmup", "2", "--n1", "2", "--n2", "6", "--layouts", "1"]
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--figures", str(figures), *small],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_a_share_grown_past_the_checked_in_fails_in_one_line_naming_both(
    checked: subprocess.CompletedProcess[str],
) -> None:
    lines = checked.stdout.splitlines()
    assert checked.returncode == 1, checked.stdout + checked.stderr[-3000:]
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 1, lines
    assert failed[0].startswith("FAILED instructions: chat: llmmeter adds ")
    assert "0.010x checked in" in failed[0]


def test_a_share_within_the_checked_in_passes_and_is_a_real_multiple(
    checked: subprocess.CompletedProcess[str],
) -> None:
    (line,) = [x for x in checked.stdout.splitlines() if x.startswith("instructions: chat_async")]
    assert "100.000x checked in" in line
    found = re.search(r"adds (\d+\.\d+)x the floor's", line)
    assert found is not None, line
    # llmmeter does at least the floor's OpenTelemetry work, and not several times more.
    assert 0.9 < float(found.group(1)) < 5.0, line
