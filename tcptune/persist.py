"""tcptune's own sysctl.d file: render it, write it atomically, read it back bounded, put it back.

What the boot appliers make of the whole sysctl.d tree is ``boot``'s (modelled per applier).

Standard library only and free of tcptune imports: shipped verbatim into generated Ansible roles
(as ``module_utils/tcptune_persist.py``) so hosts persist exactly what the CLI persists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection, Mapping
from typing import BinaryIO

DEFAULT_FILE_NAME = "90-tcptune.conf"
MAX_FILE_BYTES = 1 << 20
"""Largest sysctl.d or state file read; a larger one is refused, never cut off."""


class UnsafeFile(OSError):
    """A file tcptune will not read, write through or replace: not a regular file, too large, or not UTF-8 text.

    An OSError, so that callers that report ``exc.strerror`` for a failed write say why in plain words.
    """

    def __init__(self, path: str | bytes, why: str, mode: int | None = None) -> None:
        super().__init__(errno.EINVAL, why, path)
        self.mode = mode
        """The file type when it is not a regular file (callers word it their own way); None for other reasons."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for "... is a FIFO, not a regular file")."""
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _not_regular(path: str | bytes, mode: int) -> UnsafeFile:
    return UnsafeFile(
        path, f"it is a {file_kind(mode)}, not a regular file; refusing to read, write or replace it", mode
    )


def render_sysctl_conf(
    profile_name: str, fingerprint: str, values: Mapping[str, str], ignore_errors: Collection[str] = ()
) -> str:
    """The persisted file: a header naming the profile and its hash, then ``key = value`` lines, sorted.

    Keys in ``ignore_errors`` (skipped because this kernel or namespace lacks them) are written ``-key = value``:
    systemd-sysctl and ``sysctl --system`` then set them where they can and stay quiet where they cannot.
    Raises ValueError for a key or value that would not stay on its own line; header text is made one line.
    """
    lines = [
        "# Managed by tcptune; changes here are overwritten by the next 'tcptune apply'.",
        f"# profile: {_controls_replaced(profile_name)}",
        f"# fingerprint: {_controls_replaced(fingerprint)}",
    ]
    for key in sorted(values):
        if _controls_replaced(key) != key or _controls_replaced(values[key]) != values[key] or "=" in key:
            raise ValueError(f"refusing to persist {key!r} = {values[key]!r}: not a one-line sysctl setting")
        lines.append(f"{'-' if key in ignore_errors else ''}{key} = {values[key]}")
    return "\n".join(lines) + "\n"


def _controls_replaced(text: str) -> str:
    """Every control character (newline, carriage return, tab, escape, DEL) replaced by '?'.

    A sanitiser, not a whitespace folder: header text cannot start a line of its own or drive a terminal, and
    spaces stay as they are. A key or value it would change is refused, never repaired.
    """
    return "".join("?" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in str(text))


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix.

    Temp file in the same directory, fsync, chmod, rename over the target, fsync the directory. An existing
    ``path`` that is not a regular file (a symbolic link, FIFO, device node or socket: ``/dev/null``, say) is
    refused with UnsafeFile: renaming over it would replace a device node or a link, never write where it points.
    """
    import tempfile  # not on the read-only paths (diff, validate): it costs a few ms to import

    try:
        mode_now = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(mode_now):
            raise _not_regular(path, mode_now)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tcptune-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def open_regular(path: str | bytes, *, follow: bool = False) -> BinaryIO:
    """A regular file opened for reading, never blocking: opened non-blocking (a FIFO would otherwise wait for a
    writer forever), then fstat'ed. Anything but a regular file raises UnsafeFile, and so does a symbolic link
    without ``follow``; a missing file raises FileNotFoundError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise _not_regular(path, stat.S_IFLNK) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | bytes, *, follow: bool = False, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """A file's bytes, or None if there is no such file. Never blocks (``open_regular``) and never reads more than
    ``limit``: a larger file raises UnsafeFile."""
    try:
        handle = open_regular(path, follow=follow)
    except FileNotFoundError:
        return None
    with handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(path, f"it is larger than {limit} bytes; refusing to read it")
    return data


def read_own_file(path: str) -> str | None:
    """tcptune's own sysctl.d file as text, or None if there is none. Never follows a symbolic link, never blocks,
    at most MAX_FILE_BYTES; a non-regular, oversized or non-UTF-8 file raises UnsafeFile (an OSError)."""
    data = read_bounded(path, follow=False)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeFile(path, "it is not UTF-8 text; refusing to read or replace it") from None


def restore_file(path: str, text: str | None, mode: int = 0o644) -> None:
    """Put a file back as it was: atomically rewrite it, or remove it when there was none.

    Like ``atomic_write``, never removes or replaces anything but a regular file (UnsafeFile).
    """
    if text is not None:
        atomic_write(path, text, mode)
        return
    try:
        mode_now = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode_now):
        raise _not_regular(path, mode_now)
    os.unlink(path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(directory: str) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
