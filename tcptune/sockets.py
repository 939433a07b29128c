"""Socket-state evidence: the kernel's sock_diag netlink dump, a /proc/net/tcp fallback, and TCP counters.

Why netlink: on a busy host /proc/net/tcp costs the kernel a formatted text line per socket and tools such as
netstat re-parse every line; sock_diag (what ``ss`` uses) hands over fixed-size binary records in 32 KiB batches.

Sockets are *streamed*: each batch is folded into Counters keyed by (port, state), (remote address, state) and
(local address, remote address, remote port, state), then dropped, so memory grows with the number of distinct ports
and peers, never with sockets. Folding uses C-level iteration (struct.iter_unpack, map/itemgetter, compress,
Counter.update) rather than a Python statement per socket: the dump is split by state into requests whose records
all have the same size, so a whole batch unpacks in one call. Batches that are not uniform take a per-record path.

Everything here reads the network namespace of the calling thread (``ip netns exec`` / a container sees its own).
Pure parsers (``parse_*``) take captured text or bytes, so they are tested without a kernel.
"""

from __future__ import annotations

import _socket  # the C module: `socket` costs ~8 ms of import (enum conversion) for nothing used here
import errno
import os
import struct
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import itemgetter, not_
from typing import Any

from .errors import LiveStateError, UsageError

AF_INET, AF_INET6, AF_NETLINK = _socket.AF_INET, _socket.AF_INET6, _socket.AF_NETLINK
IPPROTO_TCP = _socket.IPPROTO_TCP

# ---- TCP states, as numbered by the kernel (include/net/tcp_states.h) ------------------------------------------

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

OUT = 0x10000
"""Flag in a port key: the key is the *remote* port of outgoing connections (see ``SocketCounts.ports``)."""

DEFAULT_PROC_NET = "/proc/net"
DEFAULT_PROC = "/proc"

# ---- sock_diag wire format (include/uapi/linux/{netlink,sock_diag,inet_diag}.h) ---------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQ_V2 = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
_HDR = struct.Struct("=IH")  # nlmsg_len, nlmsg_type in host order, to step through a batch
_MSG_SIZE = 16 + 72  # nlmsghdr + inet_diag_msg; attributes may follow
# One record as the batch parsers want it: (state, sport, dport, src, dst, inode), skipping the 16-byte header.
# Big-endian, because ports are; inode is host-order and comes out byte-swapped, which is fine: it is only tested
# for zero. IPv4 addresses are the first 4 bytes of src/dst.
_FIELDS = {AF_INET: ">16xxB2xHHI12xI12x28xI", AF_INET6: ">16xxB2xHH16s16s28xI"}
_RECORD = {family: struct.Struct(fmt) for family, fmt in _FIELDS.items()}
_QUEUES = struct.Struct("=II")  # rqueue, wqueue: for a listener, accept queue length and backlog
_INODE = struct.Struct("=I")
_MSG_QUEUES_AT = 16 + 56
_MSG_INODE_AT = 16 + 68
RECV_BUFFER = 1 << 20
STATE, SPORT, DPORT, SRC, DST, INODE = range(6)  # positions in a record tuple

# The non-listening states, split in two requests so that each one's records (nearly) all have one size: timewait
# sockets (TIME_WAIT, and orphaned FIN_WAIT2 kept as timewait) and request sockets (SYN_RECV) carry no attributes;
# full sockets all carry the same ones. Only full sockets in FIN_WAIT2 mix in, and take the per-record path.
# Each request is one walk of the kernel's connection hash table, so fewer is faster.
_MASK = {
    name: sum(1 << n for n in states)
    for name, states in {
        "bare": (TIME_WAIT, FIN_WAIT2, SYN_RECV, NEW_SYN_RECV),
        "full": (ESTABLISHED, SYN_SENT, FIN_WAIT1, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING),
    }.items()
}


class SourceUnavailable(Exception):
    """sock_diag cannot be used here; the message says why (shown next to the fallback's name)."""


# ---- what the readers produce -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """A listening socket and its accept queue: ``queue`` connections waiting, at most ``backlog`` (None: unknown)."""

    address: str
    port: int
    queue: int
    backlog: int | None
    inode: int = 0


@dataclass(frozen=True)
class Owner:
    """A process holding some of the sockets in question (``ss -p`` style)."""

    pid: int
    name: str
    sockets: int


@dataclass
class SocketCounts:
    """Tallies of one pass over the namespace's TCP sockets; no per-socket data.

    Every value list is indexed by TCP state number (``TCP_STATES``).

    ``ports`` is keyed by the *service* port, so that it stays small on busy hosts: a socket whose local port is a
    listening port or outside ``ip_local_port_range`` counts under its local port (incoming side, key = port);
    an outgoing connection (local port picked from the ephemeral range) counts under the remote port it connects
    to (key = port | OUT). Listing thousands of ephemeral local ports would say nothing.
    """

    states: list[int] = field(default_factory=lambda: [0] * N_STATES)
    ports: dict[int, list[int]] = field(default_factory=dict)
    remotes: dict[int | bytes, list[int]] = field(default_factory=dict)
    """Remote address (IPv4: int in network order; IPv6: 16 bytes) -> states; listeners excluded."""
    endpoints: dict[tuple[int | bytes, int | bytes, int], list[int]] = field(default_factory=dict)
    """Outgoing only: (local address, remote address, remote port) -> states. Each such tuple can use at most
    ip_local_port_range's size of local ports at a time, TIME_WAIT included."""
    listeners: list[Listener] = field(default_factory=list)
    fin_wait2_orphans: int = 0
    """FIN_WAIT2 sockets no process holds any more: the ones tcp_fin_timeout governs."""

    @property
    def total(self) -> int:
        return sum(self.states)

    def state(self, name: str) -> int:
        return self.states[STATE_NUMBER[name]]


def port_key(port: int, direction: str) -> int:
    """Key of ``SocketCounts.ports`` for a port seen as "in" (local service port) or "out" (remote port)."""
    return port | OUT if direction == "out" else port


def split_port_key(key: int) -> tuple[int, str]:
    return (key & 0xFFFF, "out" if key & OUT else "in")


def format_address(address: int | bytes) -> str:
    if isinstance(address, int):
        return _socket.inet_ntoa(address.to_bytes(4, "big"))
    if address[:12] == b"\0" * 10 + b"\xff\xff":
        return "::ffff:" + _socket.inet_ntoa(address[12:])
    return _socket.inet_ntop(AF_INET6, address)


def _service_key(sport: int, dport: int, ephemeral: tuple[int, int], listen_ports: set[int]) -> int:
    """The ``SocketCounts.ports`` key of one socket (the batch path computes the same with a lookup table)."""
    outgoing = ephemeral[0] <= sport <= ephemeral[1] and sport not in listen_ports
    return dport | OUT if outgoing else sport


_INVERT = bytes.maketrans(b"\x00\x01", b"\x01\x00")


class _Tally:
    """Folds batches of socket records into two Counters; ``counts()`` turns them into a SocketCounts.

    A record is a tuple laid out as ``_RECORD`` yields it: (state, sport, dport, src, dst, inode). Incoming sockets
    count under (local port, remote address, state), outgoing ones under (remote port, remote address, local
    address, state): one Counter update per direction and batch gives ports, remotes, endpoints and states at once,
    and both key spaces are bounded by distinct services and peers. ``address`` converts the source's address form
    into the canonical key (None for netlink, whose form is canonical); it runs once per distinct address.
    """

    def __init__(self, ephemeral: tuple[int, int], address: Any = None) -> None:
        self.low, self.high = ephemeral
        self.address = address
        self.listeners: list[Listener] = []
        self.listen_ports: set[int] = set()
        self._table: bytes | None = None
        self.incoming: Counter[tuple[Any, ...]] = Counter()
        self.outgoing: Counter[tuple[Any, ...]] = Counter()
        self.unowned: Counter[int] = Counter()

    def listener(self, port: int, address: Any, queue: int, backlog: int | None, inode: int) -> None:
        self.listen_ports.add(port)
        self._table = None
        canonical = self.address(address) if self.address else address
        self.listeners.append(Listener(format_address(canonical), port, queue, backlog, inode))

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
        converted: dict[Any, Any] = {}
        result = SocketCounts(listeners=self.listeners, fin_wait2_orphans=self.unowned[FIN_WAIT2])
        states, ports, remotes, endpoints = result.states, result.ports, result.remotes, result.endpoints
        zero = [0] * N_STATES

        def address(raw: Any) -> Any:
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


# ---- sock_diag netlink reader ------------------------------------------------------------------------------------


def _open_netlink() -> _socket.socket:
    try:
        sock = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise SourceUnavailable(_errno_words(exc)) from None
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((0, 0))
    except OSError as exc:
        sock.close()
        raise SourceUnavailable(_errno_words(exc)) from None
    return sock


def _errno_words(exc: OSError) -> str:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    return f"{os.strerror(code).lower()} ({name})" if code else str(exc)


def diag_request(family: int, states: int, seq: int) -> bytes:
    """An inet_diag_req_v2 dump request for TCP sockets of ``family`` in the ``states`` bit mask, no extensions."""
    body = _REQ_V2.pack(family, IPPROTO_TCP, 0, states)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _end(buf: bytes | bytearray | memoryview, offset: int, mtype: int) -> None:
    """NLMSG_ERROR (or a DONE carrying an error) -> SourceUnavailable with the kernel's errno."""
    (code,) = struct.unpack_from("=i", buf, offset + 16)
    if code < 0:
        code = -code
        name = errno.errorcode.get(code, str(code))
        raise SourceUnavailable(
            f"the kernel answered {os.strerror(code).lower()} ({name})"
            + (" to the TCP dump request" if mtype == NLMSG_ERROR else "")
        )


_uniform_structs: dict[tuple[int, int], tuple[struct.Struct, bytes]] = {}


def _uniform(family: int, length: int) -> tuple[struct.Struct, bytes]:
    """For records of ``length`` bytes: a struct covering a whole record, and the bytes its header must start with
    (nlmsg_len, nlmsg_type) in host order."""
    key = (family, length)
    if key not in _uniform_structs:
        step = (length + 3) & ~3
        head = struct.pack("=IH", length, SOCK_DIAG_BY_FAMILY)
        _uniform_structs[key] = (struct.Struct(_FIELDS[family] + f"{step - _MSG_SIZE}x"), head)
    return _uniform_structs[key]


def parse_batch(buf: bytes | bytearray, size: int, family: int, rows: list[tuple[Any, ...]]) -> bool:
    """Append the socket records of one recv()'d batch to ``rows``; True when the dump is complete.

    Fast path: when every record in the batch has the size of the first (the usual case, see ``_MASK``), one
    ``iter_unpack`` call reads them all. Uniformity is proven first with strided byte slices: each record's own
    length and type bytes sit where the stride says (record k then starts at k * step, by induction). Otherwise,
    and for the tail (NLMSG_DONE), step record by record.
    """
    offset = 0
    if size >= _MSG_SIZE:
        length, mtype = _HDR.unpack_from(buf, 0)
        if mtype == SOCK_DIAG_BY_FAMILY and length >= _MSG_SIZE:
            whole, head = _uniform(family, length)
            step = whole.size
            count = size // step
            end = count * step
            if all(buf[i:end:step] == head[i : i + 1] * count for i in range(len(head))):
                rows.extend(whole.iter_unpack(memoryview(buf)[:end]))
                offset = end
    record = _RECORD[family].unpack_from
    while offset < size:
        length, mtype = _HDR.unpack_from(buf, offset)
        if mtype == SOCK_DIAG_BY_FAMILY:
            if length < _MSG_SIZE:
                raise SourceUnavailable("malformed sock_diag record")
            rows.append(record(buf, offset))
        elif mtype in (NLMSG_DONE, NLMSG_ERROR):
            _end(buf, offset, mtype)
            return True
        if length < _NLMSGHDR.size:
            raise SourceUnavailable("malformed netlink message")
        offset += (length + 3) & ~3
    return False


def _dump(sock: _socket.socket, family: int, states: int, seq: int, buf: bytearray) -> Iterable[list[Any]]:
    """Batches of records for one dump request, as the kernel sends them."""
    sock.send(diag_request(family, states, seq))
    done = False
    while not done:
        rows: list[tuple[Any, ...]] = []
        done = parse_batch(buf, sock.recv_into(buf), family, rows)
        yield rows


def read_netlink(ephemeral: tuple[int, int], opener: Any = None) -> SocketCounts:
    """Count the namespace's TCP sockets through sock_diag. Raises SourceUnavailable if it cannot be used.

    Listeners are dumped first (both families), so that the main pass knows which local ports are services.
    ``opener`` makes the netlink socket (tests replay captured kernel replies through it).
    """
    tally = _Tally(ephemeral)
    buf = bytearray(RECV_BUFFER)
    seq = 0
    sock = (opener or _open_netlink)()
    try:
        seq = _listeners(sock, tally, buf, seq)
        for family in (AF_INET, AF_INET6):
            for states in _MASK.values():
                seq += 1
                for batch in _dump(sock, family, states, seq, buf):
                    tally.fold(batch, orphans=states & (1 << FIN_WAIT2) != 0)
    except OSError as exc:
        raise SourceUnavailable(_errno_words(exc)) from None
    finally:
        sock.close()
    return tally.counts()


def _each_record(sock: _socket.socket, family: int, states: int, seq: int, buf: bytearray) -> Iterator[int]:
    """Offsets in ``buf`` of each record of one dump, one by one: for the few sockets that need every field.
    Read the record before asking for the next (the buffer is reused)."""
    sock.send(diag_request(family, states, seq))
    while True:
        size = sock.recv_into(buf)
        offset = 0
        while offset < size:
            length, mtype = _HDR.unpack_from(buf, offset)
            if mtype in (NLMSG_DONE, NLMSG_ERROR):
                _end(buf, offset, mtype)
                return
            if length < (_MSG_SIZE if mtype == SOCK_DIAG_BY_FAMILY else _NLMSGHDR.size):
                raise SourceUnavailable("malformed netlink message")
            if mtype == SOCK_DIAG_BY_FAMILY:
                yield offset
            offset += (length + 3) & ~3


def _listeners(sock: _socket.socket, tally: _Tally, buf: bytearray, seq: int) -> int:
    """Listening sockets of both families (they are few), with accept queue length, backlog and inode."""
    for family in (AF_INET, AF_INET6):
        seq += 1
        record = _RECORD[family].unpack_from
        for offset in _each_record(sock, family, 1 << LISTEN, seq, buf):
            state, sport, _dport, src, _dst, _inode = record(buf, offset)
            queue, backlog = _QUEUES.unpack_from(buf, offset + _MSG_QUEUES_AT)
            (inode,) = _INODE.unpack_from(buf, offset + _MSG_INODE_AT)
            if state == LISTEN:
                tally.listener(sport, src, queue, backlog, inode)
    return seq


def _netlink_inodes(
    state: int, keys: set[int], ephemeral: tuple[int, int], listen_ports: set[int], limit: int
) -> dict[int, list[int]]:
    """Inodes of sockets in ``state`` whose port key is in ``keys`` (at most ``limit`` per key)."""
    found: dict[int, list[int]] = {key: [] for key in keys}
    buf = bytearray(RECV_BUFFER)
    sock = _open_netlink()
    try:
        for seq, family in enumerate((AF_INET, AF_INET6), start=1):
            record = _RECORD[family].unpack_from
            for offset in _each_record(sock, family, 1 << state, seq, buf):
                sport, dport = record(buf, offset)[SPORT : DPORT + 1]
                inodes = found.get(_service_key(sport, dport, ephemeral, listen_ports))
                (inode,) = _INODE.unpack_from(buf, offset + _MSG_INODE_AT)
                if inodes is not None and inode and len(inodes) < limit:
                    inodes.append(inode)
    finally:
        sock.close()
    return found


# ---- /proc/net/tcp fallback --------------------------------------------------------------------------------------


def proc_address(text: bytes) -> int | bytes:
    """Hex as /proc/net/tcp prints it (each 32-bit word in host order) -> the key form netlink yields."""
    if len(text) == 8:
        return struct.unpack(">I", struct.pack("=I", int(text, 16)))[0]
    return struct.pack("=4I", *struct.unpack(">4I", bytes.fromhex(text.decode())))


def parse_proc_net_tcp(lines: Iterable[bytes], tally: _Tally, chunk: int = 4096) -> None:
    """Fold /proc/net/tcp or tcp6 lines (header included) into a tally made with ``address=proc_address``.

    Relies on the kernel listing a file's listening sockets before the others, as it does (listening hash first).
    Addresses stay hex text while counting and are converted once per distinct value.
    """
    rows: list[tuple[Any, ...]] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 10 or parts[0] == b"sl":
            continue
        state = int(parts[3], 16)
        local_addr, _, local_port = parts[1].partition(b":")
        if state == LISTEN:
            queue = int(parts[4].partition(b":")[2], 16)
            tally.listener(int(local_port, 16), local_addr, queue, None, int(parts[9]))
            continue
        if not 0 < state < N_STATES:
            continue
        remote_addr, _, remote_port = parts[2].partition(b":")
        rows.append((state, int(local_port, 16), int(remote_port, 16), local_addr, remote_addr, parts[9] != b"0"))
        if len(rows) >= chunk:
            tally.fold(rows)
            rows = []
    tally.fold(rows)


def read_proc(proc_net: str, ephemeral: tuple[int, int]) -> SocketCounts:
    """Count sockets from ``proc_net``/tcp and tcp6 (either may be missing: IPv6 disabled)."""
    tally = _Tally(ephemeral, address=proc_address)
    found = False
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, name), "rb") as handle:
                found = True
                parse_proc_net_tcp(handle, tally)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LiveStateError(f"cannot read {os.path.join(proc_net, name)}: {exc.strerror}") from None
    if not found:
        raise LiveStateError(f"neither {proc_net}/tcp nor {proc_net}/tcp6 exists (is /proc mounted?)")
    return tally.counts()


def _proc_inodes(
    proc_net: str, state: int, keys: set[int], ephemeral: tuple[int, int], listen_ports: set[int], limit: int
) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {key: [] for key in keys}
    for name in ("tcp", "tcp6"):
        try:
            handle = open(os.path.join(proc_net, name), "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with handle:
            for line in handle:
                parts = line.split()
                if len(parts) < 10 or parts[0] == b"sl" or int(parts[3], 16) != state:
                    continue
                sport = int(parts[1].rpartition(b":")[2], 16)
                dport = int(parts[2].rpartition(b":")[2], 16)
                inodes = found.get(_service_key(sport, dport, ephemeral, listen_ports))
                inode = int(parts[9])
                if inodes is not None and inode and len(inodes) < limit:
                    inodes.append(inode)
    return found


# ---- owners: socket inode -> process, like ss -p -----------------------------------------------------------------


def find_owners(inodes: Iterable[int], proc: str = DEFAULT_PROC) -> dict[int, tuple[int, str]]:
    """Socket inode -> (pid, command name) for the inodes asked about, by reading /proc/<pid>/fd links.

    Costs one readlink per open fd of every process, so it is only used for a handful of sockets; stops as
    soon as all are found. Processes we may not inspect (not root) are skipped: their sockets stay unknown.
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    owners: dict[int, tuple[int, str]] = {}
    if not wanted:
        return owners
    try:
        entries = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return owners
    for pid_text in entries:
        fd_dir = os.path.join(proc, pid_text, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        hits = []
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                hits.append(inode)
        if hits:
            try:
                with open(os.path.join(proc, pid_text, "comm"), encoding="utf-8", errors="replace") as handle:
                    name = handle.read().strip()
            except OSError:
                name = "?"
            for inode in hits:
                owners[inode] = (int(pid_text), name)
            if len(owners) == len(wanted):
                break
    return owners


# ---- kernel counters and /proc/net/sockstat ----------------------------------------------------------------------

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


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_counters(proc_net: str = DEFAULT_PROC_NET) -> dict[str, int]:
    """TcpExt and Tcp counters of this namespace (empty where the files are missing)."""
    counters: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        text = _read_text(os.path.join(proc_net, name))
        if text:
            counters.update(parse_counter_table(text))
    return counters


def read_sockstat(proc_net: str = DEFAULT_PROC_NET) -> dict[str, int]:
    """The kernel's own TCP totals: inuse, orphan (host-wide), tw, alloc, mem (pages); ``inuse6`` from sockstat6."""
    stats = parse_sockstat(_read_text(os.path.join(proc_net, "sockstat")) or "")
    six = parse_sockstat(_read_text(os.path.join(proc_net, "sockstat6")) or "", "TCP6")
    if "inuse" in six:
        stats["inuse6"] = six["inuse"]
    return stats


# ---- the evidence: one snapshot of everything status and recommend look at --------------------------------------

SYSCTL_KEYS: tuple[str, ...] = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
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
    """Counter increases over the last ``window`` seconds, when two readings were taken (``--watch``, ``--sample``)."""
    window: float | None = None
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

    def counter(self, name: str) -> int:
        """A counter's increase over the sampling window if there was one, else its value since boot."""
        if self.deltas is not None:
            return self.deltas.get(name, 0)
        return self.counters.get(name, 0)


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
    from .target import Target

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
        evidence.owners = lookup_owners(evidence, CLOSE_WAIT, owners_min_close_wait, owners_top, proc_net, proc)
    return evidence


def lookup_owners(
    evidence: Evidence,
    state: int,
    minimum: int,
    top: int,
    proc_net: str = DEFAULT_PROC_NET,
    proc: str = DEFAULT_PROC,
    per_port: int = 256,
) -> dict[int, list[Owner]]:
    """Processes holding ``state`` sockets on the ``top`` port keys having at least ``minimum`` of them.

    Bounded on purpose: one extra dump of that state only, at most ``per_port`` inodes per port, then one pass
    over /proc/*/fd that stops when every inode is found.
    """
    rows = sorted(
        ((row[state], key) for key, row in evidence.counts.ports.items() if row[state] >= minimum), reverse=True
    )[:top]
    keys = {key for _count, key in rows}
    if not keys:
        return {}
    listen_ports = {listener.port for listener in evidence.counts.listeners}
    ephemeral = evidence.port_range
    if evidence.source == "netlink":
        try:
            inodes = _netlink_inodes(state, keys, ephemeral, listen_ports, per_port)
        except (SourceUnavailable, OSError):
            inodes = _proc_inodes(proc_net, state, keys, ephemeral, listen_ports, per_port)
    else:
        inodes = _proc_inodes(proc_net, state, keys, ephemeral, listen_ports, per_port)
    found = find_owners((inode for group in inodes.values() for inode in group), proc)
    result: dict[int, list[Owner]] = {}
    for key, group in inodes.items():
        tally: dict[tuple[int, str], int] = {}
        for inode in group:
            owner = found.get(inode)
            if owner is not None:
                tally[owner] = tally.get(owner, 0) + 1
        result[key] = [Owner(pid, name, n) for (pid, name), n in sorted(tally.items(), key=lambda i: -i[1])]
    return result


# ---- views for renderers: plain dicts, top N -----------------------------------------------------------------------


def _nonzero(row: list[int]) -> dict[str, int]:
    return {TCP_STATES[n]: row[n] for n in range(1, N_STATES) if row[n]}


def status_dict(evidence: Evidence, *, top: int = 10, ports: Iterable[int] = ()) -> dict[str, Any]:
    """The status as plain data: what ``--format json`` prints and what the text and Prometheus views render.

    ``top`` bounds every per-port/per-remote list; ``ports`` restricts the per-port list to those port numbers
    (matched as local service ports and as remote ports of outgoing connections).
    """
    counts = evidence.counts
    wanted = set(ports)
    port_rows = [(key, row) for key, row in counts.ports.items() if not wanted or (key & 0xFFFF) in wanted]
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

    return {
        "source": evidence.source,
        "source_label": source_label(evidence),
        "source_note": evidence.source_note,
        "netns": evidence.netns,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(evidence.taken_at)),
        "total": counts.total,
        "states": {name: counts.states[n] for n, name in enumerate(TCP_STATES) if name},
        "by_port": [
            {
                "port": key & 0xFFFF,
                "direction": "out" if key & OUT else "in",
                "total": sum(row),
                "states": _nonzero(row),
            }
            for key, row in port_rows[:top]
        ],
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


def owners_dict(owners: Mapping[int, list[Owner]]) -> list[dict[str, Any]]:
    return [
        {
            "port": key & 0xFFFF,
            "direction": "out" if key & OUT else "in",
            "pid": owner.pid,
            "name": owner.name,
            "sockets": owner.sockets,
        }
        for key, group in owners.items()
        for owner in group
    ]
