"""push and diff -i through the real entry point, with the Ansible run replaced by per-host results.

The real runs against sshd namespace hosts are in tests/fleet; these pin the exit codes and tables for every mix
of host outcomes, which a real fleet cannot produce on demand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tcptune.ansible.fleet import FleetResult, HostResult
from tcptune.cli import run

PROFILE = "name: fleet-unit\nsettings:\n  net.ipv4.tcp_fin_timeout: 17\n  net.core.somaxconn: 2048\n"


def in_sync(host: str) -> HostResult:
    keys = {
        "net.core.somaxconn": {"before": "2048", "after": "2048", "desired": "2048", "status": "ok"},
        "net.ipv4.tcp_fin_timeout": {"before": "17", "after": "17", "desired": "17", "status": "ok"},
    }
    return HostResult(host, "ok", keys=keys)


def drifted(host: str) -> HostResult:
    result = in_sync(host)
    result.status = "changed"
    result.changed_keys = ["net.ipv4.tcp_fin_timeout"]
    result.keys["net.ipv4.tcp_fin_timeout"] = {"before": "33", "after": "17", "desired": "17", "status": "changed"}
    return result


def unreachable(host: str) -> HostResult:
    return HostResult(host, "unreachable", message="Failed to connect to the host via ssh")


def failed(host: str) -> HostResult:
    result = in_sync(host)
    result.status = "failed"
    result.keys["net.core.somaxconn"] = {"before": "128", "after": "128", "desired": "2048", "status": "read-only"}
    result.failed_keys = {"net.core.somaxconn": {"reason": "read-only", "message": "read-only here"}}
    result.message = "net.core.somaxconn: read-only"
    return result


calls: list[dict[str, Any]] = []


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Set the hosts the next run reports; returns the arguments naming the profile and an inventory."""
    profile = tmp_path / "fleet-unit.yaml"
    profile.write_text(PROFILE)
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(tmp_path / "state"))

    def hosts(*results: HostResult) -> list[str]:
        def run_spec(spec: Any, inventory: str, *, check: bool = False, **_options: Any) -> FleetResult:
            assert spec.profile_name == "fleet-unit" and inventory == "inventory.yml"
            assert spec.owner == ""  # a push owns the whole host, as 'tcptune apply' does
            calls.append({"spec": spec, "check": check})
            return FleetResult(list(results), check, 1.25, spec.profile_name)

        def run_action(inventory: str, action: str, *, to: int | None = None, **_options: Any) -> FleetResult:
            calls.append({"action": action, "to": to})
            return FleetResult(list(results), False, 1.0, "", action)

        monkeypatch.setattr("tcptune.cli.fleet.run_spec", run_spec)
        monkeypatch.setattr("tcptune.cli.fleet.run_action", run_action)
        monkeypatch.setattr("tcptune.cli.fleet.inventory_hosts", lambda inv, limit=None: [r.host for r in results])
        return [str(profile), "-i", "inventory.yml"]

    return hosts


@pytest.mark.parametrize(
    ("hosts", "code"),
    [
        ((in_sync,), 0),
        ((in_sync, in_sync), 0),
        ((drifted,), 2),
        ((in_sync, drifted), 2),
        ((unreachable,), 1),
        ((drifted, unreachable), 1),
        ((in_sync, failed), 1),
    ],
)
def test_fleet_diff_exits_0_in_sync_2_on_drift_1_when_a_host_failed(
    fleet: Callable[..., list[str]], hosts: tuple[Callable[[str], HostResult], ...], code: int
) -> None:
    args = fleet(*(make(f"h{n}") for n, make in enumerate(hosts, start=1)))
    assert run(["diff", *args]) == code
    assert run(["diff", *args, "--format", "json"]) == code


def test_fleet_diff_json_says_drift_per_host_and_key(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["diff", *fleet(in_sync("h1"), drifted("h2")), "--format", "json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["drift"] is True and data["check"] is True
    key = data["hosts"]["h2"]["keys"]["net.ipv4.tcp_fin_timeout"]
    assert (key["before"], key["desired"], key["status"]) == ("33", "17", "changed")


def test_fleet_diff_table_has_a_row_per_drifted_key_and_per_quiet_host(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["diff", *fleet(in_sync("h1"), drifted("h2"), unreachable("h3"), failed("h4"))]) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["h1", "-", "-", "-", "ok"] in rows
    assert ["h2", "net.ipv4.tcp_fin_timeout", "33", "17", "differs"] in rows
    assert ["h3", "-", "-", "-", "unreachable:", "Failed", "to", "connect", "to", "the", "host", "via", "ssh"] in rows
    assert ["h4", "net.core.somaxconn", "128", "2048", "read-only"] in rows
    assert ["2", "of", "4", "hosts", "drifted,", "2", "failed", "or", "unreachable"] in rows


def test_fleet_diff_needs_a_profile(fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    fleet(in_sync("h1"))
    assert run(["diff", "-i", "inventory.yml"]) == 64
    assert "a fleet diff needs a PROFILE" in capsys.readouterr().err


@pytest.mark.parametrize(("hosts", "code"), [((in_sync, drifted), 0), ((drifted, failed), 1), ((unreachable,), 1)])
def test_push_exits_1_when_any_host_failed_or_was_unreachable(
    fleet: Callable[..., list[str]], hosts: tuple[Callable[[str], HostResult], ...], code: int
) -> None:
    assert run(["push", *fleet(*(make(f"h{n}") for n, make in enumerate(hosts, start=1))), "-y"]) == code


def test_push_table_says_what_changed_and_why_a_host_failed(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["push", *fleet(in_sync("h1"), drifted("h2"), failed("h3"), unreachable("h4")), "-y"]) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("h")}
    assert lines["h1"].split()[1:] == ["ok", "0", "-", "up", "to", "date"]
    assert lines["h2"].split()[1:] == ["changed", "1", "-", "net.ipv4.tcp_fin_timeout"]
    assert "failed (read-only)" in lines["h3"] and "read-only: net.core.somaxconn" in lines["h3"]
    assert "unreachable" in lines["h4"] and "Failed to connect" in lines["h4"]


def long_failure(host: str) -> HostResult:
    result = HostResult(host, "failed", reason="not-kept", message="x" * 400)
    result.failed_keys = {"net.core.somaxconn": {"reason": "not-kept", "message": "x" * 400}}
    return result


def test_push_keeps_one_short_line_per_host_and_the_whole_message_under_verbose(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tcptune.cli.fleet.ansible_version", lambda playbook: "2.99.1")
    args = fleet(long_failure("h1"), unreachable("h2"))
    assert run(["push", *args, "-y"]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("h1")]
    assert len(line) < 100 and "not-kept: net.core.somaxconn" in line and "xxxxx" not in line
    assert run(["push", *args, "-y", "--verbose"]) == 1
    captured = capsys.readouterr()
    assert "x" * 400 in captured.out
    assert "ansible-playbook" in captured.err and "(ansible-core 2.99.1)" in captured.err
    assert run(["push", *args, "-y", "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["hosts"]["h1"]["message"] == "x" * 400


def test_push_asks_on_a_terminal_and_needs_yes_without_one(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    calls.clear()
    assert run(["push", *fleet(in_sync("h1"))]) == 64  # stdin is not a terminal under pytest
    assert "pass --yes" in capsys.readouterr().err and calls == []
    assert run(["push", *fleet(in_sync("h1")), "--check"]) == 0  # a check changes nothing: no question


def test_push_passes_skip_options_to_the_role(fleet: Callable[..., list[str]]) -> None:
    calls.clear()
    assert run(["push", *fleet(in_sync("h1")), "-y", "--skip-readonly", "--skip-missing"]) == 0
    spec = calls[-1]["spec"]
    assert spec.skip_readonly is True and spec.skip_missing is True


def test_check_mode_output_says_it_is_a_check(
    fleet: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["push", *fleet(drifted("h1")), "--check"]) == 0
    assert "check mode: nothing was changed" in capsys.readouterr().out
    assert run(["diff", *fleet(drifted("h1"))]) == 2
    assert "check mode" in capsys.readouterr().out


@pytest.mark.parametrize(("hosts", "code"), [((in_sync, drifted), 0), ((drifted, failed), 1), ((unreachable,), 1)])
def test_fleet_rollback_has_the_exit_codes_and_table_of_push(
    fleet: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
    hosts: tuple[Callable[[str], HostResult], ...],
    code: int,
) -> None:
    calls.clear()
    inventory = fleet(*(make(f"h{n}") for n, make in enumerate(hosts, start=1)))[1:]
    assert run(["rollback", *inventory, "--to", "1", "-y"]) == code
    assert calls[-1] == {"action": "rollback", "to": 1}
    out = capsys.readouterr().out
    assert "rollback to generation 1" in out and all(f"h{n}" in out for n in range(1, len(hosts) + 1))
    assert run(["rollback", *inventory]) == 64  # no terminal, no --yes
