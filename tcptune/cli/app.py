"""The tcptune app: its root options, the table of commands, and ``run()``, the one place errors become messages
and exit codes.

Exit codes (same for every command): 0 success, 1 error (invalid profile, failed apply, ...), 2 drift found
(``diff`` only), 3 an apply failed and not everything could be restored, 64 bad command line, 70 internal error.

Typer inspects the signature of every command it registers, at every start (about 2 ms each). So each run builds
the app with only the command it invokes (importing only that command's family), and with all of them when the
first argument names none (``--help``, ``--version``, no arguments, an unknown command), so that help and "no such
command" list everything.
"""

import errno
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import ProfileError
from ..failures import CoreError
from ..output import emit, emit_diagnostics
from ..target import DEFAULT_STATE_DIR
from .examples import epilog
from .interrupted import warn_interrupted
from .options import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "init"),
    "validate": ("profiles", "validate"),
    "show": ("profiles", "show"),
    "explain": ("profiles", "explain"),
    "schema": ("profiles", "schema"),
    "import": ("sysctl_conf", "import_file"),
    "profiles": ("profiles", "list_profiles"),
    "diff": ("live", "diff"),
    "apply": ("live", "apply"),
    "history": ("generations", "history"),
    "rollback": ("generations", "rollback"),
    "reset": ("generations", "reset"),
    "recover": ("generations", "recover"),
    "role": ("fleet", "role"),
    "push": ("fleet", "push"),
    "status": ("evidence", "status"),
    "recommend": ("evidence", "recommend"),
    "release": ("release", "release_sockets"),
    "completion": ("complete", "completion"),
}
"""Command -> (module of its family in this package, function), in the order ``--help`` lists them."""


def command_function(name: str) -> Callable[..., Any]:
    """The function behind a command; imports its family's module (and so the core modules that family uses)."""
    family, attribute = COMMANDS[name]
    function: Callable[..., Any] = getattr(importlib.import_module(f"{__package__}.{family}"), attribute)
    return function


def build_app(args: Sequence[str]) -> typer.Typer:
    """The app for this argument list: the invoked command only, or every command if ``args[0]`` names none.

    A shell asking for completions runs tcptune without arguments (the words typed are in the environment), so it
    gets every command too, and with them typer's --install-completion and --show-completion: adding those also
    installs the answer formats typer's completion scripts expect. Only the root needs them; a command does not
    pay for their shell-detection import.
    """
    invoked = args[0] if args else ""
    single = invoked in COMMANDS
    app = typer.Typer(
        name="tcptune",
        help="Declarative Linux TCP tuning: validate profiles, diff and apply them with rollback, push them to fleets.",
        epilog=epilog(""),
        no_args_is_help=True,
        add_completion=not single,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name in [invoked] if single else COMMANDS:
        app.command(name, epilog=epilog(name))(command_function(name))
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
    _prepare_streams()
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        result = build_app(args)(args=args, prog_name="tcptune", standalone_mode=False)
        sys.stdout.flush()  # a full disk or a closed stdout is reported here, not at interpreter exit
        return result if isinstance(result, int) else EXIT_OK
    except ProfileError as exc:
        emit_diagnostics(exc.diagnostics)
        return exc.exit_code
    except CoreError as exc:
        emit(f"tcptune: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        emit("tcptune: interrupted", err=True)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_ERROR
    except OSError as exc:
        problem = _stdout_problem(exc)
        if problem is None:
            return _usage_or_bug(exc)
        emit(f"tcptune: error: cannot write to standard output: {problem}", err=True)
        return EXIT_ERROR
    except Exception as exc:
        return _usage_or_bug(exc)


class _ClosedStream(io.TextIOBase):
    """Stands in for a standard stream the process was started without (``>&-``): writing to it is an OSError."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "the stream is closed")


def _prepare_streams() -> None:
    """Closed standard streams become streams that fail on write (stdout: reported as one line); an encoding that
    cannot show a character (PYTHONIOENCODING=ascii) shows '?' instead of failing."""
    if sys.stdout is None:
        sys.stdout = _ClosedStream("<stdout>")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")


def _stdout_problem(exc: OSError) -> str | None:
    """The reason standard output cannot be written, if that is what ``exc`` is about; None for any other OSError."""
    try:
        sys.stdout.flush()
        sys.stdout.write("")
    except OSError as again:
        _silence_stdout()
        return (again.strerror or os.strerror(again.errno or 0) or str(again)).lower()
    if isinstance(sys.stdout, _ClosedStream) and exc.errno == errno.EBADF:
        return "the stream is closed"
    return None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's own flush at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


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
