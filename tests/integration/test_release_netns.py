"""release on the real kernel: a throwaway network namespace per test with known sockets on loopback (held by
socket_states.py), tcptune release run inside it, and the real ``ss`` as the judge of what is left.

Each state the issue names (TIME_WAIT, CLOSE_WAIT, FIN_WAIT2, ESTABLISHED) is destroyed through sock_diag; every
filter is tried; a dry run changes nothing; listeners survive without --include-listeners; IPv6 works; without
CAP_NET_ADMIN nothing is destroyed and the command says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.netns]

HELPER = Path(__file__).resolve().parent / "socket_states.py"
BASE = 7200
ESTABLISHED, TIME_WAIT, CLOSE_WAIT, FIN_WAIT2, HALF_CLOSED, IPV6 = (BASE + n for n in range(6))

Scenario = Callable[..., tuple[str, dict[str, Any]]]


@pytest.fixture
def scenario() -> Iterator[Scenario]:
    """``scenario(**counts)`` -> (namespace, helper info): a fresh namespace holding those sockets."""
    if not shutil.which("ip") or not shutil.which("ss"):
        pytest.skip("iproute2 is not installed")
    made: list[tuple[str, subprocess.Popen[str]]] = []
    names: list[str] = []

    def make(**counts: int) -> tuple[str, dict[str, Any]]:
        name = f"tt11r-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", name, "sh", "-c", "echo '40000 49999' > /proc/sys/net/ipv4/ip_local_port_range"],
            check=True,
        )
        args = [f"--{key.replace('_', '-')}={value}" for key, value in counts.items()]
        helper = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, str(HELPER), f"--base={BASE}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        made.append((name, helper))
        assert helper.stdout is not None
        return name, json.loads(helper.stdout.readline())

    try:
        yield make
    finally:
        for _name, helper in made:
            if helper.stdin:
                helper.stdin.close()
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)


def release(ns: str, *args: str, prefix: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, *prefix, sys.executable, "-m", "tcptune", "release", *args, "--format", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TCPTUNE_STATE_DIR=f"/tmp/{ns}-state"),
    )
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


SS_NAMES = {"close-wait": "CLOSE-WAIT", "fin-wait-2": "FIN-WAIT-2", "time-wait": "TIME-WAIT", "established": "ESTAB"}


def ss(ns: str, state: str | None = None, port: int | None = None) -> list[tuple[str, str, str]]:
    """(state, local, peer) of every TCP socket ``ss -tan`` shows, in ``state`` (ss's filter name) and with
    ``port`` at either end when given."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htan"], capture_output=True, text=True, check=True).stdout
    found = [(line.split()[0], line.split()[3], line.split()[4]) for line in out.splitlines()]
    return [
        s
        for s in found
        if (state is None or s[0] == SS_NAMES[state])
        and (port is None or s[1].endswith(f":{port}") or s[2].endswith(f":{port}"))
    ]


@pytest.mark.parametrize(
    ("counts", "args", "state", "ss_filter", "n"),
    [
        ({"close_wait": 6}, ["--state", "close-wait", "--sport", str(CLOSE_WAIT)], "CLOSE_WAIT", "close-wait", 6),
        ({"fin_wait2": 5}, ["--state", "fin-wait-2", "--sport", str(FIN_WAIT2)], "FIN_WAIT2", "fin-wait-2", 5),
        ({"time_wait": 7}, ["--state", "time-wait", "--dport", str(TIME_WAIT)], "TIME_WAIT", "time-wait", 7),
        ({"established": 4}, ["--state", "established", "--sport", str(ESTABLISHED)], "ESTABLISHED", "established", 4),
        # 4 pairs: the 4 server ends match; destroying one resets its peer, so ss shows neither end afterwards
    ],
    ids=["close-wait", "fin-wait-2", "time-wait", "established"],
)
def test_each_state_is_destroyed_and_ss_no_longer_shows_it(
    scenario: Scenario, counts: dict[str, int], args: list[str], state: str, ss_filter: str, n: int
) -> None:
    ns, _info = scenario(**counts)
    port = int(args[-1])
    assert len(ss(ns, ss_filter, port)) == (2 * n if state == "ESTABLISHED" else n)
    code, data = release(ns, *args, "--yes")
    assert code == 0
    assert data["matched"] == n and data["outcomes"] == {"destroyed": n} and data["remaining"] == 0
    assert {s["state"] for s in data["sockets"]} == {state}
    assert ss(ns, ss_filter, port) == []


def test_a_dry_run_lists_the_sockets_with_their_process_and_destroys_nothing(scenario: Scenario) -> None:
    ns, _info = scenario(close_wait=5, time_wait=3)
    before = sorted(ss(ns))
    code, data = release(ns, "--state", "close-wait")
    assert code == 0 and data["dry_run"] is True and data["destroy_available"] is True
    assert data["outcomes"] == {"would destroy": 5}
    assert sorted(ss(ns)) == before


def test_filters_by_address_port_process_and_age_pick_what_ss_would(scenario: Scenario) -> None:
    ns, info = scenario(close_wait=5, time_wait=3, established=2)
    cases: list[tuple[list[str], int]] = [
        (["--state", "close-wait", "--dst", "127.0.0.2/32"], 5),  # the server ends: peer 127.0.0.2
        (["--state", "close-wait", "--dst", "127.0.0.0/8"], 5),
        (["--state", "close-wait", "--dst", "10.0.0.0/8"], 0),
        (["--state", "close-wait", "--src", "127.0.0.1"], 5),
        (["--sport", f"{CLOSE_WAIT}-{CLOSE_WAIT}"], 5),
        (["--dport", f"{ESTABLISHED}-{TIME_WAIT}"], 2 + 3),  # client ends of the established and TIME_WAIT pairs
        (["--pid", str(info["pid"]), "--state", "established"], 4),
        (["--pid", str(info["pid"] + 10**6)], 0),
        (["--process", info["name"], "--state", "close-wait"], 5),
        (["--process", "not-this-one"], 0),
        (["--state", "time-wait", "--older-than", "0s"], 3),
        (["--state", "time-wait", "--older-than", "61s"], 0),  # TIME_WAIT never lives past 60 s
    ]
    for args, n in cases:
        code, data = release(ns, *args)
        assert (code, data["matched"]) == (0, n), args
    code, data = release(ns, "--process", info["name"], "--state", "close-wait")
    assert {(s["pid"], s["process"]) for s in data["sockets"]} == {(info["pid"], info["name"])}
    code, data = release(ns, "--state", "time-wait", "--older-than", "0s")
    assert all(0 <= s["age_seconds"] <= 60 for s in data["sockets"])
    code, data = release(ns, "--sport", str(CLOSE_WAIT), "--older-than", "1s")
    assert data["matched"] == 0 and data["age_unknown"] == 5  # the kernel has no age for CLOSE_WAIT


def test_listeners_survive_without_include_listeners(scenario: Scenario) -> None:
    ns, _info = scenario(close_wait=2)
    code, data = release(ns, "--sport", str(CLOSE_WAIT), "--yes")
    assert code == 0 and data["listeners_skipped"] == 1 and data["outcomes"] == {"destroyed": 2}
    assert [s[0] for s in ss(ns) if s[1].endswith(f":{CLOSE_WAIT}")] == ["LISTEN"]
    code, data = release(ns, "--sport", str(CLOSE_WAIT), "--include-listeners", "--yes")
    assert code == 0 and [s["state"] for s in data["sockets"]] == ["LISTEN"]
    assert [s for s in ss(ns) if s[1].endswith(f":{CLOSE_WAIT}")] == []
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tcptune", "release", "--state", "listening", "--yes"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 64 and "--include-listeners" in proc.stderr


def test_ipv6_sockets_are_released(scenario: Scenario) -> None:
    ns, _info = scenario(ipv6=3)
    if not any(s[1].startswith("[::1]") for s in ss(ns)):
        pytest.skip("no IPv6 on loopback in this namespace")
    code, data = release(ns, "--src", "::1", "--state", "established", "--yes")
    # both ends of 3 pairs match; destroying one end resets the other before its turn: "already gone" is a success
    assert code == 0 and data["matched"] == 6 and data["remaining"] == 0
    assert data["outcomes"].get("destroyed", 0) >= 3 and set(data["outcomes"]) <= {"destroyed", "already gone"}
    assert {s["family"] for s in data["sockets"]} == {"ipv6"}
    assert [s for s in ss(ns, "established") if s[1].startswith("[::1]")] == []


def test_without_cap_net_admin_nothing_is_destroyed_and_it_says_what_works(scenario: Scenario) -> None:
    ns, info = scenario(close_wait=3)
    code, data = release(
        ns,
        "--state",
        "close-wait",
        "--sport",
        str(CLOSE_WAIT),
        "--yes",
        prefix=("setpriv", "--bounding-set", "-net_admin"),
    )
    assert code == 1
    assert data["destroy_available"] is False and "CAP_NET_ADMIN" in data["unavailable_reason"]
    assert data["outcomes"] == {"refused": 3}
    assert f"pid {info['pid']} ({info['name']}) holds 3 CLOSE_WAIT" in data["advice"]
    assert len([s for s in ss(ns, "close-wait") if s[1].endswith(f":{CLOSE_WAIT}")]) == 3


def test_nothing_matching_is_exit_0_and_says_so(scenario: Scenario) -> None:
    ns, _info = scenario(established=1)
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tcptune", "release", "--state", "close-wait", "--yes"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert proc.stdout == "no TCP socket matches state CLOSE_WAIT: nothing to release\n"
