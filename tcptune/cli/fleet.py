"""Commands for fleets through Ansible: role, push, and ``diff -i`` (the live family's diff hands over to
``fleet_diff``). Ansible itself is imported only when a run starts (tcptune.ansible.fleet)."""

from typing import Annotated

import typer

from ..ansible.fleet import FleetResult, run_spec
from ..ansible.render import RoleSpec, generic_spec, render_role, spec_from_verdict
from ..load import load_valid
from ..output import emit, emit_diagnostics, emit_json, table, with_progress
from .complete import complete_profile
from .options import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, ForksOpt, Format, FormatOpt, LimitOpt, ProfileArg


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
) -> None:
    """Write a self-contained Ansible role for a profile: roles/tcptune_<name>/ (ansible-core only, no collections)."""
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
    result = _run(profile, inventory, limit, forks, check=check, show_progress=fmt is Format.text)
    if fmt is Format.json:
        emit_json(result.as_dict())
    else:
        verb = "would change" if result.check else "changed"
        table(
            ["host", "status", "keys", "detail"],
            result.push_rows(),
            status_column=1,
            title=f"profile {result.profile}" + (" (check mode)" if result.check else ""),
        )
        counts = result.counts()
        emit(
            f"{len(result.hosts)} hosts: {counts['changed']} {verb}, {counts['ok']} up to date, "
            f"{counts['failed']} failed, {counts['unreachable']} unreachable "
            f"({result.seconds:.1f} s)"
        )
    raise typer.Exit(EXIT_ERROR if result.failed else EXIT_OK)


def fleet_diff(profile: str | None, inventory: str, limit: str | None, forks: int | None, fmt: Format) -> int:
    """``tcptune diff PROFILE -i INVENTORY``: the module in check mode on every host; per-host, per-key drift.

    Returns the exit code, as the local diff's: 0 no drift, 2 drift, 1 error (a host failed or was unreachable).
    """
    if profile is None:
        raise typer.BadParameter("a fleet diff needs a PROFILE", param_hint="PROFILE")
    result = _run(profile, inventory, limit, forks, check=True, show_progress=fmt is Format.text)
    if fmt is Format.json:
        emit_json({**result.as_dict(), "drift": bool(result.drifted)})
    else:
        table(
            ["host", "key", "live", "desired", "status"],
            result.drift_rows(),
            status_column=4,
            title=f"profile {result.profile} across {len(result.hosts)} hosts",
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


def _run(
    profile: str, inventory: str, limit: str | None, forks: int | None, *, check: bool, show_progress: bool
) -> FleetResult:
    """Validate, render and run; a progress bar over the hosts when asked for and stderr is a terminal."""
    spec = _spec(profile)
    if not show_progress:
        return run_spec(spec, inventory, limit=limit, forks=forks, check=check)
    return with_progress(
        "check" if check else "push",
        lambda started, advanced: run_spec(
            spec,
            inventory,
            limit=limit,
            forks=forks,
            check=check,
            on_start=lambda hosts: started(len(hosts)),
            on_host=lambda host: advanced(f"{host.host}: {host.status}"),
        ),
    )
