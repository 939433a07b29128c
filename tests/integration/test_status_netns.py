"""status and recommend on a real kernel: a throwaway network namespace with known sockets on loopback.

The helper (socket_states.py) runs inside the namespace and holds its sockets until we close its stdin; tcptune runs
there too, so both see only that namespace's sockets. The namespace's own ip_local_port_range and tcp_tw_reuse are
set (both are per-namespace); nothing outside it is touched. Everything is removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.netns]

HELPER = Path(__file__).resolve().parent / "socket_states.py"
BASE = 7100
SCENARIO = {"established": 5, "time-wait": 7, "close-wait": 12, "fin-wait2": 9, "half-closed": 2}
IPV6_PAIRS = 3  # when the namespace has IPv6 on loopback
PORT_RANGE = (40000, 49999)


@pytest.fixture(scope="module")
def netns() -> Iterator[tuple[str, dict[str, Any]]]:
    if not shutil.which("ip"):
        pytest.skip("iproute2 is not installed")
    name = f"tt5-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    helper = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                "sh",
                "-c",
                f"echo '{PORT_RANGE[0]} {PORT_RANGE[1]}' > /proc/sys/net/ipv4/ip_local_port_range && "
                "echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse",
            ],
            check=True,
        )
        probe = subprocess.run(
            ["ip", "netns", "exec", name, "cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6"],
            capture_output=True,
            text=True,
        )
        ipv6 = IPV6_PAIRS if probe.returncode == 0 and probe.stdout.strip() == "0" else 0
        args = [f"--{key}={value}" for key, value in {**SCENARIO, "ipv6": ipv6}.items()]
        helper = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, str(HELPER), f"--base={BASE}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert helper.stdout is not None
        info = json.loads(helper.stdout.readline())
        info["ipv6"] = ipv6
        yield name, info
    finally:
        if helper is not None:
            if helper.stdin:
                helper.stdin.close()
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
        subprocess.run(["ip", "netns", "del", name], check=False)


def tcptune(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TCPTUNE_STATE_DIR=f"/tmp/{ns}-state")
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tcptune", *args],
        capture_output=True,
        text=True,
        check=check,
        env=env,
    )


def status_json(ns: str, *args: str) -> dict[str, Any]:
    return json.loads(tcptune(ns, "status", "--format", "json", "--top", "50", *args).stdout)


def by_port(data: dict[str, Any]) -> dict[tuple[int, str], dict[str, int]]:
    return {(row["port"], row["direction"]): row["states"] for row in data["by_port"]}


BY_PORT_V4 = {
    (BASE, "in"): {"ESTABLISHED": 5, "LISTEN": 1},
    (BASE, "out"): {"ESTABLISHED": 5},
    (BASE + 1, "in"): {"LISTEN": 1},
    (BASE + 1, "out"): {"TIME_WAIT": 7},
    (BASE + 2, "in"): {"CLOSE_WAIT": 12, "LISTEN": 1},
    (BASE + 2, "out"): {"FIN_WAIT2": 12},
    (BASE + 3, "in"): {"FIN_WAIT2": 9, "LISTEN": 1},
    (BASE + 3, "out"): {"CLOSE_WAIT": 9},
    (BASE + 4, "in"): {"CLOSE_WAIT": 2, "LISTEN": 1},
    (BASE + 4, "out"): {"FIN_WAIT2": 2},
}


def expected_by_port(ipv6: int) -> dict[tuple[int, str], dict[str, int]]:
    if not ipv6:
        return BY_PORT_V4
    return {
        **BY_PORT_V4,
        (BASE + 5, "in"): {"ESTABLISHED": ipv6, "LISTEN": 1},
        (BASE + 5, "out"): {"ESTABLISHED": ipv6},
    }


def test_status_counts_every_state_and_port_exactly(netns: tuple[str, dict[str, Any]]) -> None:
    ns, info = netns
    data = status_json(ns)
    assert data["source"] == "netlink"
    states = {k: v for k, v in data["states"].items() if v}
    assert states == {
        "ESTABLISHED": 2 * (5 + info["ipv6"]),
        "TIME_WAIT": 7,
        "CLOSE_WAIT": 12 + 9 + 2,
        "FIN_WAIT2": 12 + 9 + 2,
        "LISTEN": 5 + bool(info["ipv6"]),
    }
    assert by_port(data) == expected_by_port(info["ipv6"])
    assert data["orphans"]["fin_wait2_orphans"] == 12 + 9  # the half-closed ones are still held by the helper
    assert data["port_range"] == {"low": 40000, "high": 49999, "size": 10000}
    endpoint = next(e for e in data["endpoints"] if e["remote_port"] == BASE + 1)
    assert (endpoint["in_use"], endpoint["time_wait"], endpoint["capacity"]) == (7, 7, 10000)
    assert data["time_wait"]["count"] == 7 + 12 + 9  # sockstat: orphaned FIN_WAIT2 wait in timewait buckets too
    assert {(x["address"], x["port"]) for x in data["listeners"]} == {
        ("127.0.0.1", p) for p in range(BASE, BASE + 5)
    } | ({("::1", BASE + 5)} if info["ipv6"] else set())


def test_status_sees_only_its_own_namespace(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    assert status_json(ns)["netns"] != os.readlink("/proc/self/ns/net")


def test_proc_fallback_agrees_and_says_so(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    via_netlink, via_proc = status_json(ns), status_json(ns, "--source", "proc")
    assert via_proc["source_label"] == "/proc/net/tcp (--source proc)"
    assert via_proc["states"] == via_netlink["states"]
    assert by_port(via_proc) == by_port(via_netlink)
    assert via_proc["endpoints"] == via_netlink["endpoints"]


def test_prometheus_output_carries_the_same_counts(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    out = tcptune(ns, "status", "--format", "prometheus").stdout
    assert 'tcptune_sockets{state="close_wait"} 23' in out
    assert f'tcptune_sockets_by_port{{port="{BASE + 2}",direction="in",state="close_wait"}} 12' in out


def test_recommend_names_the_close_wait_port_and_the_process_holding_it(netns: tuple[str, dict[str, Any]]) -> None:
    ns, info = netns
    data = json.loads(tcptune(ns, "recommend", "--format", "json", "--min-sockets", "9").stdout)
    close_wait = {
        (f["numbers"]["port"], f["numbers"]["direction"]): f for f in data["findings"] if f["id"] == "close-wait"
    }
    assert set(close_wait) == {(BASE + 2, "in"), (BASE + 3, "out")}  # 12 and 9; the 2 half-closed are below 9
    server_side = close_wait[(BASE + 2, "in")]
    assert server_side["numbers"]["close_wait"] == 12 and server_side["suggest"] == {}
    assert server_side["owners"] == [
        {"port": BASE + 2, "direction": "in", "pid": info["pid"], "name": info["name"], "sockets": 12}
    ]
    assert f"pid {info['pid']} ({info['name']})" in server_side["title"]


def test_recommend_turns_fin_wait2_orphans_into_a_tcp_fin_timeout_suggestion(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    data = json.loads(tcptune(ns, "recommend", "--format", "json", "--min-sockets", "9").stdout)
    finding = next(f for f in data["findings"] if f["id"] == "fin-wait2-orphans")
    assert finding["numbers"]["fin_wait2_orphans"] == 21
    assert finding["suggest"] == {"net.ipv4.tcp_fin_timeout": "30"}
    assert data["suggested"]["net.ipv4.tcp_fin_timeout"] == "30"
    assert "fin-wait2-held" not in [f["id"] for f in data["findings"]]


def test_recommend_write_gives_a_profile_that_validates(netns: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    ns, _info = netns
    target = tmp_path / "evidence.yaml"
    tcptune(ns, "recommend", "--min-sockets", "9", "--no-owners", "--write", str(target))
    assert "net.ipv4.tcp_fin_timeout: 30" in target.read_text()
    assert tcptune(ns, "validate", str(target), check=False).returncode == 0
