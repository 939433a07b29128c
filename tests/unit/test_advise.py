"""advise: plain evidence values in, findings out. Each test states one rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tcptune.advise import Finding, Thresholds, advise, profile_name_for, profile_text, suggested_values
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
) -> Evidence:
    """Evidence from plain numbers: ports as {(port, "in"|"out"): {STATE: n}}, endpoints as {remote port: {...}}."""
    counts = SocketCounts(listeners=listeners or [], fin_wait2_orphans=fin_wait2_orphans)
    for (port, direction), states in (ports or {}).items():
        counts.ports[port | OUT if direction == "out" else port] = _row(states)
    for rport, states in (endpoints or {}).items():
        counts.endpoints[(LOCAL, REMOTE, rport)] = _row(states)
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


def test_close_wait_owner_unknown_is_said_plainly() -> None:
    finding = only(advise(evidence(ports={(5432, "out"): {"CLOSE_WAIT": 120}})), "close-wait")
    assert "outgoing connections to remote port 5432" in finding.title
    assert "owner unknown" in finding.title


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


def test_time_wait_near_port_range_capacity_suggests_tw_reuse_and_a_wider_range() -> None:
    ev = evidence(endpoints={5432: {"TIME_WAIT": 17000, "ESTABLISHED": 200}}, sockstat={"tw": 17000})
    findings = advise(ev)
    finding = only(findings, "ephemeral-ports")
    assert finding.severity == "warning"
    assert finding.suggest == {"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "10000 65535"}
    assert finding.numbers["in_use"] == 17200 and finding.numbers["capacity"] == 28232
    assert finding.numbers["endpoint"] == "10.0.0.1 -> 10.0.0.99:5432"
    assert "time-wait-normal" not in ids(findings)


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


def test_established_heavy_endpoint_does_not_suggest_tw_reuse() -> None:
    finding = only(advise(evidence(endpoints={443: {"ESTABLISHED": 20000}})), "ephemeral-ports")
    assert "net.ipv4.tcp_tw_reuse" not in finding.suggest
    assert "net.ipv4.ip_local_port_range" in finding.suggest


def test_time_wait_table_half_full_suggests_doubling_it() -> None:
    ev = evidence(endpoints={443: {"TIME_WAIT": 200}}, sockstat={"tw": 140000})
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.severity == "warning"
    assert finding.suggest == {"net.ipv4.tcp_max_tw_buckets": "524288"}


def test_time_wait_overflow_counter_is_critical() -> None:
    ev = evidence(sockstat={"tw": 10}, counters={"TcpExt.TCPTimeWaitOverflow": 12})
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.severity == "critical" and "12 times" in finding.title


def test_a_single_time_wait_overflow_counts() -> None:
    ev = evidence(sockstat={"tw": 10}, counters={"TcpExt.TCPTimeWaitOverflow": 1})
    assert only(advise(ev), "time-wait-buckets").severity == "critical"


def test_time_wait_above_a_lowered_limit_suggests_twice_the_count() -> None:
    ev = evidence(sockstat={"tw": 300000}, sysctls={"net.ipv4.tcp_max_tw_buckets": "100000"})
    finding = only(advise(ev), "time-wait-buckets")
    assert finding.suggest == {"net.ipv4.tcp_max_tw_buckets": "600000"} and "300.0 %" in finding.title


def test_time_wait_overflow_with_an_unreadable_limit_suggests_nothing() -> None:
    ev = evidence(counters={"TcpExt.TCPTimeWaitOverflow": 5}, sysctls={"net.ipv4.tcp_max_tw_buckets": None})
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


def test_listen_overflows_since_boot_are_information_and_say_how_to_sample() -> None:
    finding = only(
        advise(evidence(counters={"TcpExt.ListenOverflows": 7, "TcpExt.ListenDrops": 7})), "listen-overflows"
    )
    assert finding.severity == "info"
    assert "--sample" in finding.why
    assert finding.suggest == {"net.core.somaxconn": "16384", "net.ipv4.tcp_max_syn_backlog": "16384"}


def test_listen_overflows_within_the_sample_window_are_a_warning() -> None:
    ev = evidence(counters={"TcpExt.ListenOverflows": 900}, deltas={"TcpExt.ListenOverflows": 3})
    finding = only(advise(ev), "listen-overflows")
    assert finding.severity == "warning" and "in the last 10 s" in finding.title
    assert finding.numbers["ListenOverflows"] == 3


def test_a_full_accept_queue_right_now_is_a_warning_and_small_backlogs_are_named() -> None:
    ev = evidence(listeners=[Listener("0.0.0.0", 8080, 128, 128), Listener("0.0.0.0", 22, 0, 4096)])
    finding = only(advise(ev), "listen-overflows")
    assert finding.severity == "warning"
    assert finding.numbers["full_listeners"] == [{"address": "0.0.0.0", "port": 8080, "queue": 128, "backlog": 128}]
    assert "port 8080 (backlog 128)" in finding.why


def test_somaxconn_is_never_suggested_above_65535() -> None:
    ev = evidence(
        counters={"TcpExt.ListenOverflows": 5000},
        sysctls={"net.core.somaxconn": "65535", "net.ipv4.tcp_max_syn_backlog": "65535"},
    )
    assert only(advise(ev), "listen-overflows").suggest == {}


def test_dropped_syns_with_cookies_off_suggest_turning_cookies_on() -> None:
    ev = evidence(counters={"TcpExt.TCPReqQFullDrop": 40}, sysctls={"net.ipv4.tcp_syncookies": "0"})
    finding = only(advise(ev), "syn-queue")
    assert finding.severity == "warning" and finding.suggest == {"net.ipv4.tcp_syncookies": "1"}


def test_memory_aborts_point_at_tcp_mem_without_guessing_a_value() -> None:
    finding = only(advise(evidence(counters={"TcpExt.TCPAbortOnMemory": 3})), "tcp-memory")
    assert finding.severity == "critical"
    assert finding.keys[0] == "net.ipv4.tcp_mem" and finding.suggest == {}


# ---- ordering, merging, profiles ------------------------------------------------------------------------------------


def test_findings_come_most_severe_first() -> None:
    ev = evidence(
        ports={(80, "in"): {"CLOSE_WAIT": 2000}},
        counters={"TcpExt.ListenOverflows": 1},
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
            endpoints={5432: {"TIME_WAIT": 17000}},
            fin_wait2_orphans=400,
            ports={(443, "in"): {"FIN_WAIT2": 400}},
            counters={"TcpExt.ListenOverflows": 12},
        )
    )


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
        "net.ipv4.tcp_max_syn_backlog": "16384",
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
    assert set(data) == {"id", "severity", "title", "numbers", "keys", "suggest", "why", "owners"}
    assert isinstance(data["keys"], list)
