"""The release command: force-release stuck TCP sockets (a dry run unless --yes).

A light command: it imports the socket readers and plain-text rendering only (no YAML, Jinja, Ansible or rich).
"""

from typing import Annotated

import typer

from ..output import emit, emit_json, plain_table, terminal_columns
from ..release import STATE_CHOICES, ReleaseReport, Selector, release
from .options import EXIT_ERROR, EXIT_OK, Format, FormatOpt

ROWS_SHOWN = 50


def release_sockets(
    states: Annotated[
        list[str] | None,
        typer.Option("--state", metavar="STATE", help=f"Socket state, as ss names it (repeatable): {STATE_CHOICES}."),
    ] = None,
    sports: Annotated[
        list[str] | None,
        typer.Option("--sport", metavar="PORT[-PORT]", help="Local port or port range (repeatable)."),
    ] = None,
    dports: Annotated[
        list[str] | None,
        typer.Option("--dport", metavar="PORT[-PORT]", help="Remote port or port range (repeatable)."),
    ] = None,
    src: Annotated[
        list[str] | None,
        typer.Option("--src", metavar="ADDRESS[/BITS]", help="Local address or CIDR block, IPv4 or IPv6 (repeatable)."),
    ] = None,
    dst: Annotated[
        list[str] | None,
        typer.Option("--dst", metavar="ADDRESS[/BITS]", help="Remote address or CIDR block (repeatable)."),
    ] = None,
    pids: Annotated[
        list[int] | None, typer.Option("--pid", metavar="PID", help="Sockets held by this process (repeatable).")
    ] = None,
    processes: Annotated[
        list[str] | None,
        typer.Option("--process", metavar="NAME", help="Sockets held by processes of this name (repeatable)."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="SECONDS",
            help="Only sockets at least this old (30, 45s, 2m), where the kernel's timers tell the age: TIME_WAIT.",
        ),
    ] = None,
    include_listeners: Annotated[
        bool, typer.Option("--include-listeners", help="Let listening sockets be destroyed too.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Destroy the matching sockets (without it: a dry run).")
    ] = False,
    fmt: FormatOpt = Format.text,
    top: Annotated[
        int, typer.Option("--top", min=1, help="Rows shown in the text table (JSON lists all).")
    ] = ROWS_SHOWN,
) -> int:
    """Force-release TCP sockets (like ss -K): show the matching sockets and their processes; --yes destroys them.

    Exit 0 when every matching socket was released (or none matched), 1 otherwise.
    """
    selector = Selector.parse(
        states=states or (),
        sports=sports or (),
        dports=dports or (),
        src=src or (),
        dst=dst or (),
        pids=pids or (),
        processes=processes or (),
        older_than=older_than,
        include_listeners=include_listeners,
    )
    report = release(selector, destroy=yes)
    if fmt is Format.json:
        emit_json(report.as_dict())
    else:
        _show(report, top)
    return EXIT_OK if report.ok else EXIT_ERROR


def _show(report: ReleaseReport, top: int) -> None:
    selector = report.selector
    matched = report.matched
    skipped = []
    if report.selection.listeners_skipped:
        skipped.append(f"{report.selection.listeners_skipped} listening left alone (--include-listeners)")
    if report.selection.age_unknown:
        skipped.append(f"{report.selection.age_unknown} of unknown age left out (--older-than)")
    note = f" ({'; '.join(skipped)})" if skipped else ""
    if not matched:
        emit(f"no TCP socket matches {selector.describe()}: nothing to release{note}")
        return
    mode = "dry run, nothing destroyed; --yes destroys them" if report.dry_run else "destroying"
    emit(f"{len(matched)} TCP socket(s) match {selector.describe()} [{mode}]{note}")
    rows = [
        (
            c.state,
            c.local,
            c.remote,
            f"{c.owner[0]} ({c.owner[1]})" if c.owner else "-",
            "-" if c.age is None else f"{c.age:.0f}s",
            c.outcome + (f": {c.reason}" if c.reason and not report.unavailable else ""),
        )
        for c in matched[:top]
    ]
    for line in plain_table(
        ("state", "local", "remote", "process", "age", "action"), rows, width=terminal_columns(), keep=(0, 1, 2)
    ):
        emit(line)
    if len(matched) > top:
        emit(f"... and {len(matched) - top} more (--top N shows more; --format json lists all)")
    if not report.dry_run:
        tally = report.tally()
        emit(
            ", ".join(f"{tally[o]} {o}" for o in ("destroyed", "already gone", "refused") if tally.get(o))
            + ("" if report.remaining is None else f"; {report.remaining} match the filter now")
        )
    for line in report.advice():
        emit(line)
