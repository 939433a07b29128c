"""TCP states as the kernel numbers them (include/net/tcp_states.h): the index every count list uses."""

from __future__ import annotations

TCP_STATES: tuple[str, ...] = (
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
)
"""Index = state number. The kernel reports half-open request sockets (NEW_SYN_RECV inside) as SYN_RECV."""
STATE_NAMES: tuple[str, ...] = TCP_STATES[1:]
STATE_NUMBER: dict[str, int] = {name: number for number, name in enumerate(TCP_STATES) if name}
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT = 1, 2, 3, 4, 5, 6
CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING, NEW_SYN_RECV = 7, 8, 9, 10, 11, 12
N_STATES = len(TCP_STATES)
