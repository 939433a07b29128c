"""Commands for fleets through Ansible: role, push, and ``diff -i`` (the live family's diff hands over to
``fleet_diff``). Ansible itself is imported only when a run starts (tcptune.ansible.fleet)."""

from collections.abc import Callable
from typing import Annotated

import typer

from ..ansible.fleet import (
    FleetResult,
    HostResult,
    RunSettings,
    ansible_playbook,
    ansible_version,
    inventory_hosts,
    run_action,
    run_settings,
    run_spec,
)
from ..ansible.render import RoleSpec, generic_spec, render_collection, render_role, spec_from_verdict
from ..load import load_valid
from ..output import emit, emit_diagnostics, emit_json, table, with_progress
from .complete import complete_profile
from .options import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_OK,
    ForksOpt,
    Format,
    FormatOpt,
    LimitOpt,
    ProfileArg,
    YesOpt,
)
from .transaction import confirm


def role(
    profile: Annotated[
        str | None,
        typer.Argument(autocompletion=complete_profile, help="Profile file or built-in name (omit with --generic)."),
    ] = None,
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
    collection: Annotated[
        bool,
        typer.Option(
            "--collection",
            help="Write the Ansible collection tcptune.tuning instead (module, core, generic role, and PROFILE's role "
            "if given) under OUT/ansible_collections/tcptune/tuning; build it with 'ansible-galaxy collection build'.",
        ),
    ] = False,
) -> None:
    """Write a self-contained Ansible role for a profile: roles/tcptune_<name>/ (ansible-core only, no collections).

    Examples: tcptune role web-server --out roles; tcptune role --generic; tcptune role web-server --collection -o build
    """
    if collection:
        specs = [_spec(profile)] if profile is not None else []
        root = render_collection(out, specs)
        emit(
            f"wrote {root} (collection tcptune.tuning, roles: {', '.join(['tcptune', *(s.role_name for s in specs)])})"
        )
        return
    if profile is None and not generic:
        raise typer.BadParameter("give a PROFILE or --generic")
    if profile is not None and generic:
        raise typer.BadParameter("give a PROFILE or --generic, not both")
    spec = _spec(profile) if profile is not None else generic_spec()
    role_dir = render_role(spec, out, molecule=molecule)
    files = sum(1 for p in role_dir.rglob("*") if p.is_file())
    emit(
        f"wrote {role_dir} ({files} files)"
        + ("" if generic else f" from profile {spec.profile_name}, {len(spec.settings)} keys")
    )


VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Say which ansible-playbook runs, the forks and SSH settings; whole messages of failed hosts.",
    ),
]
SkipMissingOpt = Annotated[
    bool, typer.Option("--skip-missing", help="Skip keys a host's kernel lacks (default: that host fails).")
]
SkipReadonlyOpt = Annotated[
    bool,
    typer.Option("--skip-readonly", help="Skip keys read-only on a host, e.g. host-wide keys in a container."),
]


def push(
    profile: ProfileArg,
    inventory: Annotated[str, typer.Option("--inventory", "-i", help="Ansible inventory (file or directory).")],
    limit: LimitOpt = None,
    forks: ForksOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Ansible check mode: report, write nothing.")] = False,
    yes: YesOpt = False,
    skip_missing: SkipMissingOpt = False,
    skip_readonly: SkipReadonlyOpt = False,
    verbose: VerboseOpt = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Apply a profile across a fleet, as 'tcptune apply' on each host: its role, run by ansible-runner, one module
    run per host on tcptune's engine (each host records a generation: 'tcptune history' there lists it).

    Asks for confirmation on a terminal (without one: --yes). Ends with one line per host (ok / changed keys /
    failed with a short reason / unreachable; --format json and --verbose have the whole messages). Exit 0 if every
    host is ok or changed, 1 if any failed or was unreachable (the others still ran; a failed host was put back).

    Example: tcptune push web-server -i inventory.yml --limit web --check
    """
    spec = _spec(profile)
    spec.owner, spec.skip_missing, spec.skip_readonly = "", skip_missing, skip_readonly
    settings = run_settings(forks)
    _announce(verbose)
    if not check:
        _confirm_fleet(yes, f"push profile {spec.profile_name} to", inventory, limit)
    result = _run_shown(
        "check" if check else "push",
        fmt,
        lambda on_start, on_host: run_spec(
            spec, inventory, limit=limit, settings=settings, check=check, on_start=on_start, on_host=on_host
        ),
        settings if verbose else None,
    )
    _show_hosts(result, fmt, verbose, f"profile {result.profile}")
    raise typer.Exit(EXIT_ERROR if result.failed else EXIT_OK)


def fleet_rollback(
    inventory: str, to: int | None, limit: str | None, forks: int | None, yes: bool, fmt: Format, verbose: bool = False
) -> int:
    """``tcptune rollback -i INVENTORY [--to N]``: every host back to its generation N (default: each host's previous
    one), as a new generation there; the same per-host table and exit codes as push."""
    settings = run_settings(forks)
    _announce(verbose)
    target = "the previous generation" if to is None else f"generation {to}"
    _confirm_fleet(yes, f"roll back to {target} on", inventory, limit)
    result = _run_shown(
        "rollback",
        fmt,
        lambda on_start, on_host: run_action(
            inventory, "rollback", to=to, limit=limit, settings=settings, on_start=on_start, on_host=on_host
        ),
        settings if verbose else None,
    )
    _show_hosts(result, fmt, verbose, f"rollback to {target}")
    return EXIT_ERROR if result.failed else EXIT_OK


def _announce(verbose: bool) -> None:
    if verbose:
        playbook = ansible_playbook()
        emit(f"running {playbook} (ansible-core {ansible_version(playbook)})", err=True)


def _confirm_fleet(yes: bool, what: str, inventory: str, limit: str | None) -> None:
    if yes:  # the run reads the inventory while ansible-playbook starts; no need to wait for it here
        return
    hosts = inventory_hosts(inventory, limit)
    shown = ", ".join(hosts[:5]) + (f", ... ({len(hosts)} hosts)" if len(hosts) > 5 else "")
    confirm(yes, f"{what} {len(hosts)} host(s) ({shown})")


def _run_shown(
    label: str,
    fmt: Format,
    job: Callable[[Callable[[list[str]], None] | None, Callable[[HostResult], None] | None], FleetResult],
    described: RunSettings | None = None,
) -> FleetResult:
    """Run ``job(on_start, on_host)`` with a progress bar that advances as each host finishes (text on a terminal);
    with ``described`` (--verbose), first say how the hosts are reached, once their number is known."""

    def describe(hosts: list[str]) -> None:
        if described is not None:
            emit(described.describe(len(hosts)), err=True)

    if fmt is not Format.text:
        return job(describe if described is not None else None, None)

    def start(started: Callable[[int], None], hosts: list[str]) -> None:
        describe(hosts)
        started(len(hosts))

    return with_progress(
        label,
        lambda started, advanced: job(
            lambda hosts: start(started, hosts), lambda host: advanced(f"{host.host}: {host.status}")
        ),
    )


def _show_hosts(result: FleetResult, fmt: Format, verbose: bool, title: str) -> None:
    if fmt is Format.json:
        emit_json(result.as_dict())
        return
    check = " (check mode: nothing was changed)" if result.check else ""
    table(
        ["host", "status", "keys", "gen", "detail"],
        result.push_rows(verbose),
        status_column=1,
        title=title + check,
    )
    counts = result.counts()
    verb = "would change" if result.check else "changed"
    emit(
        f"{len(result.hosts)} hosts: {counts['changed']} {verb}, {counts['ok']} up to date, "
        f"{counts['failed']} failed, {counts['unreachable']} unreachable ({result.seconds:.1f} s)" + check
    )


def fleet_diff(profile: str | None, inventory: str, limit: str | None, forks: int | None, fmt: Format) -> int:
    """``tcptune diff PROFILE -i INVENTORY``: the module in check mode on every host; per-host, per-key drift.

    Returns the exit code, as the local diff's: 0 no drift, 2 drift, 1 error (a host failed or was unreachable).
    """
    if profile is None:
        raise typer.BadParameter("a fleet diff needs a PROFILE", param_hint="PROFILE")
    spec = _spec(profile)
    spec.owner = ""
    settings = run_settings(forks)
    result = _run_shown(
        "check",
        fmt,
        lambda on_start, on_host: run_spec(
            spec, inventory, limit=limit, settings=settings, check=True, on_start=on_start, on_host=on_host
        ),
    )
    if fmt is Format.json:
        emit_json({**result.as_dict(), "drift": bool(result.drifted)})
    else:
        table(
            ["host", "key", "live", "desired", "status"],
            result.drift_rows(),
            status_column=4,
            title=f"profile {result.profile} across {len(result.hosts)} hosts (check mode: nothing is changed)",
            keep=(0, 1),
        )
        emit(
            f"{len(result.drifted)} of {len(result.hosts)} hosts drifted"
            + (f", {len(result.failed)} failed or unreachable" if result.failed else "")
        )
    return drift_exit_code(result)


def drift_exit_code(result: FleetResult) -> int:
    return EXIT_ERROR if result.failed else EXIT_DRIFT if result.drifted else EXIT_OK


def _spec(profile: str) -> RoleSpec:
    verdict = load_valid(profile)
    emit_diagnostics(verdict.warnings)
    return spec_from_verdict(verdict)
