"""Socket-state evidence: the kernel's TCP sockets counted by state, port and peer, plus its TCP counters.

The rooms, in the order data flows:

- ``wire``: the sock_diag netlink format as named field tables; decoding, bounds-checked (pure).
- ``netlink``: dump requests on a netlink socket -> socket records (what ``ss`` reads); destroy requests (``ss -K``).
- ``proc_tcp``: the /proc/net/tcp{,6} fallback, for where netlink is unavailable.
- ``tally``: socket records -> ``SocketCounts`` (by state, service port, remote address, outgoing endpoint).
- ``counters``: /proc/net/{snmp,netstat,sockstat} -> the kernel's counters and totals.
- ``owners``: socket inodes -> the processes holding them (/proc/*/fd).
- ``evidence``: one ``Evidence`` snapshot of all of the above and sysctls; ``status_dict``, its plain view.

Everything reads the network namespace of the calling thread (``ip netns exec`` / a container sees its own).
"""

from __future__ import annotations

from .counters import (
    COUNTER_HELP,
    COUNTERS,
    counter_snapshot,
    parse_counter_table,
    parse_sockstat,
    read_counters,
    read_sockstat,
)
from .evidence import (
    DEFAULT_PROC_NET,
    SYSCTL_KEYS,
    Evidence,
    count_sockets,
    listener_queues,
    read_sysctls,
    source_label,
    status_dict,
    take_evidence,
    watch_listeners,
)
from .netlink import read_netlink
from .owners import Owner, find_owners, lookup_owners
from .proc_tcp import read_proc
from .states import STATE_NAMES, STATE_NUMBER, TCP_STATES
from .tally import OUT, Listener, SocketCounts, format_address, port_and_direction
from .wire import SocketRecord, SourceUnavailable

__all__ = [
    "COUNTERS",
    "COUNTER_HELP",
    "DEFAULT_PROC_NET",
    "OUT",
    "STATE_NAMES",
    "STATE_NUMBER",
    "SYSCTL_KEYS",
    "TCP_STATES",
    "Evidence",
    "Listener",
    "Owner",
    "SocketCounts",
    "SocketRecord",
    "SourceUnavailable",
    "count_sockets",
    "counter_snapshot",
    "find_owners",
    "format_address",
    "listener_queues",
    "lookup_owners",
    "parse_counter_table",
    "parse_sockstat",
    "port_and_direction",
    "read_counters",
    "read_netlink",
    "read_proc",
    "read_sockstat",
    "read_sysctls",
    "source_label",
    "status_dict",
    "take_evidence",
    "watch_listeners",
]
