"""The kernel's TCP counters (/proc/net/netstat, /proc/net/snmp) and totals (/proc/net/sockstat{,6})."""

from __future__ import annotations

import os

from ..persist import open_regular

COUNTERS: tuple[tuple[str, str], ...] = (
    ("TcpExt.ListenOverflows", "a listener's accept queue was full: a completed connection was dropped"),
    ("TcpExt.ListenDrops", "connections dropped at a listener for any reason (overflows included)"),
    ("TcpExt.TCPReqQFullDrop", "SYNs dropped: SYN queue full and SYN cookies off"),
    ("TcpExt.TCPReqQFullDoCookies", "SYN queue full: answered with a SYN cookie"),
    ("TcpExt.TCPBacklogDrop", "segments dropped: socket receive backlog full"),
    ("TcpExt.TCPAbortOnMemory", "connections reset: out of TCP memory (tcp_mem) or too many orphans"),
    ("TcpExt.TCPMemoryPressures", "times TCP entered memory pressure (tcp_mem)"),
    ("TcpExt.TCPTimeWaitOverflow", "TIME_WAIT skipped: tcp_max_tw_buckets was full"),
    ("TcpExt.TWRecycled", "TIME_WAIT sockets reused by connect() (tcp_tw_reuse)"),
    ("TcpExt.TW", "TIME_WAIT sockets that ran their course"),
    ("TcpExt.TCPAbortOnClose", "connections reset: closed with unread data"),
    ("TcpExt.TCPAbortOnTimeout", "connections reset: retransmissions timed out"),
    ("Tcp.ActiveOpens", "outgoing connections started"),
    ("Tcp.PassiveOpens", "incoming connections accepted"),
    ("Tcp.AttemptFails", "connection attempts that failed"),
    ("Tcp.EstabResets", "established connections reset"),
    ("Tcp.RetransSegs", "segments retransmitted"),
    ("Tcp.OutRsts", "resets sent"),
)
"""The counters tcptune shows, with what each means. All count since boot (or since the namespace was created)."""
COUNTER_HELP = dict(COUNTERS)


def parse_counter_table(text: str) -> dict[str, int]:
    """/proc/net/netstat or /proc/net/snmp (``Group: names`` / ``Group: values`` line pairs) -> {"Group.Name": n}."""
    values: dict[str, int] = {}
    lines = text.splitlines()
    for names_line, values_line in zip(lines[::2], lines[1::2]):
        group, _, names = names_line.partition(":")
        group2, _, numbers = values_line.partition(":")
        if group != group2:
            continue
        for name, number in zip(names.split(), numbers.split()):
            try:
                values[f"{group}.{name}"] = int(number)
            except ValueError:
                continue
    return values


def parse_sockstat(text: str, prefix: str = "TCP") -> dict[str, int]:
    """``TCP: inuse 7 orphan 0 tw 3 alloc 9 mem 1`` -> {"inuse": 7, "orphan": 0, ...} (the line for ``prefix``)."""
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        if label.strip() == prefix:
            words = rest.split()
            return {name: int(value) for name, value in zip(words[::2], words[1::2]) if value.isdigit()}
    return {}


MAX_COUNTER_FILE_BYTES = 1 << 20
"""snmp and netstat are a few KiB; anything bigger is not what the kernel writes there."""


def _read_text(path: str) -> str | None:
    """The file's text, or None where it is missing, unreadable or not a regular file (never blocks on a FIFO)."""
    try:
        with open_regular(path, follow=True) as handle:
            return handle.read(MAX_COUNTER_FILE_BYTES).decode("ascii", errors="replace")
    except OSError:
        return None


def read_counters(proc_net: str) -> dict[str, int]:
    """TcpExt and Tcp counters of this namespace (empty where the files are missing)."""
    counters: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        text = _read_text(os.path.join(proc_net, name))
        if text:
            counters.update(parse_counter_table(text))
    return counters


def counter_snapshot(proc_net: str) -> dict[str, int]:
    """The counters tcptune judges (``COUNTERS``), as a reading to keep (at apply time) and compare later: their
    changes since then are what ``recommend`` judges when it is not given a --sample window."""
    counters = read_counters(proc_net)
    return {name: counters[name] for name, _help in COUNTERS if name in counters}


def read_sockstat(proc_net: str) -> dict[str, int]:
    """The kernel's own TCP totals: inuse, orphan (host-wide), tw, alloc, mem (pages); ``inuse6`` from sockstat6."""
    stats = parse_sockstat(_read_text(os.path.join(proc_net, "sockstat")) or "")
    six = parse_sockstat(_read_text(os.path.join(proc_net, "sockstat6")) or "", "TCP6")
    if "inuse" in six:
        stats["inuse6"] = six["inuse"]
    return stats
