"""The only code that reads and writes /proc/sys.

Standard library only and free of tcptune imports: shipped verbatim into generated Ansible roles (as
``module_utils/tcptune_live.py``) so that hosts read, write and roll back exactly as the CLI does.

``root`` is injectable: the same code runs against the real kernel (in a network namespace or not) and against a
temporary ``/proc/sys``-shaped tree in unit tests. Every failure is turned into a reason and plain words here, once,
so that no caller ever shows a user a raw errno.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable

from .records import Record

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_VALUE_BYTES = 1 << 20
"""Longest value read; a longer one is reported unreadable, never cut off."""
READ_CHUNK = 4096
"""Bytes asked for per read(2): the kernel allocates a buffer as large as each read asks for."""


class LiveValue(Record):
    """One key as the kernel shows it right now."""

    key: str
    text: str | None
    """Raw text as the kernel printed it (trailing newline stripped); None if it could not be read."""
    status: str
    """"ok", "missing" (no such key on this kernel or in this netns) or "unreadable"."""
    writable: bool
    """Whether root may write it here: False for host-wide keys inside a child network namespace, or under a
    read-only /proc/sys mount. Judged for root even when a non-root user runs ``diff``."""
    error: str | None = None


class WriteFailed(Exception):
    """A write the kernel (or the filesystem) refused, in plain words (``message``).

    ``reason`` is one of missing, read-only, invalid, permission, busy or error.
    """

    def __init__(self, key: str, reason: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.reason, self.message = key, reason, message


def split_key(key: str) -> list[str]:
    """``net.ipv4.tcp_fin_timeout`` or ``net/ipv4/tcp_fin_timeout`` -> path segments; ValueError otherwise."""
    if not isinstance(key, str) or not key or key.startswith(("/", ".")) or "\x00" in key:
        raise ValueError(f"{key!r} is not a sysctl key name")
    parts = key.split("/") if "/" in key else key.split(".")
    if not all(_SEGMENT.fullmatch(part) for part in parts):
        raise ValueError(f"{key!r} is not a sysctl key name (expected dotted identifiers)")
    return parts


class ProcSys:
    """A ``/proc/sys``-shaped tree: the real one, or a copy in a temporary directory."""

    def __init__(self, root: str = "/proc/sys") -> None:
        self.root = root
        self._real_root = os.path.realpath(root)
        self._inside: dict[str, bool] = {}
        """Directory -> whether it resolves inside the root (one realpath per directory, not per key)."""

    def __repr__(self) -> str:
        return f"ProcSys({self.root!r})"

    def path(self, key: str) -> str:
        """File path of ``key`` under the root; ValueError for anything that is not a plain key or escapes it."""
        path = os.path.join(self._real_root, *split_key(key))
        directory = os.path.dirname(path)
        inside = self._inside.get(directory)
        if inside is None:
            inside = self._inside[directory] = self._within(os.path.realpath(directory))
        if not inside or (os.path.islink(path) and not self._within(os.path.realpath(path))):
            raise ValueError(f"{key!r} resolves outside {self.root}")
        return path

    def _within(self, resolved: str) -> bool:
        return resolved == self._real_root or resolved.startswith(self._real_root.rstrip("/") + "/")

    def read(self, key: str) -> LiveValue:
        """The key's value; never raises: a key that escapes the root or is too long is "unreadable"."""
        try:
            path = self.path(key)
        except ValueError as exc:
            return LiveValue(key, None, "unreadable", False, str(exc))
        try:
            with open(path, "rb", buffering=0) as handle:
                chunks: list[bytes] = []
                size = 0
                while size <= MAX_VALUE_BYTES:  # /proc/sys hands out a long value a page at a time
                    chunk = handle.read(min(READ_CHUNK, MAX_VALUE_BYTES + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                raw = b"".join(chunks)
        except FileNotFoundError:
            return LiveValue(key, None, "missing", False, "no such key on this kernel or in this network namespace")
        except IsADirectoryError:
            return LiveValue(key, None, "missing", False, "this is a group of keys, not a key")
        except OSError as exc:
            return LiveValue(key, None, "unreadable", _writable(path), _read_problem(exc))
        if len(raw) > MAX_VALUE_BYTES:
            return LiveValue(
                key,
                None,
                "unreadable",
                _writable(path),
                f"the value is longer than {MAX_VALUE_BYTES} bytes; not read (never truncated)",
            )
        text = raw.decode("utf-8", "replace")
        if text.endswith("\n"):
            text = text[:-1]
        return LiveValue(key, text, "ok", _writable(path))

    def read_many(self, keys: Iterable[str]) -> dict[str, LiveValue]:
        return {key: self.read(key) for key in keys}

    def write(self, key: str, text: str) -> None:
        """One write(2) of ``text`` + newline, as ``echo`` would do; WriteFailed with a plain reason otherwise."""
        if "\n" in text or "\x00" in text:
            raise WriteFailed(key, "invalid", "the value contains a newline or NUL byte")
        path = self.path(key)
        data = (text + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise WriteFailed(key, *_open_problem(exc)) from None
        try:
            try:
                written = os.write(fd, data)
            except OSError as exc:
                raise WriteFailed(key, *_write_problem(key, text, exc)) from None
            if written != len(data):
                raise WriteFailed(key, "error", f"the kernel took only {written} of {len(data)} bytes")
            try:
                if os.fstat(fd).st_size > written:  # a plain file in a test tree; /proc files report size 0
                    os.ftruncate(fd, written)
            except OSError:
                pass
        finally:
            os.close(fd)


def _writable(path: str) -> bool:
    """Whether root could write the key here; answers the same for a non-root ``diff``.

    As root, access(2) asks the kernel itself (sysctl permission hooks make host-wide keys read-only in a child
    network namespace). Otherwise judge by the mode the kernel shows (0444 for those keys) and a read-only mount.
    """
    if os.geteuid() == 0:
        return os.access(path, os.W_OK)
    try:
        if not os.stat(path).st_mode & 0o222:
            return False
        return not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def _read_problem(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "not readable (a write-only key, or permission denied)"
    return f"could not be read: {os.strerror(exc.errno or 0).lower()}"


def _open_problem(exc: OSError) -> tuple[str, str]:
    code = exc.errno
    if code == errno.ENOENT:
        return "missing", "no such key on this kernel or in this network namespace"
    if code == errno.EISDIR:
        return "missing", "this is a group of keys, not a key"
    if code == errno.EROFS:
        return "read-only", "read-only here: /proc/sys is mounted read-only in this container or sandbox"
    if code in (errno.EACCES, errno.EPERM):
        if os.geteuid() != 0:
            return "permission", "permission denied: changing kernel settings needs root"
        return "read-only", (
            "read-only here: the kernel does not let this network namespace or container change "
            "it (a host-wide key: set it on the host)"
        )
    return "error", f"could not be opened for writing: {os.strerror(code or 0).lower()}"


def _write_problem(key: str, text: str, exc: OSError) -> tuple[str, str]:
    code = exc.errno
    congestion = key.replace("/", ".").endswith("tcp_congestion_control")
    if code == errno.EINVAL:
        dotted = key.replace("/", ".")
        if dotted.endswith("ip_local_port_range"):
            return "invalid", (
                f"the kernel rejected {text!r}: the low port must be at least "
                "net.ipv4.ip_unprivileged_port_start and not above the high port"
            )
        if dotted.endswith("ip_unprivileged_port_start"):
            return "invalid", (
                f"the kernel rejected {text!r}: it may not exceed the low port of net.ipv4.ip_local_port_range"
            )
        return "invalid", (
            f"the kernel rejected {text!r} as invalid (out of the range it accepts, malformed, or in "
            "conflict with a related key)"
        )
    if code == errno.ENOENT:
        if congestion:
            return "invalid", f"the kernel has no congestion control algorithm {text!r} (module not loaded?)"
        return "invalid", f"the kernel does not know the value {text!r}"
    if code == errno.EPERM:
        if congestion:
            return "permission", (
                f"the kernel does not permit {text!r} here: inside a network namespace only "
                "algorithms in net.ipv4.tcp_allowed_congestion_control may be chosen"
            )
        return "permission", f"the kernel did not permit setting {text!r} (operation not permitted)"
    if code == errno.EACCES:
        return "read-only", "read-only here: the kernel refused the write (a host-wide key: set it on the host)"
    if code == errno.EROFS:
        return "read-only", "read-only here: /proc/sys is mounted read-only"
    if code == errno.EBUSY:
        return "busy", "the kernel reports the setting as busy; try again"
    if code == errno.ERANGE:
        return "invalid", f"the kernel rejected {text!r} as out of range"
    return "error", f"the write failed: {os.strerror(code or 0).lower()}"


class WriteOutcome:
    """What happened: keys written, the first failure, and what the restore did.

    ``failed`` is (key, reason, message) of the write that failed, or None; ``restore_failed`` lists (key, message)
    of keys that could not be put back: the machine is left with their new value.
    """

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.failed: tuple[str, str, str] | None = None
        self.restored: list[str] = []
        self.restore_failed: list[tuple[str, str]] = []

    @property
    def ok(self) -> bool:
        return self.failed is None


UNPRIVILEGED_START = "net.ipv4.ip_unprivileged_port_start"


def order_writes(changes: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """``(key, new_text, old_text)`` in the order to write them so the kernel's cross-key checks hold at each step.

    The rule: keys are written in sorted order, except ``net.ipv4.ip_unprivileged_port_start``. The kernel refuses
    an ``ip_local_port_range`` whose low port is below ``ip_unprivileged_port_start``, and an unprivileged start
    above the range's low port. So a lowered start is written first and a raised (or unchanged, or unparsable:
    treated as lowered) one last. Restoring in reverse order then holds the same invariant on the way back.
    Shared by the CLI (``plan``) and the Ansible module, so both write in exactly the same order.
    """
    ordered = sorted(changes, key=lambda change: change[0])
    start = next((c for c in ordered if c[0].replace("/", ".") == UNPRIVILEGED_START), None)
    if start is None:
        return ordered
    ordered.remove(start)
    try:
        lowering = int(start[1].strip()) < int(start[2].strip())
    except (ValueError, AttributeError):
        lowering = True
    return [start, *ordered] if lowering else [*ordered, start]


def _same_tokens(a: str, b: str) -> bool:
    """The default comparison of ``write_all``: whitespace-insensitive (the kernel prints tabs)."""
    return a.split() == b.split()


def write_all(
    proc: ProcSys,
    changes: list[tuple[str, str, str]],
    before_each: Callable[[str], None] | None = None,
    same: Callable[[str, str], bool] | None = None,
) -> WriteOutcome:
    """Write ``(key, new_text, old_text)`` in order; on the first failure put back what was written, newest first.

    ``before_each(key)`` runs before each write (apply passes a pause there, so that tests can kill it between two
    writes); if it raises, that counts as a failure of the key and nothing more is written. Never raises for write
    errors: the outcome says exactly what state the machine is in. A kernel handler may store part of a
    multi-number value before rejecting the rest, so the failing key itself is re-read and put back too if it
    moved; ``same(a, b)`` decides "moved" (default: equal whitespace-separated tokens; the CLI passes
    ``values.same``, which also knows ``030`` is ``30``).
    """
    same = same or _same_tokens
    outcome = WriteOutcome()
    for key, new_text, _old in changes:
        try:
            if before_each is not None:
                before_each(key)
        except Exception as exc:  # whatever it was, the write is not made
            outcome.failed = (key, "error", f"stopped before writing it: {exc}")
            break
        try:
            proc.write(key, new_text)
        except WriteFailed as exc:
            outcome.failed = (key, exc.reason, exc.message)
            break
        except ValueError as exc:
            outcome.failed = (key, "invalid", str(exc))
            break
        outcome.applied.append(key)
    if outcome.failed is None:
        return outcome
    old_of = {key: old for key, _new, old in changes}
    failed_key = outcome.failed[0]
    try:
        now = proc.read(failed_key)
        if (
            now.status == "ok"
            and now.text is not None
            and failed_key in old_of
            and not same(now.text, old_of[failed_key])
        ):
            _restore(proc, failed_key, old_of[failed_key], outcome)
    except ValueError:
        pass
    for key in reversed(outcome.applied):
        _restore(proc, key, old_of[key], outcome)
    return outcome


def put_back(proc: ProcSys, changes: list[tuple[str, str, str]]) -> WriteOutcome:
    """Undo ``(key, new_text, old_text)`` changes that were all written, newest first, each key on its own.

    For a step after the writes that failed (the sysctl.d file could not be written). Unlike ``write_all`` of the
    old values, a key that cannot be put back does not make the others go forward again: as much of the old state
    as the kernel allows, with ``restored`` and ``restore_failed`` saying which key is where.
    """
    outcome = WriteOutcome()
    for key, _new, old in reversed(changes):
        _restore(proc, key, old, outcome)
    return outcome


def _restore(proc: ProcSys, key: str, old_text: str, outcome: WriteOutcome) -> None:
    try:
        proc.write(key, old_text)
        outcome.restored.append(key)
    except WriteFailed as exc:
        outcome.restore_failed.append((key, exc.message))
    except ValueError as exc:
        outcome.restore_failed.append((key, str(exc)))
