"""apply/rollback on temporary trees: journal before writes, restore on failure, persistence, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcptune import apply as core
from tcptune.errors import ApplyFailed, LiveStateError, PermissionProblem, UsageError
from tcptune.journal import COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, StateDir
from tcptune.live import ProcSys, WriteFailed

LIVE = {"net/ipv4/tcp_fin_timeout": "60", "net/core/somaxconn": "4096", "net/ipv4/tcp_tw_reuse": "2",
        "net/ipv4/ip_unprivileged_port_start": "1024", "net/ipv4/ip_local_port_range": "32768\t60999"}


@pytest.fixture
def target(tmp_path: Path) -> core.Target:
    for rel, text in LIVE.items():
        path = tmp_path / "proc" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (tmp_path / "root/etc/sysctl.d").mkdir(parents=True)
    return core.Target(str(tmp_path / "proc"), str(tmp_path / "state"), str(tmp_path / "root/etc/sysctl.d"),
                       str(tmp_path / "root"))


def desired(**values: str) -> core.Desired:
    return core.Desired("test", "fp", {k.replace("__", "."): v for k, v in values.items()}, "test.yaml")


WEB = desired(net__ipv4__tcp_fin_timeout="15", net__core__somaxconn="8192", net__ipv4__tcp_tw_reuse="1")


def live(target: core.Target, key: str) -> str | None:
    return ProcSys(target.proc_root).read(key).text


def run_apply(want: core.Desired, target: core.Target, **kw: bool) -> core.ApplyResult:
    return core.apply(want, target, core.make_plan(want, target), **kw)


def test_apply_writes_changes_persists_and_journals(target: core.Target) -> None:
    result = run_apply(WEB, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "15"
    assert sorted(result.written) == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse"]
    text = Path(target.own_file).read_text()
    assert "# profile: test" in text and "# fingerprint: fp" in text and "net.core.somaxconn = 8192" in text
    (journal,) = StateDir(target.state_dir).journals()
    assert journal.status == COMPLETE
    assert {c["key"]: c["old"] for c in journal.changes}["net.ipv4.tcp_fin_timeout"] == "60"
    assert journal.data["persist"]["previous"] is None and journal.data["persist"]["written"]


def test_second_apply_writes_nothing_and_journals_nothing(target: core.Target) -> None:
    run_apply(WEB, target)
    result = run_apply(WEB, target)
    assert result.written == [] and result.journal_id is None
    assert len(StateDir(target.state_dir).journals()) == 1


def test_journal_is_fsynced_before_the_first_write(target: core.Target, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    original = ProcSys.write

    def spy(self: ProcSys, key: str, text: str) -> None:
        seen.append(StateDir(target.state_dir).has_pending_files())
        original(self, key, text)

    monkeypatch.setattr(ProcSys, "write", spy)
    run_apply(WEB, target)
    assert seen and all(seen)


def failing_proc(bad_key: str, reason: str = "invalid", restore_fails: str | None = None) -> type[ProcSys]:
    counts: dict[str, int] = {}

    class Failing(ProcSys):
        count = counts

        def write(self, key: str, text: str) -> None:
            self.count[key] = self.count.get(key, 0) + 1
            if key == bad_key:
                raise WriteFailed(key, reason, f"the kernel rejected {text!r}")
            if key == restore_fails and self.count[key] > 1:
                raise WriteFailed(key, "busy", "the kernel reports the setting as busy")
            super().write(key, text)

    return Failing


def test_failed_write_restores_the_others_and_names_the_key(target: core.Target,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "ProcSys", failing_proc("net.ipv4.tcp_tw_reuse", "read-only"))
    with pytest.raises(LiveStateError) as caught:
        run_apply(WEB, target)
    message = str(caught.value)
    assert "net.ipv4.tcp_tw_reuse" in message and "restored" in message
    assert live(target, "net.core.somaxconn") == "4096" and live(target, "net.ipv4.tcp_fin_timeout") == "60"
    assert not Path(target.own_file).exists()
    (journal,) = StateDir(target.state_dir).journals()
    assert journal.status == FAILED and journal.data["failed"]["reason"] == "read-only"


def test_failed_restore_exits_3_and_says_what_is_left_changed(target: core.Target,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "ProcSys", failing_proc("net.ipv4.tcp_tw_reuse", restore_fails="net.core.somaxconn"))
    with pytest.raises(ApplyFailed) as caught:
        run_apply(WEB, target)
    assert caught.value.exit_code == 3
    assert "NOT restored, still at the new value: net.core.somaxconn" in str(caught.value)
    assert "restored to their previous values: net.ipv4.tcp_fin_timeout" in str(caught.value)
    assert StateDir(target.state_dir).journals()[0].status == INCOMPLETE


def test_missing_keys_refuse_up_front_unless_skipped(target: core.Target) -> None:
    want = desired(net__ipv4__tcp_fin_timeout="15", net__ipv4__tcp_mem="1 2 3")
    with pytest.raises(LiveStateError, match=r"(?s)nothing was changed.*net\.ipv4\.tcp_mem: missing on this kernel"):
        run_apply(want, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60"
    result = run_apply(want, target, skip_missing=True)
    assert [k.key for k in result.skipped] == ["net.ipv4.tcp_mem"]
    assert "-net.ipv4.tcp_mem = 1 2 3" in Path(target.own_file).read_text()


def test_stale_plan_is_refused(target: core.Target) -> None:
    shown = core.make_plan(WEB, target)
    ProcSys(target.proc_root).write("net.ipv4.tcp_fin_timeout", "30")
    with pytest.raises(LiveStateError, match="changed since the plan was shown"):
        core.apply(WEB, target, shown)


def test_kernel_clamping_is_reported(target: core.Target, monkeypatch: pytest.MonkeyPatch) -> None:
    class Clamping(ProcSys):
        def write(self, key: str, text: str) -> None:
            super().write(key, "4096" if key == "net.core.somaxconn" else text)

    monkeypatch.setattr(core, "ProcSys", Clamping)
    result = run_apply(WEB, target)
    assert result.mismatches == [("net.core.somaxconn", "4096", "8192")]


def test_a_later_sysctl_file_overriding_ours_is_reported(target: core.Target) -> None:
    later = Path(target.sysctl_root) / "etc/sysctl.d/99-local.conf"
    later.write_text("net.ipv4.tcp_fin_timeout = 30\n")
    result = run_apply(WEB, target)
    (override,) = result.overridden
    assert override.key == "net.ipv4.tcp_fin_timeout" and override.source is not None
    assert override.source.where() == f"{later}:1"


def test_rollback_restores_values_and_removes_the_file(target: core.Target) -> None:
    run_apply(WEB, target)
    result = core.rollback(target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60" and live(target, "net.core.somaxconn") == "4096"
    assert result.file_action == "removed" and not Path(target.own_file).exists()
    apply_j, rollback_j = StateDir(target.state_dir).journals()
    assert (apply_j.status, rollback_j.kind, rollback_j.status) == (ROLLED_BACK, "rollback", COMPLETE)
    assert StateDir(target.state_dir).read_last_applied() is None


def test_rollback_restores_the_previous_persisted_file(target: core.Target) -> None:
    run_apply(WEB, target)
    first = Path(target.own_file).read_text()
    run_apply(desired(net__ipv4__tcp_fin_timeout="20"), target)
    core.rollback(target)
    assert Path(target.own_file).read_text() == first
    assert live(target, "net.ipv4.tcp_fin_timeout") == "15"
    assert StateDir(target.state_dir).read_last_applied()["profile"]["values"] == WEB.values  # type: ignore[index]


def test_rollback_after_a_crash_writes_only_keys_that_moved(target: core.Target) -> None:
    state = StateDir(target.state_dir)
    journal = state.begin("apply", proc_root=target.proc_root, profile={"name": "x"},
                          changes=[{"key": "net.core.somaxconn", "old": "4096", "new": "8192"},
                                   {"key": "net.ipv4.tcp_fin_timeout", "old": "60", "new": "15"}],
                          persist={"path": target.own_file, "planned": True, "previous": None, "new": "x\n"})
    journal.update(pid=2**22 + 7)  # no such process: killed mid-apply
    ProcSys(target.proc_root).write("net.core.somaxconn", "8192")  # only the first write happened
    with pytest.raises(UsageError, match="interrupted"):
        run_apply(WEB, target)
    result = core.rollback(target)
    assert result.outcome is not None and result.outcome.applied == ["net.core.somaxconn"]
    assert live(target, "net.core.somaxconn") == "4096"
    assert result.file_action is None


def test_nothing_to_roll_back(target: core.Target) -> None:
    with pytest.raises(UsageError, match="nothing to roll back"):
        core.rollback(target)


def test_rollback_refuses_another_proc_root(target: core.Target, tmp_path: Path) -> None:
    run_apply(WEB, target)
    other = core.Target(str(tmp_path), target.state_dir, target.sysctl_dir, target.sysctl_root)
    with pytest.raises(UsageError, match="--proc-root"):
        core.rollback(other)


def test_real_proc_sys_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionProblem, match="must run as root"):
        core.require_root(core.Target(), "apply")
    core.require_root(core.Target(proc_root="/tmp/x"), "apply")  # a test tree: fine


def test_journal_records_everything_rollback_needs(target: core.Target) -> None:
    run_apply(WEB, target)
    (journal,) = StateDir(target.state_dir).journals()
    data = json.loads(Path(journal.path).read_text())
    assert set(data) >= {"id", "kind", "status", "started", "finished", "profile", "desired", "changes", "persist",
                         "proc_root"}
