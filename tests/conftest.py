"""Shared pytest set-up. Real-kernel and fleet tests need root (they create namespaces)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests import machine

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


@pytest.fixture(scope="session", autouse=True)
def _the_machine_is_left_alone() -> Iterator[None]:
    """Every test writes only into temporary or namespaced trees: the run fails if this machine's own sysctl.d
    files, state directory or root-namespace TCP sysctls differ at its end."""
    before = machine.snapshot()
    yield
    differences = machine.changed(before, machine.snapshot())
    assert not differences, f"the test run changed this machine: {differences}"
