"""Renderers: plain text, JSON and tables. rich is imported only here and only when a terminal will see it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from .errors import Diagnostic

STYLES = {"error": "31", "warning": "33", "ok": "32", "differs": "33", "changed": "33", "failed": "31",
          "unreachable": "31", "missing": "35", "read-only": "36", "drift": "33", "bold": "1", "dim": "2"}


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str, stream: TextIO | None = None) -> str:
    """ANSI colour on a terminal, the text unchanged otherwise."""
    code = STYLES.get(style)
    if not code or not is_terminal(stream):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def emit(text: str = "", *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def diagnostic_line(diagnostic: Diagnostic, stream: TextIO | None = None) -> str:
    text = str(diagnostic)
    if diagnostic.severity == "warning":
        return text.replace("warning:", paint("warning:", "warning", stream), 1)
    location = str(diagnostic.location)
    return paint(location, "error", stream) + text[len(location):]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, status_column: int | None = None,
          title: str | None = None) -> None:
    """A table: rich on a terminal, aligned plain text (no colour, no rich import) when piped."""
    rows = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(*headers, title=title, header_style="bold")
        for row in rows:
            cells = list(row)
            if status_column is not None:
                colour = {"31": "red", "33": "yellow", "32": "green", "35": "magenta", "36": "cyan"}.get(
                    STYLES.get(cells[status_column].split(" ")[0], ""), "")
                if colour:
                    cells[status_column] = f"[{colour}]{cells[status_column]}[/{colour}]"
            rich_table.add_row(*cells)
        Console().print(rich_table)
        return
    if title:
        emit(title)
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    emit("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        emit("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
