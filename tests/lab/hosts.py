"""Lab machines: each a throwaway network + mount namespace (tests.integration.kernel_sandbox: /proc/sys read-only
except /proc/sys/net, a private sysctl.d and state directory), loopback up, linked to others by veth pairs or by
TUN devices and a user-space delay line. Workloads (workloads.py) and the real tcptune CLI run inside.

Safety: nothing here writes outside a lab namespace's /proc/sys/net; traffic stays on loopback or on the lab's own
links; every process is started with a parent-death signal and killed by pid in ``close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tcptune.sockets import parse_counter_table
from tests.integration.kernel_sandbox import KernelSandbox, die_with_parent

WORKLOADS = str(Path(__file__).resolve().parent / "workloads.py")
EMPTY_PROFILE = "name: lab-empty\ndescription: Nothing set, recommendations extend this in the lab\nsettings: {}\n"


class Workload:
    """A workload process inside a lab machine; ``result()`` waits for its last JSON line."""

    def __init__(self, process: subprocess.Popen[str], ready: bool) -> None:
        self.process = process
        self.info: dict[str, Any] = {}
        if ready:
            self.info = self._line(timeout=30)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            err = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"workload ended without output: {err[-2000:]}")
        return json.loads(line)

    def ask(self, text: str = "check") -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._line(timeout=30)

    def result(self, timeout: float = 150) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"workload failed ({self.process.returncode}): {err[-2000:]}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Host:
    """One lab machine."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.box = KernelSandbox()
        self.workloads: list[Workload] = []
        try:
            self.ip("link", "set", "lo", "up")
            self.empty_profile = self.box.dir / "lab-empty.yaml"
            self.empty_profile.write_text(EMPTY_PROFILE)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.box.pid

    def enter(self, mount: bool = True) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", *(["-m"] if mount else []), "--"]

    def ip(self, *args: str) -> None:
        subprocess.run([*self.enter(), "ip", *args], check=True, capture_output=True, timeout=30)

    def set(self, key: str, value: str) -> None:
        self.box.write(key, value)

    def get(self, key: str) -> str:
        return " ".join(self.box.read(key).split())

    def tcptune(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.box.run(*args, timeout=timeout)

    def tcptune_json(self, *args: str, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
        proc = self.tcptune(*args, "--format", "json")
        if proc.returncode not in ok:
            raise RuntimeError(f"tcptune {' '.join(args)}: exit {proc.returncode}: {proc.stderr}")
        return json.loads(proc.stdout)

    def spawn(self, *args: str, ready: bool = False) -> Workload:
        process = subprocess.Popen(
            [*self.enter(mount=False), sys.executable, WORKLOADS, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        workload = Workload(process, ready)
        self.workloads.append(workload)
        return workload

    def counters(self) -> dict[str, int]:
        out = subprocess.run(
            [*self.enter(mount=False), "cat", "/proc/net/netstat", "/proc/net/snmp"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return parse_counter_table(out)

    def apply(self, profile: str) -> None:
        proc = self.tcptune("apply", "--yes", profile)
        if proc.returncode != 0:
            raise RuntimeError(f"tcptune apply {profile}: exit {proc.returncode}: {proc.stderr}")

    def apply_sysctls(self, values: dict[str, str]) -> dict[str, str]:
        """Write each key the namespace lets us write (the way tuned's sysctl plugin would); returns the keys
        left out and why: not per network namespace (read-only here), not a network key, missing."""
        skipped: dict[str, str] = {}
        for key, value in values.items():
            if not key.startswith("net."):
                skipped[key] = "not a network key (host-wide; not applied in the lab)"
                continue
            path = "/proc/sys/" + key.replace(".", "/")
            proc = subprocess.run(
                [*self.enter(), "sh", "-c", f'printf "%s\\n" "$1" > {path}', "sh", value],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if proc.returncode != 0:
                why = proc.stderr.strip().rsplit(":", 1)[-1].strip().lower() or "refused"
                skipped[key] = f"{why} in a network namespace (host-wide key)"
        return skipped

    def close(self) -> None:
        for workload in self.workloads:
            try:
                workload.stop()
            except Exception:  # cleaning up: keep going
                if workload.process.poll() is None:
                    workload.process.kill()
        self.box.close()


def link(a: Host, b: Host, a_address: str, b_address: str, mtu: int = 1500) -> None:
    """A veth pair between two lab machines (made inside ``a``, its peer moved straight into ``b``)."""
    a.ip("link", "add", "tt11v", "mtu", str(mtu), "type", "veth", "peer", "name", "tt11v", "netns", str(b.pid))
    for host, address in ((a, a_address), (b, b_address)):
        host.ip("addr", "add", f"{address}/24", "dev", "tt11v")
        host.ip("link", "set", "tt11v", "up")


class DelayLine:
    """A long path between two lab machines without netem: a TUN device in each and a user-space process that
    forwards every packet after ``delay`` seconds (one way). A large MTU keeps the packet rate, and so the
    forwarder's CPU, low."""

    def __init__(self, a: Host, b: Host, a_address: str, b_address: str, delay: float, mtu: int = 65000) -> None:
        self.process: subprocess.Popen[str] | None = None
        for host, mine, theirs in ((a, a_address, b_address), (b, b_address, a_address)):
            host.ip("tuntap", "add", "dev", "tt11tun", "mode", "tun")
            host.ip("link", "set", "tt11tun", "mtu", str(mtu))
            host.ip("addr", "add", mine, "peer", theirs, "dev", "tt11tun")
            host.ip("link", "set", "tt11tun", "up")
        self.process = subprocess.Popen(
            [sys.executable, WORKLOADS, "delayline", str(a.pid), str(b.pid), "--delay", str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"delay line did not start: {self.process.stderr.read() if self.process.stderr else ''}")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class Lab:
    """Every machine and link of one scenario; ``close()`` (also as a context manager) removes them all."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self.lines: list[DelayLine] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        made = Host(name)
        self.hosts.append(made)
        return made

    def delay_line(self, a: Host, b: Host, a_address: str, b_address: str, delay: float) -> DelayLine:
        line = DelayLine(a, b, a_address, b_address, delay)
        self.lines.append(line)
        return line

    def close(self) -> None:
        for line in self.lines:
            line.close()
        for host in self.hosts:
            host.close()


def wait_until(predicate: Any, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
