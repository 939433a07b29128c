"""Socket counts the obvious way, from a list of sockets parsed from the kernel's text (/proc/net/tcp or ss), to
hold tcptune's counts against. Shared by the unit tests (captured /proc text) and the netns tests (live ss)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, NamedTuple

# include/net/tcp_states.h
KERNEL_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


class PlainSocket(NamedTuple):
    state: str
    local: str
    lport: int
    remote: str
    rport: int
    rx_queue: int
    """For a listener, its accept queue."""
    tx_queue: int = 0
    """For a listener, its backlog (ss); unknown (0) in /proc/net/tcp."""
    inode: int = 0
    timer: int = 0
    retransmits: int = 0
    uid: int = 0


def plain_counts(found: list[PlainSocket], ephemeral: tuple[int, int]) -> dict[str, Any]:
    """What status must report, counted the obvious way: a socket counts under its local port, unless that port
    is ephemeral and not listened on (an outgoing connection): then under its remote port, "out", and under its
    endpoint (local address, remote address, remote port) as (in use, TIME_WAIT, ESTABLISHED)."""
    listening = {s.lport for s in found if s.state == "LISTEN"}
    by_port: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    by_remote: dict[str, Counter[str]] = defaultdict(Counter)
    endpoints: dict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)
    for s in found:
        if s.state == "LISTEN":
            by_port[(s.lport, "in")]["LISTEN"] += 1
            continue
        if ephemeral[0] <= s.lport <= ephemeral[1] and s.lport not in listening:
            by_port[(s.rport, "out")][s.state] += 1
            endpoints[(s.local, s.remote, s.rport)][s.state] += 1
        else:
            by_port[(s.lport, "in")][s.state] += 1
        by_remote[s.remote][s.state] += 1
    return {
        "states": dict(Counter(s.state for s in found)),
        "by_port": {key: dict(value) for key, value in by_port.items()},
        "by_remote": {key: dict(value) for key, value in by_remote.items()},
        "endpoints": {
            key: (sum(value.values()), value["TIME_WAIT"], value["ESTABLISHED"]) for key, value in endpoints.items()
        },
        "fin_wait2_orphans": sum(1 for s in found if s.state == "FIN_WAIT2" and s.inode == 0),
        "listeners": sorted((s.local, s.lport, s.rx_queue) for s in found if s.state == "LISTEN"),
    }


def status_counts(data: dict[str, Any]) -> dict[str, Any]:
    """The same shape, from tcptune's status_dict (called with a ``top`` larger than every list)."""
    return {
        "states": {name: n for name, n in data["states"].items() if n},
        "by_port": {(row["port"], row["direction"]): row["states"] for row in data["by_port"]},
        "by_remote": {row["address"]: row["states"] for row in data["by_remote"]},
        "endpoints": {
            (e["local_address"], e["remote_address"], e["remote_port"]): (e["in_use"], e["time_wait"], e["established"])
            for e in data["endpoints"]
        },
        "fin_wait2_orphans": data["orphans"]["fin_wait2_orphans"],
        "listeners": sorted((x["address"], x["port"], x["queue"]) for x in data["listeners"]),
    }
