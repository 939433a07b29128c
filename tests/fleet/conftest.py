"""Fleet fixtures: namespace hosts reached by real SSH (tcptune.ansible.nshosts), always torn down."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tcptune.ansible import nshosts


@pytest.fixture(scope="module")
def fleet() -> Iterator[nshosts.Fleet]:
    """Four hosts h1..h4 on a per-run bridge and subnet; torn down even when a test fails."""
    hosts = nshosts.up(4)
    try:
        yield hosts
    finally:
        problems = hosts.down()
        assert not problems, problems


def host_read(fleet: nshosts.Fleet, name: str, key: str) -> str:
    """A key as host ``name`` sees it (inside its network namespace), whitespace folded."""
    path = "/proc/sys/" + key.replace(".", "/")
    out = subprocess.run(
        ["ip", "netns", "exec", fleet.host(name).netns, "cat", path], capture_output=True, text=True, check=True
    ).stdout
    return " ".join(out.split())


def host_write(fleet: nshosts.Fleet, name: str, key: str, value: str) -> None:
    """Change a per-namespace key on one host behind tcptune's back (only /proc/sys/net of that namespace)."""
    assert key.startswith("net.")
    path = "/proc/sys/" + key.replace(".", "/")
    subprocess.run(["ip", "netns", "exec", fleet.host(name).netns, "sh", "-c", f"echo {value} > {path}"], check=True)
