"""Running ``llmmeter`` commands in the test process, and reading their tables."""

from __future__ import annotations

import re

import pytest

from llmmeter._cli import main

DATE = ["--date", "2026-11-01"]  # prices change over time; pin the day
_DATA_VERSION = re.compile(r"genai-prices \d[\w.+-]*")


def without_data_version(text: str) -> str:
    """``text`` with the price data's version as a placeholder: a page's example shows the
    figures it promises, whichever release of pyproject's genai-prices range is installed."""
    return _DATA_VERSION.sub("genai-prices <version>", text)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The exit code, standard output and standard error of one command."""
    code = main([*argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(out: str) -> dict[str, list[str]]:
    """Table rows by their first cell, split on runs of two or more spaces."""
    return {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if (cells := re.split(r"\s{2,}", line.strip()))
    }
