"""How a fleet run reaches its hosts: forks for the controller, SSH pipelining unless the user chose, what reaches
ansible-runner, and what ``push --verbose`` prints. Ansible itself is replaced here; tests/fleet runs the real one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tcptune.ansible import fleet
from tcptune.ansible.render import RoleSpec
from tcptune.cli import run
from tcptune.errors import FleetError


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ansible.cfg anywhere Ansible would look, unless a test writes one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fleet, "SYSTEM_ANSIBLE_CFG", str(tmp_path / "etc-ansible.cfg"))
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_PIPELINING", "ANSIBLE_SSH_PIPELINING", "ANSIBLE_HOST_KEY_CHECKING"):
        monkeypatch.delenv(name, raising=False)


def cpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(count)))


@pytest.mark.parametrize(("count", "forks"), [(1, 10), (2, 20), (4, 40), (10, 100), (64, 100)])
def test_forks_are_ten_per_cpu_at_most_a_hundred(monkeypatch: pytest.MonkeyPatch, count: int, forks: int) -> None:
    cpus(monkeypatch, count)
    assert fleet.run_settings().forks == forks


def test_forks_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    settings = fleet.run_settings(3)
    assert (settings.forks, settings.forks_origin) == (3, "--forks")


def test_pipelining_is_turned_on_when_nobody_chose() -> None:
    settings = fleet.run_settings()
    assert settings.pipelining is True
    assert settings.envvars()["ANSIBLE_PIPELINING"] == "True"


@pytest.mark.parametrize("name", ["ANSIBLE_PIPELINING", "ANSIBLE_SSH_PIPELINING"])
def test_pipelining_from_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "False")
    settings = fleet.run_settings()
    assert settings.pipelining is False and "ANSIBLE_PIPELINING" not in settings.envvars()
    assert name in settings.describe(3)


@pytest.mark.parametrize("section", ["defaults", "connection", "ssh_connection"])
def test_pipelining_from_ansible_cfg_is_left_alone(tmp_path: Path, section: str) -> None:
    (tmp_path / "ansible.cfg").write_text(f"[{section}]\npipelining = False  ; sudo needs a tty here\n")
    settings = fleet.run_settings()
    assert "ANSIBLE_PIPELINING" not in settings.envvars()
    assert str(tmp_path / "ansible.cfg") in settings.pipelining_origin


def test_an_ansible_cfg_without_pipelining_does_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "elsewhere.cfg"
    config.write_text("[defaults]\nforks = 7\n[ssh_connection]\nssh_args = -o ControlMaster=no\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(config))
    assert fleet.run_settings().envvars() == {"ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "True"}


def test_host_keys_are_checked_unless_the_user_turned_it_off() -> None:
    """ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False when the environment does not say: push must not."""
    settings = fleet.run_settings()
    assert settings.envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "host key checking on (Ansible's default)" in settings.describe(2)


@pytest.mark.parametrize("how", ["env", "defaults", "ssh_connection"])
def test_host_key_checking_turned_off_by_the_user_stays_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "false")
    else:
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / ".ansible.cfg").write_text(f"[{how}]\nhost_key_checking = False\n")
    settings = fleet.run_settings()
    assert settings.envvars()["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert "host key checking off" in settings.describe(2)


def test_describe_says_forks_how_many_hosts_run_at_once_and_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    text = fleet.run_settings().describe(100)
    assert "forks 20 (10 per CPU, 2 CPUs)" in text and "20 of 100 hosts at a time" in text
    assert "pipelining on" in text and "ControlPersist" in text
    assert "3 of 3 hosts" in fleet.run_settings().describe(3)


# ---- what reaches ansible-runner ---------------------------------------------------------------------------------


class FakeRunner:
    """Stands in for ansible_runner's Runner: records the private project as the run sees it, reports one host."""

    def __init__(self, kwargs: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.kwargs = kwargs
        self.events = events
        self.rc: int | None = None
        self.seen: dict[str, Any] = {}

    def run(self) -> None:
        private = Path(self.kwargs["private_data_dir"])
        self.seen["argument_specs"] = sorted(str(p.relative_to(private)) for p in private.rglob("argument_specs.yml"))
        self.seen["tasks"] = {
            str(p.relative_to(private)): p.read_text() for p in private.rglob("*.yml") if p.parent.name == "tasks"
        }
        for event in self.events:
            self.kwargs["event_handler"](event)
        self.rc = 0


@pytest.fixture
def fake_ansible(monkeypatch: pytest.MonkeyPatch) -> list[FakeRunner]:
    made: list[FakeRunner] = []
    ok = {
        "event": "runner_on_ok",
        "event_data": {"host": "h1", "task_action": "tcptune_sysctl", "res": {"changed": False, "sysctls": {}}},
    }

    def init_runner(**kwargs: Any) -> FakeRunner:
        runner = FakeRunner(kwargs, [ok])
        made.append(runner)
        return runner

    monkeypatch.setattr("ansible_runner.interface.init_runner", init_runner)
    return made


SPEC = RoleSpec("tcptune_unit", "unit", "unit test", settings={"net.ipv4.tcp_fin_timeout": "17"})


def inventory(tmp_path: Path) -> str:
    path = tmp_path / "inventory.ini"
    path.write_text("h1 ansible_host=192.0.2.1\n")
    return str(path)


def test_run_passes_the_chosen_forks_and_pipelining_to_ansible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ansible: list[FakeRunner]
) -> None:
    cpus(monkeypatch, 2)
    started: list[list[str]] = []
    result = fleet.run_spec(SPEC, inventory(tmp_path), on_start=started.append)
    (runner,) = fake_ansible
    assert runner.kwargs["forks"] == 20
    assert runner.kwargs["envvars"]["ANSIBLE_PIPELINING"] == "True"
    assert runner.kwargs["envvars"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert started == [["h1"]] and [h.status for h in result.hosts] == ["ok"]


def test_forks_option_and_the_users_pipelining_reach_ansible_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ansible: list[FakeRunner]
) -> None:
    monkeypatch.setenv("ANSIBLE_PIPELINING", "False")
    fleet.run_spec(SPEC, inventory(tmp_path), forks=3)
    (runner,) = fake_ansible
    assert runner.kwargs["forks"] == 3
    assert "ANSIBLE_PIPELINING" not in runner.kwargs["envvars"]  # the user's own setting is inherited as it is


def test_the_private_role_runs_one_task_per_host_no_argument_spec_task_no_handler(
    tmp_path: Path, fake_ansible: list[FakeRunner]
) -> None:
    """tcptune validated the settings, and the module re-reads what it wrote: Ansible's per-host extras would only
    cost time (tests/fleet: push still reports, rolls back and persists per host)."""
    fleet.run_spec(SPEC, inventory(tmp_path))
    (runner,) = fake_ansible
    assert runner.seen["argument_specs"] == []
    (tasks,) = runner.seen["tasks"].values()
    assert tasks.count("tcptune_sysctl:") == 1 and "notify" not in tasks


def test_a_limit_matching_no_host_cancels_the_run_and_says_so(tmp_path: Path, fake_ansible: list[FakeRunner]) -> None:
    with pytest.raises(FleetError, match="no hosts match --limit nowhere"):
        fleet.run_spec(SPEC, inventory(tmp_path), limit="nowhere")


def test_a_missing_inventory_fails_before_anything_starts(tmp_path: Path, fake_ansible: list[FakeRunner]) -> None:
    with pytest.raises(FleetError, match="no such inventory"):
        fleet.run_spec(SPEC, str(tmp_path / "missing.ini"))
    assert fake_ansible == []


def test_push_verbose_names_ansible_playbook_and_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cpus(monkeypatch, 2)
    profile = tmp_path / "unit.yaml"
    profile.write_text("name: unit\nsettings:\n  net.ipv4.tcp_fin_timeout: 17\n")

    def run_spec(spec: Any, inventory: str, **options: Any) -> fleet.FleetResult:
        options["on_start"](["h1", "h2"])
        return fleet.FleetResult([fleet.HostResult("h1", "ok"), fleet.HostResult("h2", "ok")], False, 1.0, "unit")

    monkeypatch.setattr("tcptune.cli.fleet.run_spec", run_spec)
    assert run(["push", str(profile), "-i", "inventory.ini", "--verbose", "--yes"]) == 0
    err = capsys.readouterr().err
    assert "ansible-playbook" in err and "ansible-core 2." in err
    assert "forks 20 (10 per CPU, 2 CPUs): 2 of 2 hosts at a time; SSH pipelining on" in err
    assert run(["push", str(profile), "-i", "inventory.ini", "--yes"]) == 0
    assert "forks" not in capsys.readouterr().err
