"""Evidence -> findings: what the socket states and kernel counters say, which profile keys would help, and why.

Pure: takes an ``Evidence`` value (built by ``sockets.take_evidence`` or by hand in tests) and returns ``Finding``s;
no I/O. Each rule is a small function; thresholds live in ``Thresholds`` with the reason for each default.

The rules encode what experienced operators tell people who arrive with "thousands of TIME_WAIT": TIME_WAIT is
usually fine; ports running out on outgoing connections is not; CLOSE_WAIT is always the application's bug and no
sysctl fixes it; FIN_WAIT2 orphans are what ``tcp_fin_timeout`` is for; accept-queue overflows need the
application's backlog as well as ``somaxconn``.

Two rules keep the advice from misleading:
- Kernel counters are judged only as changes within a window (``--sample``, or since the last apply). A total since
  boot cannot tell whether something is still happening, so it is shown as history and never suggests a value (else
  every run after a fix would raise the same limit again).
- A suggestion must be able to help: somaxconn is raised only for listeners whose backlog it caps; sizes come from
  the measured rates (ports from connections per second, TIME_WAIT buckets from closes per second).
Every finding names its evidence window and the expected effect of its suggestion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import catalog
from .sockets.states import CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, TIME_WAIT
from .sockets.tally import Address, Listener, format_address, port_and_direction

if TYPE_CHECKING:  # the value only: reading it (sockets.evidence) is the edge's work
    from .sockets.evidence import Evidence

SEVERITIES = ("critical", "warning", "info")
INT_MAX = 2**31 - 1
SOMAXCONN_CEILING = 65535
"""Kernels before 4.1 kept the backlog in 16 bits; never suggest more."""
SOMAXCONN_FLOOR = 4096
"""The kernel default since 5.4; a raised somaxconn is at least this."""
WIDE_PORT_RANGE = (10000, 65535)
"""The range suggested when the ports are used up and the true demand cannot be measured: leaves 1024-9999 for
services, 55536 ports per remote endpoint."""
LOWEST_EPHEMERAL_PORT = 1024
"""ip_unprivileged_port_start's default: validate refuses a range that starts below it."""
FIN_TIMEOUT_STEPS = (30, 15)
"""tcp_fin_timeout suggestions, in order; below ~10 s slow peers get cut off (validate warns too)."""
TIME_WAIT_SECONDS = 60.0
"""TCP_TIMEWAIT_LEN: how long a closed connection holds its port and its TIME_WAIT bucket."""
HEADROOM = 2.0
"""Sizes are twice the measured need: rates are averages over a window and real traffic comes in bursts."""
REUSE_DELAY_KEY = "net.ipv4.tcp_tw_reuse_delay"
MIN_REUSE_DELAY_MS = 100
"""Lowest tcp_tw_reuse_delay suggested: the delay must exceed the peer's timestamp clock tick for PAWS to protect
the reused connection (1 ms on Linux, up to 10 ms elsewhere); 100 ms keeps a wide margin."""
OLD_KERNEL_REUSE_SECONDS = 2.0
"""Kernels without tcp_tw_reuse_delay (before 6.14) reuse a TIME_WAIT port once the clock's second has moved on
from the last timestamp: after 1 to 2 s."""
NOW = "now (the sockets as read)"
JUDGED_COUNTERS = (
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPReqQFullDrop",
    "TcpExt.TCPReqQFullDoCookies",
    "TcpExt.TCPAbortOnMemory",
    "TcpExt.TCPMemoryPressures",
    "TcpExt.TCPTimeWaitOverflow",
)
"""Counters rules judge; without a window they are reported as history only."""


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
    """Past this the range is used up: connect() fails, so the measured rate is only a floor of the demand."""
    min_events: int = 1
    """Listen overflows, SYN drops, memory aborts, TIME_WAIT overflows: how many within the window count."""


@dataclass(frozen=True)
class Finding:
    """One conclusion, with the numbers that triggered it, the profile keys to change, why, over which window of
    evidence, and what the change is expected to do."""

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
    window: str = NOW
    """The evidence the finding rests on, in time: the sockets now, or counters over a named window."""
    effect: str = ""
    """What the suggestion is expected to do (or, with none, what does help)."""
    commands: tuple[str, ...] = ()
    """tcptune commands that act on it directly (release)."""

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
            "window": self.window,
            "effect": self.effect,
            "commands": list(self.commands),
        }


Rule = Callable[["Evidence", Thresholds], Iterable[Finding]]


def advise(evidence: Evidence, thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding the evidence supports, most severe first (rule order within a severity)."""
    limits = thresholds or Thresholds()
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(evidence, limits))
    findings.extend(_time_wait_is_normal(evidence, limits, findings))
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def suggested_values(findings: Iterable[Finding]) -> dict[str, str]:
    """All suggestions merged; where two findings suggest numbers for one key, the larger wins (the shorter for
    timeouts and delays)."""
    shorter_wins = ("net.ipv4.tcp_fin_timeout", REUSE_DELAY_KEY)
    merged: dict[str, str] = {}
    for finding in findings:
        for key, value in finding.suggest.items():
            if key in merged and merged[key].isdigit() and value.isdigit():
                pick = min if key in shorter_wins else max
                merged[key] = str(pick(int(merged[key]), int(value)))
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


def _release_command(state: str, key: int) -> str:
    port, direction = port_and_direction(key)
    return f"tcptune release --state {state} --{'dport' if direction == 'out' else 'sport'} {port} --yes"


def _in_window(evidence: Evidence) -> str:
    return f"in {evidence.window_text}" if evidence.window_text else "since boot"


def _pct(value: float) -> float:
    return round(100.0 * value, 1)


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


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


def _is_loopback(address: Address) -> bool:
    if isinstance(address, int):
        return address >> 24 == 127
    return address == bytes(15) + b"\x01" or (address[:12] == bytes(10) + b"\xff\xff" and address[12] == 127)


# ---- rules on the sockets as they are now ----------------------------------------------------------------------------


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
            "the process releases them; 'tcptune release' destroys them without a restart (without --yes it "
            "lists them first).",
            owners=owners,
            effect=f"No sysctl can. Releasing destroys these {count} sockets at once (a reset to each peer; the "
            "application gets ECONNABORTED on them); they pile up again until the application closes its sockets.",
            commands=(_release_command("close-wait", key),),
        )


def _fin_wait2(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    counts = evidence.counts
    total = counts.states[FIN_WAIT2]
    orphans = counts.fin_wait2_orphans
    ports = sorted(((row[FIN_WAIT2], key) for key, row in counts.ports.items() if row[FIN_WAIT2]), reverse=True)[:3]
    top = [{**_port_fields(key), "fin_wait2": n} for n, key in ports]
    release = tuple(_release_command("fin-wait-2", key) for _n, key in ports[:1])
    if orphans >= limits.min_sockets:
        fin = evidence.sysctl_int("net.ipv4.tcp_fin_timeout")
        step = next((s for s in FIN_TIMEOUT_STEPS if fin is not None and fin > s), None)
        why = (
            "These connections were closed here and the peer has acknowledged, but it has not sent its own FIN. "
            "No process holds them any more (orphans); the kernel keeps each for tcp_fin_timeout seconds, and "
            "while it does they also take TIME_WAIT buckets. Peers that vanish or never close make them pile "
            "up; a shorter timeout frees them sooner. It does not shorten TIME_WAIT (fixed at 60 s)."
        )
        if step is None or not fin:
            why += " tcp_fin_timeout is already short; look at the peers on the ports listed."
            effect = "No further sysctl step; releasing destroys the current ones at once."
        else:
            effect = (
                f"Each orphan is freed after {step} s instead of {fin} s: at the same rate of closes about "
                f"{math.ceil(orphans * step / fin)} of them at a time instead of {orphans}. Sockets already waiting "
                "keep their timer; releasing destroys them now."
            )
        yield Finding(
            id="fin-wait2-orphans",
            severity="warning",
            title=f"{orphans} orphaned FIN_WAIT2 sockets waiting up to {fin if fin is not None else '?'} s "
            "for peers that do not close",
            numbers={"fin_wait2_orphans": orphans, "fin_wait2": total, "tcp_fin_timeout": fin, "ports": top},
            keys=("net.ipv4.tcp_fin_timeout",),
            suggest={"net.ipv4.tcp_fin_timeout": str(step)} if step else {},
            why=why,
            effect=effect,
            commands=release,
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
            effect="No sysctl can. Releasing destroys them (the application gets ECONNABORTED, the peer a reset).",
            commands=release,
        )


def _orphans(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    orphans = evidence.sockstat.get("orphan")
    limit = evidence.sysctl_int("net.ipv4.tcp_max_orphans")
    if orphans is None or not limit or orphans < limits.orphan_ratio * limit:
        return
    ratio = orphans / limit
    aborts = evidence.windowed("TcpExt.TCPAbortOnMemory")
    suggested = min(limit * 2, INT_MAX)
    yield Finding(
        id="orphans-near-limit",
        severity="critical" if ratio >= 0.8 or aborts else "warning",
        title=f"{orphans} orphaned sockets: {_pct(ratio)} % of tcp_max_orphans ({limit})",
        numbers={"orphans": orphans, "tcp_max_orphans": limit, "percent": _pct(ratio), "TCPAbortOnMemory": aborts},
        keys=("net.ipv4.tcp_max_orphans", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"),
        suggest={"net.ipv4.tcp_max_orphans": str(suggested)},
        why='Past tcp_max_orphans the kernel resets orphaned connections at once ("too many orphaned sockets"). '
        "Each orphan may pin up to about 64 KiB of memory: raise the limit if memory allows, and make orphans "
        "live shorter (tcp_fin_timeout, tcp_orphan_retries). tcp_max_orphans is host-wide (set it on the "
        "host, not in a container).",
        effect=f"The kernel resets orphaned connections only past {suggested} of them instead of {limit} "
        f"({_pct(orphans / suggested)} % used at today's count).",
    )


def _ephemeral_ports(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    """Local ports towards one remote address:port running out. Sized from the connection rate: each connection
    holds its port while open and, after closing first, for 60 s in TIME_WAIT, or only for tcp_tw_reuse_delay
    once tcp_tw_reuse = 1 lets connect() take TIME_WAIT ports over."""
    capacity = evidence.port_range_size
    rows = sorted(((sum(row), key, row) for key, row in evidence.counts.endpoints.items()), key=lambda item: -item[0])
    busy = [(n, key, row) for n, key, row in rows if n >= limits.endpoint_ratio * capacity]
    if not busy:
        return
    in_use, (local, remote, rport), row = busy[0]
    ratio = in_use / capacity
    time_wait = row[TIME_WAIT]
    still_open = in_use - time_wait
    saturated = ratio >= limits.endpoint_critical
    endpoint = f"{format_address(local)} -> {format_address(remote)}:{rport}"

    suggest: dict[str, str] = {}
    reuse = evidence.sysctl_int("net.ipv4.tcp_tw_reuse")
    reusing = reuse == 1 or (reuse == 2 and _is_loopback(remote))
    if not reusing and time_wait >= in_use * 0.25:
        suggest["net.ipv4.tcp_tw_reuse"] = "1"
        if evidence.sysctl_int("net.ipv4.tcp_timestamps") == 0:
            suggest["net.ipv4.tcp_timestamps"] = "1"
        reusing = True
    delay_ms = evidence.sysctl_int(REUSE_DELAY_KEY)
    hold = (delay_ms / 1000.0 if delay_ms else OLD_KERNEL_REUSE_SECONDS) if reusing else TIME_WAIT_SECONDS

    # The rate: TIME_WAIT sockets to this endpoint are the connections it closed in the last 60 s; new outgoing
    # connections per second within a counter window (all endpoints: an upper bound for this one). Both miss the
    # connect() calls that failed, which no kernel counter records: with the range used up, the rate is a floor.
    tw_rate = time_wait / TIME_WAIT_SECONDS
    window_rate = evidence.per_second("Tcp.ActiveOpens")
    rate = max(tw_rate, window_rate or 0.0)
    rate_window = f"{evidence.window_text} (Tcp.ActiveOpens)" if window_rate is not None else None
    if rate_window is None or tw_rate >= (window_rate or 0.0):
        rate_window = "the last 60 s (the TIME_WAIT sockets to this endpoint)"

    needed = math.ceil(HEADROOM * (still_open + rate * hold))
    wide = WIDE_PORT_RANGE[1] - WIDE_PORT_RANGE[0] + 1
    target = max(needed, wide) if saturated else needed
    low, high = evidence.port_range
    new_low, new_high = sized_port_range(low, high, target)
    if new_high - new_low + 1 > capacity:
        suggest["net.ipv4.ip_local_port_range"] = f"{new_low} {new_high}"
    size = max(capacity, new_high - new_low + 1)

    delay_note = ""
    if reusing and rate > 0 and needed > size:
        best_ms = math.floor(1000.0 * (size / HEADROOM - still_open) / rate)
        if delay_ms and MIN_REUSE_DELAY_MS <= best_ms < delay_ms:
            if catalog.get(REUSE_DELAY_KEY) is not None:
                suggest[REUSE_DELAY_KEY] = str(best_ms)
            delay_note = f" tcp_tw_reuse_delay = {best_ms} ms lets {size} ports carry that rate."
            hold = best_ms / 1000.0
        else:
            delay_note = (
                f" Even {size} ports cannot carry {_rate(rate)} connections/s with a {hold:g} s reuse delay: "
                "spread the connections over more remote addresses or local source addresses, or pool them."
            )
    sustained = max(0.0, (size / HEADROOM - still_open) / hold) if hold else 0.0
    floor_note = " (a floor: the range is used up, and failed connect() calls are not counted)" if saturated else ""
    effect = (
        f"{size} local ports for {endpoint}, each free again {hold:g} s after its connection closes"
        + (" (tcp_tw_reuse = 1)" if reusing else " (TIME_WAIT)")
        + f": room for about {_rate(sustained)} new connections/s with headroom {HEADROOM:g}, against "
        f"{_rate(rate)}/s measured{floor_note}; connect() stops failing with EADDRNOTAVAIL." + delay_note
    )
    if not suggest:
        effect = f"Nothing to change: {effect}"
    yield Finding(
        id="ephemeral-ports",
        severity="critical" if saturated else "warning",
        title=f"outgoing connections {endpoint} use {in_use} of {capacity} local ports ({_pct(ratio)} %)",
        numbers={
            "endpoint": endpoint,
            "in_use": in_use,
            "time_wait": time_wait,
            "established": row[ESTABLISHED],
            "capacity": capacity,
            "percent": _pct(ratio),
            "connections_per_second": round(rate, 1),
            "rate_window": rate_window,
            "rate_is_floor": saturated,
            "ports_needed": needed,
            "port_hold_seconds": hold,
            "ip_local_port_range": f"{low} {high}",
            "tcp_tw_reuse": reuse,
            "tcp_tw_reuse_delay_ms": delay_ms,
            "other_busy_endpoints": [
                f"{format_address(k[0])} -> {format_address(k[1])}:{k[2]} ({n})" for n, k, _ in busy[1:4]
            ],
        },
        keys=("net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range", REUSE_DELAY_KEY),
        suggest=suggest,
        why="Every connection to one remote address and port needs its own local port while open, and a "
        "connection closed from this side keeps it for 60 s in TIME_WAIT; when the range is used up connect() "
        "fails (EADDRNOTAVAIL). Ports needed = connections per second x seconds each port stays taken, with "
        "headroom. tcp_tw_reuse = 1 lets new outgoing connections take over a TIME_WAIT port after "
        "tcp_tw_reuse_delay (1 s) when TCP timestamps show it is safe (clients only; needs timestamps on both "
        f"ends: without them only the range counts, {math.ceil(HEADROOM * (still_open + rate * TIME_WAIT_SECONDS))} "
        "ports at this rate). Reserve local services' ports inside the range in ip_local_reserved_ports. The "
        "lasting fix is in the client: keep-alive and connection pooling.",
        window=f"{NOW}; rate over {rate_window}",
        effect=effect,
    )


def sized_port_range(low: int, high: int, size: int) -> tuple[int, int]:
    """``ip_local_port_range`` grown to hold ``size`` ports (never shrunk): extended upwards first, then down,
    within 1024-65535, with bounds of different parity (the kernel's port search prefers that; validate warns
    otherwise)."""
    size = min(size, 65535 - LOWEST_EPHEMERAL_PORT + 1)
    if size <= high - low + 1:
        return low, high
    new_high = max(high, min(65535, low + size - 1))
    new_low = max(LOWEST_EPHEMERAL_PORT, min(low, new_high - size + 1))
    if (new_high - new_low) % 2 == 0:
        new_low += -1 if new_low > LOWEST_EPHEMERAL_PORT else 1
    return new_low, new_high


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
        effect="None needed.",
    )


# ---- rules on counters within a window ------------------------------------------------------------------------------


def _tw_buckets(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    """Sized from the closing rate: the table must hold every connection closed in the last 60 s."""
    tw = evidence.sockstat.get("tw", evidence.counts.states[TIME_WAIT])
    limit = evidence.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    overflow = evidence.windowed("TcpExt.TCPTimeWaitOverflow")
    overflowed = overflow is not None and overflow >= limits.min_events
    overflow_rate = evidence.per_second("TcpExt.TCPTimeWaitOverflow") or 0.0
    closes = tw / TIME_WAIT_SECONDS + overflow_rate
    if overflowed:
        title = f"TIME_WAIT table overflowed {overflow} times {_in_window(evidence)}"
        window = evidence.window_text or NOW
    elif limit and tw >= limits.tw_ratio * limit:
        title = f"{tw} TIME_WAIT sockets: {_pct(tw / limit)} % of tcp_max_tw_buckets ({limit})"
        window = NOW
    else:
        return
    needed = math.ceil(HEADROOM * closes * TIME_WAIT_SECONDS)
    suggested = min(max(2 * (limit or 0), needed), INT_MAX) if limit else None
    yield Finding(
        id="time-wait-buckets",
        severity="critical" if overflowed else "warning",
        title=title,
        numbers={
            "time_wait": tw,
            "tcp_max_tw_buckets": limit,
            "TCPTimeWaitOverflow": overflow,
            "overflows_per_second": round(overflow_rate, 1),
            "closes_per_second": round(closes, 1),
            "buckets_needed": needed,
        },
        keys=("net.ipv4.tcp_max_tw_buckets",),
        suggest={"net.ipv4.tcp_max_tw_buckets": str(suggested)} if suggested and suggested > (limit or 0) else {},
        why='When the table is full, closing connections skip TIME_WAIT ("time wait bucket table overflow") and '
        "lose its protection against stray segments of the old connection. Buckets needed = connections closed "
        "per second x 60 s, with headroom. A TIME_WAIT socket costs a few hundred bytes and no file descriptor: "
        "raise the limit rather than fight TIME_WAIT.",
        window=window,
        effect=(
            f"Room for {suggested} TIME_WAIT sockets, about {_rate(suggested / TIME_WAIT_SECONDS)} closes/s, "
            f"against {_rate(closes)}/s measured: overflows stop."
            if suggested
            else "tcp_max_tw_buckets is not readable here; set it on the host."
        ),
    )


def _listen_overflows(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    """Accept queues overflowing. A listener's queue holds min(its listen() backlog, somaxconn): the kernel reports
    the result as the listener's backlog. Raising somaxconn helps only a listener whose backlog it cut down (backlog
    equal to somaxconn); for one that asked for less, only the application's own backlog helps."""
    overflows = evidence.windowed("TcpExt.ListenOverflows")
    drops = evidence.windowed("TcpExt.ListenDrops")
    peaks = evidence.listener_peaks

    def peak(item: Listener) -> int:
        return max(item.queue, peaks.get((item.address, item.port), 0))

    sized = [item for item in evidence.counts.listeners if item.backlog]
    full = [item for item in sized if peak(item) >= (item.backlog or 0)]
    overflowing = overflows is not None and overflows >= limits.min_events
    if not full and not overflowing:
        return
    somaxconn = evidence.sysctl_int("net.core.somaxconn")
    suspects = full or sized
    capped = [item for item in suspects if somaxconn and (item.backlog or 0) >= somaxconn]
    own = [item for item in suspects if item not in capped]
    suggest: dict[str, str] = {}
    target = None
    if capped and somaxconn and somaxconn < SOMAXCONN_CEILING:
        target = min(SOMAXCONN_CEILING, max(SOMAXCONN_FLOOR, somaxconn * 4))
        suggest["net.core.somaxconn"] = str(target)

    def named(items: list[Listener]) -> str:
        return ", ".join(f"{item.address}:{item.port} (backlog {item.backlog})" for item in items[:5])

    seen = "were seen full" if full else "may be the ones (none was seen full; sample while it happens to know)"
    why = (
        "A listener's accept queue was full: the application does not accept() fast enough for the bursts it "
        "gets, so the kernel dropped SYNs and completed handshakes and clients had to retry (seconds of delay). "
        "The queue holds the application's listen() backlog, cut down to net.core.somaxconn; the kernel reports "
        f"the result as the listener's backlog. These listeners {seen}."
    )
    effects = []
    if capped and target:
        why += f" somaxconn ({somaxconn}) caps {named(capped)}: they may be asking for more."
        effects.append(
            f"listen() backlogs up to {target} are honoured instead of being cut to {somaxconn}: "
            f"{named(capped)} can queue that many once the application asks for it (listen backlog >= {target}) "
            "and is restarted (a backlog is fixed when the socket starts listening)"
        )
    elif capped:
        why += f" somaxconn is already at its ceiling ({somaxconn})."
    if own:
        why += (
            f" {named(own)} ask for less than somaxconn ({somaxconn}), so raising somaxconn cannot help them: "
            "raise their backlog in the application's configuration (nginx 'listen ... backlog=', a framework's "
            "backlog setting) and restart it."
        )
        effects.append(f"for {named(own)}: no sysctl; a larger application backlog stops the overflows")
    why += " If queues stay full, the application itself is too slow (more workers)."
    rate = evidence.per_second("TcpExt.ListenOverflows")
    yield Finding(
        id="listen-overflows",
        severity="warning",
        title=(
            f"accept queue overflowed {overflows} times {_in_window(evidence)}" + (f", {_rate(rate)}/s" if rate else "")
            if overflowing
            else f"{len(full)} listener(s) have a full accept queue right now"
        ),
        numbers={
            "ListenOverflows": overflows,
            "ListenDrops": drops,
            "overflows_per_second": None if rate is None else round(rate, 1),
            "somaxconn": somaxconn,
            "listeners": [
                {
                    "address": item.address,
                    "port": item.port,
                    "backlog": item.backlog,
                    "queue_peak": peak(item),
                    "limited_by": "somaxconn" if item in capped else "application backlog",
                }
                for item in suspects[:10]
            ],
        },
        keys=("net.core.somaxconn",),
        suggest=suggest,
        why=why,
        window=evidence.window_text if overflowing and evidence.window_text else NOW,
        effect=("; ".join(effects) + ".")
        if effects
        else "No sysctl left to raise; the application must accept faster.",
    )


def _syn_queue(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    dropped = evidence.windowed("TcpExt.TCPReqQFullDrop")
    cookies = evidence.windowed("TcpExt.TCPReqQFullDoCookies")
    if dropped is None or cookies is None or (dropped < limits.min_events and cookies < limits.min_events):
        return
    suggest: dict[str, str] = {}
    cookies_off = evidence.sysctl_int("net.ipv4.tcp_syncookies") == 0
    if dropped >= limits.min_events and cookies_off:
        suggest["net.ipv4.tcp_syncookies"] = "1"
    yield Finding(
        id="syn-queue",
        severity="warning" if dropped >= limits.min_events else "info",
        title=(
            f"{dropped} SYNs dropped (SYN queue full) {_in_window(evidence)}"
            if dropped
            else f"SYN queue overflowed: {cookies} SYN cookies sent {_in_window(evidence)}"
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
        window=evidence.window_text or NOW,
        effect="SYNs beyond the queue are answered with cookies instead of dropped."
        if suggest
        else "Cookies already answer the overflow; a larger listen() backlog makes them rarer.",
    )


def _tcp_memory(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    aborts = evidence.windowed("TcpExt.TCPAbortOnMemory")
    pressures = evidence.windowed("TcpExt.TCPMemoryPressures")
    if aborts is None or pressures is None or (aborts < limits.min_events and pressures < limits.min_events):
        return
    yield Finding(
        id="tcp-memory",
        severity="critical" if aborts >= limits.min_events else "warning",
        title=(
            f"{aborts} connections reset for lack of TCP memory {_in_window(evidence)}"
            if aborts
            else f"TCP entered memory pressure {pressures} times {_in_window(evidence)}"
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
        window=evidence.window_text or NOW,
        effect="No value guessed: tcp_mem depends on the machine's memory.",
    )


def _counter_history(evidence: Evidence, limits: Thresholds) -> Iterable[Finding]:
    """Without a window, counters since boot are history: shown, never judged."""
    if evidence.deltas is not None:
        return
    history = {
        name.split(".", 1)[1]: evidence.counters[name] for name in JUDGED_COUNTERS if evidence.counters.get(name)
    }
    if not history:
        return
    yield Finding(
        id="counter-history",
        severity="info",
        title="kernel counters since boot: history only, not judged ("
        + ", ".join(f"{name} {value}" for name, value in history.items())
        + ")",
        numbers=history,
        why="These totals count since boot (or since this network namespace was created): they cannot tell whether "
        "anything is still happening, so they suggest nothing. 'tcptune recommend --sample 10' judges what happens "
        "within 10 s; after an apply, recommend judges the changes since then.",
        window="since boot (history)",
        effect="None: measure over a window first.",
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
    _counter_history,
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
            reason.setdefault(key, f"{finding.id}: {finding.title} (evidence: {finding.window})")
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
