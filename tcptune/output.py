"""Renderers: plain text, JSON, tables and a progress bar.

rich is imported only here and only when a terminal will see it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO, TypeVar

from .errors import Diagnostic

T = TypeVar("T")

STYLES = {
    "error": "31",
    "warning": "33",
    "ok": "32",
    "differs": "33",
    "changed": "33",
    "failed": "31",
    "unreachable": "31",
    "missing": "35",
    "read-only": "36",
    "drift": "33",
    "bold": "1",
    "dim": "2",
}


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
    import json  # not on the plain-text path

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def one_line(text: object) -> str:
    """Text for one line of a table, a message or a comment: whitespace and control characters folded to single
    spaces (a kernel value's tabs, a multi-line error from a host, a profile description in a YAML comment)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())


def diagnostic_line(diagnostic: Diagnostic, stream: TextIO | None = None) -> str:
    text = str(diagnostic)
    if diagnostic.severity == "warning":
        return text.replace("warning:", paint("warning:", "warning", stream), 1)
    location = str(diagnostic.location)
    return paint(location, "error", stream) + text[len(location) :]


def emit_diagnostics(diagnostics: Iterable[Diagnostic], *, err: bool = True) -> None:
    """One line each, location first (coloured on a terminal)."""
    stream = sys.stderr if err else sys.stdout
    for diagnostic in diagnostics:
        emit(diagnostic_line(diagnostic, stream), err=err)


def with_progress(label: str, job: Callable[[Callable[[int], None], Callable[[str], None]], T]) -> T:
    """Run ``job(started, advanced)`` under a progress bar on stderr if it is a terminal, plainly otherwise.

    The job calls ``started(total)`` once it knows how many steps there are and ``advanced(text)`` after each one.
    """
    if not is_terminal(sys.stderr):
        return job(lambda _total: None, lambda _text: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def advanced(text: str) -> None:
            progress.update(task, advance=1, description=text)

        return job(started, advanced)


def terminal_size(stream: TextIO | None = None) -> tuple[int, int] | None:
    """(columns, lines) of the terminal ``stream`` (stdout) is, None when it is not one.

    Piped output is never wrapped or trimmed (scripts read its lines); on a terminal, lines are wrapped at word
    boundaries to fit, because the terminal itself would break them mid-word. $COLUMNS and $LINES win, as for rich.
    """
    stream = stream or sys.stdout
    try:
        if not stream.isatty():
            return None
        size = os.get_terminal_size(stream.fileno())
        columns, lines = size.columns, size.lines
    except (AttributeError, OSError, ValueError):
        return None
    columns = _positive_env("COLUMNS") or columns or 80
    lines = _positive_env("LINES") or lines or 24
    return columns, lines


def terminal_columns(stream: TextIO | None = None) -> int | None:
    size = terminal_size(stream)
    return size[0] if size else None


def _positive_env(name: str) -> int | None:
    text = os.environ.get(name, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


_ANSI = "\x1b["


def visible_len(text: str) -> int:
    """Length on screen: ANSI colour sequences (``paint``) take no columns."""
    if _ANSI not in text:
        return len(text)
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", text))


def wrap_words(text: str, width: int | None, *, indent: str | None = None, fold: bool = False) -> list[str]:
    """``text`` as lines of at most ``width`` columns, broken at spaces only; ``width`` None: one line, unchanged.

    Continuation lines start with ``indent`` (default: the text's own leading spaces plus two). A word longer than a
    line (a key name, a path) gets a line of its own and is never cut, since a name cut in two reads as another
    name; with ``fold`` (a table cell that is not a name) it continues on the next lines instead.
    """
    if width is None or visible_len(text) <= width:
        return [text]
    import re

    lead = text[: len(text) - len(text.lstrip(" "))]
    indent = lead + "  " if indent is None else indent
    room = max(1, width - len(indent))
    pieces: list[tuple[str, str]] = []  # (the spaces before a word, the word): spacing within a line is kept
    for gap, word in re.findall(r"(\s*)(\S+)", text[len(lead) :]):
        if fold and len(word) > room and _ANSI not in word:
            pieces.extend((gap if i == 0 else " ", word[i : i + room]) for i in range(0, len(word), room))
        else:
            pieces.append((" " if "\n" in gap or "\t" in gap else gap, word))
    lines: list[str] = []
    line, length = lead, len(lead)
    for gap, word in pieces:
        size = visible_len(word)
        if line.strip() and length + len(gap) + size > width:
            lines.append(line)
            line, length = indent, len(indent)
        if not line.strip():
            gap = ""
        line, length = line + gap + word, length + len(gap) + size
    lines.append(line)
    return lines


def emit_wrapped(text: str, *, indent: str | None = None, err: bool = False) -> None:
    """``emit``, wrapped at word boundaries to the terminal's width (see ``wrap_words``); unchanged when piped."""
    for line in wrap_words(text, terminal_columns(sys.stderr if err else sys.stdout), indent=indent):
        emit(line, err=err)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    status_column: int | None = None,
    title: str | None = None,
    keep: Sequence[int] = (0,),
) -> None:
    """A table: rich on a terminal, aligned plain text (no colour, no rich import) when piped.

    Columns in ``keep`` (names: keys, hosts) are never wrapped; the others wrap at word boundaries when the terminal
    is too narrow. Nothing is ever cut off: a cell that cannot fit folds onto the next line whole.
    """
    rows = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    if is_terminal():
        from rich import box
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(
            title=title,
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for index, header in enumerate(headers):
            rich_table.add_column(header, no_wrap=index in keep, overflow="fold")
        for row in rows:
            cells = list(row)
            if status_column is not None:
                colour = {"31": "red", "33": "yellow", "32": "green", "35": "magenta", "36": "cyan"}.get(
                    STYLES.get(cells[status_column].split(" ")[0], ""), ""
                )
                if colour:
                    cells[status_column] = f"[{colour}]{cells[status_column]}[/{colour}]"
            rich_table.add_row(*cells)
        Console().print(rich_table)
        return
    width = terminal_columns()  # a terminal with NO_COLOR or TERM=dumb: plain, but still wrapped to fit
    if title:
        for line in wrap_words(title, width):
            emit(line)
    for line in plain_table(headers, rows, width=width, keep=keep):
        emit(line)


def plain_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    indent: str = "",
    align_numbers: bool = False,
    width: int | None = None,
    keep: Sequence[int] = (0,),
) -> list[str]:
    """Aligned plain-text lines, headers in upper case; with ``align_numbers``, columns of numbers align right.

    With ``width`` (a terminal's columns), cells of columns not in ``keep`` wrap at word boundaries so that lines
    fit; without it every row is one line, however long (what scripts reading piped output expect).
    """
    return [
        line
        for block in table_blocks(headers, rows, indent=indent, align_numbers=align_numbers, width=width, keep=keep)
        for line in block
    ]


def table_blocks(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    indent: str = "",
    align_numbers: bool = False,
    width: int | None = None,
    keep: Sequence[int] = (0,),
) -> list[list[str]]:
    """``plain_table``'s lines grouped: the header's, then each row's (several when its cells wrap)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    numeric = [
        align_numbers and all(row[i].replace(".", "", 1).lstrip("+-").isdigit() or row[i] in ("", "-") for row in cells)
        for i in range(len(headers))
    ]
    titles = [h.upper() for h in headers]
    natural = [len(h) for h in titles]
    for row in cells:
        natural = [max(w, len(c)) for w, c in zip(natural, row)]
    fixed = [i in keep or numeric[i] for i in range(len(headers))]
    widths = natural
    if width is not None:
        widths = _fit_widths(natural, fixed, titles, width - len(indent) - 2 * (len(headers) - 1))

    def block(row: Sequence[str]) -> list[str]:
        parts = [
            [c] if len(c) <= w else wrap_words(c, w, indent="", fold=not kept) for c, w, kept in zip(row, widths, fixed)
        ]
        height = max((len(p) for p in parts), default=1)
        lines = []
        for n in range(height):
            texts = [p[n] if n < len(p) else "" for p in parts]
            lines.append(
                indent
                + "  ".join(t.rjust(w) if right else t.ljust(w) for t, w, right in zip(texts, widths, numeric)).rstrip()
            )
        return lines

    return [block(titles), *(block(row) for row in cells)]


def _fit_widths(natural: list[int], fixed: list[bool], titles: list[str], room: int) -> list[int]:
    """Column widths within ``room`` columns: fixed columns (names, numbers) keep their width, the others share the
    rest, the narrowest first, none narrower than its title (or 8); a table of long names may stay wider."""
    if sum(natural) <= room:
        return natural
    widths = list(natural)
    flexible = sorted((i for i, f in enumerate(fixed) if not f), key=lambda i: natural[i])
    left = room - sum(w for w, f in zip(natural, fixed) if f)
    for position, i in enumerate(flexible):
        share = left // (len(flexible) - position) if left > 0 else 0
        widths[i] = min(natural[i], max(share, len(titles[i]), 8))
        left -= widths[i]
    return widths


# ---- socket status and findings (issue 5): plain text with bars, Prometheus textfile ------------------------------
# They render the plain dicts of sockets.status_dict / advise.Finding.as_dict and never import rich, so that
# 'tcptune status' stays fast and --watch can redraw a whole frame at once.

_STATE_STYLE = {
    "ESTABLISHED": "ok",
    "TIME_WAIT": "warning",
    "FIN_WAIT2": "warning",
    "CLOSE_WAIT": "error",
    "LAST_ACK": "warning",
    "SYN_RECV": "warning",
}
_SEVERITY_STYLE = {"critical": "error", "warning": "warning", "info": "ok"}


def _bar(value: int, largest: int, width: int = 40) -> str:
    if not value or not largest or width <= 0:
        return ""
    eighths = max(1, round(8 * width * value / largest))
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def _state_columns(rows: list[dict[str, Any]]) -> list[str]:
    from .sockets import STATE_NAMES

    present = {name for row in rows for name in row["states"]}
    return [name for name in STATE_NAMES if name in present]


class _Section:
    """One breakdown of the status view: its heading and table, row by row, so that a frame can be trimmed."""

    def __init__(self, name: str, title: str, blocks: list[list[str]], styles: list[str] | None = None) -> None:
        self.name, self.title = name, title
        self.header, self.rows = blocks[0], blocks[1:]
        self.styles = styles or [""] * len(self.rows)

    def lines(self, shown: int, width: int | None) -> list[str]:
        out = ["", *(paint(line, "bold") for line in wrap_words(self.title, width))]
        out.extend(self.header)
        for block, style in zip(self.rows[:shown], self.styles):
            out.extend(paint(line, style) if style else line for line in block)
        return out

    def cost(self, width: int | None) -> int:
        """Lines taken by the heading and the column titles, before any row."""
        return 1 + len(wrap_words(self.title, width)) + len(self.header)


_ALARMING_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPAbortOnMemory", "TCPTimeWaitOverflow")


def status_text(
    status: dict[str, Any], *, counters: bool = True, width: int | None = None, height: int | None = None
) -> str:
    """The terminal view of ``tcptune status``: state counts with bars, limits, per-port/remote tables.

    ``width`` (a terminal's columns) wraps long lines and table cells at word boundaries. ``height`` (lines, for
    ``--watch``, which redraws in place) keeps the frame within it: the states first, then the limits, then as many
    rows of each breakdown as fit, shared out in turn, and one line naming what was left out.
    """
    from .sockets import COUNTER_HELP

    head = wrap_words(
        f"TCP sockets in {status.get('netns') or 'this network namespace'}: {status['total']} "
        f"(source: {status['source_label']}; {status['taken_at']})",
        width,
    )
    states = status["states"]
    largest = max(states.values(), default=0)
    bar_width = 40 if width is None else max(0, min(40, width - 26))
    state_lines = []
    for name, count in states.items():
        text = f"  {name:<13}{count:>9}  {_bar(count, largest, bar_width)}".rstrip()
        state_lines.append(
            paint(text, _STATE_STYLE.get(name, "bold"))
            if count and name in _STATE_STYLE
            else (text if count else paint(text, "dim"))
        )

    orphans, tw, ports = status["orphans"], status["time_wait"], status["port_range"]

    def of(count: int | None, limit: int | None, name: str, percent: float | None) -> str:
        shown = "?" if count is None else str(count)
        if limit is None:
            return f"{shown} ({name} not readable here)"
        return f"{shown} of {limit} {name} ({percent} %)"

    limits = ["", paint("Limits", "bold")]
    for text in (
        f"  orphans      {of(orphans['count'], orphans['max'], 'tcp_max_orphans', orphans['percent'])}; "
        f"orphaned FIN_WAIT2: {orphans['fin_wait2_orphans']}",
        f"  TIME_WAIT    {of(tw['count'], tw['max'], 'tcp_max_tw_buckets', tw['percent'])}",
        f"  local ports  {ports['low']}-{ports['high']}: {ports['size']} per remote address:port",
    ):
        limits.extend(wrap_words(text, width, indent=" " * 15))

    sections = _status_sections(status, counters, width, COUNTER_HELP)
    everything = [*head, *state_lines, *limits, *(line for s in sections for line in s.lines(len(s.rows), width))]
    if height is None or len(everything) <= height:
        return "\n".join(everything) + "\n"
    return "\n".join(_fit_frame(head, states, state_lines, limits, sections, width, height)) + "\n"


def _status_sections(
    status: dict[str, Any], counters: bool, width: int | None, counter_help: dict[str, str]
) -> list[_Section]:
    def blocks(headers: Sequence[str], rows: Iterable[Sequence[Any]], keep: Sequence[int] = (0,)) -> list[list[str]]:
        return table_blocks(headers, rows, indent="  ", align_numbers=True, width=width, keep=keep)

    def by_state(headers: list[str], rows: list[dict[str, Any]], fields: list[str]) -> list[list[str]]:
        """A column per state when that fits, else one column listing each row's states (STATE=count)."""
        columns = _state_columns(rows)
        wide = blocks(
            [*headers, *columns], [(*(r[f] for f in fields), *(r["states"].get(c, "") for c in columns)) for r in rows]
        )
        if width is None or all(len(line) <= width for block in wide for line in block):
            return wide
        return blocks(
            [*headers, "states"],
            [(*(r[f] for f in fields), ", ".join(f"{s}={n}" for s, n in r["states"].items())) for r in rows],
        )

    sections = []
    if status["by_port"]:
        sections.append(
            _Section(
                "ports",
                f"By port (top {len(status['by_port'])}; in = local port, out = remote port of outgoing connections)",
                by_state(["port", "dir", "total"], status["by_port"], ["port", "direction", "total"]),
            )
        )
    if status["endpoints"]:
        sections.append(
            _Section(
                "endpoints",
                "Outgoing connections per remote endpoint: local ports in use of the range",
                blocks(
                    ["local", "remote", "in use", "%", "time_wait", "established"],
                    [
                        (
                            e["local_address"],
                            f"{e['remote_address']}:{e['remote_port']}",
                            e["in_use"],
                            e["percent"],
                            e["time_wait"],
                            e["established"],
                        )
                        for e in status["endpoints"]
                    ],
                    keep=(0, 1),
                ),
            )
        )
    if status["by_remote"]:
        sections.append(
            _Section(
                "remote addresses",
                f"By remote address (top {len(status['by_remote'])})",
                by_state(["address", "total"], status["by_remote"], ["address", "total"]),
            )
        )
    if status["listeners"]:
        sections.append(
            _Section(
                "listeners",
                "Listeners (accept queue now / backlog)",
                blocks(
                    ["address", "port", "queue", "backlog"],
                    [
                        (
                            item["address"],
                            item["port"],
                            item["queue"],
                            "?" if item["backlog"] is None else item["backlog"],
                        )
                        for item in status["listeners"]
                    ],
                ),
            )
        )
    if counters and status["counters"]:
        deltas = status.get("counter_deltas")
        window = status.get("window_seconds")
        rows, styles = [], []
        for name, value in status["counters"].items():
            change = "" if deltas is None else f"+{deltas.get(name, 0)}"
            short = name.split(".", 1)[1]
            rows.append((short, value, change, counter_help.get(name, "")))
            alarming = short in _ALARMING_COUNTERS and (change not in ("", "+0") or (not change and value))
            styles.append("warning" if alarming else "")
        sections.append(
            _Section(
                "kernel counters",
                "Kernel counters (since boot or namespace creation"
                + (f"; change in the last {window:.1f} s)" if deltas is not None and window is not None else ")"),
                blocks(["counter", "value", "change" if deltas is not None else "", "meaning"], rows),
                styles,
            )
        )
    return sections


def _fit_frame(
    head: list[str],
    states: dict[str, int],
    state_lines: list[str],
    limits: list[str],
    sections: list[_Section],
    width: int | None,
    height: int,
) -> list[str]:
    """The status view within ``height`` lines (see ``status_text``)."""
    zero = [name for name, count in states.items() if not count]
    if zero:  # states without sockets share one line, leaving room for the breakdowns
        nonzero = [line for line, count in zip(state_lines, states.values()) if count]
        state_lines = nonzero + [paint(line, "dim") for line in wrap_words("  none in " + " ".join(zero), width)]
    reserve = 1
    while True:
        frame = [*head, *state_lines]
        left_out: list[str] = []
        room = height - reserve - len(frame)
        if len(limits) <= room:
            frame.extend(limits)
            room -= len(limits)
        else:
            left_out.append("limits")
        shown = {id(s): 0 for s in sections}
        for section in sections:  # each breakdown's heading and first row, in order, while they fit
            if section.rows and section.cost(width) + len(section.rows[0]) <= room:
                room -= section.cost(width) + len(section.rows[0])
                shown[id(section)] = 1
        growing = True
        while growing:  # then one more row of each in turn
            growing = False
            for section in sections:
                n = shown[id(section)]
                if 0 < n < len(section.rows) and len(section.rows[n]) <= room:
                    room -= len(section.rows[n])
                    shown[id(section)] = n + 1
                    growing = True
        for section in sections:
            n = shown[id(section)]
            if n:
                frame.extend(section.lines(n, width))
            if n < len(section.rows):
                left_out.append(
                    f"{len(section.rows) - n} of {len(section.rows)} {section.name}"
                    if n
                    else f"{len(section.rows)} {section.name}"
                )
        if not left_out:
            return frame
        note = wrap_words(f"not shown: {', '.join(left_out)} (--format json shows all)", width, indent="  ")
        if len(note) <= reserve or reserve >= height:
            frame = frame[: max(0, height - len(note))]
            return [*frame, *(paint(line, "dim") for line in note)][: max(1, height)]  # a tiny terminal: cut
        reserve = len(note)


def _number_text(value: object) -> str:
    """A finding's number for people: lists as "a; b", port rows as "443/in fin_wait2=12"."""
    if isinstance(value, list):
        return "[" + "; ".join(_number_text(item) for item in value) + "]"
    if isinstance(value, dict):
        head = f"{value['port']}/{value['direction']} " if "port" in value and "direction" in value else ""
        return head + " ".join(f"{k}={v}" for k, v in value.items() if k not in ("port", "direction") or not head)
    return str(value)


def findings_text(findings: list[dict[str, Any]], current: dict[str, str | None], width: int | None = None) -> str:
    """The terminal view of ``tcptune recommend``: prose wrapped at 116 columns, or a narrower terminal's width
    (``width``, default: stdout's if it is a terminal)."""
    import textwrap

    width = width or min(116, terminal_columns() or 116)

    def wrap(text: str, initial_indent: str) -> list[str]:  # names (keys, paths, commands) are never broken
        return textwrap.wrap(
            text,
            width,
            initial_indent=initial_indent,
            subsequent_indent=" " * 11,
            break_long_words=False,
            break_on_hyphens=False,
        )

    if not findings:
        return "No findings: nothing in the socket states or kernel counters calls for tuning.\n"
    out: list[str] = []
    for finding in findings:
        severity = finding["severity"]
        title = wrap_words(f"{severity.upper():<8} [{finding['id']}] {finding['title']}", width, indent=" " * 9)
        title[0] = paint(f"{severity.upper():<8}", _SEVERITY_STYLE.get(severity, "bold")) + title[0][8:]
        out.extend(title)
        numbers = ", ".join(f"{k}={_number_text(v)}" for k, v in finding["numbers"].items() if v not in (None, [], ""))
        out.extend(wrap(numbers, "  numbers: "))
        if finding["suggest"]:
            for key, value in finding["suggest"].items():
                now = current.get(key)
                out.append(f"  change:  {key}: {'?' if now is None else now} -> {value}")
        elif finding["keys"]:
            out.extend(wrap(f"{', '.join(finding['keys'])} (no value to suggest: see why)", "  keys:    "))
        else:
            out.append("  change:  no sysctl fixes this")
        for owner in finding.get("owners", []):
            out.append(f"  owner:   pid {owner['pid']} ({owner['name']}) holds {owner['sockets']} of them")
        for command in finding.get("commands", []):
            out.append(f"  run:     {command}")
        out.extend(wrap(finding["why"], "  why:     "))
        for label, text in (("window", finding.get("window")), ("effect", finding.get("effect"))):
            if text:
                out.extend(wrap(text, f"  {label}:  "))
        out.append("")
    return "\n".join(out)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(status: dict[str, Any]) -> str:
    """node_exporter textfile-collector format: # HELP/# TYPE per family, bounded label sets."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, object], object]]) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        if not rows:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    family(
        "tcptune_sockets",
        "gauge",
        "TCP sockets (IPv4 and IPv6) in this network namespace, by state.",
        (({"state": state.lower()}, count) for state, count in status["states"].items()),
    )
    family(
        "tcptune_sockets_by_port",
        "gauge",
        'TCP sockets by service port and state (top ports only): direction="in" is a local port, '
        '"out" the remote port of outgoing connections.',
        (
            ({"port": row["port"], "direction": row["direction"], "state": state.lower()}, count)
            for row in status["by_port"]
            for state, count in row["states"].items()
        ),
    )
    orphans, tw, ports = status["orphans"], status["time_wait"], status["port_range"]
    family(
        "tcptune_orphans",
        "gauge",
        "Orphaned TCP sockets (host-wide count from /proc/net/sockstat).",
        [({}, orphans["count"])],
    )
    family("tcptune_orphans_max", "gauge", "net.ipv4.tcp_max_orphans.", [({}, orphans["max"])])
    family(
        "tcptune_fin_wait2_orphans",
        "gauge",
        "FIN_WAIT2 sockets no process holds (governed by tcp_fin_timeout).",
        [({}, orphans["fin_wait2_orphans"])],
    )
    family(
        "tcptune_time_wait",
        "gauge",
        "TIME_WAIT buckets in use in this namespace (/proc/net/sockstat tw).",
        [({}, tw["count"])],
    )
    family("tcptune_time_wait_max", "gauge", "net.ipv4.tcp_max_tw_buckets.", [({}, tw["max"])])
    family(
        "tcptune_local_port_range_size",
        "gauge",
        "Ports in net.ipv4.ip_local_port_range: how many connections one remote endpoint can take.",
        [({}, ports["size"])],
    )
    family(
        "tcptune_endpoint_ports_in_use",
        "gauge",
        "Local ports used by outgoing connections to one remote address:port (the --top endpoints using the most).",
        (
            ({"local": e["local_address"], "remote": e["remote_address"], "remote_port": e["remote_port"]}, e["in_use"])
            for e in status["endpoints"]
        ),
    )
    family(
        "tcptune_listen_queue",
        "gauge",
        "Connections waiting in a listener's accept queue.",
        (({"address": item["address"], "port": item["port"]}, item["queue"]) for item in status["listeners"]),
    )
    family(
        "tcptune_listen_backlog",
        "gauge",
        "A listener's accept queue size (listen() backlog capped by somaxconn).",
        (({"address": item["address"], "port": item["port"]}, item["backlog"]) for item in status["listeners"]),
    )
    family(
        "tcptune_kernel_counter_total",
        "counter",
        "TCP counters from /proc/net/netstat and /proc/net/snmp (since boot or namespace creation).",
        (
            ({"group": name.split(".", 1)[0], "name": name.split(".", 1)[1]}, value)
            for name, value in status["counters"].items()
        ),
    )
    family(
        "tcptune_source_info",
        "gauge",
        "How sockets were read: netlink (sock_diag) or proc (/proc/net/tcp).",
        [({"source": status["source"]}, 1)],
    )
    return "\n".join(lines) + "\n"
