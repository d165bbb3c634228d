"""The one table layout of every ``llmmeter`` command: plain text that fits the terminal.

Decision (issue 21): our own renderer, not ``rich``. Every table here is a grid of short,
already formatted strings; what it needs is to fit a width, and that is this module. rich
15.0 (measured on the 2-core CI machine) installs 14 MB with pygments and markdown-it-py
and takes about 85 ms to import its console, table and progress (this module and
``progress``: about 10 ms); its tables draw boxes and colour that a script reading the
output must strip, and its layout moves between releases, while the docs show byte-exact
output that tests compare. Plain text has no escape code to leak into a file, so "no ANSI
when piped" holds by construction.

The layout, when the natural table is wider than the width:

1. headers wrap at their spaces (``tokens in`` over two lines) and the widest columns
   shrink first, down to their widest cell;
2. then the cells of columns marked ``wrap`` (names, messages) wrap, at spaces and hyphens;
3. if that is still too wide, the columns are split into several tables, each repeating the
   first (key) column, one after the other.

With no width (output piped to a file, no ``COLUMNS``), a table is one line per row, so
``grep``, ``awk`` and ``cut`` read it: columns are separated by at least two spaces.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

GAP: Final = "  "
MIN_WRAP: Final = 8
"""Columns a wrapping column keeps at least: narrower, words would be cut in pieces."""
RULE: Final = "-"
_BREAKS: Final = ("-", "_", ".", "/", ":")


@dataclass(frozen=True, slots=True)
class _Grid:
    """What :func:`render` was given, passed whole to its helpers."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[str]]
    footer: Sequence[str] | None
    rules: bool


@dataclass(frozen=True, slots=True)
class Column:
    """A column's header, alignment, and whether its cells may wrap onto more lines."""

    header: str
    align: Literal["left", "right"] = "left"
    wrap: bool = False


def output_width() -> int | None:
    """The width tables must fit: the terminal's on a terminal, else ``COLUMNS`` if set,
    else none (piped output keeps one line per row)."""
    stream = sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    if tty:
        return max(shutil.get_terminal_size().columns, 20)
    text = os.environ.get("COLUMNS", "")
    return max(int(text), 20) if text.isdigit() and int(text) > 0 else None


def _words(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``: broken at spaces, a word too long for a line
    (a model id) after its last ``-``, ``_``, ``.``, ``/`` or ``:`` that fits, else cut."""
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
            continue
        rest = word
        while len(rest) > width:
            cut = max(rest.rfind(mark, 0, width) for mark in _BREAKS) + 1
            cut = cut if cut > 0 else width
            lines.append(rest[:cut])
            rest = rest[cut:]
        lines.append(rest)
    return lines or [""]


def _spans_rest(row: Sequence[str], columns: int) -> bool:
    """A row shorter than the table: its last cell (a message) spans the columns left."""
    return len(row) < columns


def render(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None,
    footer: Sequence[str] | None = None,
    rules: bool = False,
) -> list[str]:
    """The table's lines (trailing spaces stripped), fitted to ``width`` if one is given.

    ``rules`` draws a line of dashes under the header and above ``footer`` (a total row).
    A row with fewer cells than columns ends in a message that spans the remaining
    columns and widens none of them.
    """
    grid = _Grid(columns, rows, footer, rules)
    every = [*rows, *([footer] if footer is not None else [])]
    natural = [
        max([len(column.header), *(len(row[i]) for row in every if _fixed(row, i, columns))])
        for i, column in enumerate(columns)
    ]
    if width is None or _total(natural) <= width:
        return _lines(grid, natural, width)
    cells = [
        max([0, *(len(row[i]) for row in every if _fixed(row, i, columns))])
        for i in range(len(columns))
    ]
    headed = [max(cells[i], _words(column.header)) for i, column in enumerate(columns)]
    if _total(headed) <= width:
        return _lines(grid, _fill(natural, headed, width), width)
    wrapped = [
        max(min(headed[i], MIN_WRAP), _words(column.header)) if column.wrap else headed[i]
        for i, column in enumerate(columns)
    ]
    if _total(wrapped) <= width or len(columns) <= 2:
        return _lines(grid, _fill(headed, wrapped, width), width)
    # Groups packed at widths where no cell wraps read best, if the key column leaves room.
    unwrapped = _total([headed[0], min(headed[1:])]) <= width
    return _split(grid, headed if unwrapped else wrapped, width)


def _fixed(row: Sequence[str], index: int, columns: Sequence[Column]) -> bool:
    """Whether ``row[index]`` is a cell that sets its column's width."""
    if _spans_rest(row, len(columns)):
        return index < len(row) - 1
    return index < len(row)


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _fill(upper: Sequence[int], lower: Sequence[int], width: int) -> list[int]:
    """Widths between ``lower`` and ``upper`` that fit ``width``: the widest columns are cut
    to one cap, the largest cap that fits (or ``lower``, if nothing does)."""
    cap = max(upper)
    while cap > 0:
        widths = [max(low, min(up, cap)) for up, low in zip(upper, lower, strict=True)]
        if _total(widths) <= width:
            return widths
        cap -= 1
    return list(lower)


def _split(grid: _Grid, widths: Sequence[int], width: int) -> list[str]:
    """Several tables, each the key column and as many more as fit, one after the other."""
    columns, rows, footer = grid.columns, grid.rows, grid.footer
    groups: list[list[int]] = []
    group = [0]
    for index in range(1, len(columns)):
        if len(group) > 1 and _total([widths[i] for i in (*group, index)]) > width:
            groups.append(group)
            group = [0]
        group.append(index)
    groups.append(group)
    out: list[str] = []
    for number, group in enumerate(groups):
        if number:
            out.append("")

        def pick(row: Sequence[str], chosen: list[int] = group) -> list[str]:
            if _spans_rest(row, len(columns)):
                # A message row: shown whole in the group where it starts.
                start = len(row) - 1
                if start in chosen:
                    return [row[i] for i in chosen if i < start] + [row[start]]
                return [row[i] for i in chosen if i < len(row) - 1]
            return [row[i] for i in chosen]

        out += render(
            [columns[i] for i in group],
            [pick(row) for row in rows],
            width=width,
            footer=pick(footer) if footer is not None else None,
            rules=grid.rules,
        )
    return out


def _lines(grid: _Grid, widths: Sequence[int], width: int | None) -> list[str]:
    columns, rows, footer, rules = grid.columns, grid.rows, grid.footer, grid.rules
    header = [_wrap(column.header, w) for column, w in zip(columns, widths, strict=True)]
    height = max(len(lines) for lines in header)
    header = [[""] * (height - len(lines)) + lines for lines in header]  # bottom-aligned
    out = [_join(columns, [lines[n] for lines in header], widths) for n in range(height)]
    rule = RULE * min(_total(widths), width or _total(widths))
    if rules:
        out.append(rule)
    for row in rows:
        out += _row(columns, row, widths, width)
    if footer is not None:
        if rules:
            out.append(rule)
        out += _row(columns, footer, widths, width)
    return out


def _row(
    columns: Sequence[Column], row: Sequence[str], widths: Sequence[int], width: int | None
) -> list[str]:
    cells: list[list[str]] = []
    for index, cell in enumerate(row):
        if _spans_rest(row, len(columns)) and index == len(row) - 1:
            start = _total(widths[:index]) + (len(GAP) if index else 0)
            room = max(width - start, MIN_WRAP) if width is not None else len(cell)
            cells.append(_wrap(cell, room) if columns[index].wrap or width else [cell])
        elif columns[index].wrap:
            cells.append(_wrap(cell, widths[index]))
        else:
            cells.append([cell])
    height = max(len(lines) for lines in cells)
    return [
        _join(columns, [lines[n] if n < len(lines) else "" for lines in cells], widths)
        for n in range(height)
    ]


def _join(columns: Sequence[Column], cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = []
    last = len(cells) - 1
    for index, cell in enumerate(cells):
        if index == last and len(cells) < len(columns):
            parts.append(cell)  # the spanning message: no padding
        elif columns[index].align == "right":
            parts.append(cell.rjust(widths[index]))
        else:
            parts.append(cell.ljust(widths[index]))
    return GAP.join(parts).rstrip()


def fit(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    footer: Sequence[str] | None = None,
    rules: bool = False,
) -> list[str]:
    """:func:`render` at the width of where the output goes (:func:`output_width`)."""
    return render(columns, rows, width=output_width(), footer=footer, rules=rules)


def columns(*headers: str, wrap: Sequence[str] = ()) -> list[Column]:
    """Left-aligned columns; those named in ``wrap`` may wrap their cells."""
    return [Column(header, wrap=header in wrap) for header in headers]
