"""Commands that compare or converge this machine to a profile: diff and apply (``diff -i`` hands over to the fleet
family). PyYAML is imported only where a profile is read (``_desired``): a bare diff loads none.
"""

import sys
import time
from collections.abc import Callable
from typing import Annotated, NoReturn

import typer

from ..desired import current as current_desired
from ..desired import engine as make_engine
from ..desired import from_verdict
from ..desired import state_dir as open_state
from ..drift import (
    BOOT_DEFAULT,
    BOOT_DIFFERS,
    BOOT_DRIFT,
    BOOT_NOT_PERSISTED,
    BOOT_OK,
    BOOT_REJECTED,
    BOOT_UNKNOWN,
    BootState,
    Drift,
    drift,
    overrides,
    prometheus_text,
)
from ..engine import Options, require_root
from ..failures import CoreError
from ..output import emit, emit_diagnostics, emit_json, emit_wrapped, paint, table
from ..plan import STATUS_TEXT, Desired, KeyState
from ..target import DEFAULT_STATE_DIR, REAL_PROC_NET, REAL_PROC_SYS, Target
from ..userfiles import write_file
from .complete import complete_profile
from .interrupted import warn_interrupted
from .options import (
    EXIT_DRIFT,
    EXIT_OK,
    BootApplier,
    BootApplierOpt,
    DiffFormat,
    ForksOpt,
    Format,
    FormatOpt,
    InventoryOpt,
    LimitOpt,
    ProcNetOpt,
    ProcRootOpt,
    ProfileArg,
    StateDirOpt,
    SysctlDirOpt,
    SysctlRootOpt,
    YesOpt,
)
from .transaction import counters_in, execute, report, sayer, shown


def diff(
    profile: Annotated[
        str | None,
        typer.Argument(
            autocompletion=complete_profile,
            help="Profile file or built-in name. Default: what the current generation manages.",
        ),
    ] = None,
    fmt: Annotated[DiffFormat, typer.Option("--format", "-f", help="Output format.")] = DiffFormat.text,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="With --format prometheus or json: write to FILE atomically instead of stdout (for "
            "node_exporter's textfile collector: -f prometheus -o DIR/tcptune-drift.prom).",
        ),
    ] = None,
    live_only: Annotated[
        bool, typer.Option("--live-only", help="Ignore persistence (sysctl.d) drift for the exit code and output.")
    ] = False,
    boot_applier: BootApplierOpt = BootApplier.auto,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
) -> None:
    """Compare a profile with the live kernel and with what the boot applier would set at the next boot.

    Exit codes, like diff(1): 0 no drift, 2 drift found (a key differs, is missing, read-only or refused by this
    kernel here, or would have another value after a reboot), 1 error. A key whose value after a reboot cannot be
    predicted is shown as 'unknown' and counted (summary.boot_unknown in JSON) but is not drift: exit 0 with a
    warning when nothing else differs. Works without root.
    With -i INVENTORY: per-host, per-key drift across a fleet (Ansible check mode), same exit codes.
    """
    if inventory is not None:
        if fmt is DiffFormat.prometheus or output is not None:
            raise typer.BadParameter("is for one machine; a fleet diff prints text or JSON", param_hint="--format/-o")
        from .fleet import fleet_diff  # the fleet family (render, ansible-runner): only for a fleet

        raise typer.Exit(fleet_diff(profile, inventory, limit, forks, Format(fmt.value)))
    if output is not None and fmt is DiffFormat.text:
        raise typer.BadParameter("writes --format prometheus or json", param_hint="--output")
    target = Target.at(proc_root, state_dir, sysctl_dir, sysctl_root)
    warn_interrupted(state_dir)
    checked_at = time.time()
    if fmt is DiffFormat.prometheus:
        _diff_prometheus(profile, target, live_only, boot_applier, output, checked_at)
    desired = _desired(profile, state_dir)
    result = drift(desired, target, check_boot=not live_only, applier=boot_applier.value)
    unknown = result.boot_unknown
    if fmt is DiffFormat.json and output is not None:
        import json  # only for -o FILE.json: not on the start-up path of every diff

        write_file(output, json.dumps(result.as_dict(), indent=2) + "\n")
    elif fmt is DiffFormat.json:
        emit_json(result.as_dict())
    else:
        emit_wrapped(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
        _show_drift(result)
    if unknown and not result.drift:
        emit(
            f"tcptune: warning: the value after a reboot of {len(unknown)} key(s) cannot be predicted "
            f"({', '.join(b.key for b in unknown[:3])}{', ...' if len(unknown) > 3 else ''}); not counted as drift",
            err=True,
        )
    raise typer.Exit(EXIT_DRIFT if result.drift else EXIT_OK)


def _diff_prometheus(
    profile: str | None,
    target: Target,
    live_only: bool,
    boot_applier: BootApplier,
    output: str | None,
    checked_at: float,
) -> NoReturn:
    """diff as Prometheus gauges. Nothing managed (and no PROFILE) is a state to report, not an error."""
    state = open_state(target.state_dir)
    try:
        current = state.current()
    except CoreError:
        if profile is None:
            raise
        current, number = None, None  # not readable here (not root?): the profile is still checked
    else:
        number = current.number if current else 0
    result = None
    if profile is not None or (current is not None and current.values):
        desired = _desired(profile, target.state_dir)
        result = drift(desired, target, check_boot=not live_only, applier=boot_applier.value)
    text = prometheus_text(result, generation=number, checked_at=checked_at)
    if output is not None:
        write_file(output, text)
    else:
        sys.stdout.write(text)
    raise typer.Exit(EXIT_DRIFT if result is not None and result.drift else EXIT_OK)


def _show_drift(result: Drift) -> None:
    table(
        ["key", "live", "desired", "status"],
        [(_key(k), shown(k.live), k.desired, STATUS_TEXT[k.status]) for k in result.plan.keys],
        status_column=3,
    )
    for state in result.plan.keys:
        if state.note and state.status != "ok":
            emit_wrapped(f"  {state.key}: {state.note}", indent="    ")
        elif state.preflight == "warning":
            emit_wrapped(f"  {state.key}: warning: {'; '.join(state.reasons)}", indent="    ")
    raw = [k.key for k in result.plan.keys if k.raw]
    if raw:
        emit(f"  (raw) {len(raw)} key(s) from the profile's raw: mapping, unchecked by the catalog")
    problems = [b for b in result.boot if b.status not in (BOOT_OK, BOOT_DEFAULT) or b.overridden]
    if result.check_boot:
        _show_boot(result, problems)
    counts = result.plan.counts()
    parts = [f"{counts[s]} {STATUS_TEXT[s]}" for s in STATUS_TEXT if counts[s]]
    summary = f"{len(result.plan.keys)} keys: " + ", ".join(parts)
    differ = sum(b.status in BOOT_DRIFT for b in result.boot)
    if differ:
        summary += f"; after reboot {differ} would differ"
    if result.boot_unknown:
        summary += f"; after reboot {len(result.boot_unknown)} unknown"
    emit(summary)
    emit(paint("drift found", "drift") if result.drift else paint("no drift", "ok"))


def _show_boot(result: Drift, problems: list[BootState]) -> None:
    """What the next boot sets, by which program: the keys that would not have the desired value, and why."""
    applier = result.applier
    assert applier is not None
    if applier.name in ("systemd", "procps"):
        head = f"after reboot, by {applier.describe()}"
    elif applier.name == "none":
        head = f"after reboot (nothing applies sysctl.d at boot here: {applier.how})"
    else:
        head = f"after reboot ({applier.describe()}: {applier.how})"
    if not problems:
        emit_wrapped(f"{head}: every key as desired")
        return
    emit_wrapped(f"{head}:")
    if result.reads_own_file is False and applier.name in ("systemd", "procps"):
        emit_wrapped("  tcptune's sysctl.d file is not in a directory it reads")
    unknown = [b for b in problems if b.status == BOOT_UNKNOWN]
    reasons = {b.reason for b in unknown}
    if unknown and len(unknown) == len(result.boot) and len(reasons) == 1:
        emit_wrapped(f"  {paint('unknown', 'warning')} for every key: {reasons.pop()}", indent="    ")
        return
    unpersisted = [b.key for b in problems if b.status == BOOT_NOT_PERSISTED]
    if unpersisted:
        every = " (all keys)" if len(unpersisted) == len(result.boot) else ""
        emit_wrapped(
            f"  {paint('not persisted', 'drift')}{every}, the kernel default returns: " + ", ".join(unpersisted),
            indent="    ",
        )
    for b in problems:
        if b.status == BOOT_NOT_PERSISTED:
            continue
        if b.status == BOOT_UNKNOWN:
            emit_wrapped(f"  {b.key}: {paint('unknown', 'warning')}: {b.reason}", indent="    ")
            continue
        if b.status == BOOT_REJECTED:
            refused = "; ".join(f"{e.where()} ({e.value}): {why}" for e, why in b.refused)
            keeps = f"the kernel keeps {b.value}" if b.value is not None else "the kernel keeps its earlier value"
            emit_wrapped(f"  {b.key}: {paint('rejected', 'drift')} at boot: {refused}; {keeps}", indent="    ")
            continue
        line = f"  {b.key}: would be {b.value}" + (f" from {b.source.where()}" if b.source else "")
        if b.shadowed:
            overridden = ", ".join(f"{e.where()} ({e.value})" for e in b.shadowed)
            line += ", " + paint("overriding", "drift") + " " + overridden
        elif b.status == BOOT_DIFFERS:
            line += f" ({paint('differs', 'drift')} from {b.desired})"
        if b.reason:
            line += f" ({b.reason})"
        emit_wrapped(line, indent="    ")


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
    boot_applier: BootApplierOpt = BootApplier.auto,
    proc_root: ProcRootOpt = REAL_PROC_SYS,
    proc_net: ProcNetOpt = REAL_PROC_NET,
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
    engine = make_engine(target, boot_applier.value)
    planned = engine.plan_apply(desired, options)
    say = sayer(fmt)
    if fmt is Format.text:
        emit_wrapped(
            f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}"
            + (" (dry run)" if dry_run else "")
        )
    result = execute(engine, planned, yes, fmt, say, dry_run=dry_run, counters=counters_in(proc_net))
    if result is None:
        raise typer.Exit(EXIT_OK)
    if result.file_action == "written":
        _warn_overridden(desired, target, say, boot_applier.value)
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


def _warn_overridden(desired: Desired, target: Target, say: Callable[[str], None], applier: str) -> None:
    """After writing tcptune's file: say if the boot applier will not read it, or which file overrides it."""
    found = overrides(desired.values, target, applier)
    chosen = found.applier
    if found.read is None:
        say(f"note: cannot tell whether {target.own_file} is applied at boot ({chosen.describe()}: {chosen.how})")
    elif not found.read and chosen.name == "none":
        say(f"note: nothing applies sysctl.d at boot here ({chosen.how}): the values hold until the next reboot")
    elif not found.read:
        say(f"note: {target.own_file} is not in a directory {chosen.describe()} reads at boot")
    for b in found.overridden:
        if b.source is not None:
            say(f"warning: {b.key}: {b.source.where()} sets {b.value} and overrides {target.own_file} at boot")


# ---- helpers -------------------------------------------------------------------------------------------------------


def _key(state: KeyState) -> str:
    """A key in a table: marked when it comes from the profile's raw: mapping (unchecked by the catalog)."""
    return f"{state.key} (raw)" if state.raw else state.key


def _desired(ref: str | None, state_dir: str, *, show_warnings: bool = False) -> Desired:
    """The profile to compare or apply (its warnings shown if asked); without one, the current generation's."""
    if ref is None:
        return current_desired(state_dir)
    from ..load import load_valid  # profiles (PyYAML): not on the path of a bare diff

    verdict = load_valid(ref)
    if show_warnings:
        emit_diagnostics(verdict.warnings)
    return from_verdict(verdict, ref)
