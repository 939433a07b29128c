"""`tcptune push` and `tcptune diff -i` against real namespace hosts over real SSH.

h1 is a normal host, h2 is unreachable (sshd stopped), h3 is asked (per-host override) for a host-wide key that is
read-only in its network namespace, h4 is asked for a value the kernel rejects after other keys were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune.ansible import nshosts

from .conftest import host_read, host_write

pytestmark = [pytest.mark.slow, pytest.mark.netns]

PROFILE = """\
name: fleet-test
description: Fleet test {{ not_a_template }}
settings:
  net.ipv4.tcp_fin_timeout: 17
  net.ipv4.tcp_keepalive_time: 600
  net.ipv4.tcp_rmem: "4096 131072 4194304"
  net.core.somaxconn: 2048
  net.ipv4.tcp_tw_reuse: 1
"""
DESIRED = {
    "net.ipv4.tcp_fin_timeout": "17",
    "net.ipv4.tcp_keepalive_time": "600",
    "net.ipv4.tcp_rmem": "4096 131072 4194304",
    "net.core.somaxconn": "2048",
    "net.ipv4.tcp_tw_reuse": "1",
}


def tcptune(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", *args, "--format", "json"], capture_output=True, text=True, timeout=300
    )
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"rc {proc.returncode}, no JSON: {proc.stdout}\n{proc.stderr}")
    return proc.returncode, data


@pytest.fixture(scope="module")
def setup(fleet: nshosts.Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("fleet")
    (work / "fleet-test.yaml").write_text(PROFILE)
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())  # read only: the machine's own value
    inventory = fleet.write_inventory(
        str(work / "inventory.yml"),
        {
            "h3": {"tcptune_fleet_test_overrides": {"net.core.rmem_max": rmem_max + 4096}},
            "h4": {"tcptune_fleet_test_overrides": {"net.ipv4.tcp_congestion_control": "nosuchalgo"}},
        },
    )
    fleet.stop("h2")
    before = {name: {k: host_read(fleet, name, k) for k in DESIRED} for name in ("h1", "h3", "h4")}
    root_before = Path("/proc/sys/net/ipv4/tcp_fin_timeout").read_text()
    rc, result = tcptune("push", str(work / "fleet-test.yaml"), "-i", inventory, "--forks", "4", "-y")
    return {
        "work": work,
        "profile": str(work / "fleet-test.yaml"),
        "inventory": inventory,
        "before": before,
        "root_before": root_before,
        "rc": rc,
        "result": result,
    }


def test_push_exits_1_when_any_host_failed_or_was_unreachable(setup: dict) -> None:
    assert setup["rc"] == 1
    assert setup["result"]["summary"] == {"ok": 0, "changed": 1, "failed": 2, "unreachable": 1}


def test_push_applies_and_persists_the_profile_on_a_healthy_host(setup: dict, fleet: nshosts.Fleet) -> None:
    h1 = setup["result"]["hosts"]["h1"]
    assert h1["status"] == "changed"
    assert sorted(h1["changed_keys"]) == sorted(k for k in DESIRED if setup["before"]["h1"][k] != DESIRED[k])
    for key, value in DESIRED.items():
        assert host_read(fleet, "h1", key) == value
        assert h1["keys"][key]["after"] == value
    persisted = Path(fleet.host("h1").directory, "sysctl.d", "90-tcptune.conf").read_text()
    assert "# profile: fleet-test" in persisted and "net.ipv4.tcp_fin_timeout = 17" in persisted


def test_unreachable_host_is_reported_and_does_not_stop_the_others(setup: dict) -> None:
    h2 = setup["result"]["hosts"]["h2"]
    assert h2["status"] == "unreachable"
    assert "ssh" in h2["message"].lower()


def test_read_only_key_fails_that_host_and_writes_nothing_there(setup: dict, fleet: nshosts.Fleet) -> None:
    h3 = setup["result"]["hosts"]["h3"]
    assert h3["status"] == "failed"
    assert h3["failed_keys"]["net.core.rmem_max"]["reason"] == "read-only"
    assert {k: host_read(fleet, "h3", k) for k in DESIRED} == setup["before"]["h3"]
    assert not Path(fleet.host("h3").directory, "sysctl.d", "90-tcptune.conf").exists()


def test_a_value_the_kernel_refuses_fails_that_host_before_any_write(setup: dict, fleet: nshosts.Fleet) -> None:
    """Kernel preflight on the host knows the namespace's allowed congestion controls, so the module refuses the
    whole host up front (a rejection it could not foresee is written, refused and put back: test_kernel_apply)."""
    h4 = setup["result"]["hosts"]["h4"]
    assert h4["status"] == "failed"
    assert list(h4["failed_keys"]) == ["net.ipv4.tcp_congestion_control"]
    assert h4["message"].startswith("nothing was changed") and "nosuchalgo" in h4["message"]
    assert {k: host_read(fleet, "h4", k) for k in DESIRED} == setup["before"]["h4"]
    assert not Path(fleet.host("h4").directory, "sysctl.d", "90-tcptune.conf").exists()


def test_the_machine_itself_is_untouched(setup: dict) -> None:
    assert Path("/proc/sys/net/ipv4/tcp_fin_timeout").read_text() == setup["root_before"]


def test_second_push_changes_nothing(setup: dict) -> None:
    rc, result = tcptune("push", setup["profile"], "-i", setup["inventory"], "--limit", "h1", "-y")
    assert rc == 0
    assert result["hosts"]["h1"]["status"] == "ok" and result["hosts"]["h1"]["changed_keys"] == []


def test_fleet_diff_exits_0_without_drift_and_2_with_drift_per_host_and_key(setup: dict, fleet: nshosts.Fleet) -> None:
    rc, result = tcptune("diff", setup["profile"], "-i", setup["inventory"], "--limit", "h1")
    assert rc == 0 and result["drift"] is False
    host_write(fleet, "h1", "net.ipv4.tcp_fin_timeout", "33")
    rc, result = tcptune("diff", setup["profile"], "-i", setup["inventory"], "--limit", "h1")
    assert rc == 2 and result["drift"] is True
    key = result["hosts"]["h1"]["keys"]["net.ipv4.tcp_fin_timeout"]
    assert (key["before"], key["desired"], key["status"]) == ("33", "17", "changed")
    assert host_read(fleet, "h1", "net.ipv4.tcp_fin_timeout") == "33"  # diff never writes


def test_a_push_is_a_generation_on_the_host(setup: dict, fleet: nshosts.Fleet) -> None:
    """The host's own tcptune (its state directory is private to it) lists what the push did."""
    state = Path(fleet.host("h1").directory, "state")
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", "history", "--state-dir", str(state), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    generations = json.loads(proc.stdout)["generations"]
    assert generations and generations[-1]["kind"] == "apply" and generations[-1]["profile"] == "fleet-test"
    assert not list(Path(fleet.host("h3").directory, "state").glob("generations/*.json"))  # failed: nothing recorded


def test_fleet_diff_exits_1_when_a_host_is_unreachable_or_failing(setup: dict) -> None:
    rc, result = tcptune("diff", setup["profile"], "-i", setup["inventory"])
    assert rc == 1
    assert result["hosts"]["h2"]["status"] == "unreachable"
    assert result["hosts"]["h3"]["keys"]["net.core.rmem_max"]["status"] == "read-only"


def test_check_mode_push_reports_and_writes_nothing_then_push_repairs(setup: dict, fleet: nshosts.Fleet) -> None:
    host_write(fleet, "h1", "net.core.somaxconn", "999")
    rc, result = tcptune("push", setup["profile"], "-i", setup["inventory"], "--limit", "h1", "--check")
    assert rc == 0 and result["check"] is True
    assert "net.core.somaxconn" in result["hosts"]["h1"]["changed_keys"]
    assert host_read(fleet, "h1", "net.core.somaxconn") == "999"
    rc, result = tcptune("push", setup["profile"], "-i", setup["inventory"], "--limit", "h1", "-y")
    assert rc == 0 and "net.core.somaxconn" in result["hosts"]["h1"]["changed_keys"]
    assert host_read(fleet, "h1", "net.core.somaxconn") == "2048"


def test_push_text_output_is_a_per_host_table(setup: dict) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", "push", setup["profile"], "-i", setup["inventory"], "-y"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("h")}
    assert "ok" in lines["h1"] and "unreachable" in lines["h2"]
    assert "failed (read-only)" in lines["h3"] and "failed (" in lines["h4"]
    assert all(len(line) < 120 for line in lines.values())  # one short line per host


def test_template_text_in_values_reaches_hosts_as_data(setup: dict, tmp_path: Path) -> None:
    from tcptune.ansible.fleet import run_spec
    from tcptune.ansible.render import RoleSpec

    marker = tmp_path / "templated"
    evil = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    spec = RoleSpec("tcptune_evil", "evil", f"description {evil}", settings={"net.ipv4.tcp_congestion_control": evil})
    result = run_spec(spec, setup["inventory"], limit="h1", check=True)
    (h1,) = result.hosts
    assert h1.status == "failed" and h1.reason == "invalid"  # not a plain name: the catalog check on the host
    assert repr(evil) in h1.message  # it reached the host verbatim, as data
    assert not marker.exists()


def test_push_uses_its_own_environments_ansible_with_a_minimal_path(setup: dict) -> None:
    """Installed with pipx or into an unactivated venv, PATH holds no ansible-playbook (or another one)."""
    exe = Path(sys.executable).parent / "tcptune"
    minimal = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    assert not any(Path(d, "ansible-playbook").exists() for d in ("/usr/bin", "/bin")), "test needs a PATH without it"
    proc = subprocess.run(
        [str(exe), "push", setup["profile"], "-i", setup["inventory"], "--limit", "h1", "--format", "json", "-y"],
        capture_output=True,
        text=True,
        timeout=300,
        env=minimal,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"]["h1"]["status"] == "ok"
