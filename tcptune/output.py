"""Renderers: plain text, JSON, tables, a progress bar, and the writer of files a user names for output.

rich is imported only here and only when a terminal will see it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO, TypeVar

from .errors import Diagnostic, TcptuneError
from .persist import atomic_write

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


def write_file(path: str, text: str) -> None:
    """Write a file the user named (``status -o``, ``recommend --write``) atomically; a problem is one line."""
    if os.path.isdir(path):
        raise TcptuneError(f"cannot write {path}: it is a directory (name a file in it)")
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise cannot_write(path, exc) from None


def cannot_write(path: str, exc: OSError) -> TcptuneError:
    """The error for a file the user named that could not be written, in words: the path and the reason."""
    directory = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(directory):
        problem = f"no such directory {directory}"
    else:
        problem = (exc.strerror or str(exc)).lower()
    return TcptuneError(f"cannot write {path}: {problem}")


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


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, status_column: int | None = None, title: str | None = None
) -> None:
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
                    STYLES.get(cells[status_column].split(" ")[0], ""), ""
                )
                if colour:
                    cells[status_column] = f"[{colour}]{cells[status_column]}[/{colour}]"
            rich_table.add_row(*cells)
        Console().print(rich_table)
        return
    if title:
        emit(title)
    for line in plain_table(headers, rows):
        emit(line)


def plain_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: str = "", align_numbers: bool = False
) -> list[str]:
    """Aligned plain-text lines, headers in upper case; with ``align_numbers``, columns of numbers align right."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    numeric = [
        align_numbers and all(row[i].replace(".", "", 1).lstrip("+-").isdigit() or row[i] in ("", "-") for row in cells)
        for i in range(len(headers))
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(row: Sequence[str]) -> str:
        return (
            indent
            + "  ".join(c.rjust(w) if right else c.ljust(w) for c, w, right in zip(row, widths, numeric)).rstrip()
        )

    return [line([h.upper() for h in headers]), *(line(row) for row in cells)]


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


def _status_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return plain_table(headers, rows, indent="  ", align_numbers=True)


def _bar(value: int, largest: int, width: int = 40) -> str:
    if not value or not largest:
        return ""
    eighths = max(1, round(8 * width * value / largest))
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def _state_columns(rows: list[dict[str, Any]]) -> list[str]:
    from .sockets import STATE_NAMES

    present = {name for row in rows for name in row["states"]}
    return [name for name in STATE_NAMES if name in present]


def status_text(status: dict[str, Any], *, counters: bool = True) -> str:
    """The terminal view of ``tcptune status``: state counts with bars, limits, per-port/remote tables."""
    from .sockets import COUNTER_HELP

    out: list[str] = []
    add = out.append
    add(
        f"TCP sockets in {status.get('netns') or 'this network namespace'}: {status['total']} "
        f"(source: {status['source_label']}; {status['taken_at']})"
    )
    states = status["states"]
    largest = max(states.values(), default=0)
    for name, count in states.items():
        text = f"  {name:<13}{count:>9}  {_bar(count, largest)}"
        add(
            paint(text, _STATE_STYLE.get(name, "bold"))
            if count and name in _STATE_STYLE
            else (text if count else paint(text, "dim"))
        )

    add("")
    add(paint("Limits", "bold"))
    orphans, tw, ports = status["orphans"], status["time_wait"], status["port_range"]

    def of(count: int | None, limit: int | None, name: str, percent: float | None) -> str:
        shown = "?" if count is None else str(count)
        if limit is None:
            return f"{shown} ({name} not readable here)"
        return f"{shown} of {limit} {name} ({percent} %)"

    add(
        f"  orphans      {of(orphans['count'], orphans['max'], 'tcp_max_orphans', orphans['percent'])}; "
        f"orphaned FIN_WAIT2: {orphans['fin_wait2_orphans']}"
    )
    add(f"  TIME_WAIT    {of(tw['count'], tw['max'], 'tcp_max_tw_buckets', tw['percent'])}")
    add(f"  local ports  {ports['low']}-{ports['high']}: {ports['size']} per remote address:port")

    if status["by_port"]:
        add("")
        add(
            paint(
                f"By port (top {len(status['by_port'])}; in = local port, out = remote port of outgoing connections)",
                "bold",
            )
        )
        columns = _state_columns(status["by_port"])
        out.extend(
            _status_table(
                ["port", "dir", "total", *columns],
                [
                    (r["port"], r["direction"], r["total"], *(r["states"].get(c, "") for c in columns))
                    for r in status["by_port"]
                ],
            )
        )
    if status["endpoints"]:
        add("")
        add(paint("Outgoing connections per remote endpoint: local ports in use of the range", "bold"))
        out.extend(
            _status_table(
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
            )
        )
    if status["by_remote"]:
        add("")
        add(paint(f"By remote address (top {len(status['by_remote'])})", "bold"))
        columns = _state_columns(status["by_remote"])
        out.extend(
            _status_table(
                ["address", "total", *columns],
                [(r["address"], r["total"], *(r["states"].get(c, "") for c in columns)) for r in status["by_remote"]],
            )
        )
    if status["listeners"]:
        add("")
        add(paint("Listeners (accept queue now / backlog)", "bold"))
        out.extend(
            _status_table(
                ["address", "port", "queue", "backlog"],
                [
                    (item["address"], item["port"], item["queue"], "?" if item["backlog"] is None else item["backlog"])
                    for item in status["listeners"]
                ],
            )
        )
    if counters and status["counters"]:
        add("")
        deltas = status.get("counter_deltas")
        window = status.get("window_seconds")
        add(
            paint(
                "Kernel counters (since boot or namespace creation"
                + (f"; change in the last {window:.1f} s)" if deltas is not None and window is not None else ")"),
                "bold",
            )
        )
        rows = []
        for name, value in status["counters"].items():
            change = ""
            if deltas is not None:
                change = f"+{deltas.get(name, 0)}"
            rows.append((name.split(".", 1)[1], value, change, COUNTER_HELP.get(name, "")))
        lines = _status_table(["counter", "value", "change" if deltas is not None else "", "meaning"], rows)
        for index, (name, value, change, _help) in enumerate(rows, start=1):
            alarming = name in (
                "ListenOverflows",
                "ListenDrops",
                "TCPReqQFullDrop",
                "TCPAbortOnMemory",
                "TCPTimeWaitOverflow",
            )
            if alarming and (change not in ("", "+0") or (not change and value)):
                lines[index] = paint(lines[index], "warning")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _number_text(value: object) -> str:
    """A finding's number for people: lists as "a; b", port rows as "443/in fin_wait2=12"."""
    if isinstance(value, list):
        return "[" + "; ".join(_number_text(item) for item in value) + "]"
    if isinstance(value, dict):
        head = f"{value['port']}/{value['direction']} " if "port" in value and "direction" in value else ""
        return head + " ".join(f"{k}={v}" for k, v in value.items() if k not in ("port", "direction") or not head)
    return str(value)


def findings_text(findings: list[dict[str, Any]], current: dict[str, str | None]) -> str:
    """The terminal view of ``tcptune recommend``."""
    import textwrap

    if not findings:
        return "No findings: nothing in the socket states or kernel counters calls for tuning.\n"
    out: list[str] = []
    for finding in findings:
        severity = finding["severity"]
        out.append(
            paint(f"{severity.upper():<8}", _SEVERITY_STYLE.get(severity, "bold"))
            + f" [{finding['id']}] {finding['title']}"
        )
        numbers = ", ".join(f"{k}={_number_text(v)}" for k, v in finding["numbers"].items() if v not in (None, [], ""))
        out.extend(textwrap.wrap(numbers, 116, initial_indent="  numbers: ", subsequent_indent="           "))
        if finding["suggest"]:
            for key, value in finding["suggest"].items():
                now = current.get(key)
                out.append(f"  change:  {key}: {'?' if now is None else now} -> {value}")
        elif finding["keys"]:
            out.append(f"  keys:    {', '.join(finding['keys'])} (no value to suggest: see why)")
        else:
            out.append("  change:  no sysctl fixes this")
        for owner in finding.get("owners", []):
            out.append(f"  owner:   pid {owner['pid']} ({owner['name']}) holds {owner['sockets']} of them")
        for command in finding.get("commands", []):
            out.append(f"  run:     {command}")
        out.extend(textwrap.wrap(finding["why"], 116, initial_indent="  why:     ", subsequent_indent="           "))
        for label, text in (("window", finding.get("window")), ("effect", finding.get("effect"))):
            if text:
                out.extend(textwrap.wrap(text, 116, initial_indent=f"  {label}:  ", subsequent_indent="           "))
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
        "Local ports used by outgoing connections to one remote address:port (top endpoints only).",
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
