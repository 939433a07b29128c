"""The state directory: the lock, the generations, the pending transaction. Every file read back is bounded and
validated field by field before anything acts on it: state on disk is input like any other.

Layout (``target.DEFAULT_STATE_DIR`` by default; created 0700 and refused if others could write to it)::

    lock                    the pid of the holder, for messages only: the lock itself is flock(2) on the directory
    generations/<N>.json    generation N (1, 2, ...): the whole desired state after a successful apply, rollback or
                            reset; written atomically, never modified after
    pending.json            the one transaction in flight (absent when none), written before its first change

Generation 0 is implicit: nothing managed. Standard library only (with the shipped ``persist``, ``live``,
``plan`` and ``failures``): shipped to hosts with the engine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from .failures import LockHeld, MalformedState, StateError
from .live import split_key
from .persist import MAX_FILE_BYTES, UnsafeFile, atomic_write, read_bounded
from .plan import Change
from .records import Record

FORMAT = 1
KINDS = ("apply", "rollback", "reset")
MAX_TEXT_BYTES = 4096
"""Longest key, value, name or path a state file may hold."""
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_TEMP = re.compile(r"\.tcptune-.*\.tmp")
"""``persist.atomic_write``'s temporary files: left behind only by a process killed mid-write."""

KeyPolicy = typing.Callable[[str], bool]  # typing.Callable: evaluated at run time on hosts (Python >= 3.8)
"""Whether a key may appear in state: the CLI passes the catalog's lookup. Keys a profile allowed explicitly
(a generation's ``raw`` list, under ``net.``) are accepted besides."""


class ProfileRecord(Record):
    name: str
    fingerprint: str
    source: str | None = None


class Owner(Record):
    """One owner's part of a generation (an Ansible role among others on the host): its profile and its keys."""

    profile: ProfileRecord
    keys: tuple[str, ...]


OWNER_NAME = re.compile(r"[A-Za-z0-9_.-]{0,128}")
"""Owner names: role names ("" is the profile applied by 'tcptune apply' or 'tcptune push', which owns no name)."""


class Baseline(Record):
    """A key's value before tcptune managed it: live, and what the sysctl.d files (tcptune's own excluded) set at
    boot. None: unknown (the key could not be read, or no file sets it)."""

    live: str | None
    boot: str | None


class FileRecord(Record):
    """tcptune's sysctl.d file at a generation: its path, its content (None: no file) and the content it had before
    tcptune first wrote it (None: there was no file)."""

    path: str
    content: str | None
    baseline: str | None


class Generation(Record):
    """One generation, as ``generations/<number>.json`` holds it."""

    number: int
    kind: str
    """apply | rollback | reset."""
    from_: int
    """The generation current when this one was made (0: nothing was managed)."""
    created: str
    """ISO-8601 UTC, for people: never used for ordering (the number is the order)."""
    profile: ProfileRecord | None
    values: dict[str, str]
    """Every managed key and its desired value (empty after a reset)."""
    skipped: tuple[str, ...]
    """Managed keys not written here (--skip-missing / --skip-readonly)."""
    raw: tuple[str, ...]
    """Keys of ``values`` that are not catalog keys but a profile allowed explicitly (all under ``net.``)."""
    baseline: dict[str, Baseline]
    """Exactly the managed keys."""
    file: FileRecord | None
    """None: tcptune does not manage the sysctl.d file (--no-persist from the start, or after a reset)."""
    target: int | None = None
    """For a rollback: the generation whose state it restored."""
    counters: dict[str, int] | None = None
    """Kernel counters read at commit time (the start of ``recommend``'s window); None: not recorded."""
    by: dict[str, Any] | None = None
    """{"uid", "pid", "host"} of the process that made it."""
    owners: dict[str, Owner] | None = None
    """Which owner set which keys, when roles share the host (``owners.compose``); None: one profile owns all."""
    counters_netns: str | None = None
    """The network namespace ``counters`` were read in (``/proc/self/ns/net``'s link, e.g. ``net:[4026531840]``)."""

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "generation": self.number,
            "kind": self.kind,
            "from": self.from_,
            "created": self.created,
            "profile": self.profile._asdict() if self.profile else None,
            "values": dict(sorted(self.values.items())),
            "skipped": sorted(self.skipped),
            "raw": sorted(self.raw),
            "baseline": {key: b._asdict() for key, b in sorted(self.baseline.items())},
            "file": self.file._asdict() if self.file else None,
        }
        if self.target is not None:
            doc["target"] = self.target
        doc["counters"] = self.counters
        if self.counters_netns is not None:
            doc["counters_netns"] = self.counters_netns
        doc["by"] = self.by
        if self.owners is not None:
            doc["owners"] = {
                name: {"profile": owner.profile._asdict(), "keys": sorted(owner.keys)}
                for name, owner in sorted(self.owners.items())
            }
        return doc


class FileStep(Record):
    """A change to tcptune's sysctl.d file: from ``old`` to ``new`` (None: no file)."""

    path: str
    old: str | None
    new: str | None


class Pending(Record):
    """The transaction in flight: enough to finish it (commit) or to return to ``from_`` exactly (recover)."""

    from_: int
    to: int
    kind: str
    started: str
    pid: int
    writes: tuple[Change, ...]
    """In execution order; ``old`` is the live value read just before, under the lock."""
    file: FileStep | None
    generation: Generation
    """The complete generation ``to``, committed if the transaction succeeds."""

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "from": self.from_,
            "to": self.to,
            "kind": self.kind,
            "started": self.started,
            "pid": self.pid,
            "writes": [c.as_dict() for c in self.writes],
            "file": self.file._asdict() if self.file else None,
            "generation": self.generation.as_json(),
        }


def now_text() -> str:
    """UTC now, to the second, from one reading of the clock (display only)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))


def made_by() -> dict[str, Any]:
    return {"uid": os.geteuid(), "pid": os.getpid(), "host": os.uname().nodename}


# ---- reading: bounded, then checked field by field -------------------------------------------------------------------


def _json() -> Any:
    import json  # not on the start-up path of commands that only check for a pending transaction

    return json


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate field {key!r}")
        result[key] = value
    return result


def load_json(path: str, kind: str) -> Any:
    """A state file's JSON, or None if it does not exist. Never blocks, follows no link, reads at most 1 MiB;
    anything that is not a JSON document of plain size and depth raises MalformedState naming the file."""
    try:
        data = read_bounded(path, follow=False, limit=MAX_FILE_BYTES)
    except UnsafeFile as exc:
        raise MalformedState(path, exc.strerror or "unreadable", kind) from None
    except OSError as exc:
        hint = " (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        raise StateError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}{hint}") from None
    if data is None:
        return None
    try:
        return _json().loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise MalformedState(path, "not UTF-8 text", kind) from None
    except RecursionError:
        raise MalformedState(path, "JSON nested too deeply", kind) from None
    except ValueError as exc:
        raise MalformedState(path, f"not valid JSON ({exc})", kind) from None


class _Checker:
    """Field checks for one file: each failure is MalformedState naming the file and the field."""

    def __init__(self, path: str, kind: str, known_key: KeyPolicy) -> None:
        self.path, self.kind, self.known_key = path, kind, known_key

    def fail(self, what: str) -> MalformedState:
        return MalformedState(self.path, what, self.kind)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise self.fail(what)

    def obj(self, value: object, what: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
        """An object with exactly ``fields`` (and perhaps ``optional`` ones): unknown fields are refused."""
        self.check(isinstance(value, dict), f"{what} must be an object")
        assert isinstance(value, dict)
        missing = [f for f in fields if f not in value]
        self.check(not missing, f"{what} lacks {', '.join(repr(f) for f in missing)}")
        unknown = sorted(set(value) - set(fields) - set(optional))
        self.check(not unknown, f"{what} has unknown field(s) {', '.join(repr(f) for f in unknown[:5])}")
        return value

    def integer(self, value: object, what: str, minimum: int = 0) -> int:
        self.check(isinstance(value, int) and not isinstance(value, bool), f"{what} must be an integer")
        assert isinstance(value, int)
        self.check(minimum <= value < 10**18, f"{what} must be at least {minimum}")
        return value

    def text(self, value: object, what: str, *, one_line: bool = True, limit: int = MAX_TEXT_BYTES) -> str:
        self.check(isinstance(value, str), f"{what} must be a string")
        assert isinstance(value, str)
        self.check(len(value.encode("utf-8", "surrogatepass")) <= limit, f"{what} is longer than {limit} bytes")
        if one_line:
            self.check(not any(ord(ch) < 32 or ord(ch) == 127 for ch in value), f"{what} holds a control character")
        else:
            self.check("\x00" not in value, f"{what} holds a NUL byte")
        return value

    def optional_text(
        self, value: object, what: str, *, one_line: bool = True, limit: int = MAX_TEXT_BYTES
    ) -> str | None:
        return None if value is None else self.text(value, what, one_line=one_line, limit=limit)

    def key(self, value: object, what: str, raw: frozenset[str] = frozenset()) -> str:
        """A dotted sysctl key the catalog knows, or one of ``raw`` (which must be under ``net.``)."""
        key = self.text(value, what, limit=256)
        try:
            parts = split_key(key)
        except ValueError as exc:
            raise self.fail(f"{what}: {exc}") from None
        self.check(".".join(parts) == key, f"{what}: {key!r} is not a dotted key name")
        if key in raw:
            self.check(key.startswith("net."), f"{what}: {key!r}: keys outside the catalog must be under net.")
        else:
            self.check(self.known_key(key), f"{what}: {key!r} is not a key tcptune manages")
        return key

    def key_list(self, value: object, what: str, raw: frozenset[str] = frozenset()) -> tuple[str, ...]:
        self.check(isinstance(value, list), f"{what} must be a list of keys")
        assert isinstance(value, list)
        keys = tuple(self.key(item, f"{what}[{i}]", raw) for i, item in enumerate(value))
        self.check(len(set(keys)) == len(keys), f"{what} names a key twice")
        return keys


GENERATION_FIELDS = (
    "format",
    "generation",
    "kind",
    "from",
    "created",
    "profile",
    "values",
    "skipped",
    "raw",
    "baseline",
    "file",
    "counters",
    "by",
)


def generation_from_json(data: object, path: str, number: int | None, known_key: KeyPolicy) -> Generation:
    """A generation document checked in full; ``number`` is the one its file name gives (None: embedded in a
    pending record, checked by the caller)."""
    c = _Checker(path, "generation", known_key)
    doc = c.obj(data, "the document", GENERATION_FIELDS, optional=("target", "owners", "counters_netns"))
    c.check(doc["format"] == FORMAT and not isinstance(doc["format"], bool), f"'format' must be {FORMAT}")
    n = c.integer(doc["generation"], "'generation'", minimum=1)
    if number is not None:
        c.check(n == number, f"'generation' is {n} but the file name says {number}")
    kind = doc["kind"]
    c.check(kind in KINDS, f"'kind' must be one of {', '.join(KINDS)}")
    from_ = c.integer(doc["from"], "'from'")
    c.check(from_ < n, f"'from' ({from_}) must be below 'generation' ({n})")
    created = c.text(doc["created"], "'created'", limit=64)
    profile = None
    if doc["profile"] is not None:
        p = c.obj(doc["profile"], "'profile'", ("name", "fingerprint", "source"))
        profile = ProfileRecord(
            c.text(p["name"], "profile.name"),
            c.text(p["fingerprint"], "profile.fingerprint"),
            c.optional_text(p["source"], "profile.source"),
        )
    c.check(isinstance(doc["raw"], list), "'raw' must be a list of keys")
    raw_names = frozenset(item for item in doc["raw"] if isinstance(item, str))
    raw = c.key_list(doc["raw"], "'raw'", raw_names)
    values_doc = doc["values"]
    c.check(isinstance(values_doc, dict), "'values' must be an object of key: value")
    assert isinstance(values_doc, dict)
    values = {
        c.key(key, f"values key {key!r}"[:300], frozenset(raw)): c.text(value, f"values[{key!r}]")
        for key, value in values_doc.items()
    }
    c.check(set(raw) <= set(values), "'raw' names a key that is not in 'values'")
    skipped = c.key_list(doc["skipped"], "'skipped'", frozenset(raw))
    c.check(set(skipped) <= set(values), "'skipped' names a key that is not in 'values'")
    baseline_doc = doc["baseline"]
    c.check(isinstance(baseline_doc, dict), "'baseline' must be an object of key: {live, boot}")
    assert isinstance(baseline_doc, dict)
    c.check(set(baseline_doc) == set(values), "'baseline' must name exactly the keys of 'values'")
    baseline = {}
    for key, entry in baseline_doc.items():
        b = c.obj(entry, f"baseline[{key!r}]", ("live", "boot"))
        baseline[key] = Baseline(
            c.optional_text(b["live"], f"baseline[{key!r}].live"),
            c.optional_text(b["boot"], f"baseline[{key!r}].boot"),
        )
    file = None
    if doc["file"] is not None:
        f = c.obj(doc["file"], "'file'", ("path", "content", "baseline"))
        file_path = c.text(f["path"], "file.path")
        c.check(os.path.isabs(file_path), "file.path must be an absolute path")
        file = FileRecord(
            file_path,
            c.optional_text(f["content"], "file.content", one_line=False, limit=MAX_FILE_BYTES),
            c.optional_text(f["baseline"], "file.baseline", one_line=False, limit=MAX_FILE_BYTES),
        )
    target = None
    if kind == "rollback":
        c.check("target" in doc, "a rollback must name its 'target' generation")
        target = c.integer(doc["target"], "'target'")
        c.check(target < n, f"'target' ({target}) must be below 'generation' ({n})")
    else:
        c.check("target" not in doc, "only a rollback has a 'target'")
    counters = None
    if doc["counters"] is not None:
        c.check(isinstance(doc["counters"], dict), "'counters' must be an object of name: number")
        counters = {
            c.text(name, "counters name", limit=128): c.integer(value, f"counters[{name!r}]")
            for name, value in doc["counters"].items()
        }
    counters_netns = c.optional_text(doc.get("counters_netns"), "'counters_netns'", limit=128)
    c.check(counters is not None or counters_netns is None, "'counters_netns' without 'counters'")
    by = c.obj(doc["by"], "'by'", ("uid", "pid", "host"))
    by = {
        "uid": c.integer(by["uid"], "by.uid"),
        "pid": c.integer(by["pid"], "by.pid"),
        "host": c.text(by["host"], "by.host"),
    }
    owners = _owners(c, doc.get("owners"), values, frozenset(raw))
    return Generation(
        n,
        kind,
        from_,
        created,
        profile,
        values,
        skipped,
        raw,
        baseline,
        file,
        target,
        counters,
        by,
        owners,
        counters_netns,
    )


def _owners(c: _Checker, doc: object, values: Mapping[str, str], raw: frozenset[str]) -> dict[str, Owner] | None:
    """'owners': every owner's profile and keys; together they own exactly the keys of 'values'."""
    if doc is None:
        return None
    c.check(isinstance(doc, dict) and bool(doc), "'owners' must be an object of owner: {profile, keys}")
    assert isinstance(doc, dict)
    owners = {}
    for name, entry in doc.items():
        c.check(isinstance(name, str) and OWNER_NAME.fullmatch(name) is not None, "'owners' has a bad owner name")
        o = c.obj(entry, f"owners[{name!r}]", ("profile", "keys"))
        p = c.obj(o["profile"], f"owners[{name!r}].profile", ("name", "fingerprint", "source"))
        record = ProfileRecord(
            c.text(p["name"], f"owners[{name!r}].profile.name"),
            c.text(p["fingerprint"], f"owners[{name!r}].profile.fingerprint"),
            c.optional_text(p["source"], f"owners[{name!r}].profile.source"),
        )
        owners[name] = Owner(record, c.key_list(o["keys"], f"owners[{name!r}].keys", raw))
    owned = {key for owner in owners.values() for key in owner.keys}
    c.check(owned == set(values), "'owners' must own exactly the keys of 'values'")
    return owners


def pending_from_json(data: object, path: str, known_key: KeyPolicy, raw: frozenset[str] = frozenset()) -> Pending:
    """A pending record checked in full. ``raw``: keys outside the catalog the from-generation allowed (a revert
    writes them back)."""
    c = _Checker(path, "pending record", known_key)
    doc = c.obj(
        data, "the document", ("format", "from", "to", "kind", "started", "pid", "writes", "file", "generation")
    )
    c.check(doc["format"] == FORMAT and not isinstance(doc["format"], bool), f"'format' must be {FORMAT}")
    from_ = c.integer(doc["from"], "'from'")
    to = c.integer(doc["to"], "'to'", minimum=1)
    c.check(to == from_ + 1, f"'to' ({to}) must be 'from' + 1 ({from_ + 1})")
    kind = doc["kind"]
    c.check(kind in KINDS, f"'kind' must be one of {', '.join(KINDS)}")
    started = c.text(doc["started"], "'started'", limit=64)
    pid = c.integer(doc["pid"], "'pid'")
    try:
        generation = generation_from_json(doc["generation"], path, None, known_key)
    except MalformedState as exc:
        raise c.fail(f"its 'generation': {exc.what}") from None
    c.check(generation.number == to, f"its generation is {generation.number}, not 'to' ({to})")
    c.check(generation.from_ == from_ and generation.kind == kind, "its generation disagrees with 'from' or 'kind'")
    allowed = raw | frozenset(generation.raw)
    c.check(isinstance(doc["writes"], list), "'writes' must be a list")
    writes = []
    for i, item in enumerate(doc["writes"]):
        w = c.obj(item, f"writes[{i}]", ("key", "old", "new"))
        writes.append(
            Change(
                c.key(w["key"], f"writes[{i}].key", allowed),
                c.text(w["old"], f"writes[{i}].old"),
                c.text(w["new"], f"writes[{i}].new"),
            )
        )
    file = None
    if doc["file"] is not None:
        f = c.obj(doc["file"], "'file'", ("path", "old", "new"))
        file = FileStep(
            c.text(f["path"], "file.path"),
            c.optional_text(f["old"], "file.old", one_line=False, limit=MAX_FILE_BYTES),
            c.optional_text(f["new"], "file.new", one_line=False, limit=MAX_FILE_BYTES),
        )
    return Pending(from_, to, kind, started, pid, tuple(writes), file, generation)


# ---- the directory ---------------------------------------------------------------------------------------------------


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateDir:
    """tcptune's state on one machine. ``known_key`` decides which keys state files may name."""

    def __init__(self, path: str, known_key: KeyPolicy) -> None:
        self.path = path
        self.known_key = known_key
        self.generations_dir = os.path.join(path, "generations")
        self.pending_path = os.path.join(path, "pending.json")
        self.lock_path = os.path.join(path, "lock")
        self.holds_lock = False
        """True while this object holds the lock: then no other transaction can be running."""

    def __repr__(self) -> str:
        return f"StateDir({self.path!r})"

    # ---- the directory itself ----------------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the directory tree, owner-only (generations hold the machine's previous settings).

        Only directories created here are chmod'ed: an existing --state-dir keeps its mode, but one owned by another
        user or writable by group or others is refused (rollback acts on what the generations say).
        """
        for directory in (self.path, self.generations_dir):
            try:
                if not os.path.isdir(directory):
                    os.makedirs(directory, mode=0o700)
                    os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
                    fsync_dir(os.path.dirname(os.path.abspath(directory)))
            except OSError as exc:
                raise StateError(
                    f"cannot create the state directory {directory}: {(exc.strerror or str(exc)).lower()} "
                    "(use --state-dir or TCPTUNE_STATE_DIR)"
                ) from None
            self._check_private(directory)

    @staticmethod
    def _check_private(directory: str) -> None:
        try:
            info = os.stat(directory)
        except OSError as exc:
            raise StateError(f"cannot use the state directory {directory}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(f"the state directory {directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise StateError(
                f"refusing to use the state directory {directory}: it is owned by uid {info.st_uid}, "
                f"not by this user (uid {os.geteuid()}); 'chown {os.geteuid()} {directory}' or pick another --state-dir"
            )
        if info.st_mode & 0o022:
            raise StateError(
                f"refusing to use the state directory {directory}: it is writable by group or "
                f"others (mode {stat.S_IMODE(info.st_mode):04o}); 'chmod 700 {directory}'"
            )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive and non-blocking: a second transaction fails at once, naming the holder's pid.

        The lock is flock(2) on the state directory itself, checked to be the inode the path names (retried if the
        directory was replaced in between). The ``lock`` file only carries the pid: deleting it lets nobody in.
        """
        self.ensure()
        fd = -1
        for _attempt in range(20):
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise StateError(f"cannot open the state directory {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockHeld(self.holder_pid()) from None
            except OSError as exc:
                os.close(fd)
                raise StateError(f"cannot lock the state directory {self.path}: {exc.strerror}") from None
            try:
                held, named = os.fstat(fd), os.stat(self.path)
                if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                    break
            except OSError:
                pass
            os.close(fd)  # the directory was replaced under us: lock the one the path names now
            fd = -1
        if fd < 0:
            raise StateError(f"the state directory {self.path} keeps being replaced; cannot lock it")
        pid_fd = self._write_pid()
        self.holds_lock = True
        try:
            yield
        finally:
            self.holds_lock = False
            if pid_fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(pid_fd, 0)
                os.close(pid_fd)
            os.close(fd)  # releases the flock

    def _write_pid(self) -> int | None:
        """The holder's pid in ``lock``, for the message of a second tcptune; best effort (never a link, FIFO...)."""
        try:
            pid_fd = os.open(
                self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600
            )
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(pid_fd).st_mode):
                os.close(pid_fd)
                return None
            os.ftruncate(pid_fd, 0)
            os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        return pid_fd

    def holder_pid(self) -> int | None:
        try:
            data = read_bounded(self.lock_path, follow=False, limit=64)
            return int((data or b"").decode().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def is_busy(self) -> bool:
        """Whether a transaction holds the lock right now (a shared non-blocking probe, released at once).

        Inside this process while it holds the lock, the probe says busy: use ``holds_lock`` there.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
        return False

    # ---- generations -------------------------------------------------------------------------------------------------

    def generation_path(self, number: int) -> str:
        return os.path.join(self.generations_dir, f"{number}.json")

    def numbers(self) -> list[int]:
        """Every generation number on disk, ascending (file names ``<N>.json``; anything else is ignored)."""
        try:
            names = os.listdir(self.generations_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            hint = " (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
            raise StateError(f"cannot read {self.generations_dir}: {(exc.strerror or '').lower()}{hint}") from None
        found = []
        for name in names:
            stem, dot, ext = name.partition(".")
            if dot and ext == "json" and _NUMBER.fullmatch(stem):
                found.append(int(stem))
        return sorted(found)

    def current_number(self) -> int:
        numbers = self.numbers()
        return numbers[-1] if numbers else 0

    def read_generation(self, number: int) -> Generation:
        """Generation ``number``, checked; MalformedState naming the file, StateError if it does not exist."""
        path = self.generation_path(number)
        data = load_json(path, "generation")
        if data is None:
            raise StateError(f"no generation {number} in {self.generations_dir} (see 'tcptune history')")
        return generation_from_json(data, path, number, self.known_key)

    def current(self) -> Generation | None:
        """The current generation (the highest number), or None when nothing was ever managed here."""
        number = self.current_number()
        return self.read_generation(number) if number else None

    def history(self) -> list[tuple[int, Generation | MalformedState | StateError]]:
        """Every generation, newest first; one that cannot be read is listed as its error (naming the file)."""
        result: list[tuple[int, Generation | MalformedState | StateError]] = []
        for number in reversed(self.numbers()):
            try:
                result.append((number, self.read_generation(number)))
            except StateError as exc:
                result.append((number, exc))
        return result

    # ---- the pending transaction -------------------------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Cheap enough for every command: one lstat."""
        try:
            os.lstat(self.pending_path)
        except OSError:
            return False
        return True

    def interrupted(self) -> bool:
        """A pending record exists and no transaction is running: it was killed part-way (kill -9, power loss)."""
        return self.has_pending() and (self.holds_lock or not self.is_busy())

    def read_pending(self) -> Pending | None:
        data = load_json(self.pending_path, "pending record")
        if data is None:
            return None
        raw: frozenset[str] = frozenset()
        if isinstance(data, dict) and isinstance(data.get("from"), int) and data["from"] > 0:
            with contextlib.suppress(StateError):
                raw = frozenset(self.read_generation(data["from"]).raw)
        return pending_from_json(data, self.pending_path, self.known_key, raw)

    def write_pending(self, pending: Pending) -> None:
        """Atomic: temp file, fsync, rename, fsync of the directory. Must happen before the first change."""
        self._write_json(self.pending_path, pending.as_json())

    def drop_pending(self) -> None:
        try:
            os.unlink(self.pending_path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot remove {self.pending_path}: {(exc.strerror or str(exc)).lower()}") from None
        self._fsync(self.path)

    def commit(self, generation: Generation) -> None:
        """Write ``generations/<N>.json`` (the commit point of a transaction). The pending record is dropped by the
        caller afterwards."""
        path = self.generation_path(generation.number)
        if os.path.lexists(path):
            raise StateError(f"{path} exists already; refusing to replace a generation")
        self._write_json(path, generation.as_json())

    def _write_json(self, path: str, doc: Mapping[str, Any]) -> None:
        try:
            atomic_write(path, _json().dumps(doc, indent=2) + "\n", 0o600)
        except OSError as exc:
            raise StateError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None

    def _fsync(self, directory: str) -> None:
        try:
            fsync_dir(directory)
        except OSError as exc:
            raise StateError(f"cannot sync {directory}: {(exc.strerror or str(exc)).lower()}") from None

    def sweep_temp_files(self) -> list[str]:
        """Remove temporary files a killed write left behind (only under the lock: none can be in use)."""
        removed: list[str] = []
        for directory in (self.path, self.generations_dir):
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if _TEMP.fullmatch(name):
                    path = os.path.join(directory, name)
                    with contextlib.suppress(OSError):
                        if stat.S_ISREG(os.lstat(path).st_mode):
                            os.unlink(path)
                            removed.append(path)
            if removed:
                with contextlib.suppress(OSError):
                    fsync_dir(directory)
        return removed

    def old_layout(self) -> list[str]:
        """What tcptune 0.1.0 kept here (``journal/``, ``last-applied.json``): no longer read."""
        return [
            os.path.join(self.path, name)
            for name in ("journal", "last-applied.json")
            if os.path.lexists(os.path.join(self.path, name))
        ]
