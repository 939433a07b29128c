"""release: filters as ss users write them, selection on socket records, destroy requests on the wire, and the
command against a stand-in kernel (a netlink socket that answers dumps and destroy requests from a socket table).
The real kernel is exercised in tests/integration/test_release_netns.py."""

from __future__ import annotations

import errno
import json
import struct

import pytest

from tcptune import release as rel
from tcptune.cli import run
from tcptune.sockets import netlink, wire
from tcptune.sockets.wire import SocketRecord
from tests.unit.sock_diag_fixture import NLMSG_ERROR, done, message

AF_INET, AF_INET6 = 2, 10
ESTABLISHED, SYN_RECV, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LISTEN = 1, 3, 5, 6, 8, 10
V4 = bytes([127, 0, 0, 1]).ljust(16, b"\0")
V4_PEER = bytes([127, 0, 0, 2]).ljust(16, b"\0")
V6 = bytes(15) + b"\x01"
MAPPED = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])


def record(
    state: int,
    sport: int,
    dport: int,
    *,
    family: int = AF_INET,
    src: bytes = V4,
    dst: bytes = V4_PEER,
    inode: int = 0,
    timer: int = 0,
    expires: int = 0,
    cookie: int = 1,
) -> SocketRecord:
    return SocketRecord(
        family, state, timer, 0, sport, dport, src, dst, 0, cookie.to_bytes(8, "little"), expires, 0, 0, 0, inode
    )


# ---- the filter as typed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("close-wait", CLOSE_WAIT),
        ("CLOSE_WAIT", CLOSE_WAIT),
        ("fin-wait-2", FIN_WAIT2),
        ("finwait2", FIN_WAIT2),
        ("time-wait", TIME_WAIT),
        ("established", ESTABLISHED),
        ("syn-recv", SYN_RECV),
        ("listening", LISTEN),
        ("LISTEN", LISTEN),
    ],
)
def test_states_are_named_as_ss_and_tcptune_name_them(word: str, state: int) -> None:
    assert rel.parse_state(word) == state


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--state", "half-open"], "--state: unknown state 'half-open'"),
        (["--sport", "http"], "--sport: 'http' is not a port or a range of ports"),
        (["--dport", "90-80"], "--dport: '90-80' is not a port range within 0-65535"),
        (["--sport", "70000"], "--sport: '70000' is not a port range within 0-65535"),
        (["--dst", "10.0.0.0/33"], "--dst: '10.0.0.0/33' is not an IP address or CIDR block"),
        (["--older-than", "soon"], "--older-than: expected a number"),
        (["--older-than", "1.5s"], "--older-than: '1.5s' is not a whole number of seconds"),
        (["--pid", "0"], "--pid: process ids are positive numbers"),
        ([], "release needs a filter"),
        (["--format", "json"], "release needs a filter"),
        (["--state", "listening"], "listening sockets are destroyed only with --include-listeners"),
    ],
)
def test_a_bad_or_empty_filter_is_one_line_and_exit_64(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["release", *argv]) == 64
    err = capsys.readouterr().err
    assert err.startswith("tcptune: error: ") and says in err and len(err.strip().splitlines()) == 1


def test_port_ranges_addresses_and_ages_parse() -> None:
    selector = rel.Selector.parse(
        sports=["80", "8000-8100"], dst=["10.0.0.0/8", "[::1]"], older_than="2m", pids=[7], processes=["nginx"]
    )
    assert selector.sports == ((80, 80), (8000, 8100))
    assert [str(n) for n in selector.dst] == ["10.0.0.0/8", "::1/128"]
    assert [str(n) for n in rel.Selector.parse(src=["::ffff:10.1.2.0/120"]).src] == ["10.1.2.0/24"]
    assert selector.older_than == 120.0
    assert selector.describe() == "sport 80,8000-8100, dst 10.0.0.0/8,::1/128, pid 7, process nginx, older than 120 s"


# ---- selection ----------------------------------------------------------------------------------------------------


def _picked(records: list[SocketRecord], owners: dict[int, tuple[int, str]] | None = None, **filters: object) -> list:
    selection = rel.select(records, rel.Selector.parse(**filters), owners)  # type: ignore[arg-type]
    return [(c.record.state, c.record.sport, c.record.dport) for c in selection.matched]


def test_every_criterion_must_hold_and_values_of_one_are_alternatives() -> None:
    records = [
        record(CLOSE_WAIT, 8080, 40001),
        record(CLOSE_WAIT, 8081, 40002),
        record(ESTABLISHED, 8080, 40003),
        record(TIME_WAIT, 40004, 8080),
    ]
    assert _picked(records, states=["close-wait"]) == [(CLOSE_WAIT, 8080, 40001), (CLOSE_WAIT, 8081, 40002)]
    assert _picked(records, states=["close-wait"], sports=["8080"]) == [(CLOSE_WAIT, 8080, 40001)]
    assert _picked(records, sports=["8080", "8081"]) == [
        (CLOSE_WAIT, 8080, 40001),
        (CLOSE_WAIT, 8081, 40002),
        (ESTABLISHED, 8080, 40003),
    ]
    assert _picked(records, dports=["8000-8999"]) == [(TIME_WAIT, 40004, 8080)]
    assert _picked(records, states=["close-wait", "time-wait"], dports=["8080"]) == [(TIME_WAIT, 40004, 8080)]


def test_addresses_match_by_cidr_and_family_and_mapped_ipv4_matches_ipv4_blocks() -> None:
    records = [
        record(ESTABLISHED, 1, 2, dst=bytes([10, 1, 2, 3]).ljust(16, b"\0")),
        record(ESTABLISHED, 3, 4, family=AF_INET6, src=V6, dst=V6),
        record(ESTABLISHED, 5, 6, family=AF_INET6, src=MAPPED, dst=MAPPED),
    ]
    assert _picked(records, dst=["10.0.0.0/8"]) == [(ESTABLISHED, 1, 2), (ESTABLISHED, 5, 6)]
    assert _picked(records, dst=["::1"]) == [(ESTABLISHED, 3, 4)]
    assert _picked(records, src=["127.0.0.0/8"]) == [(ESTABLISHED, 1, 2)]
    assert _picked(records, src=["::/0"]) == [(ESTABLISHED, 3, 4)]


def test_owner_filters_match_held_sockets_only_and_names_as_the_kernel_cuts_them() -> None:
    records = [record(CLOSE_WAIT, 80, 1, inode=11), record(CLOSE_WAIT, 80, 2, inode=12), record(FIN_WAIT2, 80, 3)]
    owners = {11: (100, "java"), 12: (200, "a-very-long-pro")}  # comm keeps 15 characters
    assert _picked(records, owners, pids=[100]) == [(CLOSE_WAIT, 80, 1)]
    assert _picked(records, owners, processes=["a-very-long-process-name"]) == [(CLOSE_WAIT, 80, 2)]
    assert _picked(records, owners, processes=["jav"]) == []
    assert _picked(records, owners, sports=["80"]) == [(CLOSE_WAIT, 80, 1), (CLOSE_WAIT, 80, 2), (FIN_WAIT2, 80, 3)]


def test_only_time_wait_has_an_age_and_others_are_counted_as_unknown() -> None:
    records = [
        record(TIME_WAIT, 1, 9, timer=3, expires=59_000),  # 1 s old
        record(TIME_WAIT, 2, 9, timer=3, expires=20_000),  # 40 s old
        record(FIN_WAIT2, 3, 9, timer=3, expires=20_000),  # orphan: its timer's length is not known
        record(CLOSE_WAIT, 4, 9),
    ]
    selection = rel.select(records, rel.Selector.parse(dports=["9"], older_than="30s"))
    assert [(c.record.sport, round(c.age or 0)) for c in selection.matched] == [(2, 40)]
    assert selection.age_unknown == 2


def test_listeners_are_left_alone_and_counted_unless_included() -> None:
    records = [record(LISTEN, 80, 0), record(ESTABLISHED, 80, 5)]
    selection = rel.select(records, rel.Selector.parse(sports=["80"]))
    assert [c.record.state for c in selection.matched] == [ESTABLISHED] and selection.listeners_skipped == 1
    selection = rel.select(records, rel.Selector.parse(sports=["80"], include_listeners=True))
    assert [c.record.state for c in selection.matched] == [LISTEN, ESTABLISHED] and selection.listeners_skipped == 0
    selection = rel.select(records, rel.Selector.parse(states=["listening"], include_listeners=True))
    assert [c.record.state for c in selection.matched] == [LISTEN]


# ---- the destroy request on the wire ------------------------------------------------------------------------------


def test_a_destroy_request_repeats_the_sockets_whole_id_and_asks_for_an_ack() -> None:
    sock = record(CLOSE_WAIT, 8080, 40001, family=AF_INET6, src=V6, dst=MAPPED, cookie=0x1122334455667788)
    sock = sock._replace(interface=3)
    request = wire.destroy_request(sock, seq=77)
    length, kind, flags, seq = struct.unpack_from("=IHHI", request)
    assert (length, kind, flags, seq) == (16 + 56, 21, 0x1 | 0x4, 77)  # SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK
    family, protocol = struct.unpack_from("=BB", request, 16)
    assert (family, protocol) == (AF_INET6, 6)
    sport, dport = struct.unpack_from(">HH", request, 16 + 8)  # inet_diag_sockid starts after 8 bytes
    assert (sport, dport) == (8080, 40001)
    assert request[16 + 12 : 16 + 28] == V6 and request[16 + 28 : 16 + 44] == MAPPED
    assert struct.unpack_from("=I", request, 16 + 44)[0] == 3
    assert request[16 + 48 : 16 + 56] == (0x1122334455667788).to_bytes(8, "little")


def _ack(seq: int, code: int) -> bytes:
    return struct.pack("=IHHIIi", 36, NLMSG_ERROR, 0, seq, 0, code) + bytes(16)


def test_acknowledgements_are_read_for_their_own_request_only() -> None:
    batch = _ack(5, -errno.ENOENT) + _ack(6, 0)
    assert wire.acknowledgement(batch, len(batch), 6) == 0
    assert wire.acknowledgement(batch, len(batch), 5) == errno.ENOENT
    assert wire.acknowledgement(batch, len(batch), 7) is None
    with pytest.raises(wire.SourceUnavailable):
        short = struct.pack("=IHHII", 16, NLMSG_ERROR, 0, 5, 0)
        wire.acknowledgement(short, len(short), 5)


# ---- a stand-in kernel --------------------------------------------------------------------------------------------


class StandInKernel:
    """A netlink socket answering SOCK_DIAG_BY_FAMILY dumps and SOCK_DESTROY requests from a socket table.
    ``refuse`` is the errno every destroy request gets (EPERM: no capability; EOPNOTSUPP: no kernel support)."""

    def __init__(self, sockets: list[SocketRecord], refuse: int = 0) -> None:
        self.sockets = list(sockets)
        self.refuse = refuse
        self.pending: list[bytes] = []
        self.destroyed: list[SocketRecord] = []

    def send(self, request: bytes) -> int:
        _length, kind, _flags, seq = struct.unpack_from("=IHHI", request)
        family, _protocol, _ext, states = struct.unpack_from("=BBBxI", request, 16)
        if kind == 20:
            batch = b"".join(
                message(
                    s.state,
                    s.sport,
                    s.dport,
                    s.src,
                    s.dst,
                    family=s.family,
                    timer=s.timer,
                    expires=s.expires,
                    cookie=s.cookie,
                    inode=s.inode,
                )
                for s in self.sockets
                if s.family == family and states >> s.state & 1
            )
            self.pending.append(batch + done())
        else:
            sport, dport = struct.unpack_from(">HH", request, 24)
            cookie = request[64:72]
            hit = [s for s in self.sockets if (s.family, s.sport, s.dport, s.cookie) == (family, sport, dport, cookie)]
            # like the kernel: no destroy handler at all comes first, then the lookup, then the capability check
            code = errno.EOPNOTSUPP if self.refuse == errno.EOPNOTSUPP else self.refuse if hit else errno.ENOENT
            if hit and not code:
                self.sockets.remove(hit[0])
                self.destroyed.append(hit[0])
            self.pending.append(_ack(seq, -code))
        return len(request)

    def recv_into(self, buf: bytearray) -> int:
        batch = self.pending.pop(0)
        buf[: len(batch)] = batch
        return len(batch)

    def close(self) -> None:
        pass


SOCKETS = [
    record(LISTEN, 8080, 0, dst=bytes(16), cookie=1),
    record(CLOSE_WAIT, 8080, 40001, cookie=2),
    record(CLOSE_WAIT, 8080, 40002, cookie=3),
    record(ESTABLISHED, 8080, 40003, cookie=4),
    record(TIME_WAIT, 40004, 9000, timer=3, expires=30_000, cookie=5),
    record(ESTABLISHED, 8080, 40005, family=AF_INET6, src=V6, dst=V6, cookie=6),
]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> StandInKernel:
    stand_in = StandInKernel(SOCKETS)
    monkeypatch.setattr(netlink, "open_netlink", lambda: stand_in)
    return stand_in


def _released(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> dict:
    assert run(["release", *argv, "--format", "json"]) == code
    return json.loads(capsys.readouterr().out)


def test_the_default_is_a_dry_run_that_destroys_nothing(kernel: StandInKernel, capsys) -> None:
    data = _released(capsys, "--state", "close-wait")
    assert data["dry_run"] is True and data["matched"] == 2 and data["outcomes"] == {"would destroy": 2}
    assert [(s["local_port"], s["remote_port"]) for s in data["sockets"]] == [(8080, 40001), (8080, 40002)]
    assert kernel.destroyed == [] and len(kernel.sockets) == len(SOCKETS)


def test_yes_destroys_each_matching_socket_and_counts_again(kernel: StandInKernel, capsys) -> None:
    data = _released(capsys, "--sport", "8080", "--yes")
    assert data["outcomes"] == {"destroyed": 4} and data["remaining"] == 0
    assert sorted(int.from_bytes(s.cookie, "little") for s in kernel.destroyed) == [2, 3, 4, 6]
    assert data["listeners_skipped"] == 1
    assert [s.state for s in kernel.sockets if s.sport == 8080] == [LISTEN]


def test_ipv6_sockets_are_released_like_ipv4_ones(kernel: StandInKernel, capsys) -> None:
    data = _released(capsys, "--src", "::1", "--yes")
    assert [(s["family"], s["local"], s["outcome"]) for s in data["sockets"]] == [("ipv6", "::1", "destroyed")]
    assert [int.from_bytes(s.cookie, "little") for s in kernel.destroyed] == [6]


def test_a_socket_gone_before_its_turn_is_already_gone_and_still_a_success(kernel: StandInKernel, capsys) -> None:
    original = kernel.send

    def racing(request: bytes) -> int:
        if struct.unpack_from("=H", request, 4)[0] == 21:  # the closing process beat us to one of them
            kernel.sockets = [s for s in kernel.sockets if s.cookie != (3).to_bytes(8, "little")]
        return original(request)

    kernel.send = racing  # type: ignore[method-assign]
    data = _released(capsys, "--state", "close-wait", "--yes")
    assert data["outcomes"] == {"destroyed": 1, "already gone": 1}


def test_nothing_matched_is_exit_0_with_a_line_saying_so(kernel: StandInKernel, capsys) -> None:
    assert run(["release", "--state", "fin-wait-2", "--yes"]) == 0
    assert capsys.readouterr().out == "no TCP socket matches state FIN_WAIT2: nothing to release\n"


@pytest.mark.parametrize(
    ("refuse", "says"),
    [
        (errno.EPERM, "needs CAP_NET_ADMIN"),
        (errno.EOPNOTSUPP, "this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY)"),
    ],
)
def test_where_destroying_is_refused_it_says_why_and_what_works_instead(
    kernel: StandInKernel, refuse: int, says: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    kernel.refuse = refuse
    monkeypatch.setattr(rel, "find_owners", lambda inodes, proc: {})
    if refuse == errno.EPERM:
        monkeypatch.setattr(rel, "has_net_admin", lambda proc="/proc": False)
    data = _released(capsys, "--state", "close-wait", "--yes", code=1)
    assert data["destroy_available"] is False and says in data["unavailable_reason"]
    assert data["outcomes"] == {"refused": 2} and kernel.destroyed == []
    assert any(
        line.startswith("CLOSE_WAIT: the peer has closed and the application has not") for line in data["advice"]
    )
    dry = _released(capsys, "--state", "close-wait", code=1)  # the dry run already says it cannot be done
    assert dry["destroy_available"] is False and dry["outcomes"] == {"would destroy": 2}


def test_a_refusal_the_capability_check_did_not_foresee_is_reported_per_socket(kernel: StandInKernel, capsys) -> None:
    kernel.refuse = errno.EPERM  # e.g. root of a user namespace that does not own this network namespace
    data = _released(capsys, "--state", "close-wait", "--yes", code=1)
    assert data["destroy_available"] is True
    assert {(s["outcome"], s["reason"]) for s in data["sockets"]} == {
        ("refused", "needs CAP_NET_ADMIN in this network namespace (run as root)")
    }


def test_owners_of_refused_sockets_are_named_in_the_advice(kernel: StandInKernel, monkeypatch, capsys) -> None:
    kernel.refuse = errno.EOPNOTSUPP
    kernel.sockets = [s._replace(inode=40 + i) for i, s in enumerate(kernel.sockets)]
    monkeypatch.setattr(rel, "find_owners", lambda inodes, proc: {inode: (4242, "leaky") for inode in inodes})
    assert run(["release", "--state", "close-wait", "--yes"]) == 1
    out = capsys.readouterr().out
    assert "cannot destroy sockets here: this kernel cannot destroy sockets" in out
    assert "pid 4242 (leaky) holds 2 CLOSE_WAIT" in out
    assert "4242 (leaky)" in out.splitlines()[2]  # the table's first row names the owner


def test_the_text_table_shows_state_endpoints_owner_age_and_action(kernel: StandInKernel, capsys) -> None:
    assert run(["release", "--dport", "9000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 TCP socket(s) match dport 9000 [dry run, nothing destroyed; --yes destroys them]"
    assert lines[1].split() == ["STATE", "LOCAL", "REMOTE", "PROCESS", "AGE", "ACTION"]
    assert lines[2].split() == ["TIME_WAIT", "127.0.0.1:40004", "127.0.0.2:9000", "-", "30s", "would", "destroy"]
