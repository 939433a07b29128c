"""The captured socket scenario (tests/fixtures/sockets, written by capture.py there), read without tcptune.

``plain_sockets`` parses the kernel's own /proc/net/tcp{,6} text with str.split and the ipaddress module, so the
socket tests compare tcptune's counts with numbers it did not compute (``tests.socket_counts``). ``Replay`` plays
the captured sock_diag exchange back through tcptune's netlink reader; ``message`` packs a sock_diag reply by hand,
from the C header.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

from tests.socket_counts import KERNEL_STATES, PlainSocket

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
EPHEMERAL = tuple(int(part) for part in (FIXTURES / "proc_sys/net/ipv4/ip_local_port_range").read_text().split())

# capture.py's scenario (see tests/integration/socket_states.py): servers on 127.0.0.1 port 7000 + n, clients
# from 127.0.0.2; 5 established pairs, 7 TIME_WAIT, 3 CLOSE_WAIT (and their 3 orphaned FIN_WAIT2), 4 orphaned
# FIN_WAIT2 (and their CLOSE_WAIT), 2 half-closed (FIN_WAIT2 held + CLOSE_WAIT), 2 IPv6 pairs on ::1, 2 connections
# waiting in the accept queue of a listener with backlog 8, 2 IPv4 pairs accepted by a dual-stack listener.
SCENARIO_STATES = {
    "ESTABLISHED": 2 * 5 + 2 * 2 + 2 * 2 + 2 * 2,
    "TIME_WAIT": 7,
    "CLOSE_WAIT": 3 + 4 + 2,
    "FIN_WAIT2": 3 + 4 + 2,
    "LISTEN": 8,
}
SCENARIO_ORPHANS = 3 + 4
SCENARIO_BACKLOGS = {7006: 8}  # the others listen(4096), capped by the captured somaxconn (4096)


def _address(text: str) -> str:
    """/proc/net/tcp prints an address as 32-bit words, each in the machine's byte order."""
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def plain_sockets(directory: Path = FIXTURES) -> list[PlainSocket]:
    found = []
    for name in ("tcp", "tcp6"):
        for line in (directory / name).read_text().splitlines()[1:]:
            f = line.split()
            local, lport = f[1].split(":")
            remote, rport = f[2].split(":")
            tx_queue, rx_queue = f[4].split(":")
            found.append(
                PlainSocket(
                    state=KERNEL_STATES[int(f[3], 16)],
                    local=_address(local),
                    lport=int(lport, 16),
                    remote=_address(remote),
                    rport=int(rport, 16),
                    tx_queue=int(tx_queue, 16),
                    rx_queue=int(rx_queue, 16),
                    timer=int(f[5].split(":")[0], 16),
                    retransmits=int(f[6], 16),
                    uid=int(f[7]),
                    inode=int(f[9]),
                )
            )
    return found


FRAME = struct.Struct("=cI")  # capture.py: b"Q" request / b"A" one recv()'d batch, then the payload's length


def frames(path: Path = FIXTURES / "netlink.bin") -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    found = []
    offset = 0
    while offset < len(data):
        kind, size = FRAME.unpack_from(data, offset)
        offset += FRAME.size
        found.append((kind, data[offset : offset + size]))
        offset += size
    return found


class Replay:
    """A netlink socket that plays back a captured exchange and checks each request is the one recorded; once the
    recording runs out, requests are taken and recv returns 0 bytes (what a broken peer would do)."""

    def __init__(self, recorded: list[tuple[bytes, bytes]] | None = None) -> None:
        self.frames = list(frames() if recorded is None else recorded)
        self.closed = False

    def send(self, request: bytes) -> int:
        if not self.frames:
            return len(request)
        kind, recorded = self.frames.pop(0)
        assert kind == b"Q" and request == recorded
        return len(request)

    def recv_into(self, buf: bytearray) -> int:
        if not self.frames:
            return 0
        kind, batch = self.frames.pop(0)
        assert kind == b"A"
        buf[: len(batch)] = batch
        return len(batch)

    def close(self) -> None:
        self.closed = True


SOCK_DIAG_BY_FAMILY, NLMSG_ERROR, NLMSG_DONE = 20, 2, 3  # include/uapi/linux/{sock_diag,netlink}.h


def message(
    state: int,
    sport: int,
    dport: int,
    src: bytes = b"\x7f\0\0\x01",
    dst: bytes = b"\x7f\0\0\x02",
    *,
    inode: int = 1,
    attrs: bytes = b"",
    family: int = 2,
    timer: int = 0,
    retrans: int = 0,
    interface: int = 0,
    cookie: bytes = b"\0" * 8,
    expires: int = 0,
    rqueue: int = 0,
    wqueue: int = 0,
    uid: int = 0,
) -> bytes:
    """One sock_diag reply message, packed field by field as struct inet_diag_msg declares them."""
    body = struct.pack("=BBBB", family, state, timer, retrans)
    body += struct.pack(">HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0")
    body += struct.pack("=I", interface) + cookie + struct.pack("=IIIII", expires, rqueue, wqueue, uid, inode)
    length = 16 + len(body) + len(attrs)
    return struct.pack("=IHHII", length, SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body + attrs


def done(code: int = 0, kind: int = NLMSG_DONE) -> bytes:
    return struct.pack("=IHHIIi", 20, kind, 2, 1, 0, code)


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)
