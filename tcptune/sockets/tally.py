"""Folding socket records into counts: by state, by service port, by remote address, by outgoing endpoint.

Sockets are *streamed*: each batch is folded into Counters, then dropped, so memory grows with the number of distinct
ports and peers, never with sockets. Folding uses C-level iteration (map/itemgetter, compress, Counter.update), not a
Python statement per socket. Both readers (netlink, /proc/net/tcp) hand over the same record tuples.
"""

from __future__ import annotations

import _socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter, not_
from typing import Any

from .states import FIN_WAIT2, LISTEN, N_STATES

RECORD_FIELDS = ("state", "sport", "dport", "src", "dst", "inode")
"""A socket record as the tally takes it: state number, local and remote port, local and remote address (in the
reader's own form, see ``Tally``), and the inode (only tested for zero: an orphan, held by no process)."""
STATE, SPORT, DPORT, SRC, DST, INODE = range(len(RECORD_FIELDS))

OUT = 0x10000
"""Flag in a port key: the key is the *remote* port of outgoing connections (see ``SocketCounts.ports``)."""

Address = int | bytes
"""An address as a key: IPv4 an int (network order, i.e. 127.0.0.1 is 0x7F000001), IPv6 its 16 bytes."""


@dataclass(frozen=True)
class Listener:
    """A listening socket and its accept queue: ``queue`` connections waiting, at most ``backlog`` (None: unknown)."""

    address: str
    port: int
    queue: int
    backlog: int | None


@dataclass
class SocketCounts:
    """Tallies of one pass over the namespace's TCP sockets; no per-socket data.

    Every value list is indexed by TCP state number (``states.TCP_STATES``).

    ``ports`` is keyed by the *service* port, so that it stays small on busy hosts: a socket whose local port is a
    listening port or outside ``ip_local_port_range`` counts under its local port (incoming side, key = port);
    an outgoing connection (local port picked from the ephemeral range) counts under the remote port it connects
    to (key = port | OUT). Listing thousands of ephemeral local ports would say nothing.
    """

    states: list[int] = field(default_factory=lambda: [0] * N_STATES)
    ports: dict[int, list[int]] = field(default_factory=dict)
    remotes: dict[Address, list[int]] = field(default_factory=dict)
    """Remote address -> states; listeners excluded."""
    endpoints: dict[tuple[Address, Address, int], list[int]] = field(default_factory=dict)
    """Outgoing only: (local address, remote address, remote port) -> states. Each such tuple can use at most
    ip_local_port_range's size of local ports at a time, TIME_WAIT included."""
    listeners: list[Listener] = field(default_factory=list)
    fin_wait2_orphans: int = 0
    """FIN_WAIT2 sockets no process holds any more: the ones tcp_fin_timeout governs."""

    @property
    def total(self) -> int:
        return sum(self.states)


def port_and_direction(key: int) -> tuple[int, str]:
    """A ``SocketCounts.ports`` key as the port number and "in" or "out"."""
    return key & 0xFFFF, "out" if key & OUT else "in"


def service_key(sport: int, dport: int, ephemeral: tuple[int, int], listen_ports: set[int]) -> int:
    """The ``SocketCounts.ports`` key of one socket (``Tally.fold`` computes the same with a lookup table)."""
    outgoing = ephemeral[0] <= sport <= ephemeral[1] and sport not in listen_ports
    return dport | OUT if outgoing else sport


def format_address(address: Address) -> str:
    if isinstance(address, int):
        return _socket.inet_ntoa(address.to_bytes(4, "big"))
    if address[:12] == b"\0" * 10 + b"\xff\xff":
        return "::ffff:" + _socket.inet_ntoa(address[12:])
    return _socket.inet_ntop(_socket.AF_INET6, address)


_INVERT = bytes.maketrans(b"\x00\x01", b"\x01\x00")


class Tally:
    """Folds batches of socket records (``RECORD_FIELDS``) into Counters; ``counts()`` turns them into SocketCounts.

    Incoming sockets count under (local port, remote address, state), outgoing ones under (remote port, remote
    address, local address, state): one Counter update per direction and batch gives ports, remotes, endpoints and
    states at once, and both key spaces are bounded by distinct services and peers. ``address`` converts the
    reader's address form into an ``Address`` (None when it already is one); it runs once per distinct address.
    Listeners must be added before the sockets that connect to them are folded.
    """

    def __init__(self, ephemeral: tuple[int, int], address: Callable[[Any], Address] | None = None) -> None:
        self.low, self.high = ephemeral
        self.address = address
        self.listeners: list[Listener] = []
        self.listen_ports: set[int] = set()
        self._table: bytes | None = None
        self.incoming: Counter[tuple[Any, ...]] = Counter()
        self.outgoing: Counter[tuple[Any, ...]] = Counter()
        self.unowned: Counter[int] = Counter()

    def listener(self, port: int, address: Any, queue: int, backlog: int | None) -> None:
        self.listen_ports.add(port)
        self._table = None
        canonical = self.address(address) if self.address else address
        self.listeners.append(Listener(format_address(canonical), port, queue, backlog))

    def _outgoing_table(self) -> bytes:
        """65536 flags: 1 where a local port means an outgoing connection (ephemeral, not a listening port)."""
        if self._table is None:
            table = bytearray(65536)
            low, high = max(self.low, 0), min(self.high, 65535)
            if low <= high:
                table[low : high + 1] = b"\x01" * (high - low + 1)
            for port in self.listen_ports:
                table[port] = 0
            self._table = bytes(table)
        return self._table

    def fold(self, rows: list[tuple[Any, ...]], orphans: bool = True) -> None:
        """Count a batch of non-listening sockets; every loop here runs in C.

        ``orphans`` = False skips the search for unowned FIN_WAIT2 sockets when the batch cannot hold any.
        """
        if not rows:
            return
        out = bytes(map(self._outgoing_table().__getitem__, map(itemgetter(SPORT), rows)))
        self.incoming.update(compress(map(itemgetter(SPORT, DST, STATE), rows), out.translate(_INVERT)))
        self.outgoing.update(compress(map(itemgetter(DPORT, DST, SRC, STATE), rows), out))
        if orphans:
            self.unowned.update(compress(map(itemgetter(STATE), rows), map(not_, map(itemgetter(INODE), rows))))

    def counts(self) -> SocketCounts:
        convert = self.address or (lambda a: a)
        converted: dict[Any, Address] = {}
        result = SocketCounts(listeners=self.listeners, fin_wait2_orphans=self.unowned[FIN_WAIT2])
        states, ports, remotes, endpoints = result.states, result.ports, result.remotes, result.endpoints
        zero = [0] * N_STATES

        def address(raw: Any) -> Address:
            found = converted.get(raw)
            if found is None:
                found = converted[raw] = convert(raw)
            return found

        states[LISTEN] += len(self.listeners)
        for listener in self.listeners:
            ports.setdefault(listener.port, zero.copy())[LISTEN] += 1
        for (port, remote, state), n in self.incoming.items():
            if 0 < state < N_STATES:
                states[state] += n
                ports.setdefault(port, zero.copy())[state] += n
                remotes.setdefault(address(remote), zero.copy())[state] += n
        for (port, remote, local, state), n in self.outgoing.items():
            if 0 < state < N_STATES:
                states[state] += n
                ports.setdefault(port | OUT, zero.copy())[state] += n
                remote = address(remote)
                remotes.setdefault(remote, zero.copy())[state] += n
                endpoints.setdefault((address(local), remote, port), zero.copy())[state] += n
        return result
