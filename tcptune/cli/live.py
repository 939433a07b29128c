"""Commands on this machine's live state: diff, apply, history, rollback (``diff -i`` hands over to the fleet family).

history and rollback load no profile, so PyYAML is imported only where a profile is read (``_desired``).
"""

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from .. import apply as core
from ..apply import Desired
from ..desired import from_verdict, kernel_defaults, last_applied
from ..errors import ConfirmationNeeded, TcptuneError
from ..journal import StateDir
from ..output import emit, emit_diagnostics, emit_json, one_line, paint, table
from ..plan import BOOT_NOT_PERSISTED, STATUS_TEXT, Drift, KeyState
from ..target import DEFAULT_STATE_DIR, REAL_PROC_SYS, Target
from .interrupted import warn_interrupted
from .options import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_OK,
    ForksOpt,
    Format,
    FormatOpt,
    InventoryOpt,
    LimitOpt,
    ProcRootOpt,
    ProfileArg,
    StateDirOpt,
    SysctlDirOpt,
    SysctlRootOpt,
    YesOpt,
)


def diff(
    profile: Annotated[
        str | None,
        typer.Argument(help="Profile file or built-in name. Default: the profile of the last 'tcptune apply'."),
    ] = None,
    fmt: FormatOpt = Format.text,
    live_only: Annotated[
        bool, typer.Option("--live-only", help="Ignore persistence (sysctl.d) drift for the exit code and output.")
    ] = False,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
) -> None:
    """Compare a profile with the live kernel and with what sysctl.d would set at the next boot.

    Exit codes, like diff(1): 0 no drift, 2 drift found (a key differs, is missing or read-only here, or would
    have another value after a reboot), 1 error. Works without root.
    With -i INVENTORY: per-host, per-key drift across a fleet (Ansible check mode), same exit codes.
    """
    if inventory is not None:
        from .fleet import fleet_diff  # the fleet family (render, ansible-runner): only for a fleet

        raise typer.Exit(fleet_diff(profile, inventory, limit, forks, fmt))
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    warn_interrupted(state_dir)
    desired = _desired(profile, state_dir)
    result = core.drift(desired, target, check_boot=not live_only, defaults=kernel_defaults(desired.values))
    if fmt is Format.json:
        emit_json(result.as_dict())
    else:
        emit(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
        _show_drift(result)
    raise typer.Exit(EXIT_DRIFT if result.drift else EXIT_OK)


def _show_drift(result: Drift) -> None:
    table(
        ["key", "live", "desired", "status"],
        [(k.key, _shown(k.live), k.desired, STATUS_TEXT[k.status]) for k in result.plan.keys],
        status_column=3,
    )
    for state in result.plan.keys:
        if state.note and state.status != "ok":
            emit(f"  {state.key}: {state.note}")
    boot_problems = [b for b in result.boot if b.status not in ("ok", "kernel default") or b.overridden]
    if result.check_boot and boot_problems:
        emit("after a reboot (sysctl.d files in the order systemd-sysctl and 'sysctl --system' read them):")
        unpersisted = [b.key for b in boot_problems if b.status == BOOT_NOT_PERSISTED]
        if unpersisted:
            every = " (all keys)" if len(unpersisted) == len(result.boot) else ""
            emit(f"  {paint('not persisted', 'drift')}{every}, the kernel default returns: " + ", ".join(unpersisted))
        for b in boot_problems:
            if b.status == BOOT_NOT_PERSISTED or b.source is None:
                continue
            line = f"  {b.key}: would be {b.value} from {b.source.where()}"
            if b.shadowed:
                overridden = ", ".join(f"{e.where()} ({e.value})" for e in b.shadowed)
                line += ", " + paint("overriding", "drift") + " " + overridden
            elif b.status != "ok":
                line += f" ({paint('differs', 'drift')} from {b.desired})"
            emit(line)
    counts = result.plan.counts()
    parts = [f"{counts[s]} {STATUS_TEXT[s]}" for s in STATUS_TEXT if counts[s]]
    summary = f"{len(result.plan.keys)} keys: " + ", ".join(parts)
    if result.check_boot and boot_problems:
        summary += f"; after reboot {len(boot_problems)} would differ"
    emit(summary)
    emit(paint("drift found", "drift") if result.drift else paint("no drift", "ok"))


def apply(
    profile: ProfileArg,
    yes: YesOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    skip_missing: Annotated[
        bool,
        typer.Option("--skip-missing", help="Skip keys the running kernel lacks (default: refuse, nothing written)."),
    ] = False,
    skip_readonly: Annotated[
        bool,
        typer.Option(
            "--skip-readonly", help="Skip keys read-only here, e.g. host-wide keys in a container (default: refuse)."
        ),
    ] = False,
    no_persist: Annotated[
        bool, typer.Option("--no-persist", help="Change the live kernel only; do not write the sysctl.d file.")
    ] = False,
    fmt: FormatOpt = Format.text,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Apply a profile: show the plan, confirm, journal, write each changed key, verify, persist.

    Keys already at the desired value are not written. If a write fails, the keys already changed are restored
    and the command exits 1 naming the key and the reason; exit 3 means a restore failed too (the message says
    exactly which keys are left changed). Needs root unless --proc-root points at another tree.
    """
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    if not dry_run:
        core.require_root(target, "apply")
    warn_interrupted(state_dir)
    desired = _desired(profile, state_dir, show_warnings=fmt is Format.text)
    runnable, skipped = core.split_blocked(
        core.make_plan(desired, target), skip_missing=skip_missing, skip_readonly=skip_readonly
    )
    new_file = None if no_persist else core.persist_preview(desired, target, skipped)
    say = _sayer(fmt)
    if fmt is Format.text:
        emit(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
        if runnable.changes:
            table(["key", "live", "new"], [(c.key, _shown(c.old), c.new) for c in runnable.changes])
    for state in skipped:
        say(f"warning: skipping {state.key}: {state.status} ({state.note})")
    unchanged = len(runnable.keys) - len(runnable.changes)
    say(
        f"{len(runnable.changes)} to change, {unchanged} already at the desired value"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    if new_file is not None:
        say(f"will write {target.own_file}")

    def run_apply() -> core.ApplyResult:
        result = core.apply(
            desired,
            target,
            runnable,
            skip_missing=skip_missing,
            skip_readonly=skip_readonly,
            write_persist=not no_persist,
        )
        for warning in result.warnings:
            say(f"warning: {warning}")
        return result

    if dry_run or (not runnable.changes and new_file is None):
        if fmt is Format.json:
            emit_json(
                {
                    "dry_run": dry_run,
                    "plan": runnable.as_dict(),
                    "skipped": [k.key for k in skipped],
                    "persist": target.own_file if new_file is not None else None,
                    "applied": False,
                }
            )
        elif not runnable.changes and new_file is None:
            emit("up to date: nothing to do")
        if not dry_run:  # record the profile even when nothing changed: a bare 'diff' compares against it
            run_apply()
        raise typer.Exit(EXIT_OK)
    _confirm(yes, f"apply {len(runnable.changes)} change(s)" + (" and write the sysctl.d file" if new_file else ""))
    result = run_apply()
    _show_applied(result, skipped, target, fmt, say)
    raise typer.Exit(EXIT_ERROR if result.mismatches else EXIT_OK)


def _show_applied(
    result: core.ApplyResult, skipped: list[KeyState], target: Target, fmt: Format, say: Callable[[str], None]
) -> None:
    for key, live, expected in result.mismatches:
        say(f"warning: {key}: live {_shown(live)}, expected {expected} (the kernel clamped or ignored the value)")
    for b in result.overridden:
        if b.source is not None:
            say(f"warning: {b.key}: {b.source.where()} sets {b.value} and overrides {target.own_file} at boot")
    if result.persist_outside_boot_path:
        say(f"note: {target.own_file} is not in a directory read at boot")
    if fmt is Format.json:
        emit_json(
            {
                "dry_run": False,
                "plan": result.plan.as_dict(),
                "skipped": [k.key for k in skipped],
                "journal": result.journal_id,
                "written": result.written,
                "persisted": result.persisted if result.persist_changed else None,
                "mismatches": [{"key": k, "live": lv, "expected": e} for k, lv, e in result.mismatches],
                "overridden": [b.as_dict() for b in result.overridden],
                "applied": True,
            }
        )
    else:
        emit(
            f"applied {len(result.written)} change(s) (journal {result.journal_id})"
            + (f"; wrote {result.persisted}" if result.persist_changed else "")
        )


def history(fmt: FormatOpt = Format.text, state_dir: StateDirOpt = DEFAULT_STATE_DIR) -> None:
    """List applies and rollbacks: time, profile, hash, keys changed, status (newest last)."""
    warn_interrupted(state_dir)
    journals = StateDir(state_dir).journals()
    if fmt is Format.json:
        emit_json([j.summary() for j in journals])
        return
    if not journals:
        emit(f"no applies recorded in {state_dir}")
        return
    table(
        ["id", "started (UTC)", "kind", "profile", "hash", "keys", "status"],
        [
            (
                j.id,
                str(j.data.get("started", ""))[:19].replace("T", " "),
                j.kind + (f" of {j.data['rolls_back']}" if j.data.get("rolls_back") else ""),
                s["profile"] or "-",
                s["fingerprint"] or "-",
                s["keys_changed"],
                j.status,
            )
            for j in journals
            for s in [j.summary()]
        ],
    )


def rollback(
    journal_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[ID]", help="Apply to undo (id or unique prefix, see 'tcptune history'). Default: the last one."
        ),
    ] = None,
    yes: YesOpt = False,
    abandon: Annotated[
        bool,
        typer.Option(
            "--abandon", help="Mark an interrupted apply as done without changing anything (accept current values)."
        ),
    ] = False,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Restore the values (and the sysctl.d file) recorded before the last apply, or a chosen one. Journaled.

    Only tcptune's own file in --sysctl-dir is restored or removed, whatever the journal names.
    """
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    core.require_root(target, "rollback")
    candidate = core.rollback_candidate(StateDir(state_dir), journal_id)
    summary = candidate.summary()
    what = "abandon" if abandon else "roll back"
    _confirm(yes, f"{what} apply {candidate.id} of profile {summary['profile']} ({summary['keys_changed']} key(s))")
    result = core.rollback(target, candidate.id, abandon=abandon)
    if abandon:
        emit(f"marked apply {candidate.id} as abandoned; nothing was changed")
        return
    for state in result.skipped:
        emit(f"warning: could not restore {state.key}: {state.status} ({state.note})", err=True)
    written = result.outcome.applied if result.outcome else []
    emit(
        f"rolled back apply {candidate.id}: restored {len(written)} key(s)"
        + (f" ({', '.join(written)})" if written else "")
        + f" (journal {result.journal_id})"
    )
    if result.file_action in ("restored", "removed"):
        emit(f"{result.file_action} {(candidate.data.get('persist') or {}).get('path')}")
    elif result.file_note:
        emit(f"warning: {result.file_note}", err=True)
    for warning in result.warnings:
        emit(f"warning: {warning}", err=True)


# ---- helpers -------------------------------------------------------------------------------------------------------


def _desired(ref: str | None, state_dir: str, *, show_warnings: bool = False) -> Desired:
    """The profile to compare or apply (its warnings shown if asked); without one, the last applied profile."""
    if ref is None:
        return last_applied(state_dir)
    from ..load import load_valid  # profiles (PyYAML): not on the path of a bare diff, history or rollback

    verdict = load_valid(ref)
    if show_warnings:
        emit_diagnostics(verdict.warnings)
    return from_verdict(verdict, ref)


def _shown(value: str | None) -> str:
    """A live value in a table or message: "-" when there is none, kernel tabs folded to spaces."""
    return "-" if value is None else one_line(value)


def _sayer(fmt: Format) -> Callable[[str], None]:
    """Progress lines: on stdout with text output, on stderr when stdout carries the JSON document."""
    out = sys.stderr if fmt is Format.json else sys.stdout

    def say(text: str) -> None:
        out.write(text + "\n")

    return say


def _confirm(yes: bool, action: str) -> None:
    """Ask on a terminal; without one, refuse instead of hanging (CI has no stdin)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationNeeded(f"refusing to {action} without confirmation: not a terminal; pass --yes")
    if not typer.confirm(f"{action[0].upper()}{action[1:]}?", default=False):
        raise TcptuneError("cancelled; nothing was changed")
