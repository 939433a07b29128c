"""sysctl.d files: render tcptune's own file, write it atomically, and read what the system would apply at boot.

Standard library only and free of tcptune imports: shipped verbatim into generated Ansible roles
(as ``module_utils/tcptune_persist.py``) so hosts persist exactly what the CLI persists.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

DEFAULT_FILE_NAME = "90-tcptune.conf"


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

    Temp file in the same directory, fsync, chmod, rename over the target, fsync the directory.
    """
    import tempfile  # not on the read-only paths (diff, validate): it costs a few ms to import

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


def read_text(path: str) -> str | None:
    """A file's text, or None if there is no such file (what a journal keeps to restore it later)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def restore_file(path: str, text: str | None, mode: int = 0o644) -> None:
    """Put a file back as it was: atomically rewrite it, or remove it when there was none."""
    if text is not None:
        atomic_write(path, text, mode)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(directory: str) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---- what would be in force after a reboot: the sysctl.d precedence reader ----------------------------------------

SEARCH_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")
"""Directories read by systemd-sysctl and ``sysctl --system``, in order of precedence for equal file names."""
SYSCTL_CONF = "/etc/sysctl.conf"
"""Read last by ``sysctl --system`` (systemd reaches it only through Debian's 99-sysctl.conf symlink)."""


class SysctlEntry(NamedTuple):
    """One ``key = value`` line of a sysctl.d file, where it is."""

    key: str
    value: str
    file: str
    line: int
    ignore_errors: bool = False
    """Written as ``-key = value``: failures to set it are not reported at boot."""

    def where(self) -> str:
        return f"{self.file}:{self.line}"


class BootValue(NamedTuple):
    """The value a key gets at boot, and every earlier assignment that it overrides (in reading order)."""

    key: str
    effective: SysctlEntry
    overridden: tuple[SysctlEntry, ...] = ()


def normalise_key(key: str) -> str:
    """Dotted form, as systemd reads it: if the first separator is '/', slashes and dots swap roles."""
    key = key.strip()
    first = min((i for i in (key.find("/"), key.find(".")) if i >= 0), default=-1)
    if first >= 0 and key[first] == "/":
        key = key.translate(str.maketrans("/.", "./"))
    return key


def parse_sysctl_text(text: str, file: str) -> list[SysctlEntry]:
    """``key = value`` lines; comments (``#``, ``;``), blank lines and lines without '=' are skipped.

    A ``-key`` prefix marks an assignment whose failure is ignored; it still sets the key.
    """
    entries: list[SysctlEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue  # systemd warns and skips; "-key" alone (a glob exclusion) sets nothing
        key = key.strip()
        ignore = key.startswith("-")
        key = normalise_key(key.lstrip("-"))
        if not key:
            continue
        entries.append(SysctlEntry(key, " ".join(value.split()), file, number, ignore))
    return entries


def parse_sysctl_file(path: str) -> list[SysctlEntry]:
    """Entries of one file; an unreadable or vanished file (e.g. a dangling symlink) contributes nothing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return parse_sysctl_text(handle.read(), path)
    except OSError:
        return []


def config_files(root: str = "/") -> list[str]:
    """Every file systemd-sysctl / ``sysctl --system`` reads, in the order they are applied.

    ``*.conf`` files are collected by file name across SEARCH_DIRS; for equal names the earlier directory wins
    (``/etc`` masks ``/usr/lib``, a symlink to /dev/null masks a vendor file). They are applied in lexical order of
    file name regardless of directory, and ``/etc/sysctl.conf`` comes last.
    """
    chosen: dict[str, str] = {}
    for directory in SEARCH_DIRS:
        full = _under(root, directory)
        try:
            names = os.listdir(full)
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(full, name)
    files = [chosen[name] for name in sorted(chosen)]
    conf = _under(root, SYSCTL_CONF)
    if os.path.isfile(conf):
        files.append(conf)
    return files


def boot_values(root: str = "/", keys: Iterable[str] | None = None) -> dict[str, BootValue]:
    """Per key: the assignment in force after a reboot (the last one read) and the ones it overrides."""
    wanted = None if keys is None else {normalise_key(k) for k in keys}
    seen: dict[str, list[SysctlEntry]] = {}
    for path in config_files(root):
        for entry in parse_sysctl_file(path):
            if wanted is None or entry.key in wanted:
                seen.setdefault(entry.key, []).append(entry)
    return {key: BootValue(key, entries[-1], tuple(entries[:-1])) for key, entries in seen.items()}


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path
