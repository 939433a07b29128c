"""apply/rollback on temporary trees: journal before writes, restore on failure, persistence, rollback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tcptune import apply as core
from tcptune import target as target_module
from tcptune.errors import ApplyFailed, LiveStateError, PermissionProblem, TcptuneError, UsageError
from tcptune.journal import COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, StateDir
from tcptune.live import ProcSys, WriteFailed

LIVE = {
    "net/ipv4/tcp_fin_timeout": "60",
    "net/core/somaxconn": "4096",
    "net/ipv4/tcp_tw_reuse": "2",
    "net/ipv4/ip_unprivileged_port_start": "1024",
    "net/ipv4/ip_local_port_range": "32768\t60999",
}


@pytest.fixture
def target(tmp_path: Path) -> core.Target:
    for rel, text in LIVE.items():
        path = tmp_path / "proc" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (tmp_path / "root/etc/sysctl.d").mkdir(parents=True)
    return core.Target(
        str(tmp_path / "proc"), str(tmp_path / "state"), str(tmp_path / "root/etc/sysctl.d"), str(tmp_path / "root")
    )


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


class SyncSpy:
    """Records, in order, each fsync(2) (the path and inode its fd refers to) and each write(2) into /proc/sys."""

    def __init__(self, target: core.Target, monkeypatch: pytest.MonkeyPatch) -> None:
        self.proc_root = os.path.realpath(target.proc_root)
        self.journal_dir = os.path.realpath(os.path.join(target.state_dir, "journal"))
        self.events: list[tuple[str, str, int]] = []
        real_fsync, real_write = os.fsync, os.write

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_ino))

        def write(fd: int, data: bytes) -> int:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if path.startswith(self.proc_root + "/"):
                self.events.append(("write", path, self.pending_journal_inode()))
            return real_write(fd, data)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)

    def pending_journal_inode(self) -> int:
        (pending,) = Path(self.journal_dir).glob("*.pending.json")
        return pending.stat().st_ino

    def assert_journal_durable_before_the_first_write(self) -> None:
        """The pending journal's own data fsync'd, then its directory (the rename), then the first write."""
        kinds = [kind for kind, _, _ in self.events]
        assert "write" in kinds, self.events
        first_write = kinds.index("write")
        journal = self.events[first_write][2]
        file_syncs = [i for i, (kind, _, ino) in enumerate(self.events) if kind == "fsync" and ino == journal]
        assert file_syncs, f"the journal's data was never fsync'd: {self.events}"
        dir_syncs = [
            i
            for i, (kind, path, _) in enumerate(self.events)
            if kind == "fsync" and path == self.journal_dir and i > file_syncs[0]
        ]
        assert dir_syncs, f"the journal directory was not fsync'd after the journal: {self.events}"
        assert file_syncs[0] < dir_syncs[0] < first_write, self.events


def test_journal_is_fsynced_before_the_first_write(target: core.Target, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SyncSpy(target, monkeypatch)
    run_apply(WEB, target)
    spy.assert_journal_durable_before_the_first_write()


def test_rollback_journal_is_fsynced_before_its_first_write(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_apply(WEB, target)
    spy = SyncSpy(target, monkeypatch)
    core.rollback(target)
    spy.assert_journal_durable_before_the_first_write()


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


def test_failed_write_restores_the_others_and_names_the_key(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_module, "ProcSys", failing_proc("net.ipv4.tcp_tw_reuse", "read-only"))
    with pytest.raises(LiveStateError) as caught:
        run_apply(WEB, target)
    message = str(caught.value)
    assert "net.ipv4.tcp_tw_reuse" in message and "restored" in message
    assert live(target, "net.core.somaxconn") == "4096" and live(target, "net.ipv4.tcp_fin_timeout") == "60"
    assert not Path(target.own_file).exists()
    (journal,) = StateDir(target.state_dir).journals()
    assert journal.status == FAILED and journal.data["failed"]["reason"] == "read-only"


def test_failed_restore_exits_3_and_says_what_is_left_changed(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        target_module, "ProcSys", failing_proc("net.ipv4.tcp_tw_reuse", restore_fails="net.core.somaxconn")
    )
    with pytest.raises(ApplyFailed) as caught:
        run_apply(WEB, target)
    assert caught.value.exit_code == 3
    assert "NOT restored, still at the new value: net.core.somaxconn" in str(caught.value)
    assert "restored to their previous values: net.ipv4.tcp_fin_timeout" in str(caught.value)
    assert StateDir(target.state_dir).journals()[0].status == INCOMPLETE


def full_disk_for(path: str) -> object:
    """persist.atomic_write, failing (ENOSPC) for ``path`` only: the journal is still written."""
    real = core.persist.atomic_write

    def write(target_path: str, text: str, mode: int = 0o644) -> None:
        if target_path == path:
            raise OSError(28, "No space left on device")
        real(target_path, text, mode)

    return write


def test_a_sysctl_file_that_cannot_be_written_puts_the_live_values_back(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {key: ProcSys(target.proc_root).read(key).text for key in LIVE}
    monkeypatch.setattr(core.persist, "atomic_write", full_disk_for(target.own_file))
    with pytest.raises(LiveStateError) as caught:
        run_apply(WEB, target)
    assert caught.value.exit_code == 1
    assert str(caught.value) == (
        f"could not write {target.own_file}: No space left on device; "
        "the 3 changed key(s) were restored, nothing is changed"
    )
    assert {key: ProcSys(target.proc_root).read(key).text for key in LIVE} == before
    assert not Path(target.own_file).exists()
    (journal,) = StateDir(target.state_dir).journals()
    assert journal.status == FAILED
    assert sorted(journal.data["restored"]) == [
        "net.core.somaxconn",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_tw_reuse",
    ]


def test_a_sysctl_file_that_cannot_be_written_and_a_key_that_cannot_be_put_back_exit_3(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.persist, "atomic_write", full_disk_for(target.own_file))
    monkeypatch.setattr(target_module, "ProcSys", failing_proc("no.such.key", restore_fails="net.core.somaxconn"))
    with pytest.raises(ApplyFailed) as caught:
        run_apply(WEB, target)
    assert caught.value.exit_code == 3
    assert "NOT restored, still at the new value: net.core.somaxconn (the kernel reports" in str(caught.value)
    assert "restored to their previous values: net.ipv4.tcp_tw_reuse, net.ipv4.tcp_fin_timeout" in str(caught.value)
    # the others are back: one key that cannot be put back does not send them forward again
    assert live(target, "net.core.somaxconn") == "8192"
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60" and live(target, "net.ipv4.tcp_tw_reuse") == "2"
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

    monkeypatch.setattr(target_module, "ProcSys", Clamping)
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
    journal = state.begin(
        "apply",
        proc_root=target.proc_root,
        profile={"name": "x"},
        changes=[
            {"key": "net.core.somaxconn", "old": "4096", "new": "8192"},
            {"key": "net.ipv4.tcp_fin_timeout", "old": "60", "new": "15"},
        ],
        persist={"path": target.own_file, "planned": True, "previous": None, "new": "x\n"},
    )
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
    assert set(data) >= {
        "id",
        "kind",
        "status",
        "started",
        "finished",
        "profile",
        "desired",
        "changes",
        "persist",
        "proc_root",
    }


# ---- journals are data: checked before rollback acts on them ------------------------------------------------


def hand_edit(journal_path: str, edit: object) -> None:
    data = json.loads(Path(journal_path).read_text())
    edit(data)  # type: ignore[operator]
    Path(journal_path).write_text(json.dumps(data))


@pytest.mark.parametrize("victim_kind", ["other-file", "same-name-elsewhere"])
def test_rollback_never_touches_a_file_the_journal_names_but_does_not_own(
    target: core.Target, tmp_path: Path, victim_kind: str
) -> None:
    run_apply(WEB, target)
    victim_dir = tmp_path / "elsewhere"
    victim_dir.mkdir()
    victim = victim_dir / ("precious.txt" if victim_kind == "other-file" else "90-tcptune.conf")
    victim.write_text("keep me\n")
    (journal,) = StateDir(target.state_dir).journals()
    hand_edit(journal.path, lambda d: d["persist"].update(path=str(victim), previous=None, new="keep me\n"))
    with pytest.raises(TcptuneError) as caught:
        core.rollback(target)
    assert str(caught.value).startswith(f"{journal.path}: the journal names {victim}")
    assert victim.read_text() == "keep me\n"
    assert live(target, "net.ipv4.tcp_fin_timeout") == "15"  # refused before any write
    assert [j.kind for j in StateDir(target.state_dir).journals()] == ["apply"]


def test_rollback_follows_a_symlinked_sysctl_dir_to_the_same_own_file(target: core.Target, tmp_path: Path) -> None:
    link = tmp_path / "sysctl-link"
    link.symlink_to(target.sysctl_dir)
    run_apply(WEB, target._replace(sysctl_dir=str(link)))
    result = core.rollback(target)
    assert result.file_action == "removed" and not Path(target.own_file).exists()


def test_rollback_of_a_journal_with_a_malformed_change_writes_nothing(target: core.Target) -> None:
    run_apply(WEB, target)
    (journal,) = StateDir(target.state_dir).journals()
    hand_edit(journal.path, lambda d: d["changes"][-1].update(old=[5]))
    with pytest.raises(LiveStateError, match=r"malformed journal: changes\[2\]\.old must be a string"):
        core.rollback(target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "15" and live(target, "net.core.somaxconn") == "8192"


def test_a_journal_old_value_recorded_as_a_number_is_restored(target: core.Target) -> None:
    run_apply(WEB, target)
    (journal,) = StateDir(target.state_dir).journals()
    hand_edit(journal.path, lambda d: [c.update(old=int(c["old"])) for c in d["changes"]])
    core.rollback(target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60" and live(target, "net.core.somaxconn") == "4096"


def test_a_malformed_journal_blocks_apply_before_any_write(target: core.Target) -> None:
    state = StateDir(target.state_dir)
    state.ensure()
    (Path(state.journal_dir) / "x.pending.json").write_text(json.dumps({"id": "x", "changes": 5}))
    with pytest.raises(LiveStateError, match=r"x\.pending\.json: malformed journal"):
        run_apply(WEB, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60"


def test_an_interrupted_apply_whose_pid_was_reused_still_blocks_apply(target: core.Target) -> None:
    journal = StateDir(target.state_dir).begin("apply", proc_root=target.proc_root, changes=[])
    journal.update(pid=1)  # always alive: the pid of a killed apply, reused
    with pytest.raises(UsageError, match="interrupted"):
        run_apply(WEB, target)
    core.rollback(target)
    run_apply(WEB, target)


def test_a_group_writable_state_dir_is_refused(target: core.Target) -> None:
    Path(target.state_dir).mkdir(mode=0o700)
    Path(target.state_dir).chmod(0o770)
    with pytest.raises(LiveStateError, match="chmod 700"):
        run_apply(WEB, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60"


# ---- the state directory failing after the kernel changed -------------------------------------------------


def test_a_failed_last_applied_write_after_a_successful_apply_is_a_warning(target: core.Target) -> None:
    Path(target.state_dir, "last-applied.json").mkdir(parents=True)
    result = run_apply(WEB, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "15" and Path(target.own_file).exists()
    assert len(result.warnings) == 1 and "last-applied.json" in result.warnings[0]
    assert StateDir(target.state_dir).journals()[0].status == COMPLETE


def test_a_journal_that_cannot_be_finished_says_what_changed(
    target: core.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcptune.journal

    real = tcptune.journal.atomic_write

    def full_disk(path: str, text: str, mode: int = 0o644) -> None:
        if path.endswith(".json") and not path.endswith(".pending.json"):
            raise OSError(28, "No space left on device")
        real(path, text, mode)

    monkeypatch.setattr(tcptune.journal, "atomic_write", full_disk)
    with pytest.raises(LiveStateError) as caught:
        run_apply(WEB, target)
    message = str(caught.value)
    assert (
        "3 key(s) were changed on the live kernel (net.core.somaxconn, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_tw_reuse)"
        in message
        and f"{target.own_file} was written" in message
    )
    assert "no space left on device" in message.lower() and "tcptune rollback" in message
    monkeypatch.undo()
    (_pending,) = StateDir(target.state_dir).interrupted()  # still pending: rollback can undo it
    core.rollback(target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60" and not Path(target.own_file).exists()


def test_a_journal_that_cannot_be_started_changes_nothing(target: core.Target, monkeypatch: pytest.MonkeyPatch) -> None:
    import tcptune.journal

    def full_disk(path: str, text: str, mode: int = 0o644) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tcptune.journal, "atomic_write", full_disk)
    with pytest.raises(LiveStateError, match=r"cannot write the journal .*; nothing was changed"):
        run_apply(WEB, target)
    assert live(target, "net.ipv4.tcp_fin_timeout") == "60"


# ---- --proc-root ---------------------------------------------------------------------------------------------


def test_an_empty_proc_root_is_a_usage_error(target: core.Target) -> None:
    with pytest.raises(UsageError, match="--proc-root must not be empty"):
        core.make_plan(WEB, target._replace(proc_root=""))


def test_a_missing_proc_root_is_an_error_not_missing_keys(target: core.Target, tmp_path: Path) -> None:
    with pytest.raises(LiveStateError, match="no such directory"):
        core.make_plan(WEB, target._replace(proc_root=str(tmp_path / "nope")))
    with pytest.raises(LiveStateError, match="no such directory"):
        core.rollback(target._replace(proc_root=str(tmp_path / "nope")))


def test_a_key_linked_out_of_the_proc_root_is_unreadable_and_refused(target: core.Target, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("1\n")
    (Path(target.proc_root) / "net/core/rmem_max").symlink_to(outside)
    want = desired(net__core__rmem_max="2", net__ipv4__tcp_fin_timeout="15")
    (state,) = [k for k in core.make_plan(want, target).keys if k.key == "net.core.rmem_max"]
    assert state.status == "unreadable" and "outside" in (state.note or "")
    with pytest.raises(LiveStateError, match="nothing was changed"):
        run_apply(want, target)
    assert outside.read_text() == "1\n"
