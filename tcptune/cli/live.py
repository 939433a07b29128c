"""Commands that compare or converge this machine to a profile: diff and apply (``diff -i`` hands over to the fleet
family). PyYAML is imported only where a profile is read (``_desired``): a bare diff loads none.
"""

from collections.abc import Callable
from typing import Annotated

import typer

from ..desired import current as current_desired
from ..desired import engine as make_engine
from ..desired import from_verdict, kernel_defaults
from ..drift import BOOT_NOT_PERSISTED, Drift, drift, overridden
from ..engine import Options, require_root
from ..output import emit, emit_diagnostics, emit_json, emit_wrapped, paint, table
from ..plan import STATUS_TEXT, Desired
from ..target import DEFAULT_STATE_DIR, REAL_PROC_SYS, Target
from .complete import complete_profile
from .interrupted import warn_interrupted
from .options import (
    EXIT_DRIFT,
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
from .transaction import execute, report, sayer, shown


def diff(
    profile: Annotated[
        str | None,
        typer.Argument(
            autocompletion=complete_profile,
            help="Profile file or built-in name. Default: what the current generation manages.",
        ),
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
    result = drift(desired, target, check_boot=not live_only, defaults=kernel_defaults(desired.values))
    for path, why in result.skipped_files:
        emit(f"tcptune: warning: skipped {path} when predicting boot values: {why}", err=True)
    if fmt is Format.json:
        emit_json(result.as_dict())
    else:
        emit_wrapped(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
        _show_drift(result)
    raise typer.Exit(EXIT_DRIFT if result.drift else EXIT_OK)


def _show_drift(result: Drift) -> None:
    table(
        ["key", "live", "desired", "status"],
        [(k.key, shown(k.live), k.desired, STATUS_TEXT[k.status]) for k in result.plan.keys],
        status_column=3,
    )
    for state in result.plan.keys:
        if state.note and state.status != "ok":
            emit_wrapped(f"  {state.key}: {state.note}", indent="    ")
    boot_problems = [b for b in result.boot if b.status not in ("ok", "kernel default") or b.overridden]
    if result.check_boot and boot_problems:
        emit_wrapped("after a reboot (sysctl.d files in the order systemd-sysctl and 'sysctl --system' read them):")
        unpersisted = [b.key for b in boot_problems if b.status == BOOT_NOT_PERSISTED]
        if unpersisted:
            every = " (all keys)" if len(unpersisted) == len(result.boot) else ""
            emit_wrapped(
                f"  {paint('not persisted', 'drift')}{every}, the kernel default returns: " + ", ".join(unpersisted),
                indent="    ",
            )
        for b in boot_problems:
            if b.status == BOOT_NOT_PERSISTED or b.source is None:
                continue
            line = f"  {b.key}: would be {b.value} from {b.source.where()}"
            if b.shadowed:
                overridden = ", ".join(f"{e.where()} ({e.value})" for e in b.shadowed)
                line += ", " + paint("overriding", "drift") + " " + overridden
            elif b.status != "ok":
                line += f" ({paint('differs', 'drift')} from {b.desired})"
            emit_wrapped(line, indent="    ")
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
    keep_unmanaged: Annotated[
        bool,
        typer.Option(
            "--keep-unmanaged",
            help="Keys managed now but absent from PROFILE keep their live values and leave management "
            "(default: they go back to their baseline, the value they had before tcptune).",
        ),
    ] = False,
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
        bool, typer.Option("--no-persist", help="Change the live kernel only; leave the sysctl.d file as it is.")
    ] = False,
    fmt: FormatOpt = Format.text,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Converge to a profile: show the plan, confirm, then one transaction that makes a new generation.

    Keys already at the desired value are not written; keys of the current generation absent from PROFILE go back
    to their baseline (the plan shows them as 'revert'). If a write fails, or the kernel keeps another value than
    the one written, every change is undone and the command exits 1 naming the key; exit 3 means the undo failed
    too ('tcptune recover' retries). Needs root unless --proc-root points at another tree.
    """
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    if not dry_run:
        require_root(target, "apply")
    warn_interrupted(state_dir)
    desired = _desired(profile, state_dir, show_warnings=fmt is Format.text)
    options = Options(
        skip_missing=skip_missing, skip_readonly=skip_readonly, persist=not no_persist, keep_unmanaged=keep_unmanaged
    )
    engine = make_engine(target)
    planned = engine.plan_apply(desired, options)
    say = sayer(fmt)
    if fmt is Format.text:
        emit_wrapped(
            f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}"
            + (" (dry run)" if dry_run else "")
        )
    result = execute(engine, planned, yes, fmt, say, dry_run=dry_run)
    if result is None:
        raise typer.Exit(EXIT_OK)
    if result.file_action == "written":
        _warn_overridden(desired, target, say)
    report(
        result,
        fmt,
        lambda r: (
            f"applied {len(r.written)} change(s)"
            + (f"; wrote {target.own_file}" if r.file_action == "written" else "")
            + f"; now at generation {r.generation}"
        ),
    )
    raise typer.Exit(EXIT_OK)


def _warn_overridden(desired: Desired, target: Target, say: Callable[[str], None]) -> None:
    """After writing tcptune's file: name any later sysctl.d file that overrides it at boot."""
    found = overridden(desired.values, target)
    if found is None:
        say(f"note: {target.own_file} is not in a directory read at boot")
        return
    for b in found:
        if b.source is not None:
            say(f"warning: {b.key}: {b.source.where()} sets {b.value} and overrides {target.own_file} at boot")


# ---- helpers -------------------------------------------------------------------------------------------------------


def _desired(ref: str | None, state_dir: str, *, show_warnings: bool = False) -> Desired:
    """The profile to compare or apply (its warnings shown if asked); without one, the current generation's."""
    if ref is None:
        return current_desired(state_dir)
    from ..load import load_valid  # profiles (PyYAML): not on the path of a bare diff

    verdict = load_valid(ref)
    if show_warnings:
        emit_diagnostics(verdict.warnings)
    return from_verdict(verdict, ref)
