"""The outcome lab (issue 11): each problem recreated in throwaway namespaces on the real kernel, diagnosed by
``tcptune status``/``recommend``, fixed by what tcptune recommends (a profile applied with ``tcptune apply``, or
``tcptune release``), and measured again with the same workload (tests/lab/scenarios.py).

The assertions are about the direction and size of each effect (failures drop to zero, a lifetime halves, an
overflow stops, throughput multiplies), never about timings. bench/outcomes prints the same scenarios as a table,
next to tuned's profiles.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.lab import scenarios
from tests.lab.scenarios import DEFAULTS, TCPTUNE

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _tools() -> None:
    if not shutil.which("ip") or not shutil.which("nsenter"):
        pytest.skip("iproute2 and util-linux are needed")


def test_port_exhaustion_at_150_per_second_ends_with_the_recommended_profile() -> None:
    outcome = scenarios.port_exhaustion(150)
    before, after = outcome.details["before"], outcome.details["after"]
    assert before["eaddrnotavail"] >= before["attempts"] // 3  # 200 ports, each held 60 s: most connects fail
    assert outcome.recommendation["suggested"] == {
        "net.ipv4.tcp_tw_reuse": "1",
        "net.ipv4.ip_local_port_range": "10000 65535",
    }
    assert after["eaddrnotavail"] == 0 and after["ok"] == after["attempts"]
    assert "ephemeral-ports" not in outcome.details["second_recommendation"]["findings"]  # nothing left to fix


def test_port_exhaustion_at_2000_per_second_needs_the_range_as_well_as_reuse() -> None:
    outcome = scenarios.port_exhaustion(2000, contrast=True)
    before, after, alone = outcome.details["before"], outcome.details["after"], outcome.details["reuse_alone"]
    assert before["eaddrnotavail"] > 0
    assert after["eaddrnotavail"] == 0 and after["ok"] == after["attempts"]
    if alone["rate"] >= 400:  # 200 ports each reusable after tcp_tw_reuse_delay (1 s) carry about 200/s
        assert alone["eaddrnotavail"] > alone["attempts"] // 4


def test_fin_wait2_orphans_live_half_as_long_after_the_recommended_fin_timeout() -> None:
    outcome = scenarios.fin_wait2_orphans(count=200)
    assert outcome.details["orphans_seen_by_status"] == 200
    assert outcome.recommendation["suggested"] == {"net.ipv4.tcp_fin_timeout": "30"}
    assert isinstance(outcome.values[TCPTUNE], float)  # the batch made after the apply is gone...
    assert outcome.details["left_when_tcptune_batch_was_gone"][DEFAULTS] == 200  # ...while the older one waits on


def test_a_close_wait_leak_is_named_and_released_and_the_application_sees_the_reset() -> None:
    outcome = scenarios.close_wait_leak(count=150)
    app = outcome.details["app"]
    assert outcome.recommendation["owners"] == [
        {"port": 8083, "direction": "in", "pid": app["pid"], "name": "tt11-leaky", "sockets": 150}
    ]
    assert outcome.recommendation["suggested"] == {}  # no sysctl fixes it
    assert outcome.recommendation["commands"] == ["tcptune release --state close-wait --sport 8083 --yes"]
    assert outcome.values[DEFAULTS] == 150
    assert outcome.details["release_exit"] == 0
    assert outcome.details["release"]["outcomes"] == {"destroyed": 150} and outcome.details["release"]["remaining"] == 0
    assert outcome.values[TCPTUNE] == 0
    assert outcome.details["app_sees_before"] == {"held": 150, "so_error": {"none": 150}}
    assert outcome.details["app_sees"] == {"held": 150, "so_error": {"ECONNABORTED": 150}}


def test_accept_queue_overflows_stop_with_somaxconn_raised_where_it_caps_and_do_not_ratchet() -> None:
    outcome = scenarios.accept_overflow(case="somaxconn")
    assert outcome.details["before"]["ListenOverflows"] > 0
    assert outcome.recommendation["suggested"] == {"net.core.somaxconn": "4096"}
    (listener,) = outcome.details["listen_finding"]["numbers"]["listeners"]
    assert (listener["port"], listener["backlog"], listener["limited_by"]) == (8084, 128, "somaxconn")
    assert outcome.details["after"]["ListenOverflows"] == 0 and outcome.values[TCPTUNE] == 0
    again = outcome.details["second_recommendation"]  # same bursts, after the fix: nothing to raise again
    assert "listen-overflows" not in again["findings"] and "net.core.somaxconn" not in again["suggested"]
    since = outcome.details["since_apply_recommendation"]  # no --sample: judged since the apply, not since boot
    assert re.fullmatch(r"the (\d+ s|\d+ min \d+ s) since generation 1 was applied", since["window"]), since
    assert "listen-overflows" not in since["findings"] and "net.core.somaxconn" not in since["suggested"]


def test_accept_queue_overflows_from_a_small_application_backlog_do_not_raise_somaxconn() -> None:
    outcome = scenarios.accept_overflow(case="backlog", check_ratchet=False)
    assert outcome.details["before"]["ListenOverflows"] > 0
    finding = outcome.details["listen_finding"]
    assert finding["suggest"] == {} and "net.core.somaxconn" not in outcome.recommendation["suggested"]
    assert "10.80.0.2:8084 (backlog 64) ask for less than somaxconn (4096)" in finding["why"]
    assert outcome.details["after"]["ListenOverflows"] == 0  # the application's larger backlog did it


def test_time_wait_bucket_overflows_stop_with_the_table_sized_from_the_closing_rate() -> None:
    outcome = scenarios.time_wait_overflow(rate=300)
    assert outcome.details["before"]["TCPTimeWaitOverflow"] > 0
    buckets = int(outcome.recommendation["suggested"]["net.ipv4.tcp_max_tw_buckets"])
    assert buckets >= 60 * 0.5 * 300  # a minute of closes at half the offered rate, at least
    assert outcome.details["after"]["TCPTimeWaitOverflow"] == 0


def test_larger_buffers_multiply_bulk_throughput_on_a_long_path() -> None:
    outcome = scenarios.long_path(delay=0.1, seconds=5)
    assert outcome.details[DEFAULTS]["rtt_ms"] >= 150  # the delay line really is a long path
    assert outcome.values[TCPTUNE] >= 2 * outcome.values[DEFAULTS]
