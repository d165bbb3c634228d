"""Code in the docs runs: every Python block of the pages below is executed in its own process
against the fake OpenAI server, next to the page's TOML block saved as ``policy.toml``; a
``print(...)  # value`` comment is what that line must print. (The README's TOML is loaded by
tests/unit/test_docs_policy.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmmeter.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("docs/getting-started.md", "docs/telemetry.md")


def _blocks(page: str, language: str) -> list[str]:
    text = (ROOT / page).read_text()
    return [m[1] for m in re.finditer(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)]


CASES = [
    (page, index, block) for page in PAGES for index, block in enumerate(_blocks(page, "python"))
]


@pytest.mark.parametrize(
    ("page", "index", "block"), CASES, ids=[f"{p}-python-{i}" for p, i, _ in CASES]
)
def test_python_block_runs_and_prints_what_it_says(
    fake: FakeOpenAI, tmp_path: Path, page: str, index: int, block: str
) -> None:
    tomls = _blocks(page, "toml")
    if tomls:
        (tmp_path / "policy.toml").write_text(tomls[0])
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-docs",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    expected = re.findall(r"^print\(.*\)\s+#\s*(\S+?):?(?:\s|$)", block, re.M)
    printed = [line.split()[0] if line.split() else "" for line in done.stdout.splitlines()]
    assert printed[-len(expected) :] == expected if expected else done.stdout


def test_every_docs_page_with_python_is_covered() -> None:
    """A new page with Python blocks must be added to PAGES (or to its own docs test)."""
    own_tests = {"docs/policy.md", "docs/testing.md", "docs/pricing.md", "docs/cli.md"}
    with_python = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "docs").glob("*.md")
        if "```python" in path.read_text()
    }
    assert with_python <= set(PAGES) | own_tests, with_python - set(PAGES) - own_tests


def test_every_install_line_works_before_llmmeter_is_on_pypi() -> None:
    """llmmeter is not on PyPI yet: an install line names a checkout (``path/to/llmmeter``) or
    says it is for once llmmeter is published, so a first reader's first command works."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    wrong = [
        f"{page.relative_to(ROOT)}: {line.strip()}"
        for page in pages
        for line in page.read_text().splitlines()
        if re.search(r"pip install\s+'?llmmeter\b", line) and "published" not in line
    ]
    assert wrong == []
