"""The ways in: the installed ``llmmeter`` script and ``python -m llmmeter``, as processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli_runner import DATE, rows

# --- entry points --------------------------------------------------------------------


def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_console_script_runs() -> None:
    """The installed `llmmeter` script reaches main() and passes its exit code through."""
    script = Path(sys.executable).parent / "llmmeter"
    done = run_process(str(script), "prices", "gpt-4o", "--json", *DATE)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    assert doc["models"][0]["rates_per_1m"]["input"] == 2.5
    bad = run_process(str(script), "prices", "--compare", "gpt-4o", "--daily-input", "10X")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("llmmeter: error: ")


def test_python_dash_m_runs() -> None:
    done = run_process(sys.executable, "-m", "llmmeter", "prices", "gpt-4o-mini", *DATE)
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)["gpt-4o-mini"][:4] == ["$0.15", "$0.075", "-", "$0.60"]
