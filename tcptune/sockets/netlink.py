"""Reading the namespace's TCP sockets through sock_diag netlink (what ``ss`` uses).

Why netlink: on a busy host /proc/net/tcp costs the kernel a formatted text line per socket, and tools such as
netstat re-parse every line; sock_diag hands over fixed-size binary records in 32 KiB batches.

Two ways to read a dump: ``count_batches`` for counting (the few fields the tally needs, a whole batch unpacked in
one call) and ``each_socket`` for every field of each socket (listeners, owner lookups, anything that acts on
individual sockets). ``Destroyer`` sends the kernel's destroy request for single sockets (what ``ss -K`` does).
Everything here reads the network namespace of the calling thread (``ip netns exec`` / a container sees its own).
"""

from __future__ import annotations

import _socket
import errno
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
)
from .tally import SocketCounts, Tally, service_key
from .wire import (
    AF_INET,
    AF_INET6,
    DIAG_MESSAGE,
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    Reader,
    SocketRecord,
    SourceUnavailable,
    acknowledgement,
    address_key,
    check_end,
    decode_socket,
    destroy_request,
    diag_request,
    messages,
    parse_batch,
)

RECV_BUFFER = 1 << 20

# What the tally needs of each socket (tally.RECORD_FIELDS), in one byte order: big-endian, because ports are.
# IPv4 addresses are the first 4 bytes of src/dst. The inode is host-order and comes out byte-swapped, which is
# fine: it is only tested for zero.
RECORDS: dict[int, Reader] = {
    family: DIAG_MESSAGE.reader(">", state="B", sport="H", dport="H", src=address, dst=address, inode="I")
    for family, address in ((AF_INET, "I"), (AF_INET6, "16s"))
}

# The non-listening states, split in two requests so that each one's records (nearly) all have one size: timewait
# sockets (TIME_WAIT, and orphaned FIN_WAIT2 kept as timewait) and request sockets (SYN_RECV) carry no attributes;
# full sockets all carry the same ones. Only full sockets in FIN_WAIT2 mix in, and take the per-record path.
# Each request is one walk of the kernel's connection hash table, so fewer is faster.
STATE_MASKS: tuple[int, ...] = tuple(
    sum(1 << state for state in states)
    for states in (
        (TIME_WAIT, FIN_WAIT2, SYN_RECV, NEW_SYN_RECV),
        (ESTABLISHED, SYN_SENT, FIN_WAIT1, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING),
    )
)


class NetlinkSocket(Protocol):
    """What the readers use of a netlink socket (tests replay captured kernel replies through one)."""

    def send(self, data: bytes, /) -> int: ...

    def recv_into(self, buffer: bytearray, /) -> int: ...

    def close(self) -> None: ...


Opener = Callable[[], NetlinkSocket]


def open_netlink() -> NetlinkSocket:
    try:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise SourceUnavailable(errno_words(exc)) from None
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((0, 0))
    except OSError as exc:
        sock.close()
        raise SourceUnavailable(errno_words(exc)) from None
    return sock


def errno_words(exc: OSError) -> str:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    return f"{os.strerror(code).lower()} ({name})" if code else str(exc)


def _receive(sock: NetlinkSocket, buf: bytearray) -> int:
    size = sock.recv_into(buf)
    if size <= 0:
        raise SourceUnavailable("the sock_diag dump ended without NLMSG_DONE")
    return size


def count_batches(
    sock: NetlinkSocket, family: int, states: int, seq: int, buf: bytearray
) -> Iterator[list[tuple[Any, ...]]]:
    """The sockets of one dump request as ``RECORD_FIELDS`` tuples, one list per batch the kernel sends."""
    sock.send(diag_request(family, states, seq))
    reader = RECORDS[family]
    done = False
    while not done:
        rows: list[tuple[Any, ...]] = []
        done = parse_batch(buf, _receive(sock, buf), reader, rows)
        yield rows


def each_socket(sock: NetlinkSocket, family: int, states: int, seq: int, buf: bytearray) -> Iterator[SocketRecord]:
    """Every field of each socket of one dump request, one by one."""
    sock.send(diag_request(family, states, seq))
    while True:
        size = _receive(sock, buf)
        for offset, length, mtype in messages(buf, size):
            if mtype == SOCK_DIAG_BY_FAMILY:
                yield decode_socket(buf, offset, length)
            elif mtype in (NLMSG_DONE, NLMSG_ERROR):
                check_end(buf, offset, length, mtype)
                return


def read_netlink(ephemeral: tuple[int, int], opener: Opener | None = None) -> SocketCounts:
    """Count the namespace's TCP sockets through sock_diag. Raises SourceUnavailable if it cannot be used.

    Listeners are dumped first (both families), so that the main pass knows which local ports are services.
    ``opener`` makes the netlink socket (tests replay captured kernel replies through it).
    """
    tally = Tally(ephemeral)
    buf = bytearray(RECV_BUFFER)
    seq = 0
    sock = (opener or open_netlink)()
    try:
        for family in (AF_INET, AF_INET6):
            seq += 1
            for record in each_socket(sock, family, 1 << LISTEN, seq, buf):
                if record.state == LISTEN:
                    address = address_key(family, record.src)
                    tally.listener(record.sport, address, record.rqueue, record.wqueue)
        for family in (AF_INET, AF_INET6):
            for states in STATE_MASKS:
                seq += 1
                for batch in count_batches(sock, family, states, seq, buf):
                    tally.fold(batch, orphans=states & (1 << FIN_WAIT2) != 0)
    except OSError as exc:
        raise SourceUnavailable(errno_words(exc)) from None
    finally:
        sock.close()
    return tally.counts()


def netlink_inodes(
    state: int, keys: set[int], ephemeral: tuple[int, int], listen_ports: set[int], limit: int
) -> dict[int, list[int]]:
    """Inodes of sockets in ``state`` whose port key is in ``keys`` (at most ``limit`` per key)."""
    found: dict[int, list[int]] = {key: [] for key in keys}
    buf = bytearray(RECV_BUFFER)
    sock = open_netlink()
    try:
        for seq, family in enumerate((AF_INET, AF_INET6), start=1):
            for record in each_socket(sock, family, 1 << state, seq, buf):
                inodes = found.get(service_key(record.sport, record.dport, ephemeral, listen_ports))
                if inodes is not None and record.inode and len(inodes) < limit:
                    inodes.append(record.inode)
    finally:
        sock.close()
    return found


def read_records(states: int, opener: Opener | None = None) -> list[SocketRecord]:
    """Every socket of both families whose state is in the ``states`` bit mask, with every field."""
    buf = bytearray(RECV_BUFFER)
    sock = (opener or open_netlink)()
    try:
        return [
            record
            for seq, family in enumerate((AF_INET, AF_INET6), start=1)
            for record in each_socket(sock, family, states, seq, buf)
        ]
    except OSError as exc:
        raise SourceUnavailable(errno_words(exc)) from None
    finally:
        sock.close()


def read_listeners(opener: Opener | None = None) -> list[tuple[int, bytes, int, int, int]]:
    """(family, address bytes, port, accept queue, backlog) of every listening socket: one small dump, cheap enough
    to repeat while a sample window runs."""
    return [
        (record.family, record.src, record.sport, record.rqueue, record.wqueue)
        for record in read_records(1 << LISTEN, opener)
        if record.state == LISTEN
    ]


class Destroyer:
    """Destroys single sockets through sock_diag (needs CAP_NET_ADMIN and a kernel built with
    CONFIG_INET_DIAG_DESTROY). One netlink socket for many requests; use as a context manager."""

    def __init__(self, opener: Opener | None = None) -> None:
        self.sock = (opener or open_netlink)()
        self.buf = bytearray(1 << 16)
        self.seq = 1000

    def __enter__(self) -> Destroyer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def destroy(self, record: SocketRecord) -> int:
        """0 when the kernel destroyed the socket, else its errno: ENOENT gone already (or its ports now belong to
        another socket), EPERM no CAP_NET_ADMIN, EOPNOTSUPP the kernel cannot destroy sockets."""
        self.seq += 1
        try:
            self.sock.send(destroy_request(record, self.seq))
            while True:
                code = acknowledgement(self.buf, _receive(self.sock, self.buf), self.seq)
                if code is not None:
                    return code
        except OSError as exc:
            raise SourceUnavailable(errno_words(exc)) from None


PROBE_RECORD = SocketRecord(AF_INET, 0, 0, 0, 0, 0, bytes(16), bytes(16), 0, bytes(8), 0, 0, 0, 0, 0)
"""A socket id no socket can have (port 0 on both ends): destroying it tells whether the kernel can destroy."""


def destroy_unsupported(opener: Opener | None = None) -> str | None:
    """None when this kernel accepts destroy requests, else why not (in words). Harmless: it asks to destroy a
    socket that cannot exist, and the kernel looks for the socket before it checks privileges, so the answer
    is the same with or without CAP_NET_ADMIN."""
    try:
        with Destroyer(opener) as destroyer:
            code = destroyer.destroy(PROBE_RECORD)
    except SourceUnavailable as exc:
        return f"sock_diag netlink is unavailable: {exc}"
    if code in (0, errno.ENOENT):
        return None
    if code in (errno.EOPNOTSUPP, errno.EINVAL):
        return "this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY)"
    if code in (errno.EPERM, errno.EACCES):
        return "needs CAP_NET_ADMIN in this network namespace (run as root)"
    return f"the kernel refused a destroy request: {os.strerror(code).lower()}"
