"""The tcptune app: its root options, the table of commands, and ``run()``, the one place errors become messages
and exit codes.

Exit codes (same for every command): 0 success, 1 error (invalid profile, failed apply, ...), 2 drift found
(``diff`` only), 3 an apply failed and not everything could be restored, 64 bad command line, 70 internal error.

Typer inspects the signature of every command it registers, at every start (about 2 ms each). So each run builds
the app with only the command it invokes (importing only that command's family), and with all of them when the
first argument names none (``--help``, ``--version``, no arguments, an unknown command), so that help and "no such
command" list everything.
"""

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import ProfileError, TcptuneError
from ..output import emit, emit_diagnostics
from ..target import DEFAULT_STATE_DIR
from .interrupted import warn_interrupted
from .options import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("profiles", "validate"),
    "show": ("profiles", "show"),
    "explain": ("profiles", "explain"),
    "schema": ("profiles", "schema"),
    "import": ("sysctl_conf", "import_file"),
    "profiles": ("profiles", "list_profiles"),
    "diff": ("live", "diff"),
    "apply": ("live", "apply"),
    "history": ("live", "history"),
    "rollback": ("live", "rollback"),
    "role": ("fleet", "role"),
    "push": ("fleet", "push"),
    "status": ("evidence", "status"),
    "recommend": ("evidence", "recommend"),
    "release": ("release", "release_sockets"),
}
"""Command -> (module of its family in this package, function), in the order ``--help`` lists them."""


def command_function(name: str) -> Callable[..., Any]:
    """The function behind a command; imports its family's module (and so the core modules that family uses)."""
    family, attribute = COMMANDS[name]
    function: Callable[..., Any] = getattr(importlib.import_module(f"{__package__}.{family}"), attribute)
    return function


def build_app(args: Sequence[str]) -> typer.Typer:
    """The app for this argument list: the invoked command only, or every command if ``args[0]`` names none."""
    app = typer.Typer(
        name="tcptune",
        help="Declarative Linux TCP tuning: validate profiles, diff and apply them with rollback, push them to fleets.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    invoked = args[0] if args else ""
    for name in [invoked] if invoked in COMMANDS else COMMANDS:
        app.command(name)(command_function(name))
    return app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tcptune {__version__}")
        raise typer.Exit(EXIT_OK)


def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Declarative Linux TCP tuning."""
    name = ctx.invoked_subcommand
    command = ctx.command.get_command(ctx, name) if name and isinstance(ctx.command, TyperGroup) else None
    if command is not None and any(param.name == "state_dir" for param in command.params):
        return  # it warns about the state directory it is given
    warn_interrupted(os.environ.get("TCPTUNE_STATE_DIR") or DEFAULT_STATE_DIR)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; never lets a traceback reach the user."""
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        result = build_app(args)(args=args, prog_name="tcptune", standalone_mode=False)
        return result if isinstance(result, int) else EXIT_OK
    except ProfileError as exc:
        emit_diagnostics(exc.diagnostics)
        return exc.exit_code
    except TcptuneError as exc:
        emit(f"tcptune: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        emit("tcptune: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:
        return _usage_or_bug(exc)


def _usage_or_bug(exc: Exception) -> int:
    """A bad command line (click's UsageError and friends) is exit 64; anything else is a bug in tcptune.

    Click's exceptions are recognised by their shape: typer vendors click and keeps those classes private.
    """
    show = getattr(exc, "show", None)
    format_message = getattr(exc, "format_message", None)
    if hasattr(exc, "exit_code") and format_message is not None:
        if show is not None:
            show()
        else:
            emit(f"tcptune: error: {format_message()}", err=True)
        return EXIT_USAGE
    if type(exc).__name__ == "Abort":
        emit("tcptune: aborted", err=True)
        return EXIT_ERROR
    emit(f"tcptune: internal error: {type(exc).__name__}: {exc}", err=True)
    emit("This is a bug in tcptune; please report it with the command you ran.", err=True)
    return EXIT_INTERNAL


def main() -> None:
    sys.exit(run())
