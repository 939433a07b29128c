"""What apply, rollback, reset and recover share: showing a transition, asking, executing it, showing the result.

The engine decides and acts; this module only renders its values (text on stdout, or one JSON document with the
progress lines on stderr) and asks for confirmation on a terminal.
"""

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from .. import audit
from ..engine import Engine, Recovery, Result, Transition
from ..errors import ConfirmationNeeded, TcptuneError
from ..failures import RestoreIncomplete, Undone
from ..output import emit, emit_json, one_line, table, terminal_columns, wrap_words
from ..plan import REVERT
from ..state import FileStep, Generation
from .options import Format

Say = Callable[[str], None]


def sayer(fmt: Format) -> Say:
    """Progress lines: on stdout with text output, on stderr when stdout carries the JSON document."""
    out = sys.stderr if fmt is Format.json else sys.stdout

    def say(text: str) -> None:
        for line in wrap_words(text, terminal_columns(out)):
            out.write(line + "\n")

    return say


def shown(value: str | None) -> str:
    """A live value in a table or message: "-" when there is none, kernel tabs folded to spaces."""
    return "-" if value is None else one_line(value)


def confirm(yes: bool, action: str) -> None:
    """Ask on a terminal; without one, refuse instead of hanging (CI has no stdin)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationNeeded(f"refusing to {action} without confirmation: not a terminal; pass --yes")
    if not typer.confirm(f"{action[0].upper()}{action[1:]}?", default=False):
        raise TcptuneError("cancelled; nothing was changed")


def generation_words(generation: Generation | None, number: int = 0) -> str:
    """``generation 3 (apply of web-server, 2024-05-01T12:00:00Z)``; generation 0 is "nothing managed"."""
    if generation is None:
        return f"generation {number} (nothing managed)"
    what = generation.kind
    if generation.profile is not None:
        what += f" of {one_line(generation.profile.name)}"
    if generation.target is not None:
        what += f" to {generation.target}"
    return f"generation {generation.number} ({what}, {generation.created})"


def file_words(step: FileStep) -> str:
    if step.new is None:
        return f"remove {step.path}" if step.old is not None else f"leave {step.path} absent"
    return f"write {step.path}"


def show_transition(t: Transition, fmt: Format, say: Say, *, dry_run: bool = False) -> None:
    """The plan as a user confirms it: the writes in order (changes and reverts), warnings, a summary, the file."""
    raw = {k.key for k in t.plan.keys if k.raw}
    if fmt is Format.text and t.writes:
        table(
            ["key", "live", "new", "action"],
            [
                (
                    f"{c.key} (raw)" if c.key in raw else c.key,
                    shown(c.old),
                    c.new,
                    "revert to baseline" if _status(t, c.key) == REVERT else "change",
                )
                for c in t.writes
            ],
        )
    if raw & {c.key for c in t.writes}:
        say(f"(raw) {len(raw)} key(s) from the profile's raw: mapping, unchecked by the catalog")
    for warning in t.warnings:
        say(f"warning: {warning}")
    reverts = sum(_status(t, c.key) == REVERT for c in t.writes)
    changes = len(t.writes) - reverts
    unchanged = sum(1 for k in t.plan.keys if k.status == "ok")
    summary = f"{changes} to change, {unchanged} already at the desired value"
    if reverts:
        summary += f", {reverts} to revert to their baseline"
    if t.skipped:
        summary += f", {len(t.skipped)} skipped"
    say(summary)
    if t.file is not None:
        say(f"{'would' if dry_run else 'will'} {file_words(t.file)}")
    if not t.noop:
        say(f"generation {t.from_} -> {t.to}" + (" (dry run: nothing is changed)" if dry_run else ""))


def _status(t: Transition, key: str) -> str | None:
    state = t.plan.state_of(key)
    return state.status if state else None


def confirm_action(t: Transition) -> str:
    parts = []
    if t.writes:
        parts.append(f"{t.kind} {len(t.writes)} change(s)")
    if t.file is not None:
        parts.append(file_words(t.file))
    return " and ".join(parts) if parts else f"record generation {t.to}"


def transition_dict(t: Transition, *, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "kind": t.kind,
        "from": t.from_,
        "to": t.to,
        "target": t.target.number if t.target else (t.recipe.to if t.kind == "rollback" else None),
        "up_to_date": t.noop,
        "plan": t.plan.as_dict(),
        "writes": [dict(c.as_dict(), action="revert" if _status(t, c.key) == REVERT else "change") for c in t.writes],
        "skipped": [k.key for k in t.skipped],
        "released": list(t.released),
        "file": {"path": t.file.path, "action": "write" if t.file.new is not None else "remove"} if t.file else None,
        "warnings": list(t.warnings),
    }


Counters = tuple[dict[str, int] | None, str | None]


def counters_in(proc_net: str) -> Callable[[], Counters]:
    """The kernel counters ``recommend`` judges (from ``proc_net``) and the network namespace they are read in: what
    a transaction records in its generation, so that ``recommend`` can judge the counters since then."""

    def read() -> Counters:
        from ..sockets.counters import counter_snapshot  # only when a transaction is about to run

        counters = counter_snapshot(proc_net) or None
        try:
            netns: str | None = os.readlink("/proc/self/ns/net")
        except OSError:
            netns = None
        return counters, netns

    return read


def execute(
    engine: Engine,
    t: Transition,
    yes: bool,
    fmt: Format,
    say: Say,
    *,
    dry_run: bool = False,
    counters: Callable[[], Counters] | None = None,
) -> Result | None:
    """Show ``t``; stop there for a dry run; else confirm (if it changes the machine) and execute. None: dry run.
    ``counters``: read just before the transaction runs, recorded in its generation.

    Up to date is decided again under the lock (the engine re-plans there): a transaction running meanwhile makes
    this one wait for nobody and fail clearly, never report "up to date" about a state about to change.
    """
    show_transition(t, fmt, say, dry_run=dry_run)
    if dry_run:
        if fmt is Format.json:
            emit_json(dict(transition_dict(t, dry_run=True), applied=False, generation=None, written=[]))
        else:
            emit("dry run: nothing was changed")
        return None
    if t.changes_something:
        confirm(yes, confirm_action(t))
    read, netns = counters() if counters is not None else (None, None)
    try:
        result = engine.execute(t, counters=read, counters_netns=netns)
    except (Undone, RestoreIncomplete) as exc:
        severity = audit.ERR if isinstance(exc, RestoreIncomplete) else audit.WARNING
        error = exc
        audit.tell(lambda: audit.failed(t, error), severity)
        raise
    if result.generation is not None:
        audit.tell(lambda: audit.committed(result))
    for warning in result.warnings[len(t.warnings) :]:
        say(f"warning: {warning}")
    return result


def result_dict(result: Result) -> dict[str, Any]:
    return dict(
        transition_dict(result.transition, dry_run=False),
        applied=result.generation is not None,
        generation=result.generation,
        written=list(result.written),
        file_action=result.file_action,
    )


def report(result: Result, fmt: Format, done: Callable[[Result], str]) -> None:
    """The outcome: the JSON document, "up to date" when nothing needed doing, or ``done(result)``."""
    if fmt is Format.json:
        emit_json(result_dict(result))
    else:
        emit("up to date: nothing to do" if result.generation is None else done(result))


def show_recovery(recovery: Recovery, fmt: Format, state_dir: str) -> None:
    pending = recovery.pending
    if fmt is Format.json:
        emit_json(
            {
                "action": recovery.action,
                "from": pending.from_ if pending else None,
                "to": pending.to if pending else None,
                "kind": pending.kind if pending else None,
                "restored": list(recovery.restored),
                "file_action": recovery.file_action,
                "warnings": list(recovery.warnings),
            }
        )
        return
    for warning in recovery.warnings:
        emit(f"warning: {warning}")
    if pending is None:
        emit(f"nothing to recover: no interrupted transaction in {state_dir}")
    elif recovery.action == "completed":
        emit(
            f"the interrupted {pending.kind} (generation {pending.from_} -> {pending.to}) had completed; "
            "removed its pending record"
        )
    else:
        text = f"returned to generation {pending.from_}: restored {len(recovery.restored)} key(s)"
        if recovery.restored:
            text += f" ({', '.join(recovery.restored)})"
        if recovery.file_action and pending.file is not None:
            text += f"; {recovery.file_action} {pending.file.path}"
        emit(text)
