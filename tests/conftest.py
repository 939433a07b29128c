"""Shared pytest set-up. Real-kernel and fleet tests need root (they create namespaces)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# The test tools (molecule, ansible-lint, ansible-playbook, ruff) live in tcptune's own virtual environment, which
# need not be on PATH: README's test command runs /opt/tcptune/bin/python -m pytest. Find them there first.
os.environ["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + os.environ.get("PATH", "")

ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ROOT:
        return
    skip = pytest.mark.skip(reason="needs root to create network/mount namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_system_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """tcptune logs its changes to /dev/log: tests that change their trees must not write to the machine's journal
    (tests of the logging bind a socket of their own and point TCPTUNE_LOG_SOCKET at it)."""
    monkeypatch.setenv("TCPTUNE_LOG_SOCKET", "")


# What tcptune could change on this machine if a test escaped its namespaces: the sysctl.d trees, /etc/sysctl.conf,
# the state directory, and the root network namespace's own net.core and net.ipv4 values.
MACHINE_FILES = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
MACHINE_SYSCTLS = ("/proc/sys/net/core", "/proc/sys/net/ipv4")


def _machine_snapshot() -> dict[str, str]:
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


@pytest.fixture(scope="session", autouse=True)
def _the_machine_is_left_alone() -> Iterator[None]:
    """Every test writes only into temporary or namespaced trees: the run fails if this machine's own sysctl.d
    files, state directory or root-namespace TCP sysctls differ at its end."""
    before = _machine_snapshot()
    yield
    after = _machine_snapshot()
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert not changed, f"the test run changed this machine: {changed}"
