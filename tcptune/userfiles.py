"""Files a user names for output (``status -o``, ``diff -o``, ``recommend --write``, ``init``, ``import -o``):
written atomically, any problem said in one line. Kept apart from the renderers so that the core's writers
(recommend) need no presentation code."""

from __future__ import annotations

import os

from .errors import TcptuneError
from .persist import atomic_write


def write_file(path: str, text: str) -> None:
    """Write a file the user named (``status -o``, ``recommend --write``) atomically; a problem is one line."""
    if os.path.isdir(path):
        raise TcptuneError(f"cannot write {path}: it is a directory (name a file in it)")
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise cannot_write(path, exc) from None


def cannot_write(path: str, exc: OSError) -> TcptuneError:
    """The error for a file the user named that could not be written, in words: the path and the reason."""
    directory = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(directory):
        problem = f"no such directory {directory}"
    else:
        problem = (exc.strerror or str(exc)).lower()
    return TcptuneError(f"cannot write {path}: {problem}")
