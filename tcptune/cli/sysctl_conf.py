"""``tcptune import``: a sysctl.conf / sysctl.d file -> a profile, printed or written (atomically, never over an
existing file without --force)."""

import os
import sys
from typing import Annotated

import typer

from ..errors import TcptuneError
from ..importer import import_conf
from ..output import emit, emit_diagnostics
from ..persist import UnsafeFile, read_bounded
from ..profile import PROFILE_NAME
from ..userfiles import write_file
from .options import EXIT_ERROR, EXIT_OK

MAX_CONF_BYTES = 4 * 1024 * 1024


def import_file(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A sysctl.conf or sysctl.d file.")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the profile here instead of printing it.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --output replace an existing file.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Profile name (default: from the file name).")] = None,
) -> None:
    """Turn a sysctl.conf / sysctl.d file into a profile: catalog keys under settings (checked), other net.* keys
    under raw:, everything else left out with a comment saying why. Exit 1 (nothing written) if a value is invalid.
    """
    if name is not None and not PROFILE_NAME.match(name):
        raise typer.BadParameter(f"{name!r} is not a plain name (letters, digits, '-', '_', '.')", param_hint="--name")
    if output is not None and os.path.lexists(output) and not force:
        raise TcptuneError(f"{output} exists; use --force to replace it")
    result = import_conf(_read(file), file, name)
    emit_diagnostics(result.diagnostics)
    if result.errors:
        count = len(result.errors)
        emit(f"{file}: not imported ({count} invalid value{'s' * (count != 1)}; nothing written)", err=True)
        raise typer.Exit(EXIT_ERROR)
    summary = f"{result.settings} checked setting(s), {result.raw} raw key(s), {result.left_out} line(s) left out"
    if output is None:
        sys.stdout.write(result.text)
        emit(f"{file}: {summary}", err=True)
    else:
        write_file(output, result.text)
        emit(f"wrote {output}: {summary}")
    raise typer.Exit(EXIT_OK)


def _read(file: str) -> bytes:
    """The file's bytes: a regular file only (never a FIFO or a device), at most MAX_CONF_BYTES."""
    try:
        data = read_bounded(file, follow=True, limit=MAX_CONF_BYTES)
    except UnsafeFile as exc:
        if exc.mode is not None:
            raise TcptuneError(f"{file}: not a regular file") from None
        raise TcptuneError(f"{file}: longer than {MAX_CONF_BYTES} bytes") from None
    except OSError as exc:
        raise TcptuneError(f"{file}: cannot read: {(exc.strerror or str(exc)).lower()}") from None
    if data is None:
        raise TcptuneError(f"{file}: cannot read: no such file or directory")
    return data
