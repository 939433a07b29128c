"""This machine's own sysctl state, to prove a test run or a benchmark left it alone.

What tcptune could change here if a writer escaped its namespaces: the sysctl.d trees, /etc/sysctl.conf, the state
directory, and the root network namespace's own net.core and net.ipv4 values. Used by tests/conftest.py (the whole
run fails) and by the benchmarks that run as root (they exit non-zero and say what changed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

MACHINE_FILES = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
MACHINE_SYSCTLS = ("/proc/sys/net/core", "/proc/sys/net/ipv4")


def snapshot() -> dict[str, str]:
    seen: dict[str, str] = {}
    for path in (*MACHINE_FILES, "/etc/sysctl.conf", "/var/lib/tcptune"):
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                entry = os.path.join(path, name)
                info = os.lstat(entry)
                seen[entry] = f"{info.st_mode:o} {info.st_size} {info.st_mtime_ns}"
        elif os.path.lexists(path):
            info = os.lstat(path)
            seen[path] = f"{info.st_mode:o} {info.st_size} {info.st_mtime_ns}"
    for directory in MACHINE_SYSCTLS:
        for name in sorted(os.listdir(directory)):
            entry = os.path.join(directory, name)
            try:
                with open(entry, encoding="ascii", errors="replace") as handle:
                    seen[entry] = " ".join(handle.read(4096).split())
            except OSError:  # write-only or a directory: nothing to compare
                continue
    return seen


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The paths whose state differs between two snapshots (created, removed or changed)."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def guarded(program: str, run: Callable[[], int]) -> int:
    """``run()``'s exit code, or 1 with the paths on stderr if this machine's own sysctl state changed meanwhile."""
    before = snapshot()
    try:
        code = run()
    finally:
        differences = changed(before, snapshot())
        if differences:
            print(f"{program}: this machine's own sysctl state changed: {', '.join(differences)}", file=sys.stderr)
    return 1 if differences else code
