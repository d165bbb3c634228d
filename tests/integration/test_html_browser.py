"""The HTML report in a real browser: Debian's Chromium, headless, opens the page from a file
with its network off, and every chart is drawn: the DOM it built holds each chart's marks,
and its screenshot is a picture, not a blank page.

Chromium is skipped where it is missing, except in CI (``CI=true``), which installs it
(``.ci/run``) and where a missing browser fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from llmmeter._cli import main
from llmmeter._cli.charts import BLUE, GREEN, ORANGE, SKY, VERMILION
from llmmeter.testing import FakeOpenAI
from tests.unit.test_html_report import evaluated_spans
from tests.unit.test_report import collector_lines, make_workload, write

# As the machine's notes say a headless Chromium is started here: no sandbox (root), no GPU,
# nothing in the background that would reach for the network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    # The page fetches nothing; should it try, there is nowhere to go.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
MARK_COLOURS = {c.lower() for c in (BLUE, GREEN, ORANGE, SKY, VERMILION)}
"""The data marks' colours: a chart whose DOM holds none drew no data."""


@pytest.fixture
def browser() -> str:
    """Chromium's path, looked up before any page is made."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    reason = "chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it")
    pytest.skip(reason)


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a fresh profile (no state carried from run to run)."""
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


class _Charts(HTMLParser):
    """Per chart (``<figure class="chart" id=...>``): its svg's role and every fill and
    stroke colour its elements carry."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, object]] = {}
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure" and values.get("class") == "chart":
            self._current = values.get("id") or "?"
            self._depth = 0
            self.charts[self._current] = {"svg": None, "colours": set(), "marks": 0}
        if self._current is None:
            return
        chart = self.charts[self._current]
        if tag == "figure":
            self._depth += 1
        if tag == "svg":
            chart["svg"] = values.get("role")
        if tag in ("path", "rect", "use"):
            chart["marks"] = int(str(chart["marks"])) + 1
        style = values.get("style") or ""
        found = re.findall(r"(?:fill|stroke):\s*(#[0-9a-fA-F]{6})", style)
        colours = chart["colours"]
        assert isinstance(colours, set)
        colours.update(colour.lower() for colour in found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self._current is not None:
            self._depth -= 1
            if self._depth == 0:
                self._current = None


def drawn(dom: str) -> dict[str, dict[str, object]]:
    parser = _Charts()
    parser.feed(dom)
    return parser.charts


def assert_rendered(browser: str, page: Path, tmp_path: Path, expected: Sequence[str]) -> None:
    source = page.read_text(encoding="utf-8")
    url = page.resolve().as_uri()
    dom = run_chromium(browser, tmp_path / "profile", "--dump-dom", url).stdout
    charts = drawn(dom)
    assert sorted(charts) == sorted(expected)
    assert sorted(re.findall(r'<figure class="chart" id="([^"]+)"', source)) == sorted(expected)
    for name, chart in charts.items():
        assert chart["svg"] == "img", name
        assert int(str(chart["marks"])) > 3, name
        colours = chart["colours"]
        assert isinstance(colours, set)
        assert colours & MARK_COLOURS, f"{name} drew no data marks"
    shot = tmp_path / "page.png"
    run_chromium(
        browser, tmp_path / "profile", "--window-size=1000,2400", f"--screenshot={shot}", url
    )
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        width, height = pixels.size
        assert (width, height) == (1000, 2400)
        colours = pixels.getcolors(maxcolors=width * height) or []
        assert len(colours) > 50, "the screenshot is blank"
        inked = sum(count for count, rgb in colours if rgb != (255, 255, 255))
        assert inked / (width * height) > 0.03, "the screenshot is almost blank"
        blue = tuple(int(BLUE[i : i + 2], 16) for i in (1, 3, 5))
        assert any(rgb == blue for _count, rgb in colours), "no chart's bars are on screen"


def test_demo_page_renders_every_chart(browser: str, tmp_path: Path) -> None:
    page = tmp_path / "demo.html"
    assert main(["demo", "--html", str(page)]) == 0
    assert_rendered(
        browser,
        page,
        tmp_path,
        [
            "chart-over-time",
            "chart-by-model",
            "chart-by-task",
            "chart-by-provider",
            "chart-routing",
            "chart-projection",
        ],
    )


def test_report_page_with_evaluations_renders_every_chart(
    browser: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    spans = [*make_workload(fake).spans, *evaluated_spans(fake)]
    source = write(tmp_path / "spans.json", collector_lines(spans))
    page = tmp_path / "report.html"
    assert main(["report", str(source), "--html", str(page)]) == 0
    assert_rendered(
        browser,
        page,
        tmp_path,
        [
            "chart-over-time",
            "chart-by-model",
            "chart-by-task",
            "chart-by-provider",
            "chart-routing",
            "chart-agreement",
            "chart-projection",
        ],
    )
