"""status and recommend on a real kernel: a throwaway network namespace with known sockets on loopback.

The helper (socket_states.py) runs inside the namespace and holds its sockets until we close its stdin; tcptune runs
there too, so both see only that namespace's sockets. The namespace's own ip_local_port_range and tcp_tw_reuse are
set (both are per-namespace); nothing outside it is touched. Everything is removed even when a test fails.

Two kinds of truth: the numbers the scenario was built to have, and what the real ``ss`` (iproute2) reports in the
same namespace, counted the obvious way (tests/socket_counts.py).
"""

from __future__ import annotations

import ipaddress
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

from tests.socket_counts import PlainSocket, plain_counts, status_counts

pytestmark = [pytest.mark.slow, pytest.mark.netns]

HELPER = Path(__file__).resolve().parent / "socket_states.py"
BASE = 7100
SCENARIO = {"established": 5, "time-wait": 7, "close-wait": 12, "fin-wait2": 9, "half-closed": 2, "queued": 3}
QUEUED_BACKLOG = 8  # socket_states.py's listen() backlog for the queued scenario
IPV6_PAIRS = 3  # when the namespace has IPv6 on loopback
MAPPED_PAIRS = 2  # IPv4 clients of a dual-stack listener, when the namespace has IPv6
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
        mapped = MAPPED_PAIRS if ipv6 else 0
        args = [f"--{key}={value}" for key, value in {**SCENARIO, "ipv6": ipv6, "mapped": mapped}.items()]
        helper = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, str(HELPER), f"--base={BASE}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert helper.stdout is not None
        info = json.loads(helper.stdout.readline())
        info["ipv6"], info["mapped"] = ipv6, mapped
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
    (BASE + 6, "in"): {"ESTABLISHED": 3, "LISTEN": 1},  # waiting in the accept queue
    (BASE + 6, "out"): {"ESTABLISHED": 3},
}


def expected_by_port(ipv6: int, mapped: int) -> dict[tuple[int, str], dict[str, int]]:
    if not ipv6:
        return BY_PORT_V4
    return {
        **BY_PORT_V4,
        (BASE + 5, "in"): {"ESTABLISHED": ipv6, "LISTEN": 1},
        (BASE + 5, "out"): {"ESTABLISHED": ipv6},
        (BASE + 7, "in"): {"ESTABLISHED": mapped, "LISTEN": 1},
        (BASE + 7, "out"): {"ESTABLISHED": mapped},
    }


def test_status_counts_every_state_and_port_exactly(netns: tuple[str, dict[str, Any]]) -> None:
    ns, info = netns
    data = status_json(ns)
    assert data["source"] == "netlink"
    states = {k: v for k, v in data["states"].items() if v}
    assert states == {
        "ESTABLISHED": 2 * (5 + 3 + info["ipv6"] + info["mapped"]),
        "TIME_WAIT": 7,
        "CLOSE_WAIT": 12 + 9 + 2,
        "FIN_WAIT2": 12 + 9 + 2,
        "LISTEN": 6 + 2 * bool(info["ipv6"]),
    }
    assert by_port(data) == expected_by_port(info["ipv6"], info["mapped"])
    assert data["orphans"]["fin_wait2_orphans"] == 12 + 9  # the half-closed ones are still held by the helper
    assert data["port_range"] == {"low": 40000, "high": 49999, "size": 10000}
    endpoint = next(e for e in data["endpoints"] if e["remote_port"] == BASE + 1)
    assert (endpoint["local_address"], endpoint["remote_address"]) == ("127.0.0.2", "127.0.0.1")
    assert (endpoint["in_use"], endpoint["time_wait"], endpoint["capacity"]) == (7, 7, 10000)
    assert data["time_wait"]["count"] == 7 + 12 + 9  # sockstat: orphaned FIN_WAIT2 wait in timewait buckets too
    listeners = {(x["address"], x["port"]): (x["queue"], x["backlog"]) for x in data["listeners"]}
    assert listeners == {("127.0.0.1", p): (0, 4096) for p in (*range(BASE, BASE + 5), BASE + 6)} | {
        ("127.0.0.1", BASE + 6): (3, QUEUED_BACKLOG)
    } | ({("::1", BASE + 5): (0, 4096), ("::", BASE + 7): (0, 4096)} if info["ipv6"] else {})
    remotes = {row["address"]: row["total"] for row in data["by_remote"]}
    assert remotes["127.0.0.2"] == 5 + 12 + 9 + 2 + 3  # the server ends of the IPv4 scenarios
    if info["mapped"]:
        assert remotes["::ffff:127.0.0.2"] == info["mapped"]


# ---- the same namespace through the real ss -------------------------------------------------------------------------

SS_STATES = {  # ss's column -> tcptune's name -> ss's state filter (ss(8) "STATE-FILTER")
    "ESTAB": ("ESTABLISHED", "established"),
    "SYN-SENT": ("SYN_SENT", "syn-sent"),
    "SYN-RECV": ("SYN_RECV", "syn-recv"),
    "FIN-WAIT-1": ("FIN_WAIT1", "fin-wait-1"),
    "FIN-WAIT-2": ("FIN_WAIT2", "fin-wait-2"),
    "TIME-WAIT": ("TIME_WAIT", "time-wait"),
    "UNCONN": ("CLOSE", "closed"),
    "CLOSE-WAIT": ("CLOSE_WAIT", "close-wait"),
    "LAST-ACK": ("LAST_ACK", "last-ack"),
    "LISTEN": ("LISTEN", "listening"),
    "CLOSING": ("CLOSING", "closing"),
}


def ss(ns: str, *args: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-H", *args], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def _ss_endpoint(text: str) -> tuple[str, int]:
    """``127.0.0.1:7100``, ``[::1]:7105``, ``*:7107`` (IPv6 any), ``0.0.0.0:*`` -> (address, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return ("::" if host == "*" else host), (0 if port == "*" else int(port))


def ss_sockets(ns: str) -> list[PlainSocket]:
    """Every TCP socket as ``ss -tane`` shows it (state, queues, addresses, ``ino:``)."""
    found = []
    for line in ss(ns, "-tane"):
        fields = line.split()
        local, lport = _ss_endpoint(fields[3])
        remote, rport = _ss_endpoint(fields[4])
        inode = next((int(word[4:]) for word in fields[5:] if word.startswith("ino:")), 0)
        found.append(
            PlainSocket(
                state=SS_STATES[fields[0]][0],
                local=local,
                lport=lport,
                remote=remote,
                rport=rport,
                rx_queue=int(fields[1]),
                tx_queue=int(fields[2]),
                inode=inode,
            )
        )
    return found


def test_status_counts_what_ss_counts(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    assert status_counts(status_json(ns)) == plain_counts(ss_sockets(ns), PORT_RANGE)


def test_the_proc_fallback_counts_what_ss_counts(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    assert status_counts(status_json(ns, "--source", "proc")) == plain_counts(ss_sockets(ns), PORT_RANGE)


def test_each_state_has_the_count_ss_filters_for_it(netns: tuple[str, dict[str, Any]]) -> None:
    """``ss state X`` asks the kernel for one state, as tcptune's dump requests do with their state masks."""
    ns, _info = netns
    states = status_json(ns)["states"]
    for name, ss_filter in SS_STATES.values():
        assert states[name] == len(ss(ns, "-tan", "state", ss_filter)), name


def test_listener_backlogs_are_what_ss_shows(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    shown = {(s.local, s.lport): (s.rx_queue, s.tx_queue) for s in ss_sockets(ns) if s.state == "LISTEN"}
    data = status_json(ns)
    assert {(x["address"], x["port"]): (x["queue"], x["backlog"]) for x in data["listeners"]} == shown


PROBE = """
import json, sys
from tcptune.sockets import netlink
buf = bytearray(netlink.RECV_BUFFER)
sock = netlink.open_netlink()
records = []
for seq, family in enumerate((netlink.AF_INET, netlink.AF_INET6), start=1):
    for record in netlink.each_socket(sock, family, 0xFFF, seq, buf):
        records.append({**record._asdict(), "src": record.src.hex(), "dst": record.dst.hex(), "cookie": ""})
sock.close()
json.dump(records, sys.stdout)
"""


def _address(family: int, raw_hex: str) -> str:
    raw = bytes.fromhex(raw_hex)
    address = ipaddress.ip_address(raw[:4] if family == 2 else raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def test_every_decoded_socket_is_one_ss_shows(netns: tuple[str, dict[str, Any]]) -> None:
    """The per-socket decode (every field of inet_diag_msg) against ss's columns, socket by socket."""
    ns, _info = netns
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    names = {1: "ESTABLISHED", 5: "FIN_WAIT2", 6: "TIME_WAIT", 8: "CLOSE_WAIT", 10: "LISTEN"}
    decoded = sorted(
        (
            names[r["state"]],
            _address(r["family"], r["src"]),
            r["sport"],
            _address(r["family"], r["dst"]),
            r["dport"],
            r["rqueue"],
            r["wqueue"],
            r["inode"],
        )
        for r in json.loads(out)
    )
    shown = sorted(
        (s.state, s.local, s.lport, s.remote, s.rport, s.rx_queue, s.tx_queue, s.inode) for s in ss_sockets(ns)
    )
    assert decoded == shown


def test_status_sees_only_its_own_namespace(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    assert status_json(ns)["netns"] != os.readlink("/proc/self/ns/net")


def test_proc_fallback_agrees_and_says_so(netns: tuple[str, dict[str, Any]]) -> None:
    ns, _info = netns
    via_netlink, via_proc = status_json(ns), status_json(ns, "--source", "proc")
    assert via_proc["source_label"] == "/proc/net/tcp (--source proc)"
    assert via_proc["states"] == via_netlink["states"]
    assert by_port(via_proc) == by_port(via_netlink)
    assert sorted(via_proc["endpoints"], key=repr) == sorted(via_netlink["endpoints"], key=repr)  # ties: any order


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
