"""advise: plain evidence values in, findings out. Each test states one rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tcptune import catalog
from tcptune.advise import (
    Finding,
    Thresholds,
    advise,
    profile_name_for,
    profile_text,
    sized_port_range,
    suggested_values,
)
from tcptune.profile import load_profile
from tcptune.sockets import (
    OUT,
    STATE_NUMBER,
    Evidence,
    Listener,
    Owner,
    SocketCounts,
)
from tcptune.validate import validate

LOCAL, REMOTE = 0x0A000001, 0x0A000063  # 10.0.0.1 -> 10.0.0.99
DEFAULT_SYSCTLS = {
    "net.ipv4.ip_local_port_range": "32768 60999",
    "net.ipv4.tcp_max_orphans": "65536",
    "net.ipv4.tcp_max_tw_buckets": "262144",
    "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_timestamps": "1",
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_max_syn_backlog": "1024",
    "net.ipv4.tcp_syncookies": "1",
}


def _row(states: dict[str, int]) -> list[int]:
    row = [0] * 13
    for name, count in states.items():
        row[STATE_NUMBER[name]] = count
    return row


def evidence(
    *,
    ports: dict[tuple[int, str], dict[str, int]] | None = None,
    endpoints: dict[int, dict[str, int]] | None = None,
    fin_wait2_orphans: int = 0,
    sysctls: dict[str, str | None] | None = None,
    sockstat: dict[str, int] | None = None,
    counters: dict[str, int] | None = None,
    deltas: dict[str, int] | None = None,
    listeners: list[Listener] | None = None,
    owners: dict[int, list[Owner]] | None = None,
    peaks: dict[tuple[str, int], int] | None = None,
    remote: int = REMOTE,
) -> Evidence:
    """Evidence from plain numbers: ports as {(port, "in"|"out"): {STATE: n}}, endpoints as {remote port: {...}}."""
    counts = SocketCounts(listeners=listeners or [], fin_wait2_orphans=fin_wait2_orphans)
    for (port, direction), states in (ports or {}).items():
        counts.ports[port | OUT if direction == "out" else port] = _row(states)
    for rport, states in (endpoints or {}).items():
        counts.endpoints[(LOCAL, remote, rport)] = _row(states)
        counts.ports[rport | OUT] = _row(states)
    for row in [*counts.ports.values()]:
        counts.states = [a + b for a, b in zip(counts.states, row)]
    return Evidence(
        counts=counts,
        sysctls={**DEFAULT_SYSCTLS, **(sysctls or {})},
        sockstat=sockstat or {},
        counters=counters or {},
        deltas=deltas,
        window=None if deltas is None else 10.0,
        owners=owners or {},
        listener_peaks=peaks or {},
    )


def only(findings: list[Finding], finding_id: str) -> Finding:
    matches = [f for f in findings if f.id == finding_id]
    assert len(matches) == 1, [f.id for f in findings]
    return matches[0]


def ids(findings: list[Finding]) -> list[str]:
    return [f.id for f in findings]


# ---- CLOSE_WAIT -----------------------------------------------------------------------------------------------------


def test_close_wait_pile_up_names_the_port_and_owner_and_suggests_no_sysctl() -> None:
    ev = evidence(
        ports={(8080, "in"): {"CLOSE_WAIT": 150, "ESTABLISHED": 10}}, owners={8080: [Owner(4242, "java", 150)]}
    )
    finding = only(advise(ev), "close-wait")
    assert finding.numbers == {"close_wait": 150, "port": 8080, "direction": "in"}
    assert finding.suggest == {} and finding.keys == ()
    assert "local port 8080" in finding.title and "pid 4242 (java)" in finding.title
    assert finding.owners == ({"port": 8080, "direction": "in", "pid": 4242, "name": "java", "sockets": 150},)
    assert "no sysctl" in finding.why
    assert finding.commands == ("tcptune release --state close-wait --sport 8080 --yes",)
    assert "No sysctl can" in finding.effect and "ECONNABORTED" in finding.effect


def test_close_wait_owner_unknown_is_said_plainly() -> None:
    finding = only(advise(evidence(ports={(5432, "out"): {"CLOSE_WAIT": 120}})), "close-wait")
    assert "outgoing connections to remote port 5432" in finding.title
    assert "owner unknown" in finding.title
    assert finding.commands == ("tcptune release --state close-wait --dport 5432 --yes",)


def test_close_wait_below_the_minimum_is_not_a_finding() -> None:
    assert advise(evidence(ports={(8080, "in"): {"CLOSE_WAIT": 99}})) == []
    assert ids(advise(evidence(ports={(8080, "in"): {"CLOSE_WAIT": 5}}), Thresholds(min_sockets=5))) == ["close-wait"]


def test_close_wait_ten_times_the_minimum_is_critical() -> None:
    assert only(advise(evidence(ports={(80, "in"): {"CLOSE_WAIT": 1000}})), "close-wait").severity == "critical"


# ---- FIN_WAIT2 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "suggested"),
    [("60", {"net.ipv4.tcp_fin_timeout": "30"}), ("30", {"net.ipv4.tcp_fin_timeout": "15"}), ("10", {})],
)
def test_orphaned_fin_wait2_shortens_tcp_fin_timeout_in_steps(current: str, suggested: dict[str, str]) -> None:
    ev = evidence(
        ports={(443, "in"): {"FIN_WAIT2": 500}}, fin_wait2_orphans=500, sysctls={"net.ipv4.tcp_fin_timeout": current}
    )
    finding = only(advise(ev), "fin-wait2-orphans")
    assert finding.suggest == suggested
    assert finding.numbers["fin_wait2_orphans"] == 500
    assert finding.numbers["ports"] == [{"port": 443, "direction": "in", "fin_wait2": 500}]
    assert "does not shorten TIME_WAIT" in finding.why
    assert finding.commands == ("tcptune release --state fin-wait-2 --sport 443 --yes",)


def test_a_shorter_fin_timeout_says_how_many_orphans_remain() -> None:
    ev = evidence(ports={(443, "in"): {"FIN_WAIT2": 500}}, fin_wait2_orphans=500)
    assert "freed after 30 s instead of 60 s" in only(advise(ev), "fin-wait2-orphans").effect
    assert "about 250 of them at a time instead of 500" in only(advise(ev), "fin-wait2-orphans").effect


def test_fin_wait2_held_by_an_application_is_not_tcp_fin_timeouts_business() -> None:
    findings = advise(evidence(ports={(443, "in"): {"FIN_WAIT2": 300}}, fin_wait2_orphans=0))
    finding = only(findings, "fin-wait2-held")
    assert finding.severity == "info" and finding.suggest == {} and finding.keys == ()
    assert "fin-wait2-orphans" not in ids(findings)


# ---- TIME_WAIT and local ports --------------------------------------------------------------------------------------


def test_many_time_wait_sockets_alone_are_reported_as_normal() -> None:
    ev = evidence(endpoints={5432: {"TIME_WAIT": 3000}}, sockstat={"tw": 3000})
    finding = only(advise(ev), "time-wait-normal")
    assert finding.severity == "info" and finding.suggest == {}
    assert "no sysctl shortens it" in finding.why


def test_time_wait_heavy_endpoint_gets_tw_reuse_and_keeps_a_range_that_suffices_with_it() -> None:
    """17000 TIME_WAIT sockets = 283 closes/s over the last 60 s; with reuse a port is free again after 2 s (a
    kernel without tcp_tw_reuse_delay): 2 x (200 open + 283 x 2) ports are needed, far below 28232."""
    ev = evidence(endpoints={5432: {"TIME_WAIT": 17000, "ESTABLISHED": 200}}, sockstat={"tw": 17000})
    findings = advise(ev)
    finding = only(findings, "ephemeral-ports")
    assert finding.severity == "warning"
    assert finding.suggest == {"net.ipv4.tcp_tw_reuse": "1"}
    assert finding.numbers["in_use"] == 17200 and finding.numbers["capacity"] == 28232
    assert finding.numbers["endpoint"] == "10.0.0.1 -> 10.0.0.99:5432"
    assert finding.numbers["connections_per_second"] == 283.3
    assert finding.numbers["ports_needed"] == 1534 and finding.numbers["rate_is_floor"] is False
    assert "the last 60 s" in finding.window
    assert "28232 local ports" in finding.effect and "EADDRNOTAVAIL" in finding.effect
    assert "time-wait-normal" not in ids(findings)


def test_a_used_up_range_gets_tw_reuse_and_the_wide_range_since_the_demand_is_hidden() -> None:
    """The lab's case: 200 ports, all in TIME_WAIT; failed connects are invisible, so the rate is a floor."""
    ev = evidence(
        endpoints={8080: {"TIME_WAIT": 200}},
        sysctls={"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_tw_reuse_delay": "1000"},
        counters={"Tcp.ActiveOpens": 900},
        deltas={"Tcp.ActiveOpens": 0},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert finding.severity == "critical"
    assert finding.suggest == {"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "10000 65535"}
    assert finding.numbers["rate_is_floor"] is True
    assert "a floor" in finding.effect and "55536 local ports" in finding.effect


def test_the_port_range_is_sized_from_the_measured_connection_rate() -> None:
    """800 new connections/s within the window (Tcp.ActiveOpens), 15000 open, reuse on with a 1 s delay: ports
    needed = 2 x (15000 + 800 x 1) = 31600; the range grows upwards from its low end to hold them."""
    ev = evidence(
        endpoints={443: {"ESTABLISHED": 15000, "TIME_WAIT": 2000}},
        sysctls={"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.tcp_tw_reuse_delay": "1000"},
        counters={"Tcp.ActiveOpens": 10**6},
        deltas={"Tcp.ActiveOpens": 8000},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert finding.numbers["connections_per_second"] == 800.0 and finding.numbers["ports_needed"] == 31600
    assert finding.suggest == {"net.ipv4.ip_local_port_range": "32768 64367"}
    assert "in the last 10.0 s" in finding.window or "the last 10.0 s" in finding.window


def test_without_reuse_a_closed_connections_port_is_held_for_the_whole_time_wait() -> None:
    ev = evidence(
        endpoints={443: {"ESTABLISHED": 15000, "TIME_WAIT": 100}},
        sysctls={"net.ipv4.tcp_tw_reuse": "0"},
        counters={"Tcp.ActiveOpens": 10**6},
        deltas={"Tcp.ActiveOpens": 1000},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert "net.ipv4.tcp_tw_reuse" not in finding.suggest  # TIME_WAIT is a small part of the ports in use
    assert finding.numbers["port_hold_seconds"] == 60.0
    assert finding.numbers["ports_needed"] == 2 * (15000 + 100 * 60)
    assert finding.suggest == {"net.ipv4.ip_local_port_range": "23536 65535"}  # 42000 ports: up to 65535, then down


@pytest.mark.parametrize(
    ("low", "high", "size", "expected"),
    [
        (40000, 40199, 200, (40000, 40199)),
        (40000, 40199, 600, (40000, 40599)),
        (60000, 60999, 10000, (55536, 65535)),
        (32768, 60999, 10**6, (1024, 65535)),
        (40000, 40199, 601, (39999, 40600)),
    ],
)
def test_port_ranges_grow_up_then_down_with_bounds_of_different_parity(
    low: int, high: int, size: int, expected: tuple[int, int]
) -> None:
    assert sized_port_range(low, high, size) == expected


def test_tw_reuse_delay_is_sized_when_even_the_whole_range_cannot_carry_the_rate() -> None:
    """60000 connections/s, every port of 1024-65535 in reach: 64512 / 2 ports per 60000/s -> 537 ms."""
    ev = evidence(
        endpoints={443: {"TIME_WAIT": 40000}},
        sysctls={
            "net.ipv4.ip_local_port_range": "1024 65535",
            "net.ipv4.tcp_tw_reuse": "1",
            "net.ipv4.tcp_tw_reuse_delay": "1000",
        },
        counters={"Tcp.ActiveOpens": 10**7},
        deltas={"Tcp.ActiveOpens": 600000},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert "tcp_tw_reuse_delay = 537 ms" in finding.effect
    if catalog.get("net.ipv4.tcp_tw_reuse_delay") is not None:  # a profile can carry it only once the catalog knows it
        assert finding.suggest == {"net.ipv4.tcp_tw_reuse_delay": "537"}
    else:
        assert finding.suggest == {}


def test_no_reuse_delay_below_100_ms_is_suggested_the_client_must_change() -> None:
    ev = evidence(
        endpoints={443: {"TIME_WAIT": 40000}},
        sysctls={
            "net.ipv4.ip_local_port_range": "1024 65535",
            "net.ipv4.tcp_tw_reuse": "1",
            "net.ipv4.tcp_tw_reuse_delay": "1000",
        },
        counters={"Tcp.ActiveOpens": 10**8},
        deltas={"Tcp.ActiveOpens": 10**7},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert finding.suggest == {} and "spread the connections" in finding.effect


def test_loopback_endpoints_already_reuse_with_the_default_tw_reuse_2() -> None:
    ev = evidence(endpoints={5432: {"TIME_WAIT": 26000}}, remote=0x7F000001)
    assert "net.ipv4.tcp_tw_reuse" not in only(advise(ev), "ephemeral-ports").suggest


def test_tw_reuse_brings_timestamps_along_when_they_are_off() -> None:
    ev = evidence(endpoints={443: {"TIME_WAIT": 26000}}, sysctls={"net.ipv4.tcp_timestamps": "0"})
    finding = only(advise(ev), "ephemeral-ports")
    assert finding.severity == "critical"
    assert finding.suggest["net.ipv4.tcp_timestamps"] == "1"


def test_nothing_is_suggested_that_is_already_in_place() -> None:
    ev = evidence(
        endpoints={443: {"TIME_WAIT": 40000}},
        sysctls={"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 65535"},
    )
    finding = only(advise(ev), "ephemeral-ports")
    assert finding.suggest == {}
    assert finding.effect.startswith("Nothing to change")


def test_established_heavy_endpoint_does_not_suggest_tw_reuse() -> None:
    finding = only(advise(evidence(endpoints={443: {"ESTABLISHED": 20000}})), "ephemeral-ports")
    assert "net.ipv4.tcp_tw_reuse" not in finding.suggest
    assert "net.ipv4.ip_local_port_range" in finding.suggest


def test_time_wait_table_half_full_suggests_doubling_it() -> None:
    ev = evidence(endpoints={443: {"TIME_WAIT": 200}}, sockstat={"tw": 140000})
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.severity == "warning"
    assert finding.suggest == {"net.ipv4.tcp_max_tw_buckets": "524288"}


def test_time_wait_overflows_within_the_window_are_critical() -> None:
    ev = evidence(
        sockstat={"tw": 10}, counters={"TcpExt.TCPTimeWaitOverflow": 500}, deltas={"TcpExt.TCPTimeWaitOverflow": 12}
    )
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.severity == "critical" and "12 times in the last 10.0 s" in finding.title


def test_a_single_time_wait_overflow_in_the_window_counts() -> None:
    ev = evidence(
        sockstat={"tw": 10}, counters={"TcpExt.TCPTimeWaitOverflow": 1}, deltas={"TcpExt.TCPTimeWaitOverflow": 1}
    )
    assert only(advise(ev), "time-wait-buckets").severity == "critical"


def test_tw_buckets_are_sized_from_the_closing_rate() -> None:
    """500 buckets full, 3000 overflows in 10 s: 500/60 + 300 closes/s -> 2 x 308.3 x 60 = 37000 buckets."""
    ev = evidence(
        sockstat={"tw": 500},
        sysctls={"net.ipv4.tcp_max_tw_buckets": "500"},
        counters={"TcpExt.TCPTimeWaitOverflow": 9000},
        deltas={"TcpExt.TCPTimeWaitOverflow": 3000},
    )
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.numbers["closes_per_second"] == 308.3
    assert finding.suggest == {"net.ipv4.tcp_max_tw_buckets": "37000"}
    assert "overflows stop" in finding.effect and finding.window == "the last 10.0 s"


def test_time_wait_overflows_since_boot_are_history_only() -> None:
    findings = advise(evidence(sockstat={"tw": 10}, counters={"TcpExt.TCPTimeWaitOverflow": 12}))
    assert ids(findings) == ["counter-history"]
    assert findings[0].suggest == {} and findings[0].numbers == {"TCPTimeWaitOverflow": 12}


def test_time_wait_above_a_lowered_limit_suggests_twice_the_count() -> None:
    ev = evidence(sockstat={"tw": 300000}, sysctls={"net.ipv4.tcp_max_tw_buckets": "100000"})
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.suggest == {"net.ipv4.tcp_max_tw_buckets": "600000"} and "300.0 %" in finding.title


def test_time_wait_overflow_with_an_unreadable_limit_suggests_nothing() -> None:
    ev = evidence(
        counters={"TcpExt.TCPTimeWaitOverflow": 5},
        deltas={"TcpExt.TCPTimeWaitOverflow": 5},
        sysctls={"net.ipv4.tcp_max_tw_buckets": None},
    )
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.severity == "critical" and finding.suggest == {}
    assert finding.numbers["tcp_max_tw_buckets"] is None


# ---- orphans --------------------------------------------------------------------------------------------------------


def test_orphans_past_a_quarter_of_the_limit_suggest_a_higher_limit() -> None:
    finding = only(advise(evidence(sockstat={"orphan": 20000})), "orphans-near-limit")
    assert finding.numbers["percent"] == 30.5
    assert finding.suggest == {"net.ipv4.tcp_max_orphans": "131072"}
    assert "host-wide" in finding.why


def test_orphan_limit_unreadable_in_a_namespace_means_no_orphan_finding() -> None:
    assert advise(evidence(sockstat={"orphan": 20000}, sysctls={"net.ipv4.tcp_max_orphans": None})) == []


# ---- listen queues, SYN queue, memory ------------------------------------------------------------------------------


def test_listen_overflows_since_boot_are_history_and_suggest_nothing() -> None:
    """The ratchet: after applying somaxconn 16384, the since-boot total must not raise it again."""
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 7000, "TcpExt.ListenDrops": 7000},
        sysctls={"net.core.somaxconn": "16384"},
        listeners=[Listener("0.0.0.0", 8080, 0, 16384)],
    )
    findings = advise(ev)
    assert ids(findings) == ["counter-history"]
    history = findings[0]
    assert history.suggest == {} and history.numbers == {"ListenOverflows": 7000, "ListenDrops": 7000}
    assert "--sample" in history.why and history.window == "since boot (history)"


def test_no_overflow_within_the_window_is_no_finding_whatever_the_total() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 7000},
        deltas={"TcpExt.ListenOverflows": 0},
        sysctls={"net.core.somaxconn": "16384"},
        listeners=[Listener("0.0.0.0", 8080, 3, 16384)],
    )
    assert advise(ev) == []


def test_listen_overflows_within_the_window_are_a_warning_with_their_rate() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 900},
        deltas={"TcpExt.ListenOverflows": 30},
        sysctls={"net.core.somaxconn": "128"},
        listeners=[Listener("0.0.0.0", 8080, 0, 128)],
    )
    finding = only(advise(ev), "listen-overflows")
    assert finding.severity == "warning" and "30 times in the last 10.0 s, 3.0/s" in finding.title
    assert finding.numbers["ListenOverflows"] == 30 and finding.numbers["overflows_per_second"] == 3.0
    assert finding.window == "the last 10.0 s"


def test_listeners_asking_for_less_than_somaxconn_are_named_and_somaxconn_stays() -> None:
    """The contradiction: backlogs 512 and 2 under somaxconn 4096; raising somaxconn cannot help them."""
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 900},
        deltas={"TcpExt.ListenOverflows": 40},
        listeners=[Listener("0.0.0.0", 80, 0, 512), Listener("127.0.0.1", 9000, 0, 2)],
    )
    finding = only(advise(ev), "listen-overflows")
    assert finding.suggest == {}
    assert "0.0.0.0:80 (backlog 512), 127.0.0.1:9000 (backlog 2) ask for less than somaxconn (4096)" in finding.why
    assert {row["limited_by"] for row in finding.numbers["listeners"]} == {"application backlog"}
    assert "no sysctl" in finding.effect


def test_a_listener_whose_backlog_somaxconn_cut_down_raises_somaxconn() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 900},
        deltas={"TcpExt.ListenOverflows": 40},
        sysctls={"net.core.somaxconn": "128"},
        listeners=[Listener("0.0.0.0", 8080, 0, 128), Listener("0.0.0.0", 22, 0, 64)],
        peaks={("0.0.0.0", 8080): 129},
    )
    finding = only(advise(ev), "listen-overflows")
    assert finding.suggest == {"net.core.somaxconn": "4096"}
    assert [row["port"] for row in finding.numbers["listeners"]] == [8080]  # the one seen full
    assert finding.numbers["listeners"][0] == {
        "address": "0.0.0.0",
        "port": 8080,
        "backlog": 128,
        "queue_peak": 129,
        "limited_by": "somaxconn",
    }
    assert "up to 4096 are honoured instead of being cut to 128" in finding.effect and "restarted" in finding.effect


def test_only_the_listeners_seen_full_decide_and_here_that_is_the_applications_backlog() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 900},
        deltas={"TcpExt.ListenOverflows": 40},
        sysctls={"net.core.somaxconn": "128"},
        listeners=[Listener("0.0.0.0", 8080, 0, 128), Listener("0.0.0.0", 9000, 0, 64)],
        peaks={("0.0.0.0", 9000): 65},
    )
    finding = only(advise(ev), "listen-overflows")
    assert finding.suggest == {}
    assert [row["port"] for row in finding.numbers["listeners"]] == [9000]


def test_a_full_accept_queue_right_now_is_a_warning_and_small_backlogs_are_named() -> None:
    ev = evidence(listeners=[Listener("0.0.0.0", 8080, 128, 128), Listener("0.0.0.0", 22, 0, 4096)])
    finding = only(advise(ev), "listen-overflows")
    assert finding.severity == "warning" and finding.window.startswith("now")
    assert finding.numbers["listeners"] == [
        {"address": "0.0.0.0", "port": 8080, "backlog": 128, "queue_peak": 128, "limited_by": "application backlog"}
    ]
    assert "0.0.0.0:8080 (backlog 128) ask for less than somaxconn" in finding.why


def test_somaxconn_is_never_suggested_above_65535() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 5000},
        deltas={"TcpExt.ListenOverflows": 5000},
        sysctls={"net.core.somaxconn": "65535"},
        listeners=[Listener("0.0.0.0", 8080, 0, 65535)],
    )
    assert only(advise(ev), "listen-overflows").suggest == {}


def test_dropped_syns_with_cookies_off_suggest_turning_cookies_on() -> None:
    ev = evidence(
        counters={"TcpExt.TCPReqQFullDrop": 40},
        deltas={"TcpExt.TCPReqQFullDrop": 40},
        sysctls={"net.ipv4.tcp_syncookies": "0"},
    )
    finding = only(advise(ev), "syn-queue")
    assert finding.severity == "warning" and finding.suggest == {"net.ipv4.tcp_syncookies": "1"}


def test_memory_aborts_point_at_tcp_mem_without_guessing_a_value() -> None:
    ev = evidence(counters={"TcpExt.TCPAbortOnMemory": 3}, deltas={"TcpExt.TCPAbortOnMemory": 3})
    finding = only(advise(ev), "tcp-memory")
    assert finding.severity == "critical"
    assert finding.keys[0] == "net.ipv4.tcp_mem" and finding.suggest == {}


# ---- ordering, merging, profiles ------------------------------------------------------------------------------------


def test_findings_come_most_severe_first() -> None:
    ev = evidence(
        ports={(80, "in"): {"CLOSE_WAIT": 2000}},
        counters={"TcpExt.ListenOverflows": 1},
        deltas={"TcpExt.ListenOverflows": 1},
        listeners=[Listener("0.0.0.0", 80, 0, 4096)],
        endpoints={443: {"TIME_WAIT": 17000}},
    )
    severities = [f.severity for f in advise(ev)]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


def test_quiet_host_has_no_findings() -> None:
    assert advise(evidence(ports={(22, "in"): {"ESTABLISHED": 3, "LISTEN": 1}})) == []


def test_merged_suggestions_keep_the_larger_limit_and_the_shorter_timeout() -> None:
    a = Finding("a", "info", "a", suggest={"net.core.somaxconn": "4096", "net.ipv4.tcp_fin_timeout": "30"})
    b = Finding("b", "info", "b", suggest={"net.core.somaxconn": "16384", "net.ipv4.tcp_fin_timeout": "15"})
    assert suggested_values([a, b]) == {"net.core.somaxconn": "16384", "net.ipv4.tcp_fin_timeout": "15"}


def _busy_host_findings() -> list[Finding]:
    return advise(
        evidence(
            endpoints={5432: {"TIME_WAIT": 26000}},
            fin_wait2_orphans=400,
            ports={(443, "in"): {"FIN_WAIT2": 400}},
            counters={"TcpExt.ListenOverflows": 12},
            deltas={"TcpExt.ListenOverflows": 12},
            listeners=[Listener("0.0.0.0", 443, 0, 4096)],
        )
    )


def test_every_finding_names_its_window_and_expected_effect() -> None:
    findings = _busy_host_findings() + advise(
        evidence(ports={(80, "in"): {"CLOSE_WAIT": 500}}, counters={"TcpExt.TCPAbortOnMemory": 2})
    )
    assert len({f.id for f in findings}) >= 5
    for finding in findings:
        assert finding.window and finding.effect, finding.id


def test_written_profile_extends_base_and_passes_validation(tmp_path: Path) -> None:
    text = profile_text(_busy_host_findings(), name="suggested", extends="base", context="test")
    assert text is not None
    path = tmp_path / "suggested.yaml"
    path.write_text(text)
    verdict = validate(load_profile(str(path)))
    assert verdict.errors == []
    assert verdict.profile.extends == ("base",)
    own = {k: v for k, v in verdict.values.items() if verdict.profile.settings[k].origin == "suggested"}
    assert own == {
        "net.ipv4.tcp_tw_reuse": "1",
        "net.ipv4.ip_local_port_range": "10000 65535",
        "net.ipv4.tcp_fin_timeout": "30",
        "net.core.somaxconn": "16384",
    }


def test_no_suggestions_means_no_profile() -> None:
    assert profile_text(advise(evidence(ports={(80, "in"): {"CLOSE_WAIT": 500}})), name="x", extends="base") is None


@pytest.mark.parametrize(
    ("stem", "name"), [("my edge", "my-edge"), ("_x", "x"), ("???", "recommended"), ("web.v2", "web.v2")]
)
def test_profile_names_come_from_file_names(stem: str, name: str) -> None:
    assert profile_name_for(stem) == name


def test_findings_serialise_to_plain_data() -> None:
    data: dict[str, Any] = only(_busy_host_findings(), "ephemeral-ports").as_dict()
    assert set(data) == {
        "id",
        "severity",
        "title",
        "numbers",
        "keys",
        "suggest",
        "why",
        "owners",
        "window",
        "effect",
        "commands",
    }
    assert isinstance(data["keys"], list)
