"""Evidence -> findings: what the socket states and kernel counters say, which profile keys would help, and why.

Pure: takes an ``Evidence`` value (built by ``sockets.take_evidence`` or by hand in tests) and returns ``Finding``s;
no I/O. Each rule is a small function; thresholds live in ``Thresholds`` with the reason for each default.

The rules encode what experienced operators tell people who arrive with "thousands of TIME_WAIT": TIME_WAIT is
usually fine; ports running out on outgoing connections is not; CLOSE_WAIT is always the application's bug and no
sysctl fixes it; FIN_WAIT2 orphans are what ``tcp_fin_timeout`` is for; accept-queue overflows need the
application's backlog as well as ``somaxconn``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .sockets.evidence import Evidence
from .sockets.states import CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, TIME_WAIT
from .sockets.tally import format_address, port_and_direction

SEVERITIES = ("critical", "warning", "info")
INT_MAX = 2**31 - 1
SOMAXCONN_CEILING = 65535
"""Kernels before 4.1 kept the backlog in 16 bits; never suggest more."""
WIDE_PORT_RANGE = (10000, 65535)
"""What we suggest when ports run out: leaves 1024-9999 for services, 55k ports per remote endpoint."""
FIN_TIMEOUT_STEPS = (30, 15)
"""tcp_fin_timeout suggestions, in order; below ~10 s slow peers get cut off (validate warns too)."""


@dataclass(frozen=True)
class Thresholds:
    """When evidence becomes a finding. Ratios are of the limit the kernel enforces."""

    min_sockets: int = 100
    """A pile-up (CLOSE_WAIT or FIN_WAIT2 on a port, TIME_WAIT in total) below this is noise on any real host."""
    orphan_ratio: float = 0.25
    """Orphans vs tcp_max_orphans: a quarter leaves room for a burst; beyond the limit the kernel resets."""
    tw_ratio: float = 0.5
    """TIME_WAIT vs tcp_max_tw_buckets: past half, a burst of closes can overflow the table."""
    endpoint_ratio: float = 0.5
    """Local ports used towards one remote address:port vs ip_local_port_range: past half, connect() slows
    down (its port search gets longer) and a burst can hit EADDRNOTAVAIL."""
    endpoint_critical: float = 0.9
    min_events: int = 1
    """Listen overflows, SYN drops, memory aborts: how many count (since boot, or within the --sample window)."""


@dataclass(frozen=True)
class Finding:
    """One conclusion, with the numbers that triggered it, the profile keys to change and why."""

    id: str
    severity: str
    """"critical", "warning" or "info"."""
    title: str
    numbers: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    """Profile keys this is about (possibly with no value to suggest: tcp_mem depends on the machine)."""
    suggest: dict[str, str] = field(default_factory=dict)
    """Key -> suggested value in the kernel's text form. Empty when no sysctl helps (CLOSE_WAIT)."""
    why: str = ""
    owners: tuple[dict[str, Any], ...] = ()
    """Processes holding the sockets in question: {port, direction, pid, name, sockets}."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "numbers": self.numbers,
            "keys": list(self.keys),
            "suggest": dict(self.suggest),
            "why": self.why,
            "owners": [dict(owner) for owner in self.owners],
        }


Rule = Callable[[Evidence, Thresholds], Iterable[Finding]]


def advise(evidence: Evidence, thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding the evidence supports, most severe first (rule order within a severity)."""
    limits = thresholds or Thresholds()
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(evidence, limits))
    findings.extend(_time_wait_is_normal(evidence, limits, findings))
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def suggested_values(findings: Iterable[Finding]) -> dict[str, str]:
    """All suggestions merged; where two findings suggest numbers for one key, the larger wins."""
    merged: dict[str, str] = {}
    for finding in findings:
        for key, value in finding.suggest.items():
            if key in merged and merged[key].isdigit() and value.isdigit():
                if key == "net.ipv4.tcp_fin_timeout":
                    merged[key] = str(min(int(merged[key]), int(value)))
                else:
                    merged[key] = str(max(int(merged[key]), int(value)))
            else:
                merged[key] = value
    return merged


# ---- helpers --------------------------------------------------------------------------------------------------------


def _where(key: int) -> str:
    port, direction = port_and_direction(key)
    return f"outgoing connections to remote port {port}" if direction == "out" else f"local port {port}"


def _port_fields(key: int) -> dict[str, Any]:
    port, direction = port_and_direction(key)
    return {"port": port, "direction": direction}


def _since(evidence: Evidence) -> str:
    if evidence.window is not None:
        return f"in the last {evidence.window:.0f} s"
    return "since boot (or since this network namespace was created)"


def _pct(value: float) -> float:
    return round(100.0 * value, 1)


def _owner_text(evidence: Evidence, key: int) -> tuple[str, tuple[dict[str, Any], ...]]:
    owners = evidence.owners.get(key)
    if not owners:
        looked = key in evidence.owners
        return ("owner unknown" + (" (no process could be inspected; run as root)" if looked else ""), ())
    text = ", ".join(f"pid {o.pid} ({o.name})" for o in owners)
    return (
        f"held by {text}",
        tuple({**_port_fields(key), "pid": o.pid, "name": o.name, "sockets": o.sockets} for o in owners),
    )


# ---- rules ----------------------------------------------------------------------------------------------------------


def _close_wait(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    piles = sorted(
        ((row[CLOSE_WAIT], key) for key, row in evidence.counts.ports.items() if row[CLOSE_WAIT] >= limits.min_sockets),
        reverse=True,
    )
    for count, key in piles[:5]:
        owner_text, owners = _owner_text(evidence, key)
        yield Finding(
            id="close-wait",
            severity="critical" if count >= 10 * limits.min_sockets else "warning",
            title=f"{count} CLOSE_WAIT sockets on {_where(key)}: the application is not closing them ({owner_text})",
            numbers={"close_wait": count, **_port_fields(key)},
            why="CLOSE_WAIT means the peer closed the connection and the local application has not called close() "
            "on its socket. The kernel never times these out and no sysctl changes that: fix the application "
            "(a leaked connection, a worker stuck before closing, an error path without close). Restarting "
            "the process releases them.",
            owners=owners,
        )


def _fin_wait2(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    counts = evidence.counts
    total = counts.states[FIN_WAIT2]
    orphans = counts.fin_wait2_orphans
    ports = sorted(((row[FIN_WAIT2], key) for key, row in counts.ports.items() if row[FIN_WAIT2]), reverse=True)[:3]
    top = [{**_port_fields(key), "fin_wait2": n} for n, key in ports]
    if orphans >= limits.min_sockets:
        fin = evidence.sysctl_int("net.ipv4.tcp_fin_timeout")
        step = next((s for s in FIN_TIMEOUT_STEPS if fin is not None and fin > s), None)
        why = (
            "These connections were closed here and the peer has acknowledged, but it has not sent its own FIN. "
            "No process holds them any more (orphans); the kernel keeps each for tcp_fin_timeout seconds, and "
            "while it does they also take TIME_WAIT buckets. Peers that vanish or never close make them pile "
            "up; a shorter timeout frees them sooner. It does not shorten TIME_WAIT (fixed at 60 s)."
        )
        if step is None:
            why += " tcp_fin_timeout is already short; look at the peers on the ports listed."
        yield Finding(
            id="fin-wait2-orphans",
            severity="warning",
            title=f"{orphans} orphaned FIN_WAIT2 sockets waiting up to {fin if fin is not None else '?'} s "
            "for peers that do not close",
            numbers={"fin_wait2_orphans": orphans, "fin_wait2": total, "tcp_fin_timeout": fin, "ports": top},
            keys=("net.ipv4.tcp_fin_timeout",),
            suggest={"net.ipv4.tcp_fin_timeout": str(step)} if step else {},
            why=why,
        )
    held = total - orphans
    if held >= limits.min_sockets:
        yield Finding(
            id="fin-wait2-held",
            severity="info",
            title=f"{held} FIN_WAIT2 sockets still held by applications (half-closed, waiting for the peer)",
            numbers={"fin_wait2_held": held, "fin_wait2": total, "ports": top},
            why="The application shut down its sending side (shutdown(SHUT_WR)) and still holds the socket, "
            "waiting for the peer to finish; the peer does not. tcp_fin_timeout applies only to orphans, so "
            "no sysctl helps: the application should time out and close.",
        )


def _orphans(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    orphans = evidence.sockstat.get("orphan")
    limit = evidence.sysctl_int("net.ipv4.tcp_max_orphans")
    if orphans is None or not limit or orphans < limits.orphan_ratio * limit:
        return
    ratio = orphans / limit
    aborts = evidence.counter("TcpExt.TCPAbortOnMemory")
    yield Finding(
        id="orphans-near-limit",
        severity="critical" if ratio >= 0.8 or aborts else "warning",
        title=f"{orphans} orphaned sockets: {_pct(ratio)} % of tcp_max_orphans ({limit})",
        numbers={"orphans": orphans, "tcp_max_orphans": limit, "percent": _pct(ratio), "TCPAbortOnMemory": aborts},
        keys=("net.ipv4.tcp_max_orphans", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"),
        suggest={"net.ipv4.tcp_max_orphans": str(min(limit * 2, INT_MAX))},
        why='Past tcp_max_orphans the kernel resets orphaned connections at once ("too many orphaned sockets"). '
        "Each orphan may pin up to about 64 KiB of memory: raise the limit if memory allows, and make orphans "
        "live shorter (tcp_fin_timeout, tcp_orphan_retries). tcp_max_orphans is host-wide (set it on the "
        "host, not in a container).",
    )


def _tw_buckets(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    tw = evidence.sockstat.get("tw", evidence.counts.states[TIME_WAIT])
    limit = evidence.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    overflow = evidence.counter("TcpExt.TCPTimeWaitOverflow")
    overflowed = overflow >= limits.min_events
    if overflowed:
        title = f"TIME_WAIT table overflowed {overflow} times {_since(evidence)}"
    elif limit and tw >= limits.tw_ratio * limit:
        title = f"{tw} TIME_WAIT sockets: {_pct(tw / limit)} % of tcp_max_tw_buckets ({limit})"
    else:
        return
    yield Finding(
        id="time-wait-buckets",
        severity="critical" if overflowed else "warning",
        title=title,
        numbers={"time_wait": tw, "tcp_max_tw_buckets": limit, "TCPTimeWaitOverflow": overflow},
        keys=("net.ipv4.tcp_max_tw_buckets",),
        suggest={"net.ipv4.tcp_max_tw_buckets": str(min(max(limit, tw) * 2, INT_MAX))} if limit else {},
        why='When the table is full, closing connections skip TIME_WAIT ("time wait bucket table overflow") and '
        "lose its protection against stray segments of the old connection. A TIME_WAIT socket costs a few "
        "hundred bytes and no file descriptor: raise the limit rather than fight TIME_WAIT.",
    )


def _ephemeral_ports(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    capacity = evidence.port_range_size
    rows = sorted(((sum(row), key, row) for key, row in evidence.counts.endpoints.items()), key=lambda item: -item[0])
    busy = [(n, key, row) for n, key, row in rows if n >= limits.endpoint_ratio * capacity]
    if not busy:
        return
    in_use, (local, remote, rport), row = busy[0]
    ratio = in_use / capacity
    time_wait = row[TIME_WAIT]
    suggest: dict[str, str] = {}
    reuse = evidence.sysctl_int("net.ipv4.tcp_tw_reuse")
    if time_wait >= in_use * 0.25 and reuse != 1:
        suggest["net.ipv4.tcp_tw_reuse"] = "1"
        if evidence.sysctl_int("net.ipv4.tcp_timestamps") == 0:
            suggest["net.ipv4.tcp_timestamps"] = "1"
    low, high = evidence.port_range
    new_low, new_high = min(low, WIDE_PORT_RANGE[0]), max(high, WIDE_PORT_RANGE[1])
    if new_low % 2 == new_high % 2:
        new_low += 1  # bounds of different parity suit the kernel's port search (validate warns otherwise)
    if new_high - new_low > high - low:
        suggest["net.ipv4.ip_local_port_range"] = f"{new_low} {new_high}"
    endpoint = f"{format_address(local)} -> {format_address(remote)}:{rport}"
    yield Finding(
        id="ephemeral-ports",
        severity="critical" if ratio >= limits.endpoint_critical else "warning",
        title=f"outgoing connections {endpoint} use {in_use} of {capacity} local ports ({_pct(ratio)} %)",
        numbers={
            "endpoint": endpoint,
            "in_use": in_use,
            "time_wait": time_wait,
            "established": row[ESTABLISHED],
            "capacity": capacity,
            "percent": _pct(ratio),
            "ip_local_port_range": f"{low} {high}",
            "tcp_tw_reuse": reuse,
            "other_busy_endpoints": [
                f"{format_address(k[0])} -> {format_address(k[1])}:{k[2]} ({n})" for n, k, _ in busy[1:4]
            ],
        },
        keys=("net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports"),
        suggest=suggest,
        why="Every connection to one remote address and port needs its own local port, and a closed one keeps it "
        "for 60 s in TIME_WAIT; when the range is used up connect() fails (EADDRNOTAVAIL). tcp_tw_reuse = 1 "
        "lets new outgoing connections take over TIME_WAIT ports when TCP timestamps show it is safe "
        "(clients only; needs tcp_timestamps); a wider ip_local_port_range adds ports (reserve local "
        "services' ports inside it in ip_local_reserved_ports). The lasting fix is in the client: keep-alive "
        "and connection pooling, or more remote addresses.",
    )


def _listen_overflows(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    overflows = evidence.counter("TcpExt.ListenOverflows")
    drops = evidence.counter("TcpExt.ListenDrops")
    full_now = [
        item
        for item in evidence.counts.listeners
        if item.backlog is not None and item.backlog and item.queue >= item.backlog
    ]
    if overflows < limits.min_events and drops < limits.min_events and not full_now:
        return
    somaxconn = evidence.sysctl_int("net.core.somaxconn")
    target = min(SOMAXCONN_CEILING, max(4096, (somaxconn or 0) * 4))
    suggest: dict[str, str] = {}
    if somaxconn is not None and somaxconn < target:
        suggest["net.core.somaxconn"] = str(target)
    syn_backlog = evidence.sysctl_int("net.ipv4.tcp_max_syn_backlog")
    if syn_backlog is not None and syn_backlog < target:
        suggest["net.ipv4.tcp_max_syn_backlog"] = str(target)
    small = sorted(
        {
            (item.port, item.backlog)
            for item in evidence.counts.listeners
            if item.backlog is not None and somaxconn and item.backlog < min(somaxconn, target)
        }
    )
    listeners = [
        {"address": item.address, "port": item.port, "queue": item.queue, "backlog": item.backlog}
        for item in full_now[:5]
    ]
    why = (
        "A listener's accept queue was full: the application does not accept() fast enough for the bursts it "
        "gets, so the kernel dropped the last packet of handshakes and clients had to retry (seconds of delay). "
        "The queue's size is the application's listen() backlog capped by net.core.somaxconn: raising "
        "somaxconn helps only if the application asks for more."
    )
    if small:
        why += (
            " These listeners ask for less than somaxconn; raise their backlog in the application's "
            "configuration (e.g. nginx 'listen ... backlog=', a framework's backlog setting): "
            + ", ".join(f"port {port} (backlog {backlog})" for port, backlog in small[:5])
            + "."
        )
    why += " If queues stay full, the application itself is too slow (more workers)."
    windowed = evidence.window is not None
    yield Finding(
        id="listen-overflows",
        severity="warning"
        if full_now or (windowed and overflows >= limits.min_events) or overflows >= 1000
        else "info",
        title=(
            f"accept queue overflowed {overflows} times {_since(evidence)}"
            if overflows
            else f"{len(full_now)} listener(s) have a full accept queue right now"
        ),
        numbers={
            "ListenOverflows": overflows,
            "ListenDrops": drops,
            "since": _since(evidence),
            "somaxconn": somaxconn,
            "tcp_max_syn_backlog": syn_backlog,
            "full_listeners": listeners,
            "small_backlogs": [{"port": port, "backlog": backlog} for port, backlog in small[:10]],
        },
        keys=("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"),
        suggest=suggest,
        why=why
        + (
            ""
            if windowed
            else " Counters are cumulative: run 'tcptune recommend --sample 10' to see whether it is still happening."
        ),
    )


def _syn_queue(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    dropped = evidence.counter("TcpExt.TCPReqQFullDrop")
    cookies = evidence.counter("TcpExt.TCPReqQFullDoCookies")
    if dropped < limits.min_events and cookies < limits.min_events:
        return
    suggest: dict[str, str] = {}
    if dropped >= limits.min_events and evidence.sysctl_int("net.ipv4.tcp_syncookies") == 0:
        suggest["net.ipv4.tcp_syncookies"] = "1"
    yield Finding(
        id="syn-queue",
        severity="warning" if dropped >= limits.min_events else "info",
        title=(
            f"{dropped} SYNs dropped (SYN queue full) {_since(evidence)}"
            if dropped
            else f"SYN queue overflowed: {cookies} SYN cookies sent {_since(evidence)}"
        ),
        numbers={
            "TCPReqQFullDrop": dropped,
            "TCPReqQFullDoCookies": cookies,
            "tcp_syncookies": evidence.sysctl_int("net.ipv4.tcp_syncookies"),
            "tcp_max_syn_backlog": evidence.sysctl_int("net.ipv4.tcp_max_syn_backlog"),
        },
        keys=("net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn"),
        suggest=suggest,
        why="Half-open connections filled a listener's SYN queue (a SYN flood, or a backlog too small for "
        "legitimate bursts). With tcp_syncookies = 1 the kernel answers with cookies instead of dropping; "
        "the SYN queue is bounded by the listen() backlog and somaxconn (tcp_max_syn_backlog only matters "
        "with cookies off).",
    )


def _tcp_memory(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    aborts = evidence.counter("TcpExt.TCPAbortOnMemory")
    pressures = evidence.counter("TcpExt.TCPMemoryPressures")
    if aborts < limits.min_events and pressures < limits.min_events:
        return
    yield Finding(
        id="tcp-memory",
        severity="critical" if aborts >= limits.min_events else "warning",
        title=(
            f"{aborts} connections reset for lack of TCP memory {_since(evidence)}"
            if aborts
            else f"TCP entered memory pressure {pressures} times {_since(evidence)}"
        ),
        numbers={
            "TCPAbortOnMemory": aborts,
            "TCPMemoryPressures": pressures,
            "tcp_mem_pages_used": evidence.sockstat.get("mem"),
            "tcp_mem": evidence.sysctls.get("net.ipv4.tcp_mem"),
            "orphans": evidence.sockstat.get("orphan"),
        },
        keys=("net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans"),
        why="TCP as a whole ran short of the memory tcp_mem allows (in pages, host-wide), or of orphan slots: the "
        'kernel shrank buffers and reset connections ("out of memory -- consider tuning tcp_mem"). Raise '
        "tcp_mem's thresholds only with memory to spare (see 'tcptune explain tcp_mem'); large per-socket "
        "buffers (tcp_rmem/tcp_wmem max) times many sockets is the usual cause.",
    )


def _time_wait_is_normal(evidence: Evidence, limits: Thresholds, found: list[Finding]) -> Iterable[Finding]:
    """The reassurance people need most: many TIME_WAIT sockets are not a problem by themselves."""
    time_wait = evidence.counts.states[TIME_WAIT]
    if time_wait < limits.min_sockets or any(f.id in ("time-wait-buckets", "ephemeral-ports") for f in found):
        return
    capacity = evidence.port_range_size
    busiest = max((sum(row) for row in evidence.counts.endpoints.values()), default=0)
    yield Finding(
        id="time-wait-normal",
        severity="info",
        title=f"{time_wait} TIME_WAIT sockets: normal, no action needed",
        numbers={
            "time_wait": time_wait,
            "busiest_endpoint_ports": busiest,
            "busiest_endpoint_percent": _pct(busiest / capacity),
        },
        why="TIME_WAIT is the closing side's 60 s guard against stray segments of an old connection. It holds no "
        "file descriptor, costs a few hundred bytes, and no sysctl shortens it (tcp_fin_timeout does not). "
        "It matters only when outgoing connections run short of local ports or tcp_max_tw_buckets fills; "
        "neither is the case here.",
    )


RULES: tuple[Rule, ...] = (
    _close_wait,
    _fin_wait2,
    _orphans,
    _tw_buckets,
    _ephemeral_ports,
    _listen_overflows,
    _syn_queue,
    _tcp_memory,
)


# ---- a profile from the suggestions ---------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def profile_name_for(stem: str) -> str:
    """A valid profile name from a file name."""
    name = _NAME_CHARS.sub("-", stem).lstrip("-_.")
    return name or "recommended"


def profile_text(findings: list[Finding], *, name: str, extends: str, context: str = "") -> str | None:
    """A profile (YAML) with only the suggested keys, each commented with the finding behind it; None if no
    finding suggests a value."""
    values = suggested_values(findings)
    if not values:
        return None
    reason: dict[str, str] = {}
    for finding in findings:
        for key in finding.suggest:
            reason.setdefault(key, f"{finding.id}: {finding.title}")
    lines = [
        "# Written by 'tcptune recommend' from live socket evidence" + (f" ({context})" if context else "") + ".",
        "# Review each value, then: tcptune diff <this file>; tcptune apply <this file>.",
        f"name: {name}",
        f"description: Suggestions from tcptune recommend ({', '.join(sorted({f.id for f in findings if f.suggest}))})",
        f"extends: {_yaml_scalar(extends)}",
        "settings:",
    ]
    for key in sorted(values):
        lines.append(f"  # {' '.join(reason[key].split())}")
        lines.append(f"  {key}: {_yaml_scalar(values[key])}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: str) -> str:
    if value.isdigit():
        return value
    if re.fullmatch(r"[A-Za-z0-9_./-]+", value) and value.lower() not in (
        "yes",
        "no",
        "on",
        "off",
        "true",
        "false",
        "null",
        "~",
    ):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
