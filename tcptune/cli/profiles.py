"""Commands about profiles and the key catalog: validate, show, explain, schema, profiles. Nothing here reads the
live kernel."""

import sys
from typing import Annotated

import typer

from .. import catalog
from ..errors import Diagnostic, Location, ProfileError, TcptuneError
from ..explain import describe_key, key_as_dict
from ..load import load_valid, read_profile
from ..output import emit, emit_diagnostics, emit_json, table
from ..persist import render_sysctl_conf
from ..profile import builtin_names, load_profile
from ..schema import profile_schema
from ..validate import validate as check
from .options import EXIT_ERROR, EXIT_OK, Format, FormatOpt, ProfileArg, ShowFormat


def validate(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or built-in names.")],
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    container: Annotated[
        bool, typer.Option("--container", help="Warn about global keys (read-only in a container).")
    ] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Check profiles against the key catalog. Exit 0 if all are valid, 1 if any is not."""
    results = []
    failed = False
    for ref in profiles:
        name, diagnostics = _diagnostics(ref, container=container)
        bad = any(d.is_error or strict for d in diagnostics)
        failed |= bad
        results.append(
            {"profile": name, "source": ref, "valid": not bad, "diagnostics": [d.as_dict() for d in diagnostics]}
        )
        if fmt is Format.text:
            emit_diagnostics(diagnostics, err=False)
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


def _diagnostics(ref: str, *, container: bool) -> tuple[str, list[Diagnostic]]:
    """The profile's name (``ref`` if it cannot be loaded) and everything validation found."""
    try:
        verdict = check(read_profile(ref), container=container)
    except ProfileError as exc:
        return ref, exc.diagnostics
    except TcptuneError as exc:
        return ref, [Diagnostic("error", Location(ref), str(exc))]
    return verdict.profile.name, verdict.diagnostics


def show(profile: ProfileArg, fmt: Annotated[ShowFormat, typer.Option("--format", "-f")] = ShowFormat.text) -> None:
    """Print the fully resolved profile (after 'extends') and where each value came from."""
    verdict = load_valid(profile)
    resolved = verdict.profile
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


def explain(
    key: Annotated[str | None, typer.Argument(help="A sysctl key, full or bare name.")] = None,
    list_keys: Annotated[bool, typer.Option("--list", help="List every key tcptune knows.")] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Explain one key: what it controls, unit, range, default, netns scope, history, advice and pitfalls."""
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
    entry = catalog.get(name) if name is not None else None
    if entry is None:
        raise TcptuneError(f"{key}: unknown sysctl key ({_unknown_key_hint(key)})")
    if fmt is Format.json:
        emit_json(key_as_dict(entry))
    else:
        emit(describe_key(entry))


def _unknown_key_hint(key: str) -> str:
    options = catalog.ambiguous(key)
    if options:
        return "write the full name: " + " or ".join(options)
    suggestions = catalog.suggest(key)
    if suggestions:
        return "did you mean " + " or ".join(suggestions) + "?"
    return "run 'tcptune explain --list'"


def schema() -> None:
    """Print the JSON Schema of profile files (for editors: see README)."""
    emit_json(profile_schema())


def list_profiles(fmt: FormatOpt = Format.text) -> None:
    """List the built-in profile library."""
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
