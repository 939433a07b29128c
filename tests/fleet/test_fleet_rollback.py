"""`tcptune rollback -i` on namespace hosts: push P1, push P2 (P1's other keys revert), roll the fleet back to the
generation of P1, and check values, files and each host's own history."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcptune.ansible import nshosts

from .conftest import host_read

pytestmark = [pytest.mark.slow, pytest.mark.netns]

P1 = "name: p1\nsettings:\n  net.ipv4.tcp_fin_timeout: 19\n  net.ipv4.tcp_keepalive_time: 700\n"
P2 = "name: p2\nsettings:\n  net.ipv4.tcp_fin_timeout: 23\n"


@pytest.fixture(scope="module")
def two() -> Iterator[nshosts.Fleet]:
    hosts = nshosts.up(2)
    try:
        yield hosts
    finally:
        assert not hosts.down()


def tcptune(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", *args, "--format", "json", "-y"], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, json.loads(proc.stdout)


def history(fleet: nshosts.Fleet, name: str) -> list[dict]:
    state = Path(fleet.host(name).directory, "state")
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", "history", "--state-dir", str(state), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)["generations"]


def test_push_push_then_rollback_the_fleet_to_generation_1(two: nshosts.Fleet, tmp_path: Path) -> None:
    (tmp_path / "p1.yaml").write_text(P1)
    (tmp_path / "p2.yaml").write_text(P2)
    inventory = two.write_inventory(str(tmp_path / "inventory.yml"))
    before = {h: host_read(two, h, "net.ipv4.tcp_keepalive_time") for h in ("h1", "h2")}
    assert tcptune("push", str(tmp_path / "p1.yaml"), "-i", inventory)[0] == 0
    rc, result = tcptune("push", str(tmp_path / "p2.yaml"), "-i", inventory)
    assert rc == 0 and {h["generation"] for h in result["hosts"].values()} == {2}
    for host in ("h1", "h2"):
        assert host_read(two, host, "net.ipv4.tcp_fin_timeout") == "23"
        assert host_read(two, host, "net.ipv4.tcp_keepalive_time") == before[host]  # reverted to its baseline
        assert result["hosts"][host]["keys"]["net.ipv4.tcp_keepalive_time"]["status"] == "reverted"
    rc, result = tcptune("rollback", "-i", inventory, "--to", "1")
    assert rc == 0 and result["action"] == "rollback"
    for host in ("h1", "h2"):
        assert result["hosts"][host]["status"] == "changed" and result["hosts"][host]["generation"] == 3
        assert host_read(two, host, "net.ipv4.tcp_fin_timeout") == "19"
        assert host_read(two, host, "net.ipv4.tcp_keepalive_time") == "700"
        persisted = Path(two.host(host).directory, "sysctl.d", "90-tcptune.conf").read_text()
        assert "# profile: p1" in persisted and "net.ipv4.tcp_keepalive_time = 700" in persisted
        assert [(g["generation"], g["kind"], g["target"]) for g in history(two, host)] == [
            (3, "rollback", 1),
            (2, "apply", None),
            (1, "apply", None),
        ]
    rc, result = tcptune("rollback", "-i", inventory, "--to", "1")  # twice: a no-op
    assert rc == 0 and {h["status"] for h in result["hosts"].values()} == {"ok"}
    two.stop("h2")
    rc, result = tcptune("rollback", "-i", inventory, "--to", "2")
    assert rc == 1 and result["hosts"]["h2"]["status"] == "unreachable"
    assert result["hosts"]["h1"]["status"] == "changed"
