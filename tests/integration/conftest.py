"""Integration-suite plumbing: case counts of the fault-injection suites, printed at the end of every run so CI logs
show how many kill points were really exercised (pytest captures a test's own output unless it fails)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

_CASE_LINES = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_CASE_LINES, [])
    if lines:
        terminalreporter.section("fault-injection cases")
        for line in lines:
            terminalreporter.write_line(line)
        total = sum(int(m[1]) for line in lines if (m := re.search(r"(\d+) kill points", line)))
        terminalreporter.write_line(
            f"total: {total} kill points (each: kill -9 there, recover, check, recover again, check)"
        )


@pytest.fixture
def case_log(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record one line for the end-of-run summary."""
    return request.config.stash.setdefault(_CASE_LINES, []).append
