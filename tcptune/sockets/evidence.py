"""The evidence: one snapshot of everything ``status`` shows and ``recommend`` judges, and its plain-dict view."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import LiveStateError, UsageError
from ..target import REAL_PROC_NET
from .counters import COUNTERS, read_counters, read_sockstat
from .netlink import read_listeners, read_netlink
from .owners import Owner, lookup_owners
from .proc_tcp import proc_listeners, read_proc
from .states import CLOSE_WAIT, ESTABLISHED, N_STATES, TCP_STATES, TIME_WAIT
from .tally import Listener, SocketCounts, format_address, port_and_direction
from .wire import SourceUnavailable, address_key

DEFAULT_PROC_NET = REAL_PROC_NET
DEFAULT_PROC = "/proc"
SYSCTL_KEYS: tuple[str, ...] = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_mem",
)
DEFAULT_PORT_RANGE = (32768, 60999)
FORCED_PROC = "--source proc"


@dataclass
class Evidence:
    """Everything ``status`` shows and ``recommend`` judges, read at one moment in one network namespace."""

    counts: SocketCounts
    sysctls: dict[str, str | None] = field(default_factory=dict)
    """Live values as the kernel prints them; None where unreadable (host-wide keys inside a namespace)."""
    sockstat: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    """Since boot (or since the namespace was created)."""
    deltas: dict[str, int] | None = None
    """Counter increases over the last ``window`` seconds, when two readings were taken (``--watch``, ``--sample``),
    or since a reading recorded earlier (at the last apply)."""
    window: float | None = None
    window_label: str | None = None
    """The window in words, for findings ("the last 10.0 s (--sample)"); None: "the last N s"."""
    listener_peaks: dict[tuple[str, int], int] = field(default_factory=dict)
    """(address, port) -> the longest accept queue seen at that listener during the window (``--sample`` polls)."""
    source: str = "netlink"
    """"netlink" (sock_diag) or "proc" (/proc/net/tcp{,6})."""
    source_note: str | None = None
    """Why the fallback was used."""
    netns: str | None = None
    owners: dict[int, list[Owner]] = field(default_factory=dict)
    """Port key -> processes holding that port's CLOSE_WAIT sockets (only looked up when asked for)."""
    taken_at: float = 0.0

    def sysctl_int(self, key: str) -> int | None:
        text = self.sysctls.get(key)
        try:
            return int(text.split()[0]) if text else None
        except ValueError:
            return None

    @property
    def port_range(self) -> tuple[int, int]:
        text = self.sysctls.get("net.ipv4.ip_local_port_range")
        try:
            low, high = (int(part) for part in (text or "").split())
            return low, high
        except ValueError:
            return DEFAULT_PORT_RANGE

    @property
    def port_range_size(self) -> int:
        low, high = self.port_range
        return max(high - low + 1, 1)

    def windowed(self, name: str) -> int | None:
        """A counter's increase within the window; None when there is no window (since-boot totals are history:
        they cannot say whether something is still happening)."""
        if self.deltas is None:
            return None
        return self.deltas.get(name, 0)

    def per_second(self, name: str) -> float | None:
        """A counter's rate within the window; None without one."""
        delta = self.windowed(name)
        if delta is None or not self.window or self.window <= 0:
            return None
        return delta / self.window

    @property
    def window_text(self) -> str | None:
        """The counters' window in words; None without one."""
        if self.window is None:
            return None
        return self.window_label or f"the last {self.window:.1f} s"


def source_label(evidence: Evidence) -> str:
    """How the sockets were read, in words: "netlink (sock_diag)" or "/proc/net/tcp (netlink unavailable: ...)"."""
    if evidence.source == "netlink":
        return "netlink (sock_diag)"
    if evidence.source_note == FORCED_PROC:
        return f"/proc/net/tcp ({FORCED_PROC})"
    return "/proc/net/tcp" + (f" (netlink unavailable: {evidence.source_note})" if evidence.source_note else "")


def _netns_id() -> str | None:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def read_sysctls(proc_root: str, keys: Iterable[str] = SYSCTL_KEYS) -> dict[str, str | None]:
    """Live values through live.ProcSys (the one reader of /proc/sys); None for a key that cannot be read."""
    from ..target import Target

    values = Target(proc_root=proc_root).proc.read_many(keys)
    return {
        key: (" ".join(value.text.split()) if value.status == "ok" and value.text is not None else None)
        for key, value in values.items()
    }


def count_sockets(source: str, proc_net: str, ephemeral: tuple[int, int]) -> tuple[SocketCounts, str, str | None]:
    """Counts from ``source`` ("auto", "netlink" or "proc"); auto falls back to /proc when netlink fails.

    Returns (counts, source used, why netlink was not used).
    """
    if source not in ("auto", "netlink", "proc"):
        raise UsageError(f"unknown socket source {source!r} (auto, netlink or proc)")
    if source == "proc":
        return read_proc(proc_net, ephemeral), "proc", FORCED_PROC
    try:
        return read_netlink(ephemeral), "netlink", None
    except SourceUnavailable as exc:
        if source == "netlink":
            raise LiveStateError(f"sock_diag netlink is unavailable: {exc}") from None
        return read_proc(proc_net, ephemeral), "proc", str(exc)


def listener_queues(source: str, proc_net: str = DEFAULT_PROC_NET) -> list[tuple[str, int, int]]:
    """(address, port, accept queue) of every listener, from ``source`` ("netlink" or "proc"), addresses written
    as ``Listener.address`` writes them; empty when the source cannot be read (a sample then sees no peaks)."""
    try:
        if source == "netlink":
            return [
                (format_address(address_key(family, raw)), port, queue)
                for family, raw, port, queue, _backlog in read_listeners()
            ]
        return [(format_address(address), port, queue) for address, port, queue in proc_listeners(proc_net)]
    except (SourceUnavailable, OSError):
        return []


def watch_listeners(
    seconds: float, poll: Callable[[], list[tuple[str, int, int]]], sleep: Callable[[float], None], every: float = 0.2
) -> dict[tuple[str, int], int]:
    """Sleep ``seconds`` in steps of about ``every``, polling the listeners' accept queues after each step:
    (address, port) -> the longest queue seen. A queue that fills during a burst and drains before the window
    ends is caught here, where two readings at the window's ends would miss it."""
    steps = max(1, math.ceil(seconds / every))
    peaks: dict[tuple[str, int], int] = {}
    for _ in range(steps):
        sleep(seconds / steps)
        for address, port, queue in poll():
            if queue > peaks.get((address, port), -1):
                peaks[(address, port)] = queue
    return peaks


def take_evidence(
    *,
    proc_root: str = "/proc/sys",
    proc_net: str = DEFAULT_PROC_NET,
    proc: str = DEFAULT_PROC,
    source: str = "auto",
    previous: Evidence | None = None,
    owners_min_close_wait: int | None = None,
    owners_top: int = 3,
) -> Evidence:
    """Read sysctls, sockets, sockstat and counters once.

    ``previous`` (an earlier snapshot) fills ``deltas``. ``owners_min_close_wait`` looks up the processes holding
    the CLOSE_WAIT sockets of the ``owners_top`` ports with at least that many of them (``recommend`` only).
    """
    sysctls = read_sysctls(proc_root)
    evidence = Evidence(counts=SocketCounts(), sysctls=sysctls)
    ephemeral = evidence.port_range
    counts, used, note = count_sockets(source, proc_net, ephemeral)
    counters = read_counters(proc_net)
    evidence = replace(
        evidence,
        counts=counts,
        sockstat=read_sockstat(proc_net),
        counters=counters,
        source=used,
        source_note=note,
        netns=_netns_id(),
        taken_at=time.time(),
    )
    if previous is not None:
        evidence.deltas = {name: value - previous.counters.get(name, value) for name, value in counters.items()}
        evidence.window = evidence.taken_at - previous.taken_at
    if owners_min_close_wait is not None:
        evidence.owners = lookup_owners(
            counts,
            CLOSE_WAIT,
            owners_min_close_wait,
            owners_top,
            ephemeral=ephemeral,
            source=used,
            proc_net=proc_net,
            proc=proc,
        )
    return evidence


# ---- the view renderers take: plain dicts, top N ----------------------------------------------------------------


def _nonzero(row: list[int]) -> dict[str, int]:
    return {TCP_STATES[n]: row[n] for n in range(1, N_STATES) if row[n]}


def status_dict(evidence: Evidence, *, top: int = 10, ports: Iterable[int] = ()) -> dict[str, Any]:
    """The status as plain data: what ``--format json`` prints and what the text and Prometheus views render.

    ``top`` bounds every per-port/per-remote list; ``ports`` restricts the per-port list to those port numbers
    (matched as local service ports and as remote ports of outgoing connections).
    """
    counts = evidence.counts
    wanted = set(ports)
    port_rows = [(key, row) for key, row in counts.ports.items() if not wanted or port_and_direction(key)[0] in wanted]
    port_rows.sort(key=lambda item: (-sum(item[1]), item[0]))
    capacity = evidence.port_range_size
    endpoint_rows = sorted(counts.endpoints.items(), key=lambda item: -sum(item[1]))[:top]
    remote_rows = sorted(counts.remotes.items(), key=lambda item: -sum(item[1]))[:top]
    low, high = evidence.port_range
    max_orphans = evidence.sysctl_int("net.ipv4.tcp_max_orphans")
    max_tw = evidence.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    orphans = evidence.sockstat.get("orphan")
    tw = evidence.sockstat.get("tw")

    def ratio(value: int | None, limit: int | None) -> float | None:
        return round(100.0 * value / limit, 2) if value is not None and limit else None

    def port_row(key: int, row: list[int]) -> dict[str, Any]:
        port, direction = port_and_direction(key)
        return {"port": port, "direction": direction, "total": sum(row), "states": _nonzero(row)}

    return {
        "source": evidence.source,
        "source_label": source_label(evidence),
        "source_note": evidence.source_note,
        "netns": evidence.netns,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(evidence.taken_at)),
        "total": counts.total,
        "states": {name: counts.states[n] for n, name in enumerate(TCP_STATES) if name},
        "by_port": [port_row(key, row) for key, row in port_rows[:top]],
        "by_remote": [
            {"address": format_address(address), "total": sum(row), "states": _nonzero(row)}
            for address, row in remote_rows
        ],
        "endpoints": [
            {
                "local_address": format_address(local),
                "remote_address": format_address(remote),
                "remote_port": rport,
                "in_use": sum(row),
                "time_wait": row[TIME_WAIT],
                "established": row[ESTABLISHED],
                "capacity": capacity,
                "percent": ratio(sum(row), capacity),
            }
            for (local, remote, rport), row in endpoint_rows
        ],
        "listeners": [
            {"address": item.address, "port": item.port, "queue": item.queue, "backlog": item.backlog}
            for item in sorted(counts.listeners, key=_fullest)[:top]
        ],
        "orphans": {
            "count": orphans,
            "max": max_orphans,
            "percent": ratio(orphans, max_orphans),
            "fin_wait2_orphans": counts.fin_wait2_orphans,
        },
        "time_wait": {"count": tw, "max": max_tw, "percent": ratio(tw, max_tw)},
        "port_range": {"low": low, "high": high, "size": capacity},
        "sockstat": dict(evidence.sockstat),
        "counters": {name: evidence.counters[name] for name, _ in COUNTERS if name in evidence.counters},
        "counter_deltas": (
            None
            if evidence.deltas is None
            else {name: evidence.deltas.get(name, 0) for name, _ in COUNTERS if name in evidence.counters}
        ),
        "window_seconds": None if evidence.window is None else round(evidence.window, 3),
        "sysctls": dict(evidence.sysctls),
    }


def _fullest(item: Listener) -> tuple[float, int, str]:
    """Listeners whose accept queue is fullest first, then by port."""
    fill = item.queue / item.backlog if item.backlog else float(item.queue)
    return (-fill, item.port, item.address)
