"""The typer app: parse arguments, call one core function per command, render. No domain logic here.

Exit codes (same for every command): 0 success, 1 error (invalid profile, failed apply, ...), 2 drift found
(``diff`` only), 3 an apply failed and not everything could be restored, 64 bad command line, 70 internal error.
"""

import sys
from enum import Enum
from typing import Annotated

import typer

from . import __version__
from .errors import ProfileError, TcptuneError

EXIT_OK, EXIT_ERROR, EXIT_DRIFT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 64, 70

app = typer.Typer(
    name="tcptune",
    help="Declarative Linux TCP tuning: validate profiles, diff and apply them with rollback, push them to fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    text = "text"
    json = "json"


class ShowFormat(str, Enum):
    text = "text"
    json = "json"
    sysctl = "sysctl"


ProfileArg = Annotated[
    str, typer.Argument(help="Profile file, or the name of a built-in profile (see 'tcptune profiles').")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]

# Annotations are evaluated at definition time (no postponed annotations: typer would compile and eval each
# one on every run), so every option type used below is defined here.
InventoryOpt = Annotated[
    str | None,
    typer.Option(
        "--inventory", "-i", help="Ansible inventory (file or directory): run across the fleet through ansible-runner."
    ),
]
LimitOpt = Annotated[str | None, typer.Option("--limit", "-l", help="Ansible host pattern to restrict the run to.")]
ForksOpt = Annotated[int | None, typer.Option("--forks", min=1, help="Hosts in parallel (default: Ansible's, 5).")]


class StatusFormat(str, Enum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


ProcNetOpt = Annotated[
    str,
    typer.Option(
        "--proc-net",
        envvar="TCPTUNE_PROC_NET",
        show_default=True,
        help="Directory holding tcp, tcp6, sockstat, netstat and snmp (/proc/net follows the current network "
        "namespace). Kernel counters come from here, and sockets too when netlink is unavailable.",
    ),
]
SourceOpt = Annotated[str, typer.Option("--source", hidden=True, help="Socket source: auto, netlink or proc.")]
TopOpt = Annotated[
    int,
    typer.Option(
        "--top", min=1, help="Rows per breakdown (ports, remote addresses, endpoints); bounds Prometheus series."
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tcptune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Declarative Linux TCP tuning."""
    if ctx.invoked_subcommand not in _STATE_COMMANDS:  # those check their own --state-dir
        import os

        _warn_interrupted(os.environ.get("TCPTUNE_STATE_DIR") or "/var/lib/tcptune")


_STATE_COMMANDS = ("diff", "apply", "history", "rollback")


# ---- profiles, catalog, validation --------------------------------------------------------------------------------


@app.command()
def validate(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or built-in names.")],
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    container: Annotated[
        bool, typer.Option("--container", help="Warn about global keys (read-only in a container).")
    ] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Check profiles against the key catalog. Exit 0 if all are valid, 1 if any is not."""
    from .errors import Diagnostic, Location
    from .output import diagnostic_line, emit, emit_json
    from .profile import load_profile
    from .validate import validate as check

    results = []
    failed = False
    for ref in profiles:
        try:
            verdict = check(load_profile(ref), container=container)
            diagnostics, name = verdict.diagnostics, verdict.profile.name
        except ProfileError as exc:
            diagnostics, name = exc.diagnostics, ref
        except TcptuneError as exc:
            diagnostics, name = [Diagnostic("error", Location(ref), str(exc))], ref
        bad = any(d.is_error or strict for d in diagnostics)
        failed |= bad
        results.append(
            {"profile": name, "source": ref, "valid": not bad, "diagnostics": [d.as_dict() for d in diagnostics]}
        )
        if fmt is Format.text:
            for diagnostic in diagnostics:
                emit(diagnostic_line(diagnostic))
            errors = sum(d.is_error for d in diagnostics)
            warnings = len(diagnostics) - errors
            verdict_text = "invalid" if bad else "ok"
            emit(
                f"{ref}: {verdict_text} ({errors} error{'s' * (errors != 1)}, "
                f"{warnings} warning{'s' * (warnings != 1)})"
            )
    if fmt is Format.json:
        emit_json({"valid": not failed, "profiles": results})
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


@app.command()
def show(profile: ProfileArg, fmt: Annotated[ShowFormat, typer.Option("--format", "-f")] = ShowFormat.text) -> None:
    """Print the fully resolved profile (after 'extends') and where each value came from."""
    from .output import emit, emit_json, table
    from .persist import render_sysctl_conf
    from .profile import load_profile
    from .validate import validate as check

    verdict = check(load_profile(profile))
    resolved = verdict.profile
    _fail_on_errors(verdict)
    rows = [(key, verdict.values[key], s.origin, str(s.location)) for key, s in sorted(resolved.settings.items())]
    if fmt is ShowFormat.json:
        emit_json(
            {
                "name": resolved.name,
                "description": resolved.description,
                "path": str(resolved.path),
                "extends": list(resolved.extends),
                "chain": list(resolved.chain),
                "fingerprint": resolved.fingerprint(),
                "settings": {k: {"value": v, "origin": o, "location": loc} for k, v, o, loc in rows},
            }
        )
    elif fmt is ShowFormat.sysctl:
        sys.stdout.write(render_sysctl_conf(resolved.name, resolved.fingerprint(), verdict.values))
    else:
        emit(f"profile: {resolved.name}  ({resolved.path})")
        if resolved.description:
            emit(f"description: {resolved.description}")
        emit(f"chain: {' -> '.join(resolved.chain)}")
        emit(f"fingerprint: {resolved.fingerprint()}")
        table(["key", "value", "from", "location"], rows)


@app.command()
def explain(
    key: Annotated[str | None, typer.Argument(help="A sysctl key, full or bare name.")] = None,
    list_keys: Annotated[bool, typer.Option("--list", help="List every key tcptune knows.")] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Explain one key: what it controls, unit, range, default, netns scope, history, advice and pitfalls."""
    from . import catalog
    from .explain import describe_key, key_as_dict
    from .output import emit, emit_json, table

    if list_keys or key is None:
        keys = catalog.all_keys()
        if fmt is Format.json:
            emit_json([key_as_dict(k) for k in keys])
        else:
            table(
                ["key", "scope", "default", "summary"],
                [(k.name, k.scope + (" (removed)" if k.removed else ""), k.default or "-", k.summary) for k in keys],
            )
        return
    name = catalog.canonical_name(key)
    if name is None:
        options = catalog.ambiguous(key)
        hint = (
            ("write the full name: " + " or ".join(options))
            if options
            else (
                "did you mean " + " or ".join(catalog.suggest(key)) + "?"
                if catalog.suggest(key)
                else "run 'tcptune explain --list'"
            )
        )
        raise TcptuneError(f"{key}: unknown sysctl key ({hint})")
    entry = catalog.get(name)
    assert entry is not None
    if fmt is Format.json:
        emit_json(key_as_dict(entry))
    else:
        emit(describe_key(entry))


@app.command()
def schema() -> None:
    """Print the JSON Schema of profile files (for editors: see README)."""
    from .output import emit_json
    from .schema import profile_schema

    emit_json(profile_schema())


@app.command("profiles")
def list_profiles(fmt: FormatOpt = Format.text) -> None:
    """List the built-in profile library."""
    from .output import emit_json, table
    from .profile import builtin_names, load_profile

    rows = []
    for name in builtin_names():
        try:
            loaded = load_profile(name)
            rows.append((name, ", ".join(loaded.extends) or "-", str(len(loaded.settings)), loaded.description))
        except ProfileError as exc:
            rows.append((name, "?", "?", f"unreadable: {exc.diagnostics[0].message}"))
    if fmt is Format.json:
        emit_json([{"name": n, "extends": e, "keys": k, "description": d} for n, e, k, d in rows])
    else:
        table(["name", "extends", "keys", "description"], rows)


# ---- live state: diff, apply, history, rollback (issue 3) ---------------------------------------------------------

ProcRootOpt = Annotated[
    str,
    typer.Option(
        "--proc-root",
        envvar="TCPTUNE_PROC_ROOT",
        show_default=True,
        help="A /proc/sys-shaped tree to read and write instead of the running kernel's (tests, a mounted container "
        "filesystem). apply/rollback need root only for the real /proc/sys.",
    ),
]
StateDirOpt = Annotated[
    str,
    typer.Option(
        "--state-dir",
        envvar="TCPTUNE_STATE_DIR",
        show_default=True,
        help="Where journals, the lock and the last applied profile live (created 0700).",
    ),
]
SysctlDirOpt = Annotated[
    str | None,
    typer.Option(
        "--sysctl-dir",
        envvar="TCPTUNE_SYSCTL_DIR",
        help="Directory of the persisted file 90-tcptune.conf [default: <sysctl root>/etc/sysctl.d].",
    ),
]
SysctlRootOpt = Annotated[
    str,
    typer.Option(
        "--sysctl-root",
        envvar="TCPTUNE_SYSCTL_ROOT",
        hidden=True,
        help="Root of the tree whose sysctl.d directories predict boot-time values (tests, container images).",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")]


def _target(proc_root: str, state_dir: str, sysctl_dir: str | None, sysctl_root: str) -> object:
    import os

    from .target import Target

    sysctl_dir = sysctl_dir or os.path.join(sysctl_root, "etc/sysctl.d")
    return Target(proc_root=proc_root, state_dir=state_dir, sysctl_dir=sysctl_dir, sysctl_root=sysctl_root)


def _desired(ref: str, *, show_warnings: bool = False) -> object:
    """Load and validate a profile, reduced to what diff/apply need; stops on any validation error."""
    from . import catalog
    from .apply import Desired
    from .output import diagnostic_line, emit
    from .profile import load_profile
    from .validate import validate as check

    verdict = check(load_profile(ref))
    _fail_on_errors(verdict)
    if show_warnings:
        for diagnostic in verdict.warnings:
            emit(diagnostic_line(diagnostic, sys.stderr), err=True)
    resolved = verdict.profile
    scopes = {k: entry.scope for k in verdict.values if (entry := catalog.get(k)) is not None}
    return Desired(
        resolved.name,
        resolved.fingerprint(),
        dict(verdict.values),
        str(resolved.path) if resolved.path else ref,
        scopes,
    )


def _warn_interrupted(state_dir: str) -> None:
    """Every invocation says so when an apply or rollback was killed part-way and awaits 'tcptune rollback'.

    One listdir (``StateDir.has_pending_files``); journals are parsed only when something is pending. Whether an
    apply is still running is decided by its lock, not its pid. A malformed journal gets a one-line warning here
    (the command itself still runs); apply and rollback refuse to act on it.
    """
    from .journal import StateDir

    state = StateDir(state_dir)
    if not state.has_pending_files():
        return
    from .output import emit, paint

    def warn(text: str) -> None:
        emit(f"tcptune: {paint('warning:', 'warning', sys.stderr)} {text}", err=True)

    try:
        stuck = state.interrupted(on_malformed=lambda exc: warn(f"skipping {exc}"))
    except TcptuneError as exc:
        warn(f"cannot check for interrupted applies: {exc}")
        return
    for journal in stuck:
        profile = (journal.data.get("profile") or {}).get("name") or "?"
        warn(
            f"{journal.kind} {journal.id} of profile {profile} (started {journal.data.get('started')}) was "
            "interrupted and may have left the machine half-changed; run 'tcptune rollback' to restore the previous "
            "values ('tcptune history' for details)"
        )


def _flat(text: str | None) -> str:
    return "-" if text is None else " ".join(text.split())


@app.command()
def diff(
    profile: Annotated[
        str | None,
        typer.Argument(help="Profile file or built-in name. Default: the profile of the last 'tcptune apply'."),
    ] = None,
    fmt: FormatOpt = Format.text,
    live_only: Annotated[
        bool, typer.Option("--live-only", help="Ignore persistence (sysctl.d) drift for the exit code and output.")
    ] = False,
    proc_root: ProcRootOpt = "/proc/sys",
    state_dir: StateDirOpt = "/var/lib/tcptune",
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
    if inventory is not None:  # fleet drift (issue 4): see _fleet_diff
        raise typer.Exit(_fleet_diff(profile, inventory, limit, forks, fmt))
    from .apply import Desired, drift
    from .output import emit, emit_json, paint, table
    from .plan import BOOT_NOT_PERSISTED, STATUS_TEXT

    target = _target(proc_root, state_dir, sysctl_dir, sysctl_root)
    _warn_interrupted(state_dir)
    if profile is None:
        from .journal import StateDir

        record = StateDir(state_dir).read_last_applied()
        if record is None:
            raise TcptuneError(
                f"no applied profile is recorded in {state_dir} (nothing applied yet, or the last "
                "apply was rolled back); name a profile to compare, e.g. 'tcptune diff web-server', "
                "or start with "
                "'tcptune apply web-server --dry-run' ('tcptune profiles' lists the built-in ones)"
            )
        desired = Desired.from_dict(record.get("profile") or {})
    else:
        desired = _desired(profile)
    from . import catalog

    defaults = {k: entry.default for k in desired.values if (entry := catalog.get(k)) and entry.default is not None}
    result = drift(desired, target, check_boot=not live_only, defaults=defaults)  # type: ignore[arg-type]
    if fmt is Format.json:
        emit_json(result.as_dict())
        raise typer.Exit(EXIT_DRIFT if result.drift else EXIT_OK)
    emit(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
    table(
        ["key", "live", "desired", "status"],
        [(k.key, _flat(k.live), k.desired, STATUS_TEXT[k.status]) for k in result.plan.keys],
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
            if b.status == BOOT_NOT_PERSISTED:
                continue
            assert b.source is not None
            line = f"  {b.key}: would be {b.value} from {b.source.where()}"
            if b.shadowed:
                line += (
                    ", "
                    + paint("overriding", "drift")
                    + " "
                    + ", ".join(f"{e.where()} ({e.value})" for e in b.shadowed)
                )
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
    raise typer.Exit(EXIT_DRIFT if result.drift else EXIT_OK)


@app.command()
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
    proc_root: ProcRootOpt = "/proc/sys",
    state_dir: StateDirOpt = "/var/lib/tcptune",
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Apply a profile: show the plan, confirm, journal, write each changed key, verify, persist.

    Keys already at the desired value are not written. If a write fails, the keys already changed are restored
    and the command exits 1 naming the key and the reason; exit 3 means a restore failed too (the message says
    exactly which keys are left changed). Needs root unless --proc-root points at another tree.
    """
    from . import apply as core
    from .output import emit, emit_json, table

    target = _target(proc_root, state_dir, sysctl_dir, sysctl_root)
    if not dry_run:
        core.require_root(target, "apply")  # type: ignore[arg-type]
    _warn_interrupted(state_dir)
    desired = _desired(profile, show_warnings=fmt is Format.text)
    plan = core.make_plan(desired, target)  # type: ignore[arg-type]
    runnable, skipped = core.split_blocked(plan, skip_missing=skip_missing, skip_readonly=skip_readonly)
    new_file = None if no_persist else core.persist_preview(desired, target, skipped)  # type: ignore[arg-type]
    out = sys.stderr if fmt is Format.json else sys.stdout

    def say(text: str) -> None:
        out.write(text + "\n")

    if fmt is Format.text:
        emit(f"profile {desired.name} (fingerprint {desired.fingerprint}) against {proc_root}")
    if runnable.changes and fmt is Format.text:
        table(["key", "live", "new"], [(c.key, _flat(c.old), c.new) for c in runnable.changes])
    for state in skipped:
        say(f"warning: skipping {state.key}: {state.status} ({state.note})")
    unchanged = len(runnable.keys) - len(runnable.changes)
    say(
        f"{len(runnable.changes)} to change, {unchanged} already at the desired value"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    if new_file is not None:
        say(f"will write {target.own_file}")  # type: ignore[attr-defined]
    if dry_run or (not runnable.changes and new_file is None):
        if fmt is Format.json:
            emit_json(
                {
                    "dry_run": dry_run,
                    "plan": runnable.as_dict(),
                    "skipped": [k.key for k in skipped],
                    "persist": target.own_file if new_file is not None else None,  # type: ignore[attr-defined]
                    "applied": False,
                }
            )
        elif not runnable.changes and new_file is None:
            emit("up to date: nothing to do")
        if not dry_run:  # record the profile even when nothing changed: a bare 'diff' compares against it
            done = core.apply(
                desired,
                target,
                runnable,
                skip_missing=skip_missing,  # type: ignore[arg-type]
                skip_readonly=skip_readonly,
                write_persist=not no_persist,
            )
            for warning in done.warnings:
                say(f"warning: {warning}")
        raise typer.Exit(EXIT_OK)
    _confirm(yes, f"apply {len(runnable.changes)} change(s)" + (" and write the sysctl.d file" if new_file else ""))
    result = core.apply(
        desired,
        target,
        runnable,
        skip_missing=skip_missing,  # type: ignore[arg-type]
        skip_readonly=skip_readonly,
        write_persist=not no_persist,
    )
    for warning in result.warnings:
        say(f"warning: {warning}")
    for key, live, expected in result.mismatches:
        say(f"warning: {key}: live {_flat(live)}, expected {expected} (the kernel clamped or ignored the value)")
    for b in result.overridden:
        assert b.source is not None
        say(f"warning: {b.key}: {b.source.where()} sets {b.value} and overrides {target.own_file} at boot")  # type: ignore[attr-defined]
    if result.persist_outside_boot_path:
        say(f"note: {target.own_file} is not in a directory read at boot")  # type: ignore[attr-defined]
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
    raise typer.Exit(EXIT_ERROR if result.mismatches else EXIT_OK)


def _confirm(yes: bool, action: str) -> None:
    """Ask on a terminal; without one, refuse instead of hanging (CI has no stdin)."""
    from .errors import ConfirmationNeeded

    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationNeeded(f"refusing to {action} without confirmation: not a terminal; pass --yes")
    if not typer.confirm(f"{action[0].upper()}{action[1:]}?", default=False):
        raise TcptuneError("cancelled; nothing was changed")


@app.command()
def history(
    fmt: FormatOpt = Format.text,
    state_dir: StateDirOpt = "/var/lib/tcptune",
) -> None:
    """List applies and rollbacks: time, profile, hash, keys changed, status (newest last)."""
    from .journal import StateDir
    from .output import emit, emit_json, table

    _warn_interrupted(state_dir)
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


@app.command()
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
    proc_root: ProcRootOpt = "/proc/sys",
    state_dir: StateDirOpt = "/var/lib/tcptune",
    sysctl_dir: SysctlDirOpt = None,
    sysctl_root: SysctlRootOpt = "/",
) -> None:
    """Restore the values (and the sysctl.d file) recorded before the last apply, or a chosen one. Journaled.

    Only tcptune's own file in --sysctl-dir is restored or removed, whatever the journal names.
    """
    from . import apply as core
    from .journal import StateDir
    from .output import emit

    target = _target(proc_root, state_dir, sysctl_dir, sysctl_root)
    core.require_root(target, "rollback")  # type: ignore[arg-type]
    candidate = core.rollback_candidate(StateDir(state_dir), journal_id)
    summary = candidate.summary()
    what = "abandon" if abandon else "roll back"
    _confirm(yes, f"{what} apply {candidate.id} of profile {summary['profile']} ({summary['keys_changed']} key(s))")
    result = core.rollback(target, candidate.id, abandon=abandon)  # type: ignore[arg-type]
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


# ---- fleets: Ansible roles, push, fleet diff (issue 4) -------------------------------------------------------------


@app.command()
def role(
    profile: Annotated[str | None, typer.Argument(help="Profile file or built-in name (omit with --generic).")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Directory to write the role into.")] = "roles",
    generic: Annotated[
        bool,
        typer.Option(
            "--generic", help="Write the generic role 'tcptune' (settings from the inventory: tcptune_settings)."
        ),
    ] = False,
    molecule: Annotated[
        bool, typer.Option("--molecule/--no-molecule", help="Include a Molecule scenario on namespace hosts.")
    ] = True,
) -> None:
    """Write a self-contained Ansible role for a profile: roles/tcptune_<name>/ (ansible-core only, no collections)."""
    from .ansible.render import generic_spec, render_role
    from .output import emit

    if generic == (profile is not None):
        raise typer.BadParameter("give a PROFILE or --generic, not both" if generic else "give a PROFILE or --generic")
    spec = generic_spec() if generic else _fleet_spec(profile)  # type: ignore[arg-type]
    role_dir = render_role(spec, out, molecule=molecule)
    files = sum(1 for p in role_dir.rglob("*") if p.is_file())
    emit(
        f"wrote {role_dir} ({files} files)"
        + ("" if generic else f" from profile {spec.profile_name}, {len(spec.settings)} keys")
    )


@app.command()
def push(
    profile: ProfileArg,
    inventory: Annotated[str, typer.Option("--inventory", "-i", help="Ansible inventory (file or directory).")],
    limit: LimitOpt = None,
    forks: ForksOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Ansible check mode: report, write nothing.")] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Apply a profile across a fleet: its role, run by ansible-runner, one module run per host.

    Ends with a per-host table (ok / changed keys / failed with reason / unreachable). Exit 0 if every host is ok or
    changed, 1 if any failed or was unreachable (the others still ran; a failed host was put back as it was).
    """
    result = _fleet_run(profile, inventory, limit, forks, check=check, show_progress=fmt is Format.text)
    _print_push(result, fmt)
    raise typer.Exit(EXIT_ERROR if result.failed else EXIT_OK)


def _fleet_spec(profile: str) -> object:
    from .ansible.render import spec_from_verdict
    from .output import diagnostic_line, emit
    from .profile import load_profile
    from .validate import validate as check

    verdict = check(load_profile(profile))
    _fail_on_errors(verdict)
    for diagnostic in verdict.warnings:
        emit(diagnostic_line(diagnostic, sys.stderr), err=True)
    return spec_from_verdict(verdict)


def _fleet_run(
    profile: str, inventory: str, limit: str | None, forks: int | None, *, check: bool, show_progress: bool
) -> object:
    """Validate, render and run; a rich progress bar over hosts on a terminal."""
    from .ansible.fleet import run_spec
    from .output import is_terminal

    spec = _fleet_spec(profile)
    if not (show_progress and is_terminal(sys.stderr)):
        return run_spec(spec, inventory, limit=limit, forks=forks, check=check)  # type: ignore[arg-type]
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
        task = progress.add_task("check" if check else "push", total=None)

        def started(hosts: list[str]) -> None:
            progress.update(task, total=len(hosts))

        def finished(host: object) -> None:
            progress.update(task, advance=1, description=f"{getattr(host, 'host', '')}: {getattr(host, 'status', '')}")

        return run_spec(
            spec,
            inventory,
            limit=limit,
            forks=forks,
            check=check,  # type: ignore[arg-type]
            on_start=started,
            on_host=finished,
        )


def _print_push(result: object, fmt: Format) -> None:
    from .output import emit, emit_json, table

    if fmt is Format.json:
        emit_json(result.as_dict())  # type: ignore[attr-defined]
        return
    rows = []
    for host in result.hosts:  # type: ignore[attr-defined]
        if host.status in ("changed", "ok"):
            keys = host.changed_keys
            detail = ", ".join(keys) if len(keys) <= 4 else ", ".join(keys[:4]) + f", ... (+{len(keys) - 4})"
            if host.file_changed and not keys:
                detail = "sysctl.d file rewritten"
            rows.append((host.host, host.status, len(keys), detail or "up to date"))
        elif host.status == "failed":
            reasons = sorted({info.get("reason", "error") for info in host.failed_keys.values()})
            rows.append((host.host, "failed" + (f" ({', '.join(reasons)})" if reasons else ""), "-", host.message))
        else:
            rows.append((host.host, host.status, "-", host.message))
    verb = "would change" if result.check else "changed"  # type: ignore[attr-defined]
    table(
        ["host", "status", "keys", "detail"],
        rows,
        status_column=1,
        title=f"profile {result.profile}" + (" (check mode)" if result.check else ""),
    )  # type: ignore[attr-defined]
    counts = result.counts()  # type: ignore[attr-defined]
    emit(
        f"{len(result.hosts)} hosts: {counts['changed']} {verb}, {counts['ok']} up to date, "  # type: ignore[attr-defined]
        f"{counts['failed']} failed, {counts['unreachable']} unreachable "
        f"({result.seconds:.1f} s)"
    )  # type: ignore[attr-defined]


def _fleet_diff(profile: str | None, inventory: str, limit: str | None, forks: int | None, fmt: Format) -> int:
    """``tcptune diff PROFILE -i INVENTORY``: the module in check mode on every host; per-host, per-key drift.

    Exit codes as the local diff: 0 no drift, 2 drift, 1 error (a host failed or was unreachable).
    """
    from .output import emit, emit_json, table

    if profile is None:
        raise typer.BadParameter("a fleet diff needs a PROFILE", param_hint="PROFILE")
    result = _fleet_run(profile, inventory, limit, forks, check=True, show_progress=fmt is Format.text)
    code = EXIT_ERROR if result.failed else EXIT_DRIFT if result.drifted else EXIT_OK  # type: ignore[attr-defined]
    if fmt is Format.json:
        data = result.as_dict()  # type: ignore[attr-defined]
        data["drift"] = bool(result.drifted)  # type: ignore[attr-defined]
        emit_json(data)
        return code
    rows = []
    for host in result.hosts:  # type: ignore[attr-defined]
        if host.status == "unreachable":
            rows.append((host.host, "-", "-", "-", f"unreachable: {host.message}"))
            continue
        for key in host.drift:
            entry = host.keys[key]
            status = {"changed": "differs", "not-written": "differs"}.get(entry.get("status"), entry.get("status"))
            rows.append((host.host, key, _flat(entry.get("before")), entry.get("desired"), status))
        if host.file_changed:
            rows.append((host.host, "(sysctl.d file)", "-", "-", "differs"))
        if host.status == "failed" and not host.keys:
            rows.append((host.host, "-", "-", "-", f"failed: {host.message}"))
        elif not host.drift and not host.file_changed:
            rows.append((host.host, "-", "-", "-", "ok"))
    table(
        ["host", "key", "live", "desired", "status"],
        rows,
        status_column=4,
        title=f"profile {result.profile} across {len(result.hosts)} hosts",
    )  # type: ignore[attr-defined]
    emit(
        f"{len(result.drifted)} of {len(result.hosts)} hosts drifted"  # type: ignore[attr-defined]
        + (f", {len(result.failed)} failed or unreachable" if result.failed else "")
    )  # type: ignore[attr-defined]
    return code


# ---- evidence: status, recommend (issue 5) -------------------------------------------------------------------------


@app.command()
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
    proc_root: ProcRootOpt = "/proc/sys",
    proc_net: ProcNetOpt = "/proc/net",
    source: SourceOpt = "auto",
) -> None:
    """TCP sockets by state, port and remote address; orphan, TIME_WAIT and port-range headroom; overflow counters.

    Counts the sockets of the current network namespace (a container sees its own) through sock_diag netlink,
    falling back to /proc/net/tcp where netlink is unavailable.
    """
    import time

    from .sockets import take_evidence

    if watch is not None and not watch > 0:
        raise typer.BadParameter("must be a positive number of seconds", param_hint="--watch")
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
    evidence: object, fmt: StatusFormat, top: int, ports: list[int], output: str | None, watch: float | None
) -> None:
    import json

    from .output import is_terminal, prometheus_text, status_text
    from .sockets import status_dict

    data = status_dict(evidence, top=top, ports=ports)  # type: ignore[arg-type]
    if fmt is StatusFormat.json:
        text = (
            json.dumps(data, separators=(",", ":")) + "\n"
            if watch and not output
            else json.dumps(data, indent=2) + "\n"
        )
    elif fmt is StatusFormat.prometheus:
        text = prometheus_text(data)
    else:
        text = status_text(data)
    if output:
        _write_output(output, text)
        return
    if watch and fmt is StatusFormat.text:
        if is_terminal():
            text = "\x1b[H\x1b[2J" + f"every {watch:g} s; Ctrl-C to stop\n" + text
        else:
            text += "\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def _write_output(path: str, text: str) -> None:
    """Write a file the user named (atomically); an OSError becomes one line naming the path, exit 1."""
    import os

    from .persist import atomic_write

    if os.path.isdir(path):
        raise TcptuneError(f"cannot write {path}: it is a directory (name a file in it)")
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise TcptuneError(f"cannot write {path}: {_os_problem(exc, path)}") from None


def _os_problem(exc: OSError, path: str) -> str:
    import os

    if isinstance(exc, FileNotFoundError) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return f"no such directory {os.path.dirname(os.path.abspath(path))}"
    return (exc.strerror or str(exc)).lower()


@app.command()
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
    proc_root: ProcRootOpt = "/proc/sys",
    proc_net: ProcNetOpt = "/proc/net",
    state_dir: StateDirOpt = "/var/lib/tcptune",
    source: SourceOpt = "auto",
) -> None:
    """Turn socket states and kernel counters into findings: the numbers, the profile keys to change, and why."""
    import os
    import time

    from .advise import Thresholds, advise, suggested_values
    from .output import emit, emit_json, findings_text
    from .sockets import source_label, status_dict, take_evidence

    if sample is not None and not sample > 0:
        raise typer.BadParameter("must be a positive number of seconds", param_hint="--sample")
    if write and os.path.exists(write) and not force:
        raise TcptuneError(f"{write} exists; use --force to replace it")
    previous = None
    if sample is not None:
        previous = take_evidence(proc_root=proc_root, proc_net=proc_net, source=source)
        time.sleep(sample)
    evidence = take_evidence(
        proc_root=proc_root,
        proc_net=proc_net,
        source=source,
        previous=previous,
        owners_min_close_wait=min_sockets if owners else None,
    )
    findings = advise(evidence, Thresholds(min_sockets=min_sockets))
    suggested = suggested_values(findings)
    written = None
    if write and suggested:
        written = _write_recommended_profile(write, findings, base or _last_applied_base(state_dir), evidence)
    current = {key: evidence.sysctls.get(key) for key in suggested}
    if fmt is Format.json:
        emit_json(
            {
                "findings": [f.as_dict() for f in findings],
                "suggested": suggested,
                "current": current,
                "written": written,
                "evidence": status_dict(evidence, top=10),
            }
        )
        return
    emit(
        f"evidence: {evidence.counts.total} TCP sockets in {evidence.netns or 'this network namespace'} "
        f"via {source_label(evidence)}" + (f"; counters over {evidence.window:.1f} s" if evidence.window else "")
    )
    emit()
    sys.stdout.write(findings_text([f.as_dict() for f in findings], current))
    if write and not suggested:
        emit(f"no finding suggests a sysctl value; {write} not written", err=True)
    elif written:
        emit(f"wrote {written['path']} (extends {written['extends']}): review it, then 'tcptune diff {write}'")


def _last_applied_base(state_dir: str) -> str:
    """The profile last applied here (a file that still exists, or a built-in name), else 'base'."""
    import os

    from .journal import StateDir
    from .profile import find_profile

    try:
        record = StateDir(state_dir).read_last_applied() or {}
    except TcptuneError:
        return "base"
    profile = record.get("profile") or {}
    source, name = profile.get("source"), profile.get("name")
    if isinstance(source, str) and os.path.isfile(source):
        return os.path.abspath(source)
    if isinstance(name, str) and find_profile(name) is not None:
        return name
    return "base"


def _write_recommended_profile(path: str, findings: list, base: str, evidence: object) -> dict[str, str]:
    """Render the suggestions as a profile, prove it valid (as the file it will be), then write it atomically."""
    import os
    import tempfile
    import time

    from .advise import profile_name_for, profile_text
    from .persist import atomic_write
    from .profile import is_path_ref, load_profile
    from .validate import validate as check

    directory = os.path.dirname(os.path.abspath(path))
    extends = base
    if is_path_ref(base):  # a file: refer to it from where the new profile lives
        extends = os.path.relpath(os.path.abspath(base), directory)
        if not extends.startswith("."):
            extends = "./" + extends
    stem = os.path.splitext(os.path.basename(path))[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    context = f"{getattr(evidence, 'netns', None) or 'this host'}, {when}"
    text = profile_text(findings, name=profile_name_for(stem), extends=extends, context=context)
    assert text is not None
    if os.path.isdir(path):
        raise TcptuneError(f"cannot write {path}: it is a directory (name a file in it)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tcptune-recommend-", suffix=".yaml", dir=directory)
    except OSError as exc:
        raise TcptuneError(f"cannot write {path}: {_os_problem(exc, path)}") from None
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise TcptuneError(f"cannot write {path}: {_os_problem(exc, path)}") from None
        verdict = check(load_profile(probe))
    finally:
        os.unlink(probe)
    if verdict.errors:  # report them against the file the user named, not the probe
        raise ProfileError(
            [
                d._replace(location=d.location._replace(file=path)) if d.location.file == probe else d
                for d in verdict.errors
            ]
        )
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise TcptuneError(f"cannot write {path}: {_os_problem(exc, path)}") from None
    return {"path": path, "extends": extends, "name": profile_name_for(stem)}


# ---- shared helpers for commands -------------------------------------------------------------------------------


def _fail_on_errors(verdict: object) -> None:
    """Stop a command that needs a valid profile, reporting every error with its location."""
    errors = getattr(verdict, "errors", [])
    if errors:
        raise ProfileError(list(errors))


# ---- entry point: the one place errors become messages and exit codes --------------------------------------------


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command being run: typer inspects the signature of every registered command at each
    start (about 30 ms for all of them), which would cost diff and validate more than their own work."""
    import copy

    name = args[0] if args else ""
    if name.startswith("-") or app.registered_groups:
        return app
    wanted = [
        c
        for c in app.registered_commands
        if (c.name or (c.callback.__name__.replace("_", "-") if c.callback else None)) == name
    ]
    if len(wanted) != 1:
        return app  # unknown command: the full app reports it with the list of commands
    single = copy.copy(app)
    single.registered_commands = wanted
    return single


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; never lets a traceback reach the user."""
    from .output import diagnostic_line, emit

    try:
        args = sys.argv[1:] if argv is None else argv
        result = _app_for(args)(args=args, prog_name="tcptune", standalone_mode=False)
        return result if isinstance(result, int) else EXIT_OK
    except ProfileError as exc:
        for diagnostic in exc.diagnostics:
            emit(diagnostic_line(diagnostic, sys.stderr), err=True)
        return exc.exit_code
    except TcptuneError as exc:
        emit(f"tcptune: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        emit("tcptune: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # typer/click usage errors are duck-typed: their classes are private
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):
            if hasattr(exc, "show"):
                exc.show()
            else:
                emit(f"tcptune: error: {exc.format_message()}", err=True)
            return EXIT_USAGE
        if type(exc).__name__ == "Abort":
            emit("tcptune: aborted", err=True)
            return EXIT_ERROR
        emit(f"tcptune: internal error: {type(exc).__name__}: {exc}", err=True)
        emit("This is a bug in tcptune; please report it with the command you ran.", err=True)
        return EXIT_INTERNAL


def main() -> None:
    sys.exit(run())
