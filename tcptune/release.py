"""Force-release stuck TCP sockets: select them the way ``ss`` filters, name their owners, destroy them through the
kernel's sock_diag destroy request (what ``ss -K`` does), and count again.

Selecting is pure (``Selector`` x socket records x owners -> ``Candidate``s); ``release`` does the reading and the
destroying, each behind a small interface (``opener`` for netlink, ``proc`` for /proc/*/fd) so that tests can run it
against the real kernel in a namespace or replay what a kernel would say.

Why destroy, and what it does: the kernel aborts the socket as if it had timed out, sends a reset to the peer where
the state calls for one (ESTABLISHED, CLOSE_WAIT, FIN_WAIT1/2, SYN_RECV), and a process still holding it gets
ECONNABORTED on its next call. TIME_WAIT and orphaned FIN_WAIT2 sockets are simply dropped. It needs CAP_NET_ADMIN
in the network namespace and a kernel built with CONFIG_INET_DIAG_DESTROY.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .sockets.netlink import Destroyer, Opener, destroy_unsupported, read_records
from .sockets.owners import find_owners
from .sockets.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    SYN_RECV,
    SYN_SENT,
    TCP_STATES,
    TIME_WAIT,
)
from .sockets.wire import AF_INET, SocketRecord
from .values import ValueProblem, parse_number

TIME_WAIT_SECONDS = 60.0
"""TCP_TIMEWAIT_LEN: every TIME_WAIT socket lives exactly this long, so its timer tells its age."""
TIMEWAIT_TIMER = 3
"""inet_diag_msg.idiag_timer of a socket in the timewait table (TIME_WAIT, or an orphaned FIN_WAIT2)."""
CAP_NET_ADMIN = 12

STATE_WORDS: dict[str, int] = {
    "established": ESTABLISHED,
    "synsent": SYN_SENT,
    "synrecv": SYN_RECV,
    "finwait1": FIN_WAIT1,
    "finwait2": FIN_WAIT2,
    "timewait": TIME_WAIT,
    "close": CLOSE,
    "closed": CLOSE,
    "closewait": CLOSE_WAIT,
    "lastack": LAST_ACK,
    "listen": LISTEN,
    "listening": LISTEN,
    "closing": CLOSING,
}
"""State names as ``ss`` spells them (``fin-wait-2``, ``close-wait``, ``listening``) and as tcptune prints them
(``FIN_WAIT2``), compared without case, dashes or underscores."""
STATE_CHOICES = "established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, "
STATE_CHOICES += "listening, closing"
DEFAULT_STATES = frozenset(range(1, len(TCP_STATES))) - {LISTEN}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class FilterError(UsageError):
    """A filter that cannot be used as given: a bad command line (exit 64), one line naming the option."""

    exit_code = 64


# ---- parsing the filter -------------------------------------------------------------------------------------------


def parse_state(text: str) -> int:
    state = STATE_WORDS.get(text.lower().replace("-", "").replace("_", ""))
    if state is None:
        raise FilterError(f"--state: unknown state {text!r} (one of {STATE_CHOICES})")
    return state


def parse_port_range(text: str, option: str) -> tuple[int, int]:
    """``8080`` or ``8000-8100`` -> (low, high)."""
    low_text, dash, high_text = text.strip().partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise FilterError(f"{option}: {text!r} is not a port or a range of ports (8080, 8000-8100)") from None
    if not 0 <= low <= high <= 65535:
        raise FilterError(f"{option}: {text!r} is not a port range within 0-65535 (low-high)")
    return low, high


def parse_network(text: str, option: str) -> Network:
    """An address or a CIDR block, IPv4 or IPv6 (``10.0.0.0/8``, ``::1``, ``[::1]``)."""
    try:
        network = ipaddress.ip_network(text.strip().strip("[]"), strict=False)
    except ValueError:
        raise FilterError(
            f"{option}: {text!r} is not an IP address or CIDR block (10.0.0.7, 10.0.0.0/8, fd00::/8)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        # an IPv4-mapped block means those IPv4 addresses, as sockets' addresses are compared (see address_of)
        base = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.ip_network(f"{base}/{network.prefixlen - 96}")
    return network


def parse_age(text: str) -> float:
    """``--older-than``: seconds, with units as profiles take them (``30``, ``30s``, ``2m``)."""
    try:
        seconds = parse_number(text, "seconds", True)
    except ValueProblem as exc:
        raise FilterError(f"--older-than: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")) from None
    if seconds < 0:
        raise FilterError(f"--older-than: {text!r} is negative")
    return float(seconds)


@dataclass(frozen=True)
class Selector:
    """Which sockets to release. Every given criterion must hold; values within one criterion are alternatives
    (``--sport 80 --sport 443`` is either port), as with ``ss``."""

    states: frozenset[int] = frozenset()
    """Empty: every state but LISTEN."""
    sports: tuple[tuple[int, int], ...] = ()
    dports: tuple[tuple[int, int], ...] = ()
    src: tuple[Network, ...] = ()
    dst: tuple[Network, ...] = ()
    pids: frozenset[int] = frozenset()
    processes: frozenset[str] = frozenset()
    older_than: float | None = None
    include_listeners: bool = False

    @classmethod
    def parse(
        cls,
        *,
        states: Sequence[str] = (),
        sports: Sequence[str] = (),
        dports: Sequence[str] = (),
        src: Sequence[str] = (),
        dst: Sequence[str] = (),
        pids: Sequence[int] = (),
        processes: Sequence[str] = (),
        older_than: str | None = None,
        include_listeners: bool = False,
    ) -> Selector:
        """A selector from command-line words; FilterError (exit 64, one line naming the option) for anything malformed,
        for an empty filter, and for listeners without ``include_listeners``."""
        selector = cls(
            states=frozenset(parse_state(text) for text in states),
            sports=tuple(parse_port_range(text, "--sport") for text in sports),
            dports=tuple(parse_port_range(text, "--dport") for text in dports),
            src=tuple(parse_network(text, "--src") for text in src),
            dst=tuple(parse_network(text, "--dst") for text in dst),
            pids=frozenset(pids),
            processes=frozenset(processes),
            older_than=None if older_than is None else parse_age(older_than),
            include_listeners=include_listeners,
        )
        if selector.is_empty():
            raise FilterError(
                "release needs a filter (--state, --sport, --dport, --src, --dst, --pid, --process or --older-than): "
                "it never destroys every socket"
            )
        if LISTEN in selector.states and not include_listeners:
            raise FilterError("--state listening: listening sockets are destroyed only with --include-listeners")
        if any(pid <= 0 for pid in selector.pids):
            raise FilterError("--pid: process ids are positive numbers")
        return selector

    def is_empty(self) -> bool:
        return not (
            self.states
            or self.sports
            or self.dports
            or self.src
            or self.dst
            or self.pids
            or self.processes
            or self.older_than is not None
        )

    @property
    def wanted_states(self) -> frozenset[int]:
        states = self.states or DEFAULT_STATES
        return states | {LISTEN} if self.include_listeners and not self.states else states

    @property
    def needs_owners(self) -> bool:
        return bool(self.pids or self.processes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "states": sorted(TCP_STATES[state] for state in self.states),
            "sport": [_range_text(r) for r in self.sports],
            "dport": [_range_text(r) for r in self.dports],
            "src": [str(n) for n in self.src],
            "dst": [str(n) for n in self.dst],
            "pid": sorted(self.pids),
            "process": sorted(self.processes),
            "older_than_seconds": self.older_than,
            "include_listeners": self.include_listeners,
        }

    def describe(self) -> str:
        """The filter in words, for the summary line."""
        parts = []
        if self.states:
            parts.append("state " + "/".join(sorted(TCP_STATES[s] for s in self.states)))
        for name, ranges in (("sport", self.sports), ("dport", self.dports)):
            if ranges:
                parts.append(f"{name} " + ",".join(_range_text(r) for r in ranges))
        for name, networks in (("src", self.src), ("dst", self.dst)):
            if networks:
                parts.append(f"{name} " + ",".join(str(n) for n in networks))
        if self.pids:
            parts.append("pid " + ",".join(str(p) for p in sorted(self.pids)))
        if self.processes:
            parts.append("process " + ",".join(sorted(self.processes)))
        if self.older_than is not None:
            parts.append(f"older than {self.older_than:g} s")
        return ", ".join(parts)


def _range_text(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


# ---- selecting (pure) ---------------------------------------------------------------------------------------------


def address_of(family: int, raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A record's address; an IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) as its IPv4 address."""
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    address = ipaddress.IPv6Address(raw[:16])
    return address.ipv4_mapped or address


def endpoint_text(family: int, raw: bytes, port: int) -> str:
    address = address_of(family, raw)
    if family == AF_INET:
        return f"{address}:{port}"
    shown = f"::ffff:{address}" if isinstance(address, ipaddress.IPv4Address) else str(address)
    return f"[{shown}]:{port}"


def age_of(record: SocketRecord) -> float | None:
    """How long the socket has been in its state, where the kernel's timers tell it: TIME_WAIT only (60 s minus
    what its timer has left). An orphaned FIN_WAIT2 also waits on a timer, but how long it was armed for depends
    on tcp_fin_timeout and the RTO at close time, which the kernel does not report."""
    if record.state == TIME_WAIT and record.timer == TIMEWAIT_TIMER:
        return max(0.0, TIME_WAIT_SECONDS - record.expires / 1000.0)
    return None


def _in_ranges(port: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= port <= high for low, high in ranges)


def _in_networks(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass
class Candidate:
    """One matching socket and what happened to it."""

    record: SocketRecord
    owner: tuple[int, str] | None
    age: float | None
    outcome: str = "would destroy"
    """"would destroy" (dry run), "destroyed", "already gone", "refused"."""
    reason: str | None = None

    @property
    def state(self) -> str:
        return TCP_STATES[self.record.state] if 0 < self.record.state < len(TCP_STATES) else str(self.record.state)

    @property
    def local(self) -> str:
        return endpoint_text(self.record.family, self.record.src, self.record.sport)

    @property
    def remote(self) -> str:
        if self.record.state == LISTEN:
            return "*:*"
        return endpoint_text(self.record.family, self.record.dst, self.record.dport)

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "state": self.state,
            "family": "ipv4" if r.family == AF_INET else "ipv6",
            "local": str(address_of(r.family, r.src)),
            "local_port": r.sport,
            "remote": str(address_of(r.family, r.dst)),
            "remote_port": r.dport,
            "pid": self.owner[0] if self.owner else None,
            "process": self.owner[1] if self.owner else None,
            "age_seconds": None if self.age is None else round(self.age, 1),
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class Selection:
    matched: list[Candidate] = field(default_factory=list)
    listeners_skipped: int = 0
    """Listening sockets the other criteria matched, left alone (no --include-listeners)."""
    age_unknown: int = 0
    """Sockets the other criteria matched whose age the kernel does not expose (--older-than)."""


def select(
    records: Iterable[SocketRecord], selector: Selector, owners: dict[int, tuple[int, str]] | None = None
) -> Selection:
    """The records the selector picks, in the order given; ``owners`` maps socket inodes to (pid, name)."""
    owners = owners or {}
    selection = Selection()
    wanted = selector.wanted_states
    for record in records:
        if selector.states and record.state not in selector.states:
            continue
        if selector.sports and not _in_ranges(record.sport, selector.sports):
            continue
        if selector.dports and not _in_ranges(record.dport, selector.dports):
            continue
        if selector.src and not _in_networks(address_of(record.family, record.src), selector.src):
            continue
        if selector.dst and not _in_networks(address_of(record.family, record.dst), selector.dst):
            continue
        owner = owners.get(record.inode) if record.inode else None
        if selector.pids and (owner is None or owner[0] not in selector.pids):
            continue
        if selector.processes and (owner is None or not _names_match(owner[1], selector.processes)):
            continue
        if record.state not in wanted:  # a listener, without include_listeners
            selection.listeners_skipped += 1
            continue
        age = age_of(record)
        if selector.older_than is not None:
            if age is None:
                selection.age_unknown += 1
                continue
            if age < selector.older_than:
                continue
        selection.matched.append(Candidate(record, owner, age))
    return selection


def _names_match(comm: str, names: frozenset[str]) -> bool:
    """The kernel keeps 15 characters of a process name (comm): a longer name given matches its first 15."""
    return any(comm == name or comm == name[:15] for name in names)


# ---- the report ---------------------------------------------------------------------------------------------------


@dataclass
class ReleaseReport:
    selector: Selector
    dry_run: bool
    selection: Selection
    unavailable: str | None = None
    """Why sockets cannot be destroyed here (no kernel support, no CAP_NET_ADMIN); None when they can."""
    remaining: int | None = None
    """Sockets matching the filter when counted again after destroying (new ones included); None for a dry run."""

    @property
    def matched(self) -> list[Candidate]:
        return self.selection.matched

    def tally(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for candidate in self.matched:
            counts[candidate.outcome] = counts.get(candidate.outcome, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """Everything matched was released: destroyed, or gone by itself (exit 0); a dry run is ok when it could
        be done."""
        if self.dry_run:
            return self.unavailable is None or not self.matched
        return all(c.outcome in ("destroyed", "already gone") for c in self.matched)

    def advice(self) -> list[str]:
        """What works when destroying does not, or what comes back after it: per state and owner, in words."""
        lines: list[str] = []
        holders: dict[tuple[int, str], dict[str, int]] = {}
        states = {c.record.state for c in self.matched}
        for candidate in self.matched:
            if candidate.owner and (self.unavailable or candidate.outcome == "refused" or self.dry_run):
                per_state = holders.setdefault(candidate.owner, {})
                per_state[candidate.state] = per_state.get(candidate.state, 0) + 1
        if self.unavailable:
            lines.append(f"cannot destroy sockets here: {self.unavailable}")
        for (pid, name), per_state in sorted(holders.items()):
            held = ", ".join(f"{n} {state}" for state, n in sorted(per_state.items()))
            lines.append(f"pid {pid} ({name}) holds {held}")
        if CLOSE_WAIT in states:
            lines.append(
                "CLOSE_WAIT: the peer has closed and the application has not; it must close its sockets "
                "(restart it, or fix the code path that leaks them). Destroyed ones come back until it does."
            )
        if TIME_WAIT in states and self.unavailable:
            lines.append("TIME_WAIT sockets end by themselves within 60 s.")
        if FIN_WAIT2 in states and self.unavailable:
            lines.append(
                "orphaned FIN_WAIT2 sockets end after tcp_fin_timeout; ones an application still holds end when it "
                "closes them."
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "filter": self.selector.as_dict(),
            "dry_run": self.dry_run,
            "destroy_available": self.unavailable is None,
            "unavailable_reason": self.unavailable,
            "matched": len(self.matched),
            "outcomes": self.tally(),
            "remaining": self.remaining,
            "listeners_skipped": self.selection.listeners_skipped,
            "age_unknown": self.selection.age_unknown,
            "sockets": [candidate.as_dict() for candidate in self.matched],
            "advice": self.advice(),
        }


# ---- doing it -----------------------------------------------------------------------------------------------------

REFUSALS = {
    errno.EPERM: "needs CAP_NET_ADMIN in this network namespace (run as root)",
    errno.EACCES: "needs CAP_NET_ADMIN in this network namespace (run as root)",
    errno.EOPNOTSUPP: "this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY)",
}


def has_net_admin(proc: str = "/proc") -> bool:
    """Whether this process has CAP_NET_ADMIN (its effective capability set)."""
    try:
        with open(os.path.join(proc, "self", "status"), encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _states_mask(states: Iterable[int]) -> int:
    return sum(1 << state for state in states)


def _snapshot(
    selector: Selector, opener: Opener | None, proc: str, reader: Callable[..., list[SocketRecord]]
) -> Selection:
    # without a state filter listeners are read too, to say how many were left alone
    mask = _states_mask(selector.wanted_states | (set() if selector.states else {LISTEN}))
    records = reader(mask, opener)
    owners = find_owners((r.inode for r in records if r.inode), proc)
    return select(records, selector, owners)


def release(
    selector: Selector,
    *,
    destroy: bool,
    opener: Opener | None = None,
    proc: str = "/proc",
    reader: Callable[..., list[SocketRecord]] = read_records,
    settle: Callable[[float], None] = time.sleep,
) -> ReleaseReport:
    """Select the sockets; with ``destroy``, destroy each, then count the filter's matches again.

    Raises SourceUnavailable when sock_diag cannot be read at all (there is no /proc fallback: destroying needs
    the socket ids only netlink gives).
    """
    selection = _snapshot(selector, opener, proc, reader)
    unavailable = destroy_unsupported(opener) if selection.matched else None
    if unavailable is None and selection.matched and not has_net_admin(proc):
        unavailable = REFUSALS[errno.EPERM]
    report = ReleaseReport(selector, dry_run=not destroy, selection=selection, unavailable=unavailable)
    if not destroy or not selection.matched:
        return report
    if unavailable is not None:
        for candidate in selection.matched:
            candidate.outcome, candidate.reason = "refused", unavailable
        return report
    with Destroyer(opener) as destroyer:
        for candidate in selection.matched:
            code = destroyer.destroy(candidate.record)
            if code == 0:
                candidate.outcome = "destroyed"
            elif code == errno.ENOENT:
                candidate.outcome = "already gone"
            else:
                candidate.outcome = "refused"
                candidate.reason = REFUSALS.get(code, os.strerror(code).lower())
    settle(0.01)  # resets travel through the stack before the recount (loopback: within the call already)
    after = _snapshot(selector, opener, proc, reader)
    still_there = {c.record.cookie for c in after.matched}
    for candidate in selection.matched:
        if candidate.outcome == "destroyed" and candidate.record.cookie in still_there:
            candidate.outcome, candidate.reason = "refused", "the kernel acknowledged but the socket is still there"
    report.remaining = len(after.matched)
    return report
