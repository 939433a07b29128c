"""Commands on tcptune's generations: history (what was in force when), rollback (back to an earlier generation),
reset (nothing managed), recover (finish an interrupted transaction). None of them reads a profile (no PyYAML).
"""

from typing import Annotated, Any

import typer

from .. import audit
from ..desired import engine as make_engine
from ..desired import state_dir as open_state
from ..engine import Engine, require_root
from ..failures import RestoreIncomplete, StateError
from ..output import emit, emit_json, one_line, table
from ..state import Generation, StateDir
from ..target import DEFAULT_STATE_DIR, REAL_PROC_NET, REAL_PROC_SYS, Target
from .complete import complete_generation
from .interrupted import warn_interrupted
from .options import (
    ForksOpt,
    Format,
    FormatOpt,
    InventoryOpt,
    LimitOpt,
    ProcNetOpt,
    ProcRootOpt,
    StateDirOpt,
    SysctlDirOpt,
    SysctlRootOpt,
    YesOpt,
)
from .transaction import confirm, counters_in, execute, generation_words, report, sayer, show_recovery, shown

_PAST = {"written": "wrote", "removed": "removed"}


def history(
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Show the current baseline instead: each managed key's value before tcptune, and the file's.",
        ),
    ] = False,
    fmt: FormatOpt = Format.text,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
) -> None:
    """List the generations, newest first, the current one marked '*'; a pending transaction is shown on top."""
    warn_interrupted(state_dir)
    state = open_state(state_dir)
    if baseline:
        _show_baseline(state, fmt)
        return
    entries = state.history()
    current = entries[0][0] if entries else 0
    pending = _pending_summary(state)
    old = state.old_layout()
    if fmt is Format.json:
        emit_json(
            {
                "state_dir": state_dir,
                "current": current,
                "pending": pending,
                "generations": [_generation_dict(n, g, current) for n, g in entries],
                "unused_old_files": old,
            }
        )
        return
    if old:
        emit(f"note: {', '.join(old)} (tcptune 0.1.0's journal) are no longer used; remove them when you like")
    if pending is not None:
        emit(
            f"pending: {pending['kind']} {pending['from']} -> {pending['to']} started {pending['started']} "
            f"(pid {pending['pid']}): {pending['state']}"
        )
    if not entries:
        emit(f"no generations recorded in {state_dir}")
        return
    rows = []
    for number, generation in entries:
        mark = "*" if number == current else ""
        if not isinstance(generation, Generation):
            rows.append((f"{mark}{number}", "?", "", "", "", "", f"unreadable: {generation}"))
            continue
        profile = generation.profile
        note = f"to generation {generation.target}" if generation.target is not None else ""
        if generation.skipped:
            note = (note + "; " if note else "") + f"{len(generation.skipped)} skipped"
        rows.append(
            (
                f"{mark}{number}",
                generation.kind,
                one_line(profile.name) if profile else "-",
                one_line(profile.fingerprint) if profile else "-",
                str(len(generation.values)),
                generation.created.replace("T", " ").removesuffix("Z"),
                note,
            )
        )
    table(["gen", "kind", "profile", "fingerprint", "keys", "created (UTC)", "note"], rows, keep=(0, 3, 5))


def _pending_summary(state: StateDir) -> dict[str, Any] | None:
    if not state.has_pending():
        return None
    try:
        pending = state.read_pending()
    except StateError as exc:
        return {"kind": "?", "from": None, "to": None, "started": None, "pid": None, "state": f"unreadable: {exc}"}
    if pending is None:
        return None
    running = state.is_busy()
    words = "in progress" if running else "interrupted: run 'tcptune recover'"
    return {
        "kind": pending.kind,
        "from": pending.from_,
        "to": pending.to,
        "started": pending.started,
        "pid": pending.pid,
        "state": words,
    }


def _generation_dict(number: int, generation: Generation | StateError, current: int) -> dict[str, Any]:
    if not isinstance(generation, Generation):
        return {"generation": number, "current": number == current, "error": str(generation)}
    profile = generation.profile
    return {
        "generation": number,
        "current": number == current,
        "kind": generation.kind,
        "from": generation.from_,
        "target": generation.target,
        "created": generation.created,
        "profile": profile.name if profile else None,
        "fingerprint": profile.fingerprint if profile else None,
        "source": profile.source if profile else None,
        "keys": sorted(generation.values),
        "values": dict(sorted(generation.values.items())),
        "skipped": list(generation.skipped),
        "persisted": generation.file.path if generation.file and generation.file.content is not None else None,
        "by": generation.by,
        "error": None,
    }


def _show_baseline(state: StateDir, fmt: Format) -> None:
    generation = state.current()
    if fmt is Format.json:
        emit_json(
            {
                "generation": generation.number if generation else 0,
                "baseline": {k: b._asdict() for k, b in sorted(generation.baseline.items())} if generation else {},
                "file": {"path": generation.file.path, "baseline": generation.file.baseline}
                if generation and generation.file
                else None,
            }
        )
        return
    if generation is None or not generation.values:
        emit(f"nothing is managed: no baseline is recorded in {state.path}")
        return
    emit(f"baseline at {generation_words(generation)}: each key's value before tcptune managed it")
    table(
        ["key", "live", "boot"],
        [(key, shown(b.live), shown(b.boot)) for key, b in sorted(generation.baseline.items())],
    )
    if generation.file is not None:
        before = generation.file.baseline
        words = "no file" if before is None else f"{len(before.splitlines())} line(s), restored by 'tcptune reset'"
        emit(f"{generation.file.path} before tcptune: {words}")


def rollback(
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            min=0,
            metavar="N",
            autocompletion=complete_generation,
            help="Generation to return to (0: nothing managed). Default: the one before.",
        ),
    ] = None,
    yes: YesOpt = False,
    fmt: FormatOpt = Format.text,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    proc_net: ProcNetOpt = REAL_PROC_NET,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
) -> None:
    """Converge to an earlier generation, as a new generation (so a rollback can itself be rolled back).

    With an interrupted transaction pending, does what 'tcptune recover' does and stops there. A sysctl.d file
    someone changed since tcptune wrote it is left alone, with a warning.
    With -i INVENTORY: every host of the fleet, through Ansible (the same per-host table and exit codes as push).
    """
    if inventory is not None:
        from .fleet import fleet_rollback  # the fleet family (render, ansible-runner): only for a fleet

        raise typer.Exit(fleet_rollback(inventory, to, limit, forks, yes, fmt))
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    require_root(target, "rollback")
    engine = make_engine(target)
    say = sayer(fmt)
    if engine.state.has_pending():
        say("an interrupted transaction is pending: doing what 'tcptune recover' does, and stopping there")
        _recover(engine, yes, fmt, state_dir)
        say("run 'tcptune rollback' again to roll back further")
        return
    planned = engine.plan_rollback(to)
    if fmt is Format.text:
        current = engine.state.current()
        emit(
            f"roll back from {generation_words(current, planned.from_)} "
            f"to {generation_words(planned.target, planned.recipe.to or 0)}"
        )
    result = execute(engine, planned, yes, fmt, say, counters=counters_in(proc_net))
    if result is not None:
        report(
            result,
            fmt,
            lambda r: (
                f"rolled back to the state of generation {planned.recipe.to}: {len(r.written)} key(s) written"
                + (f"; {_PAST[r.file_action]} {target.own_file}" if r.file_action else "")
                + f"; now at generation {r.generation}"
            ),
        )


def reset(
    yes: YesOpt = False,
    fmt: FormatOpt = Format.text,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    proc_net: ProcNetOpt = REAL_PROC_NET,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """End management: every managed key back to its baseline, the sysctl.d file back to what it was before tcptune
    (removed if there was none; left alone, with a warning, if someone changed it since). A new generation."""
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    require_root(target, "reset")
    warn_interrupted(state_dir)
    engine = make_engine(target)
    say = sayer(fmt)
    planned = engine.plan_reset()
    if fmt is Format.text:
        emit(f"reset from {generation_words(engine.state.current(), planned.from_)}: back to the baseline")
    result = execute(engine, planned, yes, fmt, say, counters=counters_in(proc_net))
    if result is not None:
        report(
            result,
            fmt,
            lambda r: (
                f"reset: {len(r.written)} key(s) written back to their baseline"
                + (f"; {_PAST[r.file_action]} {target.own_file}" if r.file_action else "")
                + f"; nothing is managed now (generation {r.generation})"
            ),
        )


def recover(
    yes: YesOpt = False,
    fmt: FormatOpt = Format.text,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Finish an interrupted apply, rollback or reset: if it had committed its generation, drop its record; otherwise
    put back every value it wrote and the sysctl.d file, exactly as at the generation it started from."""
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    require_root(target, "recover")
    _recover(make_engine(target), yes, fmt, state_dir)


def _recover(engine: Engine, yes: bool, fmt: Format, state_dir: str) -> None:
    """Ask before undoing (a committed transaction only needs its record removed: nothing to ask)."""
    pending = engine.pending()
    if pending is not None and pending.to not in engine.state.numbers():
        confirm(
            yes,
            f"undo the interrupted {pending.kind} (generation {pending.from_} -> {pending.to}) and return to "
            f"generation {pending.from_}",
        )
    try:
        recovery = engine.recover()
    except RestoreIncomplete as exc:
        message = str(exc)
        audit.tell(lambda: f"recover FAILED: {message}; by {audit.who()}", audit.ERR)
        raise
    if recovery.pending is not None:
        audit.tell(lambda: audit.recovered(recovery))
    show_recovery(recovery, fmt, state_dir)
