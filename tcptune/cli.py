"""The typer app: parse arguments, call one core function per command, render. No domain logic here.

Exit codes (same for every command): 0 success, 1 error (invalid profile, failed apply, ...), 2 drift found
(``diff`` only), 3 an apply failed and not everything could be restored, 64 bad command line, 70 internal error.
"""

from __future__ import annotations

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


ProfileArg = Annotated[str, typer.Argument(
    help="Profile file, or the name of a built-in profile (see 'tcptune profiles').")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tcptune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Declarative Linux TCP tuning."""


# ---- profiles, catalog, validation --------------------------------------------------------------------------------


@app.command()
def validate(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or built-in names.")],
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    container: Annotated[bool, typer.Option(
        "--container", help="Warn about global keys (read-only in a container).")] = False,
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
        results.append({"profile": name, "source": ref, "valid": not bad,
                        "diagnostics": [d.as_dict() for d in diagnostics]})
        if fmt is Format.text:
            for diagnostic in diagnostics:
                emit(diagnostic_line(diagnostic))
            errors = sum(d.is_error for d in diagnostics)
            warnings = len(diagnostics) - errors
            verdict_text = "invalid" if bad else "ok"
            emit(f"{ref}: {verdict_text} ({errors} error{'s' * (errors != 1)}, "
                 f"{warnings} warning{'s' * (warnings != 1)})")
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
        emit_json({"name": resolved.name, "description": resolved.description, "path": str(resolved.path),
                   "extends": list(resolved.extends), "chain": list(resolved.chain),
                   "fingerprint": resolved.fingerprint(),
                   "settings": {k: {"value": v, "origin": o, "location": loc} for k, v, o, loc in rows}})
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
            table(["key", "scope", "default", "summary"],
                  [(k.name, k.scope + (" (removed)" if k.removed else ""), k.default or "-", k.summary) for k in keys])
        return
    name = catalog.canonical_name(key)
    if name is None:
        options = catalog.ambiguous(key)
        hint = ("write the full name: " + " or ".join(options)) if options else (
            "did you mean " + " or ".join(catalog.suggest(key)) + "?" if catalog.suggest(key)
            else "run 'tcptune explain --list'")
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


# ---- shared helpers for commands -------------------------------------------------------------------------------


def _fail_on_errors(verdict: object) -> None:
    """Stop a command that needs a valid profile, reporting every error with its location."""
    errors = getattr(verdict, "errors", [])
    if errors:
        raise ProfileError(list(errors))


# ---- entry point: the one place errors become messages and exit codes --------------------------------------------


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; never lets a traceback reach the user."""
    from .output import diagnostic_line, emit

    try:
        result = app(args=argv, prog_name="tcptune", standalone_mode=False)
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
