"""Commands on socket evidence: status (what is there) and recommend (what to change, and why).

status is the fast path (a textfile collector may run it every few seconds): it imports the socket readers and the
renderers only; recommend's judging and profile writing load when it runs.
"""

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..output import emit, emit_json, findings_text, prometheus_text, status_text, terminal_size
from ..sockets import DEFAULT_PROC_NET, source_label, status_dict, take_evidence
from ..target import DEFAULT_STATE_DIR, REAL_PROC_SYS
from ..userfiles import write_file
from .interrupted import warn_interrupted
from .options import Format, FormatOpt, ProcNetOpt, ProcRootOpt, SourceOpt, StateDirOpt, StatusFormat, TopOpt

if TYPE_CHECKING:
    from ..recommend import CounterBaseline
    from ..sockets import Evidence


def status(
    fmt: Annotated[StatusFormat, typer.Option("--format", "-f", help="Output format.")] = StatusFormat.text,
    top: TopOpt = 10,
    ports: Annotated[
        list[int] | None,
        typer.Option(
            "--port",
            min=1,
            max=65535,
            help="Only this port in the per-port breakdown (repeatable): a local service "
            "port, or the remote port of outgoing connections.",
        ),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            metavar="SECONDS",
            help="Refresh every SECONDS until Ctrl-C (redraws in place on a terminal; "
            "JSON becomes one document per line; --output rewrites the file).",
        ),
    ] = None,
    count: Annotated[int | None, typer.Option("--count", min=1, help="With --watch: stop after N refreshes.")] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to FILE atomically instead of stdout (for node_exporter's "
            "textfile collector: --format prometheus -o DIR/tcptune.prom).",
        ),
    ] = None,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    proc_net: ProcNetOpt = DEFAULT_PROC_NET,
    source: SourceOpt = "auto",
) -> None:
    """TCP sockets by state, port and remote address; orphan, TIME_WAIT and port-range headroom; overflow counters.

    Counts the sockets of the current network namespace (a container sees its own) through sock_diag netlink,
    falling back to /proc/net/tcp where netlink is unavailable.
    """
    if watch is not None and not 0 < watch <= 86400:  # sleep() overflows on inf and 1e308
        raise typer.BadParameter("must be a positive number of seconds, at most 86400", param_hint="--watch")
    previous = None
    frames = 0
    try:
        while True:
            evidence = take_evidence(proc_root=proc_root, proc_net=proc_net, source=source, previous=previous)
            _show_status(evidence, fmt, top, ports or [], output, watch)
            frames += 1
            if watch is None or (count is not None and frames >= count):
                break
            previous = evidence
            time.sleep(watch)
    except KeyboardInterrupt:
        if watch is None:
            raise
        sys.stdout.write("\n")  # Ctrl-C is how --watch ends: exit 0


def _show_status(
    evidence: "Evidence", fmt: StatusFormat, top: int, ports: list[int], output: str | None, watch: float | None
) -> None:
    data = status_dict(evidence, top=top, ports=ports)
    if fmt is StatusFormat.json:
        text = json.dumps(data, separators=(",", ":")) if watch and not output else json.dumps(data, indent=2)
        text += "\n"
    elif fmt is StatusFormat.prometheus:
        text = prometheus_text(data)
    elif output:
        text = status_text(data)
    else:
        text = _status_on_screen(data, watch)
    if output:
        write_file(output, text)
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _status_on_screen(data: dict[str, Any], watch: float | None) -> str:
    """The text view for stdout: wrapped to a terminal's width; under --watch, one frame redrawn in place that fits
    the terminal's height (its first line says how to stop, its last stays free for the cursor)."""
    size = terminal_size()
    if size is None:
        return status_text(data) + ("\n" if watch else "")
    columns, lines = size
    if not watch:
        return status_text(data, width=columns)
    heading = f"every {watch:g} s; Ctrl-C to stop"
    if os.environ.get("TERM") == "dumb":  # cannot redraw in place: frames follow each other
        return heading + "\n" + status_text(data, width=columns) + "\n"
    return "\x1b[H\x1b[2J" + heading + "\n" + status_text(data, width=columns, height=max(1, lines - 2))


def recommend(
    fmt: FormatOpt = Format.text,
    min_sockets: Annotated[
        int,
        typer.Option(
            "--min-sockets",
            min=1,
            help="Smallest pile-up worth a finding (CLOSE_WAIT or FIN_WAIT2 on a port, TIME_WAIT in total).",
        ),
    ] = 100,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample",
            metavar="SECONDS",
            help="Read the kernel counters twice, SECONDS apart, and judge overflows "
            "by what happened in between instead of since boot.",
        ),
    ] = None,
    write: Annotated[
        str | None,
        typer.Option(
            "--write",
            metavar="PROFILE",
            help="Write the suggested values as a profile file (validated, atomic) that extends --base.",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            metavar="PROFILE",
            help="Profile the written one extends [default: the last applied profile, else 'base'].",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --write replace an existing file.")] = False,
    owners: Annotated[
        bool,
        typer.Option(
            "--owners/--no-owners", help="Look up which processes hold CLOSE_WAIT pile-ups (reads /proc/*/fd)."
        ),
    ] = True,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    proc_net: ProcNetOpt = DEFAULT_PROC_NET,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    source: SourceOpt = "auto",
) -> None:
    """Turn socket states and kernel counters into findings: the numbers, the profile keys to change, and why."""
    # the judging, and the profile loader for --write (PyYAML): not on the path of 'tcptune status'
    from ..advise import Thresholds
    from ..recommend import recommend as take_recommendation

    if sample is not None and not 0 < sample <= 86400:  # sleep() overflows on inf and 1e308
        raise typer.BadParameter("must be a positive number of seconds, at most 86400", param_hint="--sample")
    warn_interrupted(state_dir)
    baseline, problem = (None, None) if sample is not None else _since_last_transaction(state_dir)
    found = take_recommendation(
        thresholds=Thresholds(min_sockets=min_sockets),
        proc_root=proc_root,
        proc_net=proc_net,
        source=source,
        sample=sample,
        owners=owners,
        write=write,
        base=base,
        force=force,
        state_dir=state_dir,
        baseline=baseline,
    )
    if problem:
        found = found._replace(notes=(problem, *found.notes))
    evidence = found.evidence
    if fmt is Format.json:
        emit_json(
            {
                "findings": [f.as_dict() for f in found.findings],
                "suggested": found.suggested,
                "current": found.current,
                "written": found.written.as_dict() if found.written else None,
                "counter_window": evidence.window_text,
                "notes": list(found.notes),
                "evidence": status_dict(evidence, top=10),
            }
        )
        return
    emit(
        f"evidence: {evidence.counts.total} TCP sockets in {evidence.netns or 'this network namespace'} "
        f"via {source_label(evidence)}; counters "
        + (f"over {evidence.window_text}" if evidence.window_text else "since boot (history only: --sample SECONDS)")
    )
    for note in found.notes:
        emit(f"note: {note}")
    emit()
    sys.stdout.write(findings_text([f.as_dict() for f in found.findings], found.current))
    if write and not found.suggested:
        emit(f"no finding suggests a sysctl value; {write} not written", err=True)
    elif found.written:
        written = found.written
        emit(f"wrote {written.path} (extends {written.extends}): review it, then 'tcptune diff {write}'")


def _since_last_transaction(state_dir: str) -> "tuple[CounterBaseline | None, str | None]":
    """The counters the current generation recorded when it was committed: without --sample, ``recommend`` judges
    the counters' changes since then. (None, why) when they cannot be read; (None, None) when there are none."""
    from ..desired import state_dir as open_state
    from ..failures import CoreError
    from ..recommend import counter_baseline

    try:
        generation = open_state(state_dir).current()
    except CoreError as exc:
        return None, f"counters since the last apply not read ({exc}): counters judged without a window"
    return (counter_baseline(generation.as_json()) if generation is not None else None), None
