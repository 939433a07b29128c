"""A throwaway network + mount namespace in which the real ``tcptune`` CLI may write the real kernel's sysctls.

Safety (see /work/shared/FLEET-HARNESS.md): the namespace gets its own network stack, so per-netns TCP keys
written there never reach the machine; its private mount namespace remounts ``/proc/sys`` read-only except
``/proc/sys/net`` (so ``kernel.*``, ``vm.*``, ``fs.*`` cannot be changed even by a bug) and puts a tmpfs over
``/etc/sysctl.d``. State and sysctl.d trees live in a ``tt3-*`` temporary directory. ``close()`` kills every
process it started, by pid, and removes the directory; the namespaces vanish with their last process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP = (
    "set -e; mount --make-rprivate /; "
    "mount --bind /proc/sys /proc/sys; mount --bind /proc/sys/net /proc/sys/net; "
    "mount -o remount,bind,ro /proc/sys; "
    "mount -t tmpfs -o size=1m,mode=0755 tt3-sysctl /etc/sysctl.d; "
    "echo ready; exec sleep infinity"
)


def die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies (even kill -9), the kernel kills this one too,
    so no namespace outlives a crashed test run. The flag survives unshare/sh/nsenter exec'ing the next program."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def tcptune_executable() -> str:
    """The console script of this environment (not a shell shim), so tests run the installed CLI."""
    candidate = Path(sys.executable).parent / "tcptune"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("tcptune")
    if not found:
        raise RuntimeError("the tcptune console script is not installed (pip install -e .)")
    return found


class KernelSandbox:
    """One namespace: ``run`` the CLI in it, ``read``/``write`` its /proc/sys/net with the test's own hands."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tt3-"))
        self.state_dir = self.dir / "state"
        self.sysctl_root = self.dir / "sysroot"
        self.sysctl_dir = self.sysctl_root / "etc/sysctl.d"
        self.sysctl_dir.mkdir(parents=True)
        self.exe = tcptune_executable()
        self._children: list[subprocess.Popen[str]] = []
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "sh", "-c", SETUP],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            assert self.holder.stdout is not None
            line = self.holder.stdout.readline()
            if line.strip() != "ready":
                problem = self.holder.stderr.read() if self.holder.stderr else ""
                raise RuntimeError(f"namespace set-up failed: {problem}")
            self._check_isolation()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.holder.pid

    def _enter(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "--"]

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the namespace (nsenter execs it: same pid)."""
        return self._enter()

    def adopt(self, child: subprocess.Popen[str]) -> None:
        """Have ``close()`` kill and reap a process a test started itself inside the namespace."""
        self._children.append(child)

    def _check_isolation(self) -> None:
        """Refuse to run tests unless the namespace really is separate and /proc/sys is read-only outside net."""
        mine = os.readlink("/proc/self/ns/net")
        theirs = os.readlink(f"/proc/{self.pid}/ns/net")
        if mine == theirs:
            raise RuntimeError("sandbox shares the machine's network namespace")
        probe = subprocess.run(
            [
                *self._enter(),
                sys.executable,
                "-c",
                "import os,sys; sys.exit(0 if not os.access('/proc/sys/kernel/pid_max', os.W_OK) "
                "and os.access('/proc/sys/net/ipv4/tcp_fin_timeout', os.W_OK) else 1)",
            ],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode != 0:
            raise RuntimeError("sandbox /proc/sys is not read-only outside /proc/sys/net")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TCPTUNE_")}
        env.update(
            TCPTUNE_STATE_DIR=str(self.state_dir),
            TCPTUNE_SYSCTL_ROOT=str(self.sysctl_root),
            NO_COLOR="1",
            COLUMNS="200",
            TCPTUNE_LOG_SOCKET="",  # not into the machine's journal (a test binds its own socket to read them)
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        """The real CLI inside the namespace, as a whole process."""
        return subprocess.run(
            [*self._enter(), self.exe, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=self.env(**env),
            timeout=timeout,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """The CLI in the background (nsenter execs it: the pid is tcptune's own); killed by close()."""
        child = subprocess.Popen(
            [*self._enter(), self.exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(**env),
            preexec_fn=die_with_parent,
        )
        self._children.append(child)
        return child

    def read(self, key: str) -> str:
        """The namespace's value, read by the test itself (not by tcptune), whitespace as the kernel prints it."""
        path = "/proc/sys/" + key.replace(".", "/")
        out = subprocess.run([*self._enter(), "cat", path], capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.rstrip("\n")

    def write(self, key: str, value: str) -> None:
        """Set up a namespace value for a test (only /proc/sys/net is writable in here)."""
        path = "/proc/sys/" + key.replace(".", "/")
        if not path.startswith("/proc/sys/net/"):
            raise ValueError("the sandbox only writes /proc/sys/net")
        subprocess.run(
            [*self._enter(), "sh", "-c", f'printf "%s\\n" "$1" > {path}', "sh", value], check=True, timeout=30
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run Python inside the namespace (to drive tcptune's library against the real kernel)."""
        return subprocess.run(
            [*self._enter(), sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=self.env()
        )

    def wait_for(self, predicate: object, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise TimeoutError("condition not reached in the sandbox")

    def close(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=30)
        if self.holder.poll() is None:
            os.kill(self.holder.pid, signal.SIGKILL)
        self.holder.communicate(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def host_value(key: str) -> str:
    """The machine's own (root namespace) value, to prove a test left it alone."""
    with open("/proc/sys/" + key.replace(".", "/")) as handle:
        return handle.read().rstrip("\n")
