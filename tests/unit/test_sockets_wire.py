"""The sock_diag wire format: field tables against the kernel headers, per-socket decoding against the kernel's
/proc text, and replies that are truncated or hostile (which must end in the reader's own error, never a crash, a
read past the bytes received, or a loop)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from tcptune.sockets import SourceUnavailable, wire
from tcptune.sockets import netlink as reader
from tests.unit.sock_diag_fixture import (
    NLMSG_DONE,
    NLMSG_ERROR,
    Replay,
    attribute,
    done,
    frames,
    message,
    plain_sockets,
)

pytestmark = pytest.mark.timeout(60)  # a reader that loops on bad input fails here, not at the suite's limit

AF_INET, AF_INET6 = 2, 10
ESTABLISHED, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LISTEN = 1, 5, 6, 8, 10
FUZZ = settings(max_examples=400, deadline=None, print_blob=True)
FUZZ_SEED = 20250801


def _rows(batch: bytes, size: int | None = None, family: int = AF_INET) -> tuple[bool, list[tuple[Any, ...]]]:
    rows: list[tuple[Any, ...]] = []
    complete = wire.parse_batch(batch, len(batch) if size is None else size, reader.RECORDS[family], rows)
    return complete, rows


# ---- the tables are the kernel's structs ---------------------------------------------------------------------------


def test_struct_sizes_are_the_kernels() -> None:
    # sizeof() of each struct in include/uapi/linux/{netlink,inet_diag}.h
    sizes = {"nlmsghdr": 16, "nlattr": 4, "inet_diag_sockid": 48, "inet_diag_req_v2": 56, "inet_diag_msg": 72}
    layouts = (wire.NLMSGHDR, wire.NLATTR, wire.INET_DIAG_SOCKID, wire.INET_DIAG_REQ_V2, wire.INET_DIAG_MSG)
    assert {layout.name: layout.size for layout in layouts} == sizes


def test_inet_diag_msg_fields_sit_at_the_kernels_offsets() -> None:
    assert wire.INET_DIAG_MSG.offsets == {
        "family": 0,
        "state": 1,
        "timer": 2,
        "retrans": 3,
        "sport": 4,
        "dport": 6,
        "src": 8,
        "dst": 24,
        "interface": 40,
        "cookie": 44,
        "expires": 52,
        "rqueue": 56,
        "wqueue": 60,
        "uid": 64,
        "inode": 68,
    }


def test_a_socket_record_has_every_field_of_inet_diag_msg_in_order() -> None:
    assert wire.SocketRecord._fields == wire.INET_DIAG_MSG.names


def test_the_counting_readers_yield_the_tallys_record_layout() -> None:
    from tcptune.sockets.tally import RECORD_FIELDS

    assert {family: r.names for family, r in reader.RECORDS.items()} == {
        AF_INET: RECORD_FIELDS,
        AF_INET6: RECORD_FIELDS,
    }


def test_a_dump_request_is_an_inet_diag_req_v2_for_tcp() -> None:
    request = wire.diag_request(AF_INET6, 1 << LISTEN, 7)
    # nlmsghdr: len 72, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq 7, pid 0; then family, IPPROTO_TCP,
    # no extensions, pad, the states mask, and an all-zero socket id
    assert request == struct.pack("=IHHII", 72, 20, 0x301, 7, 0) + struct.pack("=BBBxI", 10, 6, 0, 1 << 10) + bytes(48)


def test_packing_puts_ports_in_network_order_and_the_rest_in_host_order() -> None:
    packed = wire.INET_DIAG_SOCKID.pack(sport=0x1234, dport=80, interface=3, cookie=b"abcdefgh")
    assert packed[:4] == b"\x12\x34\x00\x50" and packed[36:40] == struct.pack("=I", 3) and packed[40:] == b"abcdefgh"
    with pytest.raises(ValueError, match="no field"):
        wire.INET_DIAG_SOCKID.pack(port=1)


# ---- one socket, every field --------------------------------------------------------------------------------------


def test_decode_socket_gives_every_field() -> None:
    data = message(
        CLOSE_WAIT,
        8080,
        51000,
        bytes(range(1, 17)),
        bytes(range(17, 33)),
        family=AF_INET6,
        timer=2,
        retrans=3,
        interface=4,
        cookie=b"\x01\x02\x03\x04\x05\x06\x07\x08",
        expires=5000,
        rqueue=6,
        wqueue=7,
        uid=1000,
        inode=123456,
    )
    record = wire.decode_socket(data, 0, len(data))
    assert record == wire.SocketRecord(
        family=AF_INET6,
        state=CLOSE_WAIT,
        timer=2,
        retrans=3,
        sport=8080,
        dport=51000,
        src=bytes(range(1, 17)),
        dst=bytes(range(17, 33)),
        interface=4,
        cookie=b"\x01\x02\x03\x04\x05\x06\x07\x08",
        expires=5000,
        rqueue=6,
        wqueue=7,
        uid=1000,
        inode=123456,
    )
    assert wire.address_key(AF_INET, b"\x7f\0\0\x01" + bytes(12)) == 0x7F000001


def test_decoded_sockets_agree_with_the_kernels_proc_text_field_by_field() -> None:
    """Every socket in the captured dump, decoded, matches its /proc/net/tcp line (found by inode or, for the
    sockets no process holds, by addresses and ports)."""
    text = {(s.local, s.lport, s.remote, s.rport): s for s in plain_sockets()}
    seen = 0
    for kind, batch in frames():
        if kind != b"A":
            continue
        for offset, length, mtype in wire.messages(batch, len(batch)):
            if mtype != wire.SOCK_DIAG_BY_FAMILY:
                continue
            record = wire.decode_socket(batch, offset, length)
            local = sock_address(record.family, record.src)
            remote = sock_address(record.family, record.dst)
            line = text[(local, record.sport, remote, record.dport)]
            seen += 1
            assert {1: "ESTABLISHED", 5: "FIN_WAIT2", 6: "TIME_WAIT", 8: "CLOSE_WAIT", 10: "LISTEN"}[
                record.state
            ] == line.state
            assert (record.inode, record.uid, record.timer, record.retrans) == (
                line.inode,
                line.uid,
                line.timer,
                line.retransmits,
            )
            if record.state == LISTEN:
                assert record.rqueue == line.rx_queue
            else:
                assert (record.rqueue, record.wqueue) == (line.rx_queue, line.tx_queue)
    assert seen == len(text)


def sock_address(family: int, raw: bytes) -> str:
    import ipaddress

    address = ipaddress.ip_address(raw[:4] if family == AF_INET else raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def test_attributes_after_a_socket_are_named() -> None:
    attrs = attribute(8, b"\x01") + attribute(21, struct.pack("=Q", 99)) + attribute(200, b"")
    data = message(ESTABLISHED, 443, 50000, attrs=attrs)
    assert wire.socket_attributes(data, 0, len(data)) == {
        "SHUTDOWN": b"\x01",
        "CGROUP_ID": struct.pack("=Q", 99),
        "TYPE_200": b"",
    }


@pytest.mark.parametrize(
    ("attrs", "says"),
    [
        (struct.pack("=HH", 3, 8), "length 3"),  # shorter than its own header
        (struct.pack("=HH", 12, 8) + b"\1\2\3\4", "length 12"),  # longer than what is left
        (attribute(8, b"\1") + struct.pack("=HH", 0, 1), "length 0"),  # nla_len 0 would never advance
    ],
)
def test_a_malformed_attribute_is_refused(attrs: bytes, says: str) -> None:
    data = message(ESTABLISHED, 443, 50000, attrs=attrs)
    with pytest.raises(SourceUnavailable, match=f"malformed netlink attribute: {says}"):
        wire.socket_attributes(data, 0, len(data))


def test_trailing_bytes_shorter_than_an_attribute_header_are_padding() -> None:
    data = message(ESTABLISHED, 443, 50000, attrs=attribute(8, b"\1") + b"\0\0")
    assert wire.socket_attributes(data, 0, len(data)) == {"SHUTDOWN": b"\x01"}


# ---- batches ------------------------------------------------------------------------------------------------------


def test_uniform_batch_is_read_in_one_go_and_done_ends_the_dump() -> None:
    batch = b"".join(message(TIME_WAIT, 40000 + i, 443, dst=b"\x0a\0\0\x01", inode=0) for i in range(5))
    complete, rows = _rows(batch + done())
    assert complete is True
    assert rows == [(TIME_WAIT, 40000 + i, 443, 0x7F000001, 0x0A000001, 0) for i in range(5)]


def test_mixed_record_sizes_are_stepped_through_one_by_one() -> None:
    batch = (
        message(ESTABLISHED, 443, 50000, attrs=attribute(8, b"\0"))
        + message(FIN_WAIT2, 443, 50001, inode=0)
        + message(CLOSE_WAIT, 443, 50002, attrs=attribute(8, b"\0"))
    )
    complete, rows = _rows(batch)
    assert complete is False
    assert [row[0] for row in rows] == [ESTABLISHED, FIN_WAIT2, CLOSE_WAIT]
    assert rows[1][5] == 0 and rows[0][5] != 0


def test_a_message_of_another_type_among_same_length_sockets_is_not_counted() -> None:
    sockets = [message(TIME_WAIT, 40000 + i, 443) for i in range(4)]
    noop = bytearray(sockets[1])
    noop[4:6] = struct.pack("=H", 1)  # NLMSG_NOOP, same length as its neighbours
    complete, rows = _rows(b"".join([sockets[0], bytes(noop), *sockets[2:]]) + done())
    assert complete is True and [row[1] for row in rows] == [40000, 40002, 40003]


def test_an_error_message_without_its_error_code_is_refused() -> None:
    short_error = struct.pack("=IHHII", 16, NLMSG_ERROR, 0, 1, 0)
    with pytest.raises(SourceUnavailable, match="without its error code"):
        _rows(short_error)
    assert _rows(struct.pack("=IHHII", 16, NLMSG_DONE, 2, 1, 0)) == (True, [])  # a DONE may come without one


def test_kernel_error_makes_netlink_unavailable_with_the_errno_in_words() -> None:
    with pytest.raises(SourceUnavailable, match=r"no such file or directory \(ENOENT\) to the TCP dump request"):
        _rows(done(-2, NLMSG_ERROR))
    with pytest.raises(SourceUnavailable, match=r"operation not permitted \(EPERM\)"):
        _rows(done(-1, NLMSG_DONE))


def test_a_message_longer_than_what_was_received_is_refused_even_if_the_buffer_holds_more() -> None:
    whole = b"".join(message(TIME_WAIT, 40000 + i, 443) for i in range(3))
    with pytest.raises(SourceUnavailable, match="malformed netlink reply"):
        _rows(whole, size=len(whole) - 8)  # the bytes after ``size`` are stale: never read them


@pytest.mark.timeout(20)
def test_an_empty_receive_ends_the_dump_with_an_error_not_a_loop() -> None:
    with pytest.raises(SourceUnavailable, match="ended without NLMSG_DONE"):
        reader.read_netlink((32768, 60999), opener=lambda: Replay([]))  # the listener request, then nothing


@pytest.mark.timeout(20)
def test_a_truncated_capture_is_the_readers_own_error() -> None:
    recorded = frames()
    for cut in range(1, len(recorded)):
        with pytest.raises(SourceUnavailable):
            reader.read_netlink((32768, 60999), opener=lambda: Replay(recorded[:cut]))  # noqa: B023


# ---- hostile replies ----------------------------------------------------------------------------------------------

_pieces = st.one_of(
    st.builds(
        lambda state, attrs: message(state, 443, 50000, attrs=attrs),
        st.integers(0, 255),
        st.sampled_from([b"", attribute(8, b"\0"), attribute(21, bytes(8)), b"\1\2\3"]),
    ),
    st.just(done()),
    st.builds(lambda code: done(code, NLMSG_ERROR), st.integers(-200, 0)),
    st.binary(max_size=48),
)


@st.composite
def replies(draw: st.DrawFn) -> tuple[bytes, int]:
    """A batch built from messages, done/error and garbage, with a few bytes overwritten, cut anywhere."""
    data = bytearray(b"".join(draw(st.lists(_pieces, max_size=8))))
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data), draw(st.integers(0, len(data)))


def _outcome(buf: bytes, size: int) -> tuple[Any, ...]:
    rows: list[tuple[Any, ...]] = []
    try:
        complete = wire.parse_batch(buf, size, reader.RECORDS[AF_INET], rows)
    except SourceUnavailable as exc:
        return ("refused", str(exc), rows)
    return ("read", complete, rows)


@seed(FUZZ_SEED)
@FUZZ
@given(replies(), st.binary(min_size=200, max_size=200))
def test_any_reply_is_read_or_refused_and_bytes_past_size_are_never_looked_at(
    reply: tuple[bytes, int], stale: bytes
) -> None:
    data, size = reply
    received = data[:size]
    assert _outcome(received + stale, size) == _outcome(received + bytes(200), size)


@seed(FUZZ_SEED)
@FUZZ
@given(replies())
def test_any_reply_decoded_socket_by_socket_is_read_or_refused(reply: tuple[bytes, int]) -> None:
    data, size = reply
    try:
        for offset, length, mtype in wire.messages(data, size):
            assert offset >= 0 and offset + length <= size
            if mtype == wire.SOCK_DIAG_BY_FAMILY:
                wire.decode_socket(data, offset, length)
                for name, payload in wire.socket_attributes(data, offset, length).items():
                    assert name and len(payload) <= length
            elif mtype in (NLMSG_DONE, NLMSG_ERROR):
                wire.check_end(data, offset, length, mtype)
    except SourceUnavailable:
        pass


@seed(FUZZ_SEED)
@FUZZ
@given(st.binary(max_size=64), st.binary(min_size=16, max_size=16))
def test_any_attribute_bytes_are_read_or_refused_within_their_bounds(data: bytes, stale: bytes) -> None:
    def read(buf: bytes) -> tuple[Any, ...]:
        try:
            return ("read", [(kind, bytes(payload)) for kind, payload in wire.attributes(buf, 0, len(data))])
        except SourceUnavailable as exc:
            return ("refused", str(exc))

    assert read(data + stale) == read(data + bytes(16))
