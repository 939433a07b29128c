"""How a fleet run reaches its hosts: forks for the controller, SSH pipelining unless the user chose, what reaches
ansible-runner, and what ``push --verbose`` prints. Ansible itself is replaced here; tests/fleet runs the real one."""

from __future__ import annotations

import os
import signal
import threading
import time
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


def test_the_setting_ansible_reads_last_wins_as_in_its_ssh_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ansible takes the last of an option's environment variables, and of its ini sections, that is set; tcptune
    passes ANSIBLE_HOST_KEY_CHECKING on explicitly, so it must compute the same value."""
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = False\n[ssh_connection]\nhost_key_checking = True\n"
    )
    assert fleet.run_settings().host_key_checking == "True"
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "True")
    monkeypatch.setenv("ANSIBLE_SSH_HOST_KEY_CHECKING", "False")
    assert fleet.run_settings().host_key_checking == "False"
    monkeypatch.setenv("ANSIBLE_PIPELINING", "True")
    monkeypatch.setenv("ANSIBLE_SSH_PIPELINING", "False")
    assert fleet.run_settings().pipelining_origin == "$ANSIBLE_SSH_PIPELINING"


def test_describe_says_forks_how_many_hosts_run_at_once_and_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    text = fleet.run_settings().describe(100)
    assert "forks 20 (10 per CPU, 2 CPUs)" in text and "20 of 100 hosts at a time" in text
    assert "pipelining on" in text and "ControlPersist" in text
    assert "3 of 3 hosts" in fleet.run_settings().describe(3)


# ---- what reaches ansible-runner ---------------------------------------------------------------------------------


class FakeRunner:
    """Stands in for ansible_runner's Runner: records the private project as the run sees it, reports its events
    (by default one host, h1, ok)."""

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
        for event in self.events if self.kwargs.get("limit") != "nowhere" else []:  # Ansible runs no host then
            self.kwargs["event_handler"](event)
        self.rc = 0


def ok(host: str) -> dict[str, Any]:
    res = {"changed": False, "sysctls": {}}
    return {"event": "runner_on_ok", "event_data": {"host": host, "task_action": "tcptune_sysctl", "res": res}}


@pytest.fixture
def events() -> list[dict[str, Any]]:
    """What the fake ansible-playbook reports, in order; a test may replace it."""
    return [ok("h1")]


@pytest.fixture
def fake_ansible(monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]) -> list[FakeRunner]:
    made: list[FakeRunner] = []

    def init_runner(**kwargs: Any) -> FakeRunner:
        runner = FakeRunner(kwargs, list(events))
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


@pytest.mark.parametrize("where", ["cwd", "env-file", "env-dir", "env-missing", "home"])
def test_ansible_playbook_reads_the_ansible_cfg_whose_settings_tcptune_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ansible: list[FakeRunner], where: str
) -> None:
    """ansible-runner starts ansible-playbook in a private directory: it is pointed at the file Ansible would read
    from here, the same file the pipelining and host key settings were read from."""
    cfg = {
        "cwd": tmp_path / "ansible.cfg",
        "env-file": tmp_path / "elsewhere.cfg",
        "env-dir": tmp_path / "conf" / "ansible.cfg",
        "env-missing": tmp_path / "ansible.cfg",
        "home": tmp_path / "home" / ".ansible.cfg",
    }[where]
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("[defaults]\nhost_key_checking = False\n")
    if where == "env-file":
        monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg))
    elif where == "env-dir":
        monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg.parent))
    elif where == "env-missing":
        monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "no-such.cfg"))
    fleet.run_spec(SPEC, inventory(tmp_path))
    (runner,) = fake_ansible
    assert runner.kwargs["envvars"]["ANSIBLE_CONFIG"] == str(cfg)
    assert runner.kwargs["envvars"]["ANSIBLE_HOST_KEY_CHECKING"] == "False"


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


def test_a_host_that_never_reported_is_a_failed_row_not_a_missing_one(
    tmp_path: Path, fake_ansible: list[FakeRunner]
) -> None:
    path = tmp_path / "inventory.ini"
    path.write_text("h1 ansible_host=192.0.2.1\nh2 ansible_host=192.0.2.2\n")
    result = fleet.run_spec(SPEC, str(path))  # the fake reports h1 only, as a run cut short would
    assert [(h.host, h.status) for h in result.hosts] == [("h1", "ok"), ("h2", "failed")]
    assert "no result from ansible-playbook" in result.hosts[1].message
    assert result.failed


def test_an_inventory_unreadable_here_after_hosts_started_lets_the_run_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ansible: list[FakeRunner]
) -> None:
    """A flaky dynamic inventory must not kill a push that is already changing hosts."""

    def late_failure(*_args: Any) -> list[str]:
        deadline = time.monotonic() + 10
        while not fake_ansible or fake_ansible[0].rc is None:  # until the fake run has reported its host
            assert time.monotonic() < deadline
            time.sleep(0.01)
        raise FleetError("inventory.ini: cannot read the inventory: flaky")

    monkeypatch.setattr(fleet, "inventory_hosts", late_failure)
    result = fleet.run_spec(SPEC, inventory(tmp_path))
    assert [(h.host, h.status) for h in result.hosts] == [("h1", "ok")]


def test_sigterm_stops_ansible_playbook_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ansible: list[FakeRunner]
) -> None:
    """ansible-playbook runs in a session of its own: a SIGTERM to tcptune (a cancelled CI job) must reach it."""
    monkeypatch.setattr(FakeRunner, "run", _run_until_cancelled)
    before = signal.getsignal(signal.SIGTERM)

    def terminate() -> None:
        if signal.getsignal(signal.SIGTERM) is not before:  # never kill the test runner itself
            os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(0.3, terminate)
    timer.start()
    with pytest.raises(FleetError, match="stopped by SIGTERM"):
        fleet.run_spec(SPEC, inventory(tmp_path))
    timer.join()
    assert fake_ansible[0].seen["cancelled"] is True
    assert signal.getsignal(signal.SIGTERM) is before


def _run_until_cancelled(self: FakeRunner) -> None:
    deadline = time.monotonic() + 10
    while not self.kwargs["cancel_callback"]():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    self.seen["cancelled"] = True
    self.rc = 254


def test_a_broken_inventory_is_one_line_with_ansibles_reason(
    tmp_path: Path, events: list[dict[str, Any]], fake_ansible: list[FakeRunner], capsys: pytest.CaptureFixture[str]
) -> None:
    """Not Ansible's dozen lines of warnings, one block per inventory plugin that tried."""
    events.clear()  # ansible-playbook runs no host on such an inventory
    path = tmp_path / "inventory.yml"
    path.write_text("all:\n  hosts: [\n")
    with pytest.raises(FleetError) as caught:
        fleet.run_spec(SPEC, str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read the inventory: ") and "YAML" in message and "\n" not in message
    assert capsys.readouterr().err == ""


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
