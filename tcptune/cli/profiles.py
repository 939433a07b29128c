"""Commands about profiles and the key catalog: validate, show, explain, schema, profiles. Nothing here reads the
live kernel."""

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from .. import catalog
from ..errors import Diagnostic, Location, ProfileError, TcptuneError
from ..explain import describe_key, key_as_dict
from ..load import load_valid, read_profile
from ..output import emit, emit_diagnostics, emit_json, emit_wrapped, table, terminal_columns
from ..persist import render_sysctl_conf
from ..profile import Profile, Setting, builtin_names, find_profile, library_dir, load_profile
from ..schema import profile_schema
from ..validate import validate as check
from .complete import complete_key, complete_profile
from .options import EXIT_ERROR, EXIT_OK, Format, FormatOpt, ProfileArg, ShowFormat


def validate(
    profiles: Annotated[
        list[str], typer.Argument(autocompletion=complete_profile, help="Profile files or built-in names.")
    ],
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
        name, diagnostics, raw = _diagnostics(ref, container=container)
        bad = any(d.is_error or strict for d in diagnostics)
        failed |= bad
        results.append(
            {
                "profile": name,
                "source": ref,
                "valid": not bad,
                "diagnostics": [d.as_dict() for d in diagnostics],
                "raw": raw,
            }
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
            if raw:
                emit(f"{ref}: {len(raw)} raw key(s) {UNCHECKED}: " + ", ".join(raw))
    if fmt is Format.json:
        emit_json({"valid": not failed, "profiles": results})
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


UNCHECKED = "unchecked by the catalog"
"""How every output marks the keys of a profile's raw: mapping."""


def _diagnostics(ref: str, *, container: bool) -> tuple[str, list[Diagnostic], list[str]]:
    """The profile's name (``ref`` if it cannot be loaded), everything validation found, and its raw keys."""
    try:
        verdict = check(read_profile(ref), container=container)
    except ProfileError as exc:
        return ref, exc.diagnostics, []
    except TcptuneError as exc:
        return ref, [Diagnostic("error", Location(ref), str(exc))], []
    return verdict.profile.name, verdict.diagnostics, sorted(verdict.raw)


def show(profile: ProfileArg, fmt: Annotated[ShowFormat, typer.Option("--format", "-f")] = ShowFormat.text) -> None:
    """Print the fully resolved profile (after 'extends') and where each value came from."""
    verdict = load_valid(profile)
    resolved = verdict.profile
    everything = {**resolved.settings, **resolved.raw}
    items = sorted(everything.items())
    rows = [(key, verdict.values[key], s.origin, str(s.location)) for key, s in items]
    if fmt is ShowFormat.json:
        emit_json(
            {
                "name": resolved.name,
                "description": resolved.description,
                "path": str(resolved.path),
                "extends": list(resolved.extends),
                "chain": list(resolved.chain),
                "fingerprint": resolved.fingerprint(),
                "settings": {
                    k: {"value": v, "origin": o, "location": loc, "raw": k in verdict.raw} for k, v, o, loc in rows
                },
            }
        )
    elif fmt is ShowFormat.sysctl:
        sys.stdout.write(render_sysctl_conf(resolved.name, resolved.fingerprint(), verdict.values))
    else:
        emit_wrapped(f"profile: {resolved.name}  ({resolved.path})")
        if resolved.description:
            emit_wrapped(f"description: {resolved.description}")
        emit(f"chain: {' -> '.join(resolved.chain)}")
        by_chain = sorted((s for _key, s in items), key=lambda s: _chain_index(resolved, s))
        files = list(dict.fromkeys(s.location.file for s in by_chain))
        if files and files != [str(resolved.path)]:
            emit_wrapped("files: " + ", ".join(files))
        emit(f"fingerprint: {resolved.fingerprint()}")
        where = _short_locations(s.location for _key, s in items)
        table(
            ["key", "value", "from", "location"],
            [(_marked(key, verdict.raw), verdict.values[key], s.origin, where[s.location]) for key, s in items],
        )
        if verdict.raw:
            emit(f"raw: {len(verdict.raw)} key(s) {UNCHECKED}, checked against the running kernel by diff and apply")


def _chain_index(profile: Profile, setting: Setting) -> int:
    return profile.chain.index(setting.origin) if setting.origin in profile.chain else len(profile.chain)


def _short_locations(locations: Iterable[Location]) -> dict[Location, str]:
    """``file:line`` with the file's base name where that names one file (the files are listed above the table),
    so that a table of keys fits 80 columns; the whole path where two files share a base name."""
    locations = list(locations)
    directories: dict[str, set[str]] = {}
    for location in locations:
        directories.setdefault(os.path.basename(location.file), set()).add(location.file)
    short = {}
    for location in locations:
        name = os.path.basename(location.file)
        file = name if len(directories[name]) == 1 else location.file
        short[location] = f"{file}:{location.line}" if location.line else file
    return short


def _marked(key: str, raw: frozenset[str]) -> str:
    return f"{key} (raw)" if key in raw else key


def explain(
    key: Annotated[
        str | None, typer.Argument(autocompletion=complete_key, help="A sysctl key, full or bare name.")
    ] = None,
    list_keys: Annotated[bool, typer.Option("--list", help="List every key tcptune knows.")] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Explain one key: what it controls, unit, range, default, netns scope, history, advice and pitfalls."""
    if list_keys or key is None:
        keys = catalog.all_keys()
        if fmt is Format.json:
            emit_json([key_as_dict(k) for k in keys])
        elif terminal_columns() is not None:  # names up to 51 characters leave a summary column no room: stacked
            for k in keys:
                emit(f"{k.name}  ({k.scope}{', removed' if k.removed else ''}; default {k.default or '-'})")
                emit_wrapped(f"    {k.summary}", indent="    ")
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
    """List the profiles a name can refer to, and where each comes from: the directories of $TCPTUNE_PROFILE_PATH
    first (a name found there hides a built-in profile of the same name), then the built-in library."""
    library = library_dir()
    found = []
    for name in builtin_names():
        path = find_profile(name)
        if path is None:
            continue
        built_in = library is not None and path.parent == library
        try:
            loaded = load_profile(path)
            extends, keys, description = ", ".join(loaded.extends) or "-", str(len(loaded.settings)), loaded.description
        except ProfileError as exc:
            extends, keys, description = "?", "?", f"unreadable: {exc.diagnostics[0].message}"
        found.append((name, extends, keys, built_in, path, description))
    if fmt is Format.json:
        emit_json(
            [
                {
                    "name": name,
                    "extends": extends,
                    "keys": keys,
                    "source": "built-in" if built_in else "path",
                    "path": str(path),
                    "description": description,
                }
                for name, extends, keys, built_in, path, description in found
            ]
        )
        return
    rows = [
        (name, extends, keys, "built-in" if built_in else _directory_words(path, library), description)
        for name, extends, keys, built_in, path, description in found
    ]
    table(["name", "extends", "keys", "from", "description"], rows)
    if not all(entry[3] for entry in found):
        emit_wrapped("names are looked up in $TCPTUNE_PROFILE_PATH first, then in the built-in library")


def _directory_words(path: Path, library: Path | None) -> str:
    """A $TCPTUNE_PROFILE_PATH profile's directory, and whether it hides a built-in profile of the same name."""
    hides = library is not None and any((library / f"{path.stem}{suffix}").is_file() for suffix in (".yaml", ".yml"))
    return f"{path.parent} (hides the built-in)" if hides else str(path.parent)
