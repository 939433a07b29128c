"""The sock_diag netlink wire format as named field tables (include/uapi/linux/{netlink,inet_diag}.h).

Each kernel struct is written once, as the header declares it: a table of (name, struct code) fields. Sizes, offsets,
struct formats for reading and packing requests are derived from the tables, never counted by hand.

Pure: bytes in, values out, no sockets. A reply is untrusted input: every message and attribute is checked to lie
inside the bytes received (``size``, not the buffer, which is reused between batches), and anything malformed raises
``SourceUnavailable`` rather than being read past or looped over.
"""

from __future__ import annotations

import _socket  # the C module: `socket` costs ~8 ms of import (enum conversion) for nothing used here
import errno
import os
import struct
from collections.abc import Iterator
from functools import lru_cache
from operator import itemgetter
from typing import Any

from ..records import Record

AF_INET, AF_INET6 = _socket.AF_INET, _socket.AF_INET6
IPPROTO_TCP = _socket.IPPROTO_TCP

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY, SOCK_DESTROY = 20, 21
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300


class SourceUnavailable(Exception):
    """sock_diag cannot be used here, or answered something malformed; the message says why (shown next to the
    fallback's name)."""


# ---- field tables -----------------------------------------------------------------------------------------------


class Field(Record):
    """One member of a kernel struct."""

    name: str
    code: str
    """struct code of its C type: "B" __u8, "H" __u16, "I" __u32, "i" int, "16s" __u8[16], "x" padding."""
    network: bool = False
    """Kept in network byte order (__be16); every other field is in host order."""

    @property
    def size(self) -> int:
        return struct.calcsize("=" + self.code)


class Layout:
    """A C struct as an ordered table of fields (nested structs are spliced in): size, offsets, and the struct
    formats to read or pack it, all derived from the table."""

    def __init__(self, name: str, *parts: Field | Layout) -> None:
        self.name = name
        self.fields: tuple[Field, ...] = tuple(
            field for part in parts for field in (part.fields if isinstance(part, Layout) else (part,))
        )
        self.offsets: dict[str, int] = {}
        at = 0
        for field in self.fields:
            if field.name in self.offsets:
                raise ValueError(f"{name}: two fields named {field.name}")
            self.offsets[field.name] = at
            at += field.size
        self.size = at
        self.names: tuple[str, ...] = tuple(field.name for field in self.fields if field.code != "x")
        """The fields that carry data, in order (padding left out)."""

    def reader(self, byte_order: str, **reads: str) -> Reader:
        """A struct covering the whole layout that reads only the fields named in ``reads``, each with the code
        given there (which may cover just the start of the field: an IPv4 address is the first 4 bytes of a
        16-byte one), in one ``byte_order`` for all of them, and skips the rest."""
        unknown = set(reads) - set(self.names)
        if unknown:
            raise ValueError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        parts: list[str] = []
        names: list[str] = []
        skip = 0
        for field in self.fields:
            code = reads.get(field.name)
            if code is None:
                skip += field.size
                continue
            used = struct.calcsize("=" + code)
            if used > field.size:
                raise ValueError(f"{self.name}.{field.name}: {code!r} is larger than the field")
            if skip:
                parts.append(f"{skip}x")
            parts.append(code)
            names.append(field.name)
            skip = field.size - used
        if skip:
            parts.append(f"{skip}x")
        return Reader(struct.Struct(byte_order + "".join(parts)), tuple(names))

    def pack(self, **values: Any) -> bytes:
        """The struct's bytes, each field in its own byte order; fields not given are zero."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise ValueError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        out = []
        for field in self.fields:
            if field.code == "x":
                out.append(bytes(field.size))
                continue
            default: Any = b"" if field.code.endswith("s") else 0
            out.append(struct.pack(("!" if field.network else "=") + field.code, values.get(field.name, default)))
        return b"".join(out)

    def decoder(self) -> Reader:
        """A struct that reads every data field in host order; the ``network`` ones come out as raw bytes, for the
        caller to turn into numbers (see ``decode_socket``)."""
        reads = {field.name: f"{field.size}s" if field.network else field.code for field in self.fields}
        return self.reader("=", **{name: reads[name] for name in self.names})


class Reader(Record):
    """A struct derived from a Layout, and the names of the fields its tuples hold, in that order."""

    struct: struct.Struct
    names: tuple[str, ...]


NLMSGHDR = Layout(
    "nlmsghdr",
    Field("len", "I"),
    Field("type", "H"),
    Field("flags", "H"),
    Field("seq", "I"),
    Field("pid", "I"),
)
NLMSGERR = Layout("nlmsgerr", Field("error", "i"))
"""The payload of NLMSG_ERROR (then the request's header), and of NLMSG_DONE in a dump: 0 or -errno."""
NLATTR = Layout("nlattr", Field("len", "H"), Field("type", "H"))
INET_DIAG_SOCKID = Layout(
    "inet_diag_sockid",
    Field("sport", "H", network=True),
    Field("dport", "H", network=True),
    Field("src", "16s"),
    Field("dst", "16s"),
    Field("interface", "I"),
    Field("cookie", "8s"),
)
"""Addresses are __be32[4]: an IPv4 address is the first 4 bytes. ``cookie`` identifies the socket to the kernel."""
INET_DIAG_REQ_V2 = Layout(
    "inet_diag_req_v2",
    Field("family", "B"),
    Field("protocol", "B"),
    Field("ext", "B"),
    Field("pad", "x"),
    Field("states", "I"),
    INET_DIAG_SOCKID,
)
INET_DIAG_MSG = Layout(
    "inet_diag_msg",
    Field("family", "B"),
    Field("state", "B"),
    Field("timer", "B"),
    Field("retrans", "B"),
    INET_DIAG_SOCKID,
    Field("expires", "I"),
    Field("rqueue", "I"),
    Field("wqueue", "I"),
    Field("uid", "I"),
    Field("inode", "I"),
)
DIAG_MESSAGE = Layout("sock_diag reply", NLMSGHDR, INET_DIAG_MSG)
"""One socket as a dump sends it: the netlink header, then inet_diag_msg; attributes may follow."""

INET_DIAG_ATTRIBUTES: tuple[str, ...] = (
    "NONE",
    "MEMINFO",
    "INFO",
    "VEGASINFO",
    "CONG",
    "TOS",
    "TCLASS",
    "SKMEMINFO",
    "SHUTDOWN",
    "DCTCPINFO",
    "PROTOCOL",
    "SKV6ONLY",
    "LOCALS",
    "PEERS",
    "PAD",
    "MARK",
    "BBRINFO",
    "CLASS_ID",
    "MD5SIG",
    "ULP_INFO",
    "SK_BPF_STORAGES",
    "CGROUP_ID",
    "SOCKOPT",
)
"""Attribute types after an inet_diag_msg (enum INET_DIAG_*, in order); newer kernels may send higher numbers."""
NLA_TYPE_MASK = 0x3FFF
"""nla_type without the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags."""

_HEAD = NLMSGHDR.reader("=", len="I", type="H").struct
_ERROR = NLMSGERR.reader("=", error="i").struct
_ATTR = NLATTR.reader("=", len="H", type="H").struct
_SEQ = NLMSGHDR.reader("=", seq="I").struct


def align(length: int) -> int:
    """NLMSG_ALIGN / NLA_ALIGN: messages and attributes start on 4-byte boundaries."""
    return (length + 3) & ~3


# ---- requests ---------------------------------------------------------------------------------------------------


def diag_request(family: int, states: int, seq: int) -> bytes:
    """An inet_diag_req_v2 dump request for TCP sockets of ``family`` in the ``states`` bit mask, no extensions."""
    body = INET_DIAG_REQ_V2.pack(family=family, protocol=IPPROTO_TCP, states=states)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(len=NLMSGHDR.size + len(body), type=SOCK_DIAG_BY_FAMILY, flags=flags, seq=seq) + body


def destroy_request(record: SocketRecord, seq: int) -> bytes:
    """A SOCK_DESTROY request for the one socket ``record`` describes (what ``ss -K`` sends), asking for an
    acknowledgement. The kernel finds the socket by its full id (ports, addresses, interface) and refuses with
    ENOENT when the cookie no longer matches: a new socket that took over the same ports is never hit."""
    body = INET_DIAG_REQ_V2.pack(
        family=record.family,
        protocol=IPPROTO_TCP,
        sport=record.sport,
        dport=record.dport,
        src=record.src,
        dst=record.dst,
        interface=record.interface,
        cookie=record.cookie,
    )
    flags = NLM_F_REQUEST | NLM_F_ACK
    return NLMSGHDR.pack(len=NLMSGHDR.size + len(body), type=SOCK_DESTROY, flags=flags, seq=seq) + body


def acknowledgement(buf: bytes | bytearray | memoryview, size: int, seq: int) -> int | None:
    """The kernel's answer to request ``seq`` in ``buf[:size]``: 0 (done) or a positive errno; None when the
    batch holds no acknowledgement for it (messages for other sequence numbers are skipped)."""
    for offset, length, mtype in messages(buf, size):
        if mtype != NLMSG_ERROR:
            continue
        if length < NLMSGHDR.size + NLMSGERR.size:
            raise SourceUnavailable("malformed netlink reply: an error message without its error code")
        if _SEQ.unpack_from(buf, offset)[0] != seq:
            continue
        (code,) = _ERROR.unpack_from(buf, offset + NLMSGHDR.size)
        return -code if code < 0 else code
    return None


# ---- replies ----------------------------------------------------------------------------------------------------


def messages(buf: bytes | bytearray | memoryview, size: int, offset: int = 0) -> Iterator[tuple[int, int, int]]:
    """(offset, length, type) of each netlink message in ``buf[offset:size]``, in order.

    Raises SourceUnavailable on a header cut short, or a length below the header's own or beyond ``size``.
    """
    while offset < size:
        if offset + NLMSGHDR.size > size:
            raise SourceUnavailable("malformed netlink reply: a message header is cut short")
        length, mtype = _HEAD.unpack_from(buf, offset)
        if length < NLMSGHDR.size or offset + length > size:
            raise SourceUnavailable(f"malformed netlink reply: message length {length} at byte {offset} of {size}")
        yield offset, length, mtype
        offset += align(length)


def check_end(buf: bytes | bytearray | memoryview, offset: int, length: int, mtype: int) -> None:
    """For the NLMSG_DONE or NLMSG_ERROR message at ``offset``: SourceUnavailable with the kernel's errno when it
    carries one (0 means success: the end of a dump, or an acknowledgement)."""
    if length < NLMSGHDR.size + NLMSGERR.size:
        if mtype == NLMSG_ERROR:
            raise SourceUnavailable("malformed netlink reply: an error message without its error code")
        return
    (code,) = _ERROR.unpack_from(buf, offset + NLMSGHDR.size)
    if code < 0:
        code = -code
        name = errno.errorcode.get(code, str(code))
        raise SourceUnavailable(
            f"the kernel answered {os.strerror(code).lower()} ({name})"
            + (" to the TCP dump request" if mtype == NLMSG_ERROR else "")
        )


class SocketRecord(Record):
    """Every field of one inet_diag_msg (one socket), numbers in host order.

    ``src``/``dst`` are the 16 address bytes as sent (IPv4: the first 4; see ``address_key``); ``interface`` and
    ``cookie`` complete the socket id a destroy request must repeat. ``timer``: 0 none, 1 retransmit, 2 keepalive,
    3 TIME_WAIT, 4 zero-window probe; ``expires`` in ms; ``rqueue``/``wqueue``: for a listener, its accept queue
    length and backlog, else bytes queued.
    """

    family: int
    state: int
    timer: int
    retrans: int
    sport: int
    dport: int
    src: bytes
    dst: bytes
    interface: int
    cookie: bytes
    expires: int
    rqueue: int
    wqueue: int
    uid: int
    inode: int


_DECODER = INET_DIAG_MSG.decoder()
_RECORD_ORDER = itemgetter(*(_DECODER.names.index(name) for name in SocketRecord._fields))
"""The decoder's values rearranged by name into SocketRecord's order."""
_NETWORK_FIELDS = tuple(SocketRecord._fields.index(field.name) for field in INET_DIAG_MSG.fields if field.network)


def decode_socket(buf: bytes | bytearray | memoryview, offset: int, length: int) -> SocketRecord:
    """The socket in the SOCK_DIAG_BY_FAMILY message at ``offset`` (``length`` bytes, checked by ``messages``)."""
    if length < DIAG_MESSAGE.size:
        raise SourceUnavailable(f"malformed sock_diag reply: a socket message of {length} bytes")
    values: list[Any] = list(_RECORD_ORDER(_DECODER.struct.unpack_from(buf, offset + NLMSGHDR.size)))
    for index in _NETWORK_FIELDS:
        values[index] = int.from_bytes(values[index], "big")
    return SocketRecord._make(values)


def socket_attributes(buf: bytes | bytearray | memoryview, offset: int, length: int) -> dict[str, bytes]:
    """The attributes after the socket message at ``offset``: {name: payload} (unknown types as "TYPE_<n>")."""
    if length < DIAG_MESSAGE.size:
        raise SourceUnavailable(f"malformed sock_diag reply: a socket message of {length} bytes")
    found: dict[str, bytes] = {}
    for kind, payload in attributes(buf, offset + DIAG_MESSAGE.size, offset + length):
        name = INET_DIAG_ATTRIBUTES[kind] if kind < len(INET_DIAG_ATTRIBUTES) else f"TYPE_{kind}"
        found[name] = bytes(payload)
    return found


def attributes(buf: bytes | bytearray | memoryview, start: int, end: int) -> Iterator[tuple[int, memoryview]]:
    """(type, payload) of each netlink attribute in ``buf[start:end]``.

    Raises SourceUnavailable on an attribute shorter than its own header or longer than what is left; fewer than a
    header's bytes at the end are padding.
    """
    view = memoryview(buf)
    offset = start
    while offset + NLATTR.size <= end:
        length, kind = _ATTR.unpack_from(buf, offset)
        if length < NLATTR.size or offset + length > end:
            raise SourceUnavailable(f"malformed netlink attribute: length {length} at byte {offset} of {end}")
        yield kind & NLA_TYPE_MASK, view[offset + NLATTR.size : offset + length]
        offset += align(length)


def address_key(family: int, raw: bytes) -> int | bytes:
    """The address bytes of a SocketRecord in the form the tally keys on (IPv4: an int; IPv6: 16 bytes)."""
    return int.from_bytes(raw[:4], "big") if family == AF_INET else bytes(raw[:16])


# ---- batches of socket records, for counting --------------------------------------------------------------------


def parse_batch(buf: bytes | bytearray, size: int, reader: Reader, rows: list[tuple[Any, ...]]) -> bool:
    """Append the sockets of one recv()'d batch (``buf[:size]``) to ``rows`` as ``reader`` reads them (a reader of
    ``DIAG_MESSAGE``); True when the dump is complete.

    Fast path: when every message in the batch has the length of the first (the usual case: a dump request asks
    for states whose sockets all carry the same attributes), one ``iter_unpack`` call reads them all. Uniformity is
    proven first with strided byte slices: each message's own length and type bytes sit where the stride says
    (message k then starts at k * step, by induction). Otherwise, and for the tail (NLMSG_DONE), step through the
    messages one by one.
    """
    offset = 0
    if size >= DIAG_MESSAGE.size:
        length, mtype = _HEAD.unpack_from(buf, 0)
        step = align(length)
        count = size // step if length >= DIAG_MESSAGE.size else 0
        if mtype == SOCK_DIAG_BY_FAMILY and count > 1:
            whole, head = _uniform(reader.struct.format, length)
            end = count * step
            if all(buf[i:end:step] == head[i : i + 1] * count for i in range(len(head))):
                rows.extend(whole.iter_unpack(memoryview(buf)[:end]))
                offset = end
    record = reader.struct.unpack_from
    for at, length, mtype in messages(buf, size, offset):
        if mtype == SOCK_DIAG_BY_FAMILY:
            if length < DIAG_MESSAGE.size:
                raise SourceUnavailable(f"malformed sock_diag reply: a socket message of {length} bytes")
            rows.append(record(buf, at))
        elif mtype in (NLMSG_DONE, NLMSG_ERROR):
            check_end(buf, at, length, mtype)
            return True
    return False


@lru_cache(maxsize=32)
def _uniform(fmt: str, length: int) -> tuple[struct.Struct, bytes]:
    """For messages of ``length`` bytes: ``fmt`` stretched over a whole aligned message, and the bytes each one
    must start with (nlmsg_len, nlmsg_type, in host order)."""
    step = align(length)
    whole = struct.Struct(fmt + f"{step - struct.calcsize(fmt)}x")
    return whole, NLMSGHDR.pack(len=length, type=SOCK_DIAG_BY_FAMILY)[: NLMSGHDR.offsets["flags"]]
