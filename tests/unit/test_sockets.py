"""Socket readers and parsers against captured kernel output (tests/fixtures/sockets, see capture.py there)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from tcptune import sockets
from tcptune.errors import LiveStateError
from tcptune.sockets import (
    CLOSE_WAIT,
    ESTABLISHED,
    FIN_WAIT2,
    LISTEN,
    NLMSG_DONE,
    NLMSG_ERROR,
    OUT,
    SOCK_DIAG_BY_FAMILY,
    TIME_WAIT,
    Evidence,
    SocketCounts,
    SourceUnavailable,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
EPHEMERAL = tuple(EXPECTED["ephemeral"])
FRAME = struct.Struct("=cI")


class Replay:
    """A netlink socket that plays back a captured exchange and checks each request is the one recorded."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        self.frames: list[tuple[bytes, bytes]] = []
        offset = 0
        while offset < len(data):
            kind, size = FRAME.unpack_from(data, offset)
            offset += FRAME.size
            self.frames.append((kind, data[offset : offset + size]))
            offset += size
        self.closed = False

    def send(self, request: bytes) -> int:
        kind, recorded = self.frames.pop(0)
        assert kind == b"Q" and request == recorded
        return len(request)

    def recv_into(self, buf: bytearray) -> int:
        kind, batch = self.frames.pop(0)
        assert kind == b"A"
        buf[: len(batch)] = batch
        return len(batch)

    def close(self) -> None:
        self.closed = True


def _view(counts: SocketCounts) -> dict[str, object]:
    port_range = f"{EPHEMERAL[0]} {EPHEMERAL[1]}"
    data = sockets.status_dict(Evidence(counts=counts, sysctls={"net.ipv4.ip_local_port_range": port_range}), top=50)
    view = {key: data[key] for key in ("total", "states", "by_port", "by_remote", "endpoints", "listeners")}
    view["fin_wait2_orphans"] = counts.fin_wait2_orphans
    return view


def _message(
    state: int, sport: int, dport: int, src: int, dst: int, inode: int = 1, attrs: int = 0, family: int = 2
) -> bytes:
    """One sock_diag record as the kernel sends it (IPv4), with ``attrs`` bytes of attributes after it."""
    body = struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
    body += struct.pack(">I12x", src) + struct.pack(">I12x", dst) + struct.pack("=I8xIIIII", 0, 0, 0, 0, 0, inode)
    length = 16 + len(body) + attrs
    return struct.pack("=IHHII", length, SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body + bytes(attrs)


def _done(code: int = 0, kind: int = NLMSG_DONE) -> bytes:
    return struct.pack("=IHHIIi", 20, kind, 2, 1, 0, code)


# ---- netlink ------------------------------------------------------------------------------------------------------


def test_netlink_replay_gives_the_counts_tcptune_saw_live() -> None:
    replay = Replay(FIXTURES / "netlink.bin")
    counts = sockets.read_netlink(EPHEMERAL, opener=lambda: replay)
    assert _view(counts) == EXPECTED["status"]
    assert replay.closed and not replay.frames


def test_captured_scenario_has_the_known_numbers() -> None:
    status = EXPECTED["status"]
    # 5 v4 + 2 v6 established pairs; 7 TIME_WAIT; 3 CLOSE_WAIT + 4 FIN_WAIT2 scenarios; 2 half-closed; 6 listeners
    assert status["states"]["ESTABLISHED"] == 14
    assert status["states"]["TIME_WAIT"] == 7
    assert status["states"]["CLOSE_WAIT"] == 3 + 4 + 2
    assert status["states"]["FIN_WAIT2"] == 3 + 4 + 2
    assert status["states"]["LISTEN"] == 6
    assert status["fin_wait2_orphans"] == 3 + 4


def test_uniform_batch_is_read_in_one_go_and_done_ends_the_dump() -> None:
    batch = b"".join(_message(TIME_WAIT, 40000 + i, 443, 0x7F000001, 0x0A000001, inode=0) for i in range(5))
    rows: list[tuple[object, ...]] = []
    assert sockets.parse_batch(batch + _done(), len(batch) + 20, sockets.AF_INET, rows) is True
    assert [row[:3] for row in rows] == [(TIME_WAIT, 40000 + i, 443) for i in range(5)]
    assert rows[0][3:5] == (0x7F000001, 0x0A000001)


def test_mixed_record_sizes_are_stepped_through_one_by_one() -> None:
    batch = (
        _message(ESTABLISHED, 443, 50000, 1, 2, attrs=16)
        + _message(FIN_WAIT2, 443, 50001, 1, 2, inode=0)
        + _message(CLOSE_WAIT, 443, 50002, 1, 2, attrs=16)
    )
    rows: list[tuple[object, ...]] = []
    assert sockets.parse_batch(batch, len(batch), sockets.AF_INET, rows) is False
    assert [row[0] for row in rows] == [ESTABLISHED, FIN_WAIT2, CLOSE_WAIT]
    assert rows[1][5] == 0 and rows[0][5] != 0


def test_kernel_error_makes_netlink_unavailable_with_the_errno_in_words() -> None:
    with pytest.raises(SourceUnavailable, match=r"no such file or directory \(ENOENT\)"):
        sockets.parse_batch(_done(-2, NLMSG_ERROR), 20, sockets.AF_INET, [])


def test_fold_counts_outgoing_under_the_remote_port_and_listener_ports_as_incoming() -> None:
    tally = sockets._Tally((32768, 60999))
    tally.listener(40000, 0x7F000001, 0, 128, 9)  # a service listening inside the ephemeral range
    rows = [
        (ESTABLISHED, 40000, 55555, 0x7F000001, 0x0A000001, 7),  # accepted on the listener: incoming
        (TIME_WAIT, 50000, 5432, 0x7F000001, 0x0A000002, 0),  # outgoing to :5432
        (TIME_WAIT, 50001, 5432, 0x7F000001, 0x0A000002, 0),
        (CLOSE_WAIT, 8080, 33333, 0x7F000001, 0x0A000003, 8),  # local port outside the range: incoming
        (FIN_WAIT2, 50002, 80, 0x7F000001, 0x0A000004, 0),  # orphaned
        (FIN_WAIT2, 50003, 80, 0x7F000001, 0x0A000004, 12),  # still held
    ]
    tally.fold(rows)
    counts = tally.counts()
    assert counts.ports[40000][ESTABLISHED] == 1 and counts.ports[40000][LISTEN] == 1
    assert counts.ports[5432 | OUT][TIME_WAIT] == 2
    assert counts.ports[8080][CLOSE_WAIT] == 1
    assert counts.endpoints[(0x7F000001, 0x0A000002, 5432)][TIME_WAIT] == 2
    assert counts.remotes[0x0A000004][FIN_WAIT2] == 2
    assert counts.fin_wait2_orphans == 1
    assert counts.total == 7


# ---- /proc/net fallback -------------------------------------------------------------------------------------------


def test_proc_fallback_counts_the_same_sockets_as_netlink() -> None:
    view = _view(sockets.read_proc(str(FIXTURES), EPHEMERAL))
    expected = dict(EXPECTED["status"])
    # /proc/net/tcp does not show a listener's backlog
    assert [(x["address"], x["port"]) for x in view.pop("listeners")] == [
        (x["address"], x["port"]) for x in expected.pop("listeners")
    ]
    assert view == expected


def test_proc_addresses_become_the_netlink_key_form() -> None:
    assert sockets.proc_address(b"0100007F") == 0x7F000001
    assert sockets.format_address(sockets.proc_address(b"00000000000000000000000001000000")) == "::1"
    assert sockets.format_address(sockets.proc_address(b"0000000000000000FFFF00000100007F")) == "::ffff:127.0.0.1"


def test_missing_proc_files_are_an_error_the_user_can_act_on(tmp_path: Path) -> None:
    with pytest.raises(LiveStateError, match="neither"):
        sockets.read_proc(str(tmp_path), EPHEMERAL)


def test_auto_source_falls_back_to_proc_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> object:
        raise SourceUnavailable("operation not permitted (EPERM)")

    monkeypatch.setattr(sockets, "_open_netlink", refuse)
    counts, used, note = sockets.count_sockets("auto", str(FIXTURES), EPHEMERAL)
    assert (used, note) == ("proc", "operation not permitted (EPERM)")
    assert counts.total == EXPECTED["status"]["total"]
    evidence = Evidence(counts=counts, source=used, source_note=note)
    assert sockets.source_label(evidence) == "/proc/net/tcp (netlink unavailable: operation not permitted (EPERM))"
    with pytest.raises(LiveStateError, match="netlink is unavailable"):
        sockets.count_sockets("netlink", str(FIXTURES), EPHEMERAL)


# ---- counters, sockstat, sysctls ----------------------------------------------------------------------------------


def test_counter_tables_pair_names_with_values() -> None:
    counters = sockets.parse_counter_table(
        "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 0 17\nIpExt: InNoRoutes\nIpExt: 3\n"
    )
    assert counters == {"TcpExt.SyncookiesSent": 0, "TcpExt.ListenOverflows": 17, "IpExt.InNoRoutes": 3}
    real = sockets.read_counters(str(FIXTURES))
    assert "TcpExt.ListenOverflows" in real and "Tcp.ActiveOpens" in real


def test_sockstat_gives_the_kernels_own_totals() -> None:
    assert sockets.parse_sockstat("TCP: inuse 26 orphan 3 tw 14 alloc 32 mem 82\n") == {
        "inuse": 26,
        "orphan": 3,
        "tw": 14,
        "alloc": 32,
        "mem": 82,
    }
    stats = sockets.read_sockstat(str(FIXTURES))
    assert stats["tw"] == 14 and "inuse6" in stats


def test_evidence_from_trees_reads_sysctls_and_takes_deltas() -> None:
    first = sockets.take_evidence(proc_root=str(FIXTURES / "proc_sys"), proc_net=str(FIXTURES), source="proc")
    assert first.port_range == EPHEMERAL
    assert first.sysctls["net.ipv4.tcp_max_orphans"] is None  # absent in a child namespace
    assert first.deltas is None
    second = sockets.take_evidence(
        proc_root=str(FIXTURES / "proc_sys"), proc_net=str(FIXTURES), source="proc", previous=first
    )
    assert second.deltas is not None and set(second.deltas.values()) == {0}
    assert second.window is not None and second.window >= 0


# ---- owners ---------------------------------------------------------------------------------------------------------


def _fake_proc(tmp_path: Path, owners: dict[int, tuple[str, list[int]]]) -> Path:
    for pid, (name, inodes) in owners.items():
        fd_dir = tmp_path / str(pid) / "fd"
        fd_dir.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_text(name + "\n")
        for fd, inode in enumerate(inodes, start=3):
            os.symlink(f"socket:[{inode}]", fd_dir / str(fd))
        os.symlink("/dev/null", fd_dir / "0")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_owners_are_found_from_fd_links(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {101: ("nginx", [5, 6]), 202: ("java", [7])})
    assert sockets.find_owners([6, 7, 99], str(proc)) == {6: (101, "nginx"), 7: (202, "java")}


def test_close_wait_owners_are_looked_up_only_for_piled_up_ports(tmp_path: Path) -> None:
    evidence = sockets.take_evidence(proc_root=str(FIXTURES / "proc_sys"), proc_net=str(FIXTURES), source="proc")
    # the scenario's CLOSE_WAIT server port is 7002 (0x1B5A); hand its sockets' inodes to a fake process
    inodes = [
        int(line.split()[9])
        for line in (FIXTURES / "tcp").read_text().splitlines()[1:]
        if line.split()[3] == "08" and line.split()[1].endswith(":1B5A")
    ]  # 0x1B5A = 7002
    assert len(inodes) == 3
    proc = _fake_proc(tmp_path, {4242: ("leaky", inodes)})
    owners = sockets.lookup_owners(evidence, CLOSE_WAIT, 3, 3, str(FIXTURES), str(proc))
    # 7003 out (the clients left in CLOSE_WAIT by the FIN_WAIT2 scenario) piles up too, but no fake process holds it
    assert owners == {7002: [sockets.Owner(4242, "leaky", 3)], 7003 | OUT: []}
    assert sockets.lookup_owners(evidence, CLOSE_WAIT, 100, 3, str(FIXTURES), str(proc)) == {}


# ---- the status view ------------------------------------------------------------------------------------------------


def test_status_view_is_bounded_by_top_and_filtered_by_port() -> None:
    evidence = sockets.take_evidence(proc_root=str(FIXTURES / "proc_sys"), proc_net=str(FIXTURES), source="proc")
    assert len(sockets.status_dict(evidence, top=2)["by_port"]) == 2
    rows = sockets.status_dict(evidence, ports=[7002])["by_port"]
    assert {(r["port"], r["direction"]) for r in rows} == {(7002, "in"), (7002, "out")}
    assert next(r for r in rows if r["direction"] == "in")["states"] == {"CLOSE_WAIT": 3, "LISTEN": 1}
