"""Kill the real ``tcptune`` at chosen system calls (strace fault injection) and observe the machine afterwards.

Everything here runs inside a :class:`KernelSandbox` (throwaway network + mount namespace, /proc/sys read-only
outside net). strace runs inside the namespace too (``nsenter ... strace ... tcptune``), so the tracee is tcptune
itself and strace's per-tracee call counters count tcptune's calls only.

What the machine "is" (:class:`Machine`) is read by the test with its own hands: live values from the namespace's
/proc/sys (a small reader process inside it), tcptune's sysctl.d file, the state directory's files, and
``tcptune history --format json``. Two observations are equal only if all of these are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.kernel_sandbox import KernelSandbox, die_with_parent

STRACE = shutil.which("strace") or "/usr/bin/strace"
"""strace (Debian package ``strace``) is needed by these suites; CI must install it."""


def require_strace() -> None:
    """Fail (never skip: a suite that silently does not run proves nothing) when strace is missing."""
    if not os.access(STRACE, os.X_OK):
        raise RuntimeError(f"{STRACE} not found: the fault-injection suites need strace (apt-get install strace)")


SYSCTL_FILE = "90-tcptune.conf"
TEMP_PREFIX = ".tcptune-"

# Every system call through which tcptune could change a file or learn/hold the lock, by family. A kill -9 is
# delivered on ENTRY to the chosen call (the call does not run), so killing at each of these calls reaches every
# state between two consecutive file-system changes; the state after the last change is the finished run.
FAMILIES: dict[str, tuple[str, ...]] = {
    "openat": ("open", "openat", "openat2", "creat"),
    "write": ("write", "pwrite64", "writev", "pwritev", "pwritev2"),
    "fsync": ("fsync", "fdatasync", "syncfs", "sync_file_range"),
    "rename": ("rename", "renameat", "renameat2"),
    "unlink": ("unlink", "unlinkat", "rmdir"),
    "mkdir": ("mkdir", "mkdirat"),
    "chmod": ("chmod", "fchmod", "fchmodat", "chown", "fchown", "fchownat", "lchown"),
    "truncate": ("truncate", "ftruncate"),
    "link": ("link", "linkat", "symlink", "symlinkat"),
    "flock": ("flock",),
}
FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}
ALL_CALLS = tuple(FAMILY_OF)

# ---- the profiles the suites switch between ----------------------------------------------------------------------

# per-network-namespace keys only: writing them in the sandbox can never reach the machine
KEYS = (
    "net.core.somaxconn",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
)

PROFILES = {
    "a": """\
name: crash-a
settings:
  net.ipv4.tcp_fin_timeout: 17
  net.ipv4.tcp_keepalive_time: 600
  net.core.somaxconn: 1234
  net.ipv4.tcp_rmem: [4096, 65536, 4194304]
""",
    # switching a -> b: keepalive_time and tcp_rmem go back to their baseline, port range and intvl are new
    "b": """\
name: crash-b
settings:
  net.ipv4.tcp_fin_timeout: 23
  net.core.somaxconn: 2048
  net.ipv4.ip_local_port_range: [20000, 50001]
  net.ipv4.tcp_keepalive_intvl: 30
""",
    "c": """\
name: crash-c
settings:
  net.ipv4.tcp_fin_timeout: 31
  net.ipv4.tcp_keepalive_probes: 5
  net.ipv4.tcp_rmem: [4096, 87380, 4000000]
""",
}

# a site file of the administrator's, so that baselines have boot values too (tcptune's 90- file sorts after it)
SITE_FILE = ("50-site.conf", "net.ipv4.tcp_keepalive_time = 900\nnet.core.somaxconn = 3000\n")


def profile_values(name: str) -> dict[str, str]:
    """PROFILES[name]'s values as the kernel prints them (whitespace folded)."""
    values = {}
    for line in PROFILES[name].splitlines():
        if line.startswith("  net."):
            key, _, value = line.strip().partition(": ")
            values[key] = " ".join(value.strip("[]").replace(",", " ").split())
    return values


# ---- strace output ------------------------------------------------------------------------------------------------

_LINE = re.compile(r"^(?P<pid>\d+)\s+(?:(?P<ts>\d+\.\d+)\s+)?(?P<name>[a-z_0-9]+)\((?P<args>.*)\)\s+=\s+(?P<ret>.*)$")
_LINE_UNFINISHED = re.compile(r"^(?P<pid>\d+)\s+(?:(?P<ts>\d+\.\d+)\s+)?(?P<name>[a-z_0-9]+)\((?P<args>.*)$")
_TOKEN = re.compile(r'(?P<fd>(?:AT_FDCWD|-?\d+)<(?P<fdpath>[^>]*)>)|"(?P<str>(?:[^"\\]|\\.)*)"')
_FD_CALLS = {
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "fsync",
    "fdatasync",
    "syncfs",
    "sync_file_range",
    "ftruncate",
    "fchmod",
    "fchown",
    "flock",
}
_TWO_PATHS = {"rename", "renameat", "renameat2", "link", "linkat"}


@dataclass(frozen=True)
class Call:
    """One system call line of an ``strace -f -y`` trace."""

    index: int
    pid: int
    name: str
    args: str
    ret: str
    ts: float | None

    @property
    def paths(self) -> tuple[str, ...]:
        """The files the call names: the fd's file for fd calls, else its path arguments (made absolute through
        the ``-y`` decoded directory fd when relative)."""
        tokens = list(_TOKEN.finditer(self.args))
        if self.name in _FD_CALLS:
            first = tokens[0] if tokens else None
            return (first["fdpath"],) if first is not None and first["fd"] and self.args.startswith(first[0]) else ()
        found: list[str] = []
        directory: str | None = None
        for token in tokens:
            if token["fd"]:
                directory = token["fdpath"]
                continue
            text = token["str"]
            found.append(text if text.startswith("/") or directory is None else os.path.join(directory, text))
            directory = None
            if len(found) == (2 if self.name in _TWO_PATHS else 1):
                break
        return tuple(found)

    @property
    def writes_file(self) -> bool:
        """An open that can create or change a file."""
        return self.name in ("open", "openat", "openat2", "creat") and bool(
            re.search(r"\bO_(WRONLY|RDWR|CREAT|TRUNC)\b", self.args) or self.name == "creat"
        )

    def where(self) -> str:
        """The call's family, name and the files it names, with temp names folded (they are random per run)."""
        return f"{self.name}({', '.join(fold_temp(p) for p in self.paths)})"


def fold_temp(path: str) -> str:
    """A path with what differs between two identical runs folded: temp names, pipe and socket inode numbers."""
    return re.sub(r"(pipe|socket):\[\d+\]", r"\1", re.sub(r"\.tcptune-[^/]*", ".tcptune-*", path))


def parse_trace(text: str) -> list[Call]:
    calls: list[Call] = []
    for line in text.splitlines():
        match = _LINE.match(line) or _LINE_UNFINISHED.match(line)
        if match is None or match["name"] not in FAMILY_OF or "resumed>" in line:
            continue
        args = match["args"]
        ret = match.groupdict().get("ret") or "?"
        if args.endswith(" <unfinished ..."):
            args = args[: -len(" <unfinished ...")]
        ts = float(match["ts"]) if match["ts"] else None
        calls.append(Call(len(calls), int(match["pid"]), match["name"], args, ret, ts))
    return calls


# ---- the live values, read and set by a reader process inside the namespace --------------------------------------

_PROC_HELPER = r"""
import json, sys
def path(key):
    p = "/proc/sys/" + key.replace(".", "/")
    if not p.startswith("/proc/sys/net/") or ".." in key:
        raise ValueError(key)
    return p
for line in sys.stdin:
    req = json.loads(line)
    try:
        out = {}
        if req["op"] == "read":
            for key in req["keys"]:
                try:
                    with open(path(key)) as f:
                        out[key] = " ".join(f.read().split())
                except FileNotFoundError:
                    out[key] = None
        else:
            for key, value in req["values"].items():
                with open(path(key), "w") as f:
                    f.write(value + "\n")
        answer = {"ok": True, "values": out}
    except Exception as exc:
        answer = {"ok": False, "error": repr(exc)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class ProcReader:
    """Reads (and, to reset a case, writes) the namespace's /proc/sys/net keys with one long-lived process, so
    that checking a case costs microseconds rather than a process per key."""

    def __init__(self, box: KernelSandbox) -> None:
        self.process = subprocess.Popen(
            [*box.enter, sys.executable, "-c", _PROC_HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        box.adopt(self.process)

    def _ask(self, request: dict[str, Any]) -> dict[str, str | None]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if not answer["ok"]:
            raise RuntimeError(f"namespace /proc/sys helper: {answer['error']}")
        return answer["values"]

    def read(self, keys: Iterable[str]) -> dict[str, str | None]:
        return self._ask({"op": "read", "keys": sorted(keys)})

    def write(self, values: Mapping[str, str]) -> None:
        self._ask({"op": "write", "values": dict(values)})


# ---- what the machine is ------------------------------------------------------------------------------------------

VOLATILE = frozenset({"created", "started", "by", "pid", "uid", "host"})
"""Fields that differ between two runs doing the same thing (clock, process); everything else must be equal."""


def stable(value: Any) -> Any:
    """``value`` without the fields named in VOLATILE, at any depth."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


@dataclass(frozen=True)
class Machine:
    """One observation of everything a transaction may change."""

    live: tuple[tuple[str, str | None], ...]
    sysctl_file: str | None
    state_files: tuple[tuple[str, str], ...]
    """Every file of the state directory but ``lock`` (informational, may come and go) and temp files, with its
    content (generation documents without their VOLATILE fields)."""
    history: str
    temp_files: tuple[str, ...] = field(compare=False)
    pending: bool = field(compare=False)

    def without_history(self) -> Machine:
        return dataclasses.replace(self, history="")

    def differences(self, other: Machine) -> list[str]:
        out = []
        if self.live != other.live:
            mine, theirs = dict(self.live), dict(other.live)
            out.append("live " + ", ".join(f"{k}={mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]))
        if self.sysctl_file != other.sysctl_file:
            out.append(f"{SYSCTL_FILE}: {self.sysctl_file!r} vs {other.sysctl_file!r}")
        if self.state_files != other.state_files:
            out.append(f"state files: {[n for n, _ in self.state_files]} vs {[n for n, _ in other.state_files]}")
            mine_files, theirs_files = dict(self.state_files), dict(other.state_files)
            for name in sorted(set(mine_files) & set(theirs_files)):
                if mine_files[name] != theirs_files[name]:
                    out.append(f"  {name}: {mine_files[name]} vs {theirs_files[name]}")
        if self.history != other.history:
            out.append(f"history: {self.history} vs {other.history}")
        return out


def temp_files(*directories: Path) -> list[str]:
    found = []
    for directory in directories:
        if directory.is_dir():
            found += [str(p) for p in directory.rglob(TEMP_PREFIX + "*")]
    return sorted(found)


def _state_files(state_dir: Path) -> tuple[tuple[str, str], ...]:
    if not state_dir.is_dir():
        return ()
    files = []
    for path in sorted(state_dir.rglob("*")):
        name = str(path.relative_to(state_dir))
        if path.is_dir() or name == "lock" or path.name.startswith(TEMP_PREFIX):
            continue
        text = path.read_text(errors="replace")
        with contextlib.suppress(ValueError):
            text = json.dumps(stable(json.loads(text)), sort_keys=True)
        files.append((name, text))
    return tuple(files)


class Bench:
    """A sandbox with a fixed set of keys: run tcptune in it (plain, traced, or killed at a call), observe it,
    snapshot it and put it back exactly (files and live values) between cases."""

    def __init__(self, box: KernelSandbox, keys: Iterable[str]) -> None:
        require_strace()
        self.box = box
        self.keys = tuple(sorted(keys))
        self.proc = ProcReader(box)
        self.traces = box.dir / "traces"
        self.traces.mkdir()
        self.snapshots = box.dir / "snapshots"
        self.snapshots.mkdir()
        self._runs = 0
        self._fresh: Snapshot | None = None

    @property
    def fresh(self) -> Snapshot:
        """The snapshot every scenario starts from (set once by the suite)."""
        assert self._fresh is not None
        return self._fresh

    @fresh.setter
    def fresh(self, snap: Snapshot) -> None:
        self._fresh = snap

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.box.run(*args, timeout=timeout)

    def must(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self.run(*args)
        assert out.returncode == 0, f"tcptune {' '.join(args)} -> {out.returncode}\n{out.stdout}{out.stderr}"
        return out

    def strace(
        self, strace_args: list[str], args: tuple[str, ...], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """tcptune under strace inside the namespace (nsenter execs strace, strace runs tcptune as its child).
        strace kills itself with the tracee's signal, so a tcptune killed by SIGKILL gives returncode -9."""
        return subprocess.run(
            [*self.box.enter, STRACE, "-f", "-qq", "-e", "signal=none", *strace_args, "--", self.box.exe, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=self.box.env(),
            timeout=timeout,
            preexec_fn=die_with_parent,
        )

    def trace(self, *args: str) -> tuple[subprocess.CompletedProcess[str], list[Call]]:
        """Run tcptune to the end, tracing every call of FAMILIES (``-y``: with the file behind each fd)."""
        self._runs += 1
        path = self.traces / f"full-{self._runs}.txt"
        out = self.strace(["-y", "-o", str(path), "-e", "trace=" + ",".join(ALL_CALLS)], args)
        return out, parse_trace(path.read_text())

    def kill_at(self, call: str, nth: int, *args: str) -> tuple[subprocess.CompletedProcess[str], list[Call]]:
        """Run tcptune and kill -9 it on entry to its ``nth`` ``call`` (strace counts per call name and per
        process). Returns the run and the calls of that name it made (the last one is where it died)."""
        self._runs += 1
        path = self.traces / f"kill-{self._runs}.txt"
        out = self.strace(
            ["-y", "-o", str(path), "-e", f"trace={call}", "-e", f"inject={call}:signal=KILL:when={nth}"], args
        )
        return out, parse_trace(path.read_text())

    # -- observing -------------------------------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.box.state_dir

    @property
    def sysctl_dir(self) -> Path:
        return self.box.sysctl_dir

    @property
    def sysctl_file(self) -> Path:
        return self.box.sysctl_dir / SYSCTL_FILE

    def live(self) -> dict[str, str | None]:
        return self.proc.read(self.keys)

    def history(self) -> Any:
        out = self.run("history", "--format", "json")
        assert out.returncode == 0, f"history -> {out.returncode}: {out.stderr}"
        return json.loads(out.stdout)

    def observe(self, history: bool = True) -> Machine:
        """The machine now; without ``history`` the (costly) history command is not run: compare such an
        observation with ``Machine.without_history()``."""
        pending = (self.state_dir / "pending.json").exists()
        file_text = self.sysctl_file.read_text(errors="replace") if self.sysctl_file.exists() else None
        return Machine(
            live=tuple(sorted(self.live().items())),
            sysctl_file=file_text,
            state_files=_state_files(self.state_dir),
            history=json.dumps(stable(self.history()), sort_keys=True) if history else "",
            temp_files=tuple(temp_files(self.state_dir, self.sysctl_dir)),
            pending=pending,
        )

    # -- snapshots -------------------------------------------------------------------------------------------------

    def snapshot(self, name: str) -> Snapshot:
        self._runs += 1
        where = self.snapshots / f"{self._runs}-{name}"
        where.mkdir()
        has_state = self.state_dir.exists()
        if has_state:
            shutil.copytree(self.state_dir, where / "state", symlinks=True)
        shutil.copytree(self.sysctl_dir, where / "sysctl.d", symlinks=True)
        live = self.live()
        assert all(v is not None for v in live.values()), live
        return Snapshot(where, has_state, {k: v for k, v in live.items() if v is not None})

    def restore(self, snap: Snapshot) -> None:
        """Put files and live values back exactly as they were when ``snap`` was taken."""
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if snap.has_state:
            shutil.copytree(snap.where / "state", self.state_dir, symlinks=True)
        for entry in self.sysctl_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in (snap.where / "sysctl.d").iterdir():
            shutil.copy2(entry, self.sysctl_dir / entry.name, follow_symlinks=False)
        self.proc.write(snap.live)
        assert self.live() == snap.live


@dataclass(frozen=True)
class Snapshot:
    where: Path
    has_state: bool
    live: dict[str, str]


# ---- choosing the kill points -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Kill at the ``nth`` call named ``call`` (which is ``at``, the ``at.index``-th traced call of the run)."""

    call: str
    nth: int
    at: Call

    @property
    def family(self) -> str:
        return FAMILY_OF[self.call]


def transaction_start(calls: list[Call], state_dir: Path) -> int:
    """Index of the first call touching the state directory: the kill points start there.

    The calls before it are the interpreter starting, Python importing tcptune and its libraries (several hundred
    openat calls), the profile being read and the plan being made from live values. Nothing is changed there: tcptune
    locks the state directory before its first change (DESIGN-9.md), and ``check_nothing_changes_before`` proves
    it for every traced run rather than trusting it. A kill there can only show "nothing happened", so those
    hundreds of cases would cost minutes and prove nothing more.
    """
    prefix = str(state_dir)
    for call in calls:
        if any(p == prefix or p.startswith(prefix + "/") for p in call.paths):
            return call.index
    raise AssertionError(f"the run never touched {state_dir}")


def check_nothing_changes_before(calls: list[Call], start: int) -> None:
    """No file-system change before ``start``: no open for writing, no rename/unlink/mkdir/link/chmod/truncate, and
    writes only to stdout/stderr (pipes)."""
    for call in calls[:start]:
        family = FAMILY_OF[call.name]
        if family in ("rename", "unlink", "mkdir", "link", "chmod", "truncate", "fsync") or call.writes_file:
            raise AssertionError(f"a change before the transaction starts (cannot skip it): {call.name}({call.args})")
        if family == "write" and not call.args.startswith(("1<pipe:", "2<pipe:")):
            raise AssertionError(f"a write before the transaction starts (cannot skip it): {call.name}({call.args})")


def kill_points(calls: list[Call], start: int) -> list[KillPoint]:
    """Every call of the (single) tracee at or after ``start``, with its ordinal among the calls of its name."""
    pids = {c.pid for c in calls}
    assert len(pids) == 1, f"tcptune ran as several processes/threads ({sorted(pids)}): strace counts per tracee"
    seen: dict[str, int] = {}
    points = []
    for call in calls:
        seen[call.name] = seen.get(call.name, 0) + 1
        if call.index >= start:
            points.append(KillPoint(call.name, seen[call.name], call))
    return points


def commit_index(calls: list[Call], state_dir: Path) -> int | None:
    """Index of the rename that publishes a generation (DESIGN-9.md: "this is the commit point"), if any."""
    pattern = re.compile(re.escape(str(state_dir)) + r"/generations/[1-9][0-9]*\.json$")
    for call in calls:
        if FAMILY_OF[call.name] == "rename" and len(call.paths) == 2 and pattern.match(call.paths[1]):
            return call.index
    return None


def iter_family_counts(points: Iterable[KillPoint]) -> Iterator[tuple[str, int]]:
    counts: dict[str, int] = {}
    for point in points:
        counts[point.family] = counts.get(point.family, 0) + 1
    yield from sorted(counts.items())
