"""The state directory: journals of applies and rollbacks, the lock, and what was applied last.

Layout (``/var/lib/tcptune`` by default, created 0700)::

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
import time
from collections.abc import Iterator
from typing import Any

from .errors import LiveStateError, UsageError
from .persist import atomic_write


def _json() -> Any:
    import json  # journals are read and written by apply/rollback/history, not on the diff/validate path

    return json

DEFAULT_STATE_DIR = "/var/lib/tcptune"
JOURNAL_VERSION = 1

PENDING, COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, ABANDONED = (
    "pending", "complete", "failed", "incomplete", "rolled-back", "abandoned")
UNDOABLE = (PENDING, COMPLETE, INCOMPLETE)
"""Statuses of an apply whose changes may still be in force, i.e. that ``rollback`` can undo."""


class LockHeld(LiveStateError):
    """Another apply or rollback holds the state directory's lock."""

    def __init__(self, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another tcptune apply or rollback is running{who}; wait for it to finish")
        self.pid = pid


def state_dir_from_env(option: str | None = None) -> str:
    return option or os.environ.get("TCPTUNE_STATE_DIR") or DEFAULT_STATE_DIR


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"


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
        return list(self.data.get("changes", []))

    def save(self) -> None:
        atomic_write(self.path, _json().dumps(self.data, indent=2, sort_keys=False) + "\n", mode=0o600)

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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def summary(self) -> dict[str, Any]:
        profile = self.data.get("profile") or {}
        return {"id": self.id, "kind": self.kind, "status": self.status, "started": self.data.get("started"),
                "finished": self.data.get("finished"), "profile": profile.get("name"),
                "fingerprint": profile.get("fingerprint"), "keys_changed": len(self.changes),
                "keys": [c["key"] for c in self.changes], "rolls_back": self.data.get("rolls_back"),
                "pid": self.data.get("pid")}


class StateDir:
    """tcptune's own state: journals, lock, last applied profile. Injectable root for tests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.journal_dir = os.path.join(path, "journal")

    def ensure(self) -> None:
        """Create the directory tree, owner-only: journals hold the machine's previous settings.

        Only directories created here are chmod'ed: a --state-dir pointing at an existing directory keeps its mode.
        """
        try:
            for directory in (self.path, self.journal_dir):
                if not os.path.isdir(directory):
                    os.makedirs(directory, mode=0o700)
                    os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
        except OSError as exc:
            raise LiveStateError(f"cannot create the state directory {self.path}: {exc.strerror} "
                                 "(use --state-dir or TCPTUNE_STATE_DIR)") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive, non-blocking: a second apply fails at once and names the pid that holds the lock."""
        self.ensure()
        lock_path = os.path.join(self.path, "lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(_read_pid(fd)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
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
        data: dict[str, Any] = {"version": JOURNAL_VERSION, "id": journal_id, "kind": kind, "status": PENDING,
                                "started": _now(), "finished": None, "pid": os.getpid(), "uid": os.geteuid()}
        data.update(fields)
        journal = Journal(path, data)
        journal.save()
        return journal

    def journals(self) -> list[Journal]:
        """Every journal, oldest first. A finished journal wins over a stale ``.pending`` twin."""
        try:
            names = os.listdir(self.journal_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LiveStateError(f"cannot read {self.journal_dir}: {exc.strerror}") from None
        found: dict[str, Journal] = {}
        for name in sorted(names):
            if not name.endswith(".json"):
                continue
            journal_id = name.removesuffix(".json").removesuffix(".pending")
            if name.endswith(".pending.json") and journal_id in found:
                continue
            path = os.path.join(self.journal_dir, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    data = _json().load(handle)
            except (OSError, ValueError):
                continue  # a torn temp file cannot exist (atomic writes); anything else is not ours
            if not isinstance(data, dict) or "id" not in data:
                continue
            found[journal_id] = Journal(path, data)
        return sorted(found.values(), key=lambda j: (str(j.data.get("started", "")), j.id))

    def find(self, ref: str) -> Journal:
        """A journal by id or unique id prefix."""
        matches = [j for j in self.journals() if j.id == ref or j.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no apply with id {ref!r} in {self.journal_dir} (see 'tcptune history')")
        raise UsageError(f"{ref!r} matches {len(matches)} journals: " + ", ".join(j.id for j in matches))

    def interrupted(self) -> list[Journal]:
        """Pending journals whose process is gone: an apply or rollback killed part-way."""
        return [j for j in self.journals() if j.status == PENDING and not _alive(j.data.get("pid"))]

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
        atomic_write(self.last_applied_path, _json().dumps(record, indent=2) + "\n", mode=0o600)

    def read_last_applied(self) -> dict[str, Any] | None:
        try:
            with open(self.last_applied_path, encoding="utf-8") as handle:
                data = _json().load(handle)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise LiveStateError(f"cannot read {self.last_applied_path}: permission denied "
                                 "(run as root, or name a profile: 'tcptune diff PROFILE')") from None
        except (OSError, ValueError) as exc:
            raise LiveStateError(f"cannot read {self.last_applied_path}: {exc}") from None
        return data if isinstance(data, dict) else None

    def clear_last_applied(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.last_applied_path)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
