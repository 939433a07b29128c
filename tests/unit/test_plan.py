"""The planner: desired x live -> Plan. Pure values in, pure values out."""

from __future__ import annotations

import json

import pytest

from tcptune.live import LiveValue
from tcptune.plan import Change, order_changes, plan, split_blocked

UNPRIV, RANGE = "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_port_range"


def ok(key: str, text: str, writable: bool = True) -> LiveValue:
    return LiveValue(key, text, "ok", writable)


@pytest.mark.parametrize(
    ("live", "desired"),
    [
        ("4096\t131072\t6291456", "4096 131072 6291456"),
        ("4096  131072 6291456 ", "4096 131072 6291456"),
        ("032768\t60999", "32768 60999"),
        ("bbr", "bbr"),
        ("8080,9000-9100", "9000-9100,8080"),
    ],
)
def test_kernel_formatting_is_not_drift(live: str, desired: str) -> None:
    result = plan({"k.x": desired}, {"k.x": ok("k.x", live)})
    assert result.up_to_date
    assert result.changes == ()


def test_unchanged_keys_yield_no_change() -> None:
    result = plan({"a.b": "1", "a.c": "2"}, {"a.b": ok("a.b", "1"), "a.c": ok("a.c", "3")})
    assert result.changes == (Change("a.c", "3", "2"),)
    assert [k.status for k in result.keys] == ["ok", "differs"]


def test_statuses_for_keys_that_cannot_be_written() -> None:
    live = {
        "net.core.rmem_max": ok("net.core.rmem_max", "212992", writable=False),
        "net.ipv4.tcp_mem": LiveValue("net.ipv4.tcp_mem", None, "missing", False),
        "net.x.y": LiveValue("net.x.y", None, "unreadable", False, "not readable"),
    }
    result = plan(
        {"net.core.rmem_max": "16777216", "net.ipv4.tcp_mem": "1 2 3", "net.x.y": "1", "net.q.z": "1"},
        live,
        scopes={"net.core.rmem_max": "global"},
    )
    statuses = {k.key: k.status for k in result.keys}
    assert statuses == {
        "net.core.rmem_max": "read-only",
        "net.ipv4.tcp_mem": "missing",
        "net.x.y": "unreadable",
        "net.q.z": "missing",
    }
    assert result.changes == ()
    assert "set it on the host" in (result.keys[0].note or "")
    assert len(result.blocked) == 4


def test_a_read_only_key_already_at_the_desired_value_is_ok() -> None:
    result = plan({"net.core.rmem_max": "212992"}, {"net.core.rmem_max": ok("net.core.rmem_max", "212992", False)})
    assert result.up_to_date


def test_plan_is_json_serialisable() -> None:
    result = plan({"a.b": "1"}, {"a.b": ok("a.b", "2")}, profile="p", fingerprint="f")
    data = json.loads(json.dumps(result.as_dict()))
    assert data["changes"] == [{"key": "a.b", "old": "2", "new": "1"}]
    assert data["summary"]["differs"] == 1


def test_lowering_the_unprivileged_start_writes_it_first() -> None:
    changes = [Change(RANGE, "32768 60999", "1100 60999"), Change(UNPRIV, "2000", "1024")]
    assert [c.key for c in order_changes(changes)] == [UNPRIV, RANGE]


def test_raising_the_unprivileged_start_writes_it_last() -> None:
    changes = [
        Change(UNPRIV, "1024", "2000"),
        Change(RANGE, "1500 60999", "32768 60999"),
        Change("net.ipv4.tcp_fin_timeout", "60", "15"),
    ]
    assert [c.key for c in order_changes(changes)][-1] == UNPRIV


def test_other_changes_are_in_key_order() -> None:
    changes = [Change("b", "1", "2"), Change("a", "1", "2")]
    assert [c.key for c in order_changes(changes)] == ["a", "b"]


# ---- keys leaving management: revert to their baseline ----------------------------------------------------------


def test_a_key_leaving_management_is_reverted_to_its_baseline_in_the_write_order() -> None:
    live = {"a.b": ok("a.b", "1"), "a.c": ok("a.c", "15")}
    result = plan({"a.b": "2"}, live, revert={"a.c": "60"})
    assert result.changes == (Change("a.b", "1", "2"), Change("a.c", "15", "60"))
    (revert,) = result.reverts
    assert (revert.key, revert.status, revert.desired, revert.note) == ("a.c", "revert", "60", None)
    assert not result.up_to_date


@pytest.mark.parametrize(
    ("baseline", "live", "says"),
    [
        (None, ok("a.c", "15"), "no value from before tcptune was recorded: left as it is"),
        ("60", ok("a.c", "60"), "already at its value from before tcptune"),
        ("60", ok("a.c", "15", writable=False), "not writable here now: left as it is"),
        ("60", LiveValue("a.c", None, "missing", False), "cannot be read here now: left as it is"),
    ],
)
def test_a_revert_that_needs_no_write_or_cannot_be_made_is_a_note_never_a_refusal(
    baseline: str | None, live: LiveValue, says: str
) -> None:
    result = plan({}, {"a.c": live}, revert={"a.c": baseline})
    assert result.changes == ()
    (state,) = result.keys
    assert state.status == "revert" and state.note == says
    runnable, skipped, refuse = split_blocked(result, skip_missing=False, skip_readonly=False)
    assert (runnable, skipped, refuse) == (result, [], [])


def test_split_blocked_refuses_unless_skipped() -> None:
    live = {"a.m": LiveValue("a.m", None, "missing", False), "a.r": ok("a.r", "1", writable=False)}
    result = plan({"a.m": "1", "a.r": "2"}, live)
    _, skipped, refuse = split_blocked(result, skip_missing=True, skip_readonly=False)
    assert [k.key for k in skipped] == ["a.m"] and [k.key for k in refuse] == ["a.r"]


def test_a_key_preflight_refused_blocks_the_plan_whatever_is_skipped() -> None:
    result = plan({"a.x": "3"}, {"a.x": ok("a.x", "2")})
    refused = result._replace(keys=(result.keys[0]._replace(status="refused", note="the kernel says no"),))
    _, skipped, refuse = split_blocked(refused, skip_missing=True, skip_readonly=True)
    assert skipped == [] and [k.key for k in refuse] == ["a.x"]
