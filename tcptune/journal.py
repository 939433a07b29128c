"""The state directory: journals of applies and rollbacks, the lock, and what was applied last.

Layout (``target.DEFAULT_STATE_DIR`` by default, created 0700)::

    lock                         flock(2)ed by apply and rollback; holds the pid of the holder
    last-applied.json            the profile (name, fingerprint, values) of the last successful apply: what a
                                 bare ``tcptune diff`` compares against
    journal/<id>.pending.json    an apply or rollback in progress (or interrupted: kill -9, power loss)
    journal/<id>.json            a finished one: complete, failed (all restored), incomplete, rolled-back

A journal is written and fsync'd before the first write to /proc/sys (tuned's lesson: save before you change), so
a crash at any point leaves the old values on disk. The ``.pending`` suffix makes the check for interrupted work one
``listdir``, cheap enough to run on every invocation.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import LiveStateError, UsageError


def _json() -> Any:
    import json  # journals are read and written by apply/rollback/history, not on the diff/validate path

    return json


JOURNAL_VERSION = 1

PENDING, COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, ABANDONED = (
    "pending",
    "complete",
    "failed",
    "incomplete",
    "rolled-back",
    "abandoned",
)
UNDOABLE = (PENDING, COMPLETE, INCOMPLETE)
"""Statuses of an apply whose changes may still be in force, i.e. that ``rollback`` can undo."""


class LockHeld(LiveStateError):
    """Another apply or rollback holds the state directory's lock."""

    def __init__(self, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another tcptune apply or rollback is running{who}; wait for it to finish")
        self.pid = pid


STATUSES = (PENDING, COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, ABANDONED)
KINDS = ("apply", "rollback")


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    from .persist import atomic_write as write  # imported on write only: every command checks for pending journals

    write(path, text, mode)


class StateWriteError(LiveStateError):
    """The state directory refused a write (full disk, read-only, a directory where a file should be)."""


class Malformed(LiveStateError):
    """A state file that is not in the shape tcptune writes (hand-edited, or not ours): nothing is done with it."""

    def __init__(self, path: str, what: str, kind: str = "journal") -> None:
        super().__init__(f"{path}: malformed {kind}: {what} (correct the file or move it away)")
        self.path, self.what = path, what


def _check(ok: bool, path: str, what: str, kind: str = "journal") -> None:
    if not ok:
        raise Malformed(path, what, kind)


def _optional_str(data: dict[str, Any], field: str, path: str, kind: str = "journal", label: str | None = None) -> None:
    _check(
        data.get(field) is None or isinstance(data[field], str), path, f"{label or repr(field)} must be a string", kind
    )


def _value_text(value: object, path: str, what: str, kind: str) -> str:
    """A recorded sysctl value: text, or a plain integer (coerced); anything else is malformed."""
    if isinstance(value, str):
        _check("\n" not in value and "\x00" not in value, path, f"{what} contains a newline or NUL byte", kind)
        return value
    _check(isinstance(value, int) and not isinstance(value, bool), path, f"{what} must be a string", kind)
    return str(value)


def _checked_key(key: object, path: str, what: str, kind: str) -> str:
    from .live import split_key  # the state files are checked when read, not on every command's pending check

    _check(isinstance(key, str), path, f"{what} must be a string", kind)
    assert isinstance(key, str)
    try:
        split_key(key)
    except ValueError as exc:
        raise Malformed(path, f"{what}: {exc}", kind) from None
    return key


def check_profile_record(data: object, path: str, field: str, kind: str) -> dict[str, Any]:
    """``{"name", "fingerprint", "source", "values", "scopes"}`` as ``Desired.as_dict`` writes it; values as text."""
    _check(isinstance(data, dict), path, f"{field!r} must be an object", kind)
    assert isinstance(data, dict)
    for name in ("name", "fingerprint", "source"):
        _check(data.get(name) is None or isinstance(data[name], str), path, f"{field}.{name} must be a string", kind)
    values = data.get("values")
    _check(isinstance(values, dict), path, f"{field}.values must be an object of key: value", kind)
    assert isinstance(values, dict)
    checked = {
        _checked_key(k, path, f"{field}.values key {k!r}", kind): _value_text(v, path, f"{field}.values[{k!r}]", kind)
        for k, v in values.items()
    }
    scopes = data.get("scopes") or {}
    _check(
        isinstance(scopes, dict) and all(isinstance(v, str) for v in scopes.values()),
        path,
        f"{field}.scopes must be an object of key: scope",
        kind,
    )
    return dict(data, values=checked, scopes=dict(scopes))


def check_journal(data: object, path: str) -> dict[str, Any]:
    """Every field tcptune reads back from a journal, checked for type before anything acts on it.

    Raises Malformed naming the file and the field. Returns the data (values of changes as text).
    """
    _check(isinstance(data, dict), path, "not a JSON object")
    assert isinstance(data, dict)
    _check(isinstance(data.get("id"), str) and bool(data["id"]), path, "'id' must be a non-empty string")
    _check(data.get("status") in STATUSES, path, f"'status' must be one of {', '.join(STATUSES)}")
    _check(data.get("kind", "apply") in KINDS, path, "'kind' must be 'apply' or 'rollback'")
    for field in ("started", "finished", "proc_root", "rolls_back", "rolled_back_by", "error", "note"):
        _optional_str(data, field, path)
    for field in ("pid", "uid"):
        value = data.get(field)
        _check(
            value is None or (isinstance(value, int) and not isinstance(value, bool)),
            path,
            f"{field!r} must be an integer",
        )
    profile = data.get("profile")
    _check(profile is None or isinstance(profile, dict), path, "'profile' must be an object")
    if isinstance(profile, dict):
        for name in ("name", "fingerprint", "source"):
            _optional_str(profile, name, path, label=f"profile.{name}")
    changes = data.get("changes", [])
    _check(isinstance(changes, list), path, "'changes' must be a list")
    checked_changes = []
    for i, change in enumerate(changes):
        _check(isinstance(change, dict), path, f"changes[{i}] must be an object with key, old and new")
        key = _checked_key(change.get("key"), path, f"changes[{i}].key", "journal")
        checked_changes.append(
            dict(
                change,
                key=key,
                old=_value_text(change.get("old"), path, f"changes[{i}].old", "journal"),
                new=_value_text(change.get("new"), path, f"changes[{i}].new", "journal"),
            )
        )
    for field in ("skipped", "written", "restored"):
        value = data.get(field, [])
        _check(
            isinstance(value, list) and all(isinstance(v, str) for v in value),
            path,
            f"{field!r} must be a list of key names",
        )
    persist = data.get("persist")
    _check(persist is None or isinstance(persist, dict), path, "'persist' must be an object")
    if isinstance(persist, dict):
        for field in ("path", "previous", "new"):
            _optional_str(persist, field, path, label=f"persist.{field}")
        for field in ("planned", "written"):
            _check(isinstance(persist.get(field, False), bool), path, f"persist.{field} must be true or false")
    result = dict(data, changes=checked_changes)
    if data.get("desired") is not None:
        result["desired"] = check_profile_record(data["desired"], path, "desired", "journal")
    return result


def check_last_applied(data: object, path: str) -> dict[str, Any]:
    """``last-applied.json``: ``{"profile": <profile record>, "applied", "proc_root", "sysctl_file"}``."""
    kind = "last-applied record"
    _check(isinstance(data, dict), path, "not a JSON object", kind)
    assert isinstance(data, dict)
    for field in ("applied", "proc_root", "sysctl_file"):
        _optional_str(data, field, path, kind)
    return dict(data, profile=check_profile_record(data.get("profile"), path, "profile", kind))


def _now() -> str:
    """UTC with microseconds, from one reading of the clock.

    Journals are ordered by it. ``time.gmtime()`` without an argument reads the kernel's coarse clock, which lags
    ``time.time()`` by a few milliseconds after each second boundary: mixing the two dated a journal a second early.
    """
    seconds, micros = divmod(int(time.time() * 1_000_000), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


class Journal:
    """One apply or rollback: everything needed to undo it, saved atomically at every step."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "apply"))

    @property
    def changes(self) -> list[dict[str, str]]:
        return list(self.data.get("changes") or [])

    def save(self) -> None:
        """Write atomically; LiveStateError (not a raw OSError) when the state directory refuses."""
        try:
            atomic_write(self.path, _json().dumps(self.data, indent=2, sort_keys=False) + "\n", mode=0o600)
        except OSError as exc:
            raise StateWriteError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        """Record the end state and drop the ``.pending`` name (written first, so a crash leaves one of the two)."""
        self.data.update(fields, status=status, finished=_now())
        final = self.path.removesuffix(".pending.json") + ".json"
        old = self.path
        self.path = final
        self.save()
        if old != final:
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StateWriteError(f"cannot remove {old} after writing {final}: {exc.strerror or exc}") from None

    def summary(self) -> dict[str, Any]:
        profile = self.data.get("profile") or {}
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "started": self.data.get("started"),
            "finished": self.data.get("finished"),
            "profile": profile.get("name"),
            "fingerprint": profile.get("fingerprint"),
            "keys_changed": len(self.changes),
            "keys": [c["key"] for c in self.changes],
            "rolls_back": self.data.get("rolls_back"),
            "pid": self.data.get("pid"),
        }


class StateDir:
    """tcptune's own state: journals, lock, last applied profile. Injectable root for tests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.journal_dir = os.path.join(path, "journal")
        self._locked = False
        """True while this object holds the lock: then no other apply or rollback can be running."""

    def ensure(self) -> None:
        """Create the directory tree, owner-only: journals hold the machine's previous settings.

        Only directories created here are chmod'ed: a --state-dir pointing at an existing directory keeps its mode,
        but one owned by another user or writable by group or others is refused (rollback acts on its journals).
        """
        for directory in (self.path, self.journal_dir):
            try:
                if not os.path.isdir(directory):
                    os.makedirs(directory, mode=0o700)
                    os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
            except OSError as exc:
                raise LiveStateError(
                    f"cannot create the state directory {directory}: {exc.strerror} "
                    "(use --state-dir or TCPTUNE_STATE_DIR)"
                ) from None
            self._check_private(directory)  # before anything is created in it

    @staticmethod
    def _check_private(directory: str) -> None:
        """Refuse a state directory others could plant journals in: rollback acts on what journals say."""
        try:
            info = os.stat(directory)
        except OSError as exc:
            raise LiveStateError(f"cannot use the state directory {directory}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise LiveStateError(f"the state directory {directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise LiveStateError(
                f"refusing to use the state directory {directory}: it is owned by uid {info.st_uid}, "
                f"not by this user (uid {os.geteuid()}); 'chown {os.geteuid()} {directory}' "
                "or pick another --state-dir"
            )
        if info.st_mode & 0o022:
            raise LiveStateError(
                f"refusing to use the state directory {directory}: it is writable by group or "
                f"others (mode {stat.S_IMODE(info.st_mode):04o}); 'chmod 700 {directory}'"
            )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive, non-blocking: a second apply fails at once and names the pid that holds the lock."""
        self.ensure()
        lock_path = os.path.join(self.path, "lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LiveStateError(f"cannot open the lock {lock_path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(_read_pid(fd)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._locked = True
            try:
                yield
            finally:
                self._locked = False
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ---- journals ---------------------------------------------------------------------------------------------

    def begin(self, kind: str, **fields: Any) -> Journal:
        """Create and fsync a pending journal. Must happen before the first write to /proc/sys."""
        self.ensure()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        journal_id = f"{stamp}-{os.urandom(2).hex()}"
        path = os.path.join(self.journal_dir, f"{journal_id}.pending.json")
        data: dict[str, Any] = {
            "version": JOURNAL_VERSION,
            "id": journal_id,
            "kind": kind,
            "status": PENDING,
            "started": _now(),
            "finished": None,
            "pid": os.getpid(),
            "uid": os.geteuid(),
        }
        data.update(fields)
        journal = Journal(path, data)
        journal.save()
        return journal

    def journals(self, on_malformed: Callable[[Malformed], None] | None = None) -> list[Journal]:
        """Every journal, oldest first. A finished journal wins over a stale ``.pending`` twin.

        A journal not in the shape tcptune writes raises Malformed (naming the file) before anything acts on it;
        with ``on_malformed`` it is reported there and left out instead (the warning every command prints).
        """
        try:
            names = os.listdir(self.journal_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LiveStateError(f"cannot read {self.journal_dir}: {exc.strerror}") from None
        found: dict[str, Journal] = {}
        for name in sorted(names):
            if not name.endswith(".json"):
                continue  # atomic_write's temp files end in .tmp
            journal_id = name.removesuffix(".json").removesuffix(".pending")
            if name.endswith(".pending.json") and journal_id in found:
                continue
            try:
                found[journal_id] = self.load(os.path.join(self.journal_dir, name))
            except Malformed as exc:
                if on_malformed is None:
                    raise
                on_malformed(exc)
        return sorted(found.values(), key=lambda j: (str(j.data.get("started") or ""), j.id))

    @staticmethod
    def load(path: str) -> Journal:
        """One journal file, checked (``check_journal``); Malformed or LiveStateError otherwise."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = _json().load(handle)
        except ValueError as exc:
            raise Malformed(path, f"not valid JSON ({exc})") from None
        except OSError as exc:
            raise LiveStateError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        return Journal(path, check_journal(data, path))

    def find(self, ref: str) -> Journal:
        """A journal by id or unique id prefix."""
        matches = [j for j in self.journals() if j.id == ref or j.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no apply with id {ref!r} in {self.journal_dir} (see 'tcptune history')")
        raise UsageError(f"{ref!r} matches {len(matches)} journals: " + ", ".join(j.id for j in matches))

    def interrupted(self, on_malformed: Callable[[Malformed], None] | None = None) -> list[Journal]:
        """Pending journals of an apply or rollback that was killed part-way (kill -9, power loss).

        The lock decides, not the recorded pid (pids are reused): while this object holds the lock no other apply
        can be running, so every pending journal is interrupted; otherwise they are only if the lock is free.
        """
        pending = [j for j in self.journals(on_malformed) if j.status == PENDING]
        if not pending or self._locked or not self.lock_is_held():
            return pending
        return []

    def lock_is_held(self) -> bool:
        """Whether an apply or rollback holds the lock now: a non-blocking flock on it, released at once.

        A lock file this user cannot open counts as free: pending journals are then reported, never hidden.
        """
        try:
            fd = os.open(os.path.join(self.path, "lock"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing drops the probe's lock
        return False

    def has_pending_files(self) -> bool:
        """Cheap check for every invocation: one listdir, no JSON parsing unless something is pending."""
        try:
            return any(name.endswith(".pending.json") for name in os.listdir(self.journal_dir))
        except OSError:
            return False

    # ---- the last applied profile -----------------------------------------------------------------------------

    @property
    def last_applied_path(self) -> str:
        return os.path.join(self.path, "last-applied.json")

    def write_last_applied(self, record: dict[str, Any]) -> None:
        self.ensure()
        try:
            atomic_write(self.last_applied_path, _json().dumps(record, indent=2) + "\n", mode=0o600)
        except OSError as exc:
            raise StateWriteError(f"cannot write {self.last_applied_path}: {exc.strerror or exc}") from None

    def read_last_applied(self) -> dict[str, Any] | None:
        """The record of the last apply, checked (``check_last_applied``); None if there is none."""
        try:
            with open(self.last_applied_path, encoding="utf-8") as handle:
                data = _json().load(handle)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise LiveStateError(
                f"cannot read {self.last_applied_path}: permission denied "
                "(run as root, or name a profile: 'tcptune diff PROFILE')"
            ) from None
        except ValueError as exc:
            raise Malformed(self.last_applied_path, f"not valid JSON ({exc})", "last-applied record") from None
        except OSError as exc:
            raise LiveStateError(f"cannot read {self.last_applied_path}: {exc.strerror or exc}") from None
        return check_last_applied(data, self.last_applied_path)

    def clear_last_applied(self) -> None:
        try:
            os.unlink(self.last_applied_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateWriteError(f"cannot remove {self.last_applied_path}: {exc.strerror or exc}") from None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
