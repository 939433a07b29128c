"""The engine on temporary /proc/sys and sysctl.d trees: transitions, restores, recovery, durability."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tcptune import catalog
from tcptune import target as target_module
from tcptune.engine import Engine, Options, boot_from_sysctl_d
from tcptune.failures import LockHeld, MalformedState, Refused, RestoreIncomplete, StateError, Undone
from tcptune.live import ProcSys, WriteFailed
from tcptune.plan import Desired
from tcptune.target import Target
from tests.unit.state_files import FIN, SOMAXCONN, generation_doc, read_json, write_generation, write_pending

TW = "net.ipv4.tcp_tw_reuse"
LIVE = {
    "net/ipv4/tcp_fin_timeout": "60",
    "net/core/somaxconn": "4096",
    "net/ipv4/tcp_tw_reuse": "2",
    "net/ipv4/ip_unprivileged_port_start": "1024",
    "net/ipv4/ip_local_port_range": "32768\t60999",
}


@pytest.fixture
def target(tmp_path: Path) -> Target:
    for rel, text in LIVE.items():
        path = tmp_path / "proc" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (tmp_path / "root/etc/sysctl.d").mkdir(parents=True)
    return Target(
        str(tmp_path / "proc"), str(tmp_path / "state"), str(tmp_path / "root/etc/sysctl.d"), str(tmp_path / "root")
    )


def known(key: str) -> bool:
    return catalog.get(key) is not None


def engine(target: Target, **kw: object) -> Engine:
    """The engine with systemd-sysctl as the boot applier (the tree has no init to detect one from)."""
    kw.setdefault("boot_reader", boot_from_sysctl_d(target, "systemd"))
    return Engine(target, known, **kw)  # type: ignore[arg-type]


def profile(name: str, **values: str) -> Desired:
    return Desired(name, f"fp-{name}", {k.replace("__", "."): v for k, v in values.items()}, f"{name}.yaml")


WEB = profile("web", net__ipv4__tcp_fin_timeout="15", net__core__somaxconn="8192", net__ipv4__tcp_tw_reuse="1")
SMALL = profile("small", net__ipv4__tcp_fin_timeout="20")


def live(target: Target, key: str) -> str | None:
    return ProcSys(target.proc_root).read(key).text


def lives(target: Target) -> dict[str, str | None]:
    return {key: live(target, key) for key in (FIN, SOMAXCONN, TW)}


BEFORE = {FIN: "60", SOMAXCONN: "4096", TW: "2"}


def apply(target: Target, desired: Desired, options: Options | None = None, **kw: object) -> int | None:
    e = engine(target, **kw)
    return e.execute(e.plan_apply(desired, options or Options())).generation


def rollback(target: Target, to: int | None = None) -> int | None:
    e = engine(target)
    return e.execute(e.plan_rollback(to)).generation


def reset(target: Target) -> int | None:
    e = engine(target)
    return e.execute(e.plan_reset()).generation


def generation(target: Target, n: int) -> dict[str, object]:
    data: dict[str, object] = read_json(Path(target.state_dir, "generations", f"{n}.json"))
    return data


def numbers(target: Target) -> list[int]:
    return engine(target).state.numbers()


def own(target: Target) -> Path:
    return Path(target.own_file)


def pending_exists(target: Target) -> bool:
    return Path(target.state_dir, "pending.json").exists()


# ---- apply -------------------------------------------------------------------------------------------------------


def test_apply_writes_persists_and_commits_generation_1_with_the_baseline(target: Target) -> None:
    (Path(target.sysctl_dir) / "50-vendor.conf").write_text("net.ipv4.tcp_fin_timeout = 45\n")
    assert apply(target, WEB) == 1
    assert lives(target) == {FIN: "15", SOMAXCONN: "8192", TW: "1"}
    text = own(target).read_text()
    assert "# profile: web" in text and "net.core.somaxconn = 8192" in text
    gen = generation(target, 1)
    assert (gen["kind"], gen["from"], gen["values"]) == ("apply", 0, WEB.values)
    assert gen["profile"] == {"name": "web", "fingerprint": "fp-web", "source": "web.yaml"}
    assert gen["baseline"] == {
        FIN: {"live": "60", "boot": "45"},
        SOMAXCONN: {"live": "4096", "boot": None},
        TW: {"live": "2", "boot": None},
    }
    assert gen["file"] == {"path": target.own_file, "content": text, "baseline": None}
    assert not pending_exists(target)


def test_applying_the_same_profile_again_makes_no_generation(target: Target) -> None:
    apply(target, WEB)
    e = engine(target)
    again = e.plan_apply(WEB)
    assert again.noop and again.writes == () and again.file is None
    assert e.execute(again).generation is None
    assert numbers(target) == [1]


def test_the_same_profile_after_drift_writes_and_makes_a_generation(target: Target) -> None:
    apply(target, WEB)
    ProcSys(target.proc_root).write(SOMAXCONN, "128")
    assert apply(target, WEB) == 2
    assert live(target, SOMAXCONN) == "8192"
    assert generation(target, 2)["baseline"] == generation(target, 1)["baseline"]  # carried, not re-recorded


def test_switching_profiles_reverts_the_dropped_keys_to_their_baseline(target: Target) -> None:
    apply(target, WEB)
    e = engine(target)
    planned = e.plan_apply(SMALL)
    assert [(k.key, k.status) for k in planned.plan.keys] == [(SOMAXCONN, "revert"), (FIN, "differs"), (TW, "revert")]
    assert {(c.key, c.old, c.new) for c in planned.writes} == {
        (SOMAXCONN, "8192", "4096"),
        (FIN, "15", "20"),
        (TW, "1", "2"),
    }
    e.execute(planned)
    assert lives(target) == {FIN: "20", SOMAXCONN: "4096", TW: "2"}
    gen = generation(target, 2)
    assert gen["values"] == {FIN: "20"}
    assert gen["baseline"] == {FIN: {"live": "60", "boot": None}}  # the dropped keys' baselines are dropped
    assert "somaxconn" not in own(target).read_text()


def test_keep_unmanaged_keeps_the_dropped_keys_live_and_says_they_are_no_longer_persisted(target: Target) -> None:
    apply(target, WEB)
    e = engine(target)
    planned = e.plan_apply(SMALL, Options(keep_unmanaged=True))
    assert planned.released == (SOMAXCONN, TW) and [c.key for c in planned.writes] == [FIN]
    assert any("no longer persisted: a reboot resets them" in w for w in planned.warnings)
    e.execute(planned)
    assert lives(target) == {FIN: "20", SOMAXCONN: "8192", TW: "1"}
    assert generation(target, 2)["values"] == {FIN: "20"}
    assert "somaxconn" not in own(target).read_text()
    reset(target)  # they left management: a reset does not touch them
    assert lives(target) == {FIN: "60", SOMAXCONN: "8192", TW: "1"}


def test_a_dropped_key_with_no_recorded_baseline_is_left_with_a_warning(target: Target) -> None:
    write_generation(
        Path(target.state_dir),
        generation_doc(1, values={SOMAXCONN: "8192"}, baseline={SOMAXCONN: {"live": None, "boot": None}}),
    )
    ProcSys(target.proc_root).write(SOMAXCONN, "8192")
    planned = engine(target).plan_apply(SMALL)
    assert [c.key for c in planned.writes] == [FIN]
    assert (
        f"{SOMAXCONN} leaves management; no value from before tcptune was recorded: left as it is" in planned.warnings
    )


def test_missing_keys_refuse_up_front_unless_skipped(target: Target) -> None:
    want = profile("m", net__ipv4__tcp_fin_timeout="15", net__ipv4__tcp_mem="1 2 3")
    with pytest.raises(Refused, match=r"nothing was changed; these keys cannot be set here: net\.ipv4\.tcp_mem: miss"):
        apply(target, want)
    assert live(target, FIN) == "60" and numbers(target) == []
    apply(target, want, Options(skip_missing=True))
    assert generation(target, 1)["skipped"] == ["net.ipv4.tcp_mem"]
    assert "-net.ipv4.tcp_mem = 1 2 3" in own(target).read_text()


def test_no_persist_leaves_the_file_alone(target: Target) -> None:
    apply(target, WEB, Options(persist=False))
    assert not own(target).exists() and generation(target, 1)["file"] is None
    apply(target, WEB)
    apply(target, SMALL, Options(persist=False))
    assert "# profile: web" in own(target).read_text()  # untouched: still web's


def test_a_stale_plan_is_refused_and_nothing_changes(target: Target) -> None:
    e = engine(target)
    shown = e.plan_apply(WEB)
    ProcSys(target.proc_root).write(FIN, "30")
    with pytest.raises(Refused, match="changed since the plan was shown"):
        e.execute(shown)
    assert live(target, SOMAXCONN) == "4096" and numbers(target) == [] and not pending_exists(target)


def test_a_plan_made_before_another_generation_is_refused(target: Target) -> None:
    e = engine(target)
    shown = e.plan_apply(SMALL)
    apply(target, WEB)
    ProcSys(target.proc_root).write(FIN, "60")  # even with the live value back where the plan saw it
    with pytest.raises(Refused, match="changed since the plan was shown"):
        e.execute(shown)


def test_a_held_lock_refuses_at_once(target: Target) -> None:
    e = engine(target)
    planned = e.plan_apply(WEB)
    with engine(target).state.lock(), pytest.raises(LockHeld):
        e.execute(planned)
    assert live(target, FIN) == "60"


# ---- the sysctl.d file: never through a non-regular file ---------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "fifo", "dangling-symlink"])
def test_a_non_regular_own_file_is_refused_before_anything_changes(target: Target, tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim.conf"
    if kind == "symlink":
        victim.write_text("keep\n")
        own(target).symlink_to(victim)
    elif kind == "dangling-symlink":
        own(target).symlink_to(victim)
    else:
        os.mkfifo(own(target))
    with pytest.raises(Refused) as caught:
        engine(target).plan_apply(WEB)
    assert caught.value.exit_code == 1
    message = str(caught.value)
    assert message.startswith(f"{target.own_file}: it is a ") and "not a regular file" in message
    assert "\n" not in message
    assert live(target, FIN) == "60" and numbers(target) == []
    assert not victim.exists() or victim.read_text() == "keep\n"


def test_a_non_utf8_own_file_is_refused_in_one_line(target: Target) -> None:
    own(target).write_bytes(b"net.ipv4.tcp_fin_timeout = \xff\n")
    with pytest.raises(Refused, match=r"90-tcptune\.conf: it is not UTF-8 text"):
        engine(target).plan_apply(WEB)


def test_an_own_file_over_1_mib_is_refused(target: Target) -> None:
    own(target).write_text("#" * (1 << 20) + "\n")
    with pytest.raises(Refused, match="larger than 1048576 bytes"):
        engine(target).plan_apply(WEB)


def test_the_file_present_before_tcptune_is_the_file_baseline_and_reset_restores_it(target: Target) -> None:
    own(target).write_text("# mine\nnet.ipv4.tcp_fin_timeout = 30\n")
    apply(target, WEB)
    assert generation(target, 1)["file"]["baseline"] == "# mine\nnet.ipv4.tcp_fin_timeout = 30\n"  # type: ignore[index]
    reset(target)
    assert own(target).read_text() == "# mine\nnet.ipv4.tcp_fin_timeout = 30\n"
    assert lives(target) == BEFORE


# ---- rollback and reset ------------------------------------------------------------------------------------


def test_rollback_creates_a_generation_and_can_itself_be_rolled_back(target: Target) -> None:
    apply(target, WEB)
    apply(target, SMALL)
    web_file = generation(target, 1)["file"]["content"]  # type: ignore[index]
    assert rollback(target) == 3
    assert lives(target) == {FIN: "15", SOMAXCONN: "8192", TW: "1"} and own(target).read_text() == web_file
    gen = generation(target, 3)
    assert (gen["kind"], gen["from"], gen["target"], gen["values"]) == ("rollback", 2, 1, WEB.values)
    assert rollback(target) == 4  # back to generation 2's state: small
    assert lives(target) == {FIN: "20", SOMAXCONN: "4096", TW: "2"} and "# profile: small" in own(target).read_text()


def test_rollback_to_n_twice_is_a_no_op_the_second_time(target: Target) -> None:
    apply(target, WEB)
    apply(target, SMALL)
    assert rollback(target, to=1) == 3
    e = engine(target)
    again = e.plan_rollback(1)
    assert again.noop and e.execute(again).generation is None
    assert numbers(target) == [1, 2, 3] and lives(target) == {FIN: "15", SOMAXCONN: "8192", TW: "1"}


def test_rollback_to_0_is_a_reset(target: Target) -> None:
    apply(target, WEB)
    rollback(target, to=0)
    assert lives(target) == BEFORE and not own(target).exists()
    assert generation(target, 2)["values"] == {} and generation(target, 2)["target"] == 0


def test_nothing_to_roll_back_and_no_such_generation(target: Target) -> None:
    with pytest.raises(Refused, match="nothing to roll back"):
        engine(target).plan_rollback()
    apply(target, WEB)
    with pytest.raises(Refused, match="no generation 5: the generations here are 1 to 1"):
        engine(target).plan_rollback(5)


def test_reset_restores_every_key_and_removes_the_file_then_is_up_to_date(target: Target) -> None:
    apply(target, WEB)
    apply(target, profile("more", net__ipv4__tcp_fin_timeout="25", net__core__somaxconn="1000"))
    assert reset(target) == 3
    assert lives(target) == BEFORE and not own(target).exists()
    gen = generation(target, 3)
    assert (gen["kind"], gen["values"], gen["baseline"], gen["file"], gen["profile"]) == ("reset", {}, {}, None, None)
    assert engine(target).plan_reset().noop


@pytest.mark.parametrize("how", ["rollback", "reset"])
def test_a_file_changed_by_someone_since_is_left_alone_with_a_warning(target: Target, how: str) -> None:
    apply(target, WEB)
    apply(target, SMALL)
    own(target).write_text("# edited by hand\nnet.ipv4.tcp_fin_timeout = 33\n")
    e = engine(target)
    planned = e.plan_rollback() if how == "rollback" else e.plan_reset()
    assert planned.file is None
    assert any("was changed by someone else since tcptune last wrote it" in w for w in planned.warnings)
    e.execute(planned)
    assert own(target).read_text() == "# edited by hand\nnet.ipv4.tcp_fin_timeout = 33\n"


def test_a_generation_made_with_another_sysctl_dir_is_refused_naming_the_option(target: Target, tmp_path: Path) -> None:
    elsewhere = target._replace(sysctl_dir=str(tmp_path / "elsewhere"))
    apply(elsewhere, WEB)
    for plan in (lambda e: e.plan_rollback(), lambda e: e.plan_reset(), lambda e: e.plan_apply(SMALL)):
        with pytest.raises(Refused, match=f"pass --sysctl-dir {tmp_path / 'elsewhere'}"):
            plan(engine(target))
    assert (tmp_path / "elsewhere/90-tcptune.conf").exists() and live(target, FIN) == "15"
    reset(elsewhere)
    assert not (tmp_path / "elsewhere/90-tcptune.conf").exists()


def test_a_symlinked_sysctl_dir_is_the_same_own_file(target: Target, tmp_path: Path) -> None:
    link = tmp_path / "sysctl-link"
    link.symlink_to(target.sysctl_dir)
    apply(target._replace(sysctl_dir=str(link)), WEB)
    reset(target)
    assert not own(target).exists()


def test_a_malformed_old_generation_stops_only_a_rollback_to_it(target: Target) -> None:
    apply(target, WEB)
    apply(target, SMALL)
    path = Path(target.state_dir, "generations", "1.json")
    data = read_json(path)
    data["values"]["kernel.core_pattern"] = "|/bin/sh"
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedState, match=f"{path}: malformed generation"):
        engine(target).plan_rollback()
    apply(target, WEB)
    reset(target)
    assert lives(target) == BEFORE


def test_a_malformed_current_generation_stops_apply_naming_the_file(target: Target) -> None:
    write_generation(Path(target.state_dir), generation_doc(1, values={"kernel.core_pattern": "x"}, baseline={}))
    with pytest.raises(MalformedState, match=r"generations/1\.json: malformed generation: .*kernel\.core_pattern"):
        engine(target).plan_apply(WEB)
    assert live(target, FIN) == "60"


# ---- failures: everything put back -------------------------------------------------------------------------


def proc_class(
    fail_on: str | None = None, *, restore_fails: str | None = None, clamp: dict[str, int] | None = None
) -> type[ProcSys]:
    """A ProcSys whose writes fail for one key, whose second write of another fails, or that caps values (as a
    kernel handler may store less than it was given without failing the write)."""
    counts: dict[str, int] = {}

    class Faulty(ProcSys):
        def write(self, key: str, text: str) -> None:
            counts[key] = counts.get(key, 0) + 1
            if key == fail_on:
                raise WriteFailed(key, "invalid", f"the kernel rejected {text!r}")
            if key == restore_fails and counts[key] > 1:
                raise WriteFailed(key, "busy", "the kernel reports the setting as busy")
            cap = (clamp or {}).get(key)
            super().write(key, str(min(int(text), cap)) if cap is not None else text)

    return Faulty


def test_a_failed_write_restores_the_others_and_names_the_key(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target_module, "ProcSys", proc_class(TW))
    with pytest.raises(Undone) as caught:
        apply(target, WEB)
    assert caught.value.exit_code == 1
    assert str(caught.value) == (
        f"apply failed at {TW}: the kernel rejected '1'; the 2 key(s) already changed were restored "
        f"({FIN}, {SOMAXCONN}); nothing is changed"
    )
    assert lives(target) == BEFORE and not own(target).exists()
    assert numbers(target) == [] and not pending_exists(target)


def test_a_failed_restore_exits_3_keeps_the_pending_record_and_recover_finishes(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_module, "ProcSys", proc_class(TW, restore_fails=SOMAXCONN))
    with pytest.raises(RestoreIncomplete) as caught:
        apply(target, WEB)
    assert caught.value.exit_code == 3
    assert f"NOT restored, still at the new value: {SOMAXCONN}" in str(caught.value)
    assert "'tcptune recover' retries" in str(caught.value)
    assert pending_exists(target) and live(target, SOMAXCONN) == "8192"
    monkeypatch.undo()
    recovery = engine(target).recover()
    assert recovery.action == "restored" and recovery.restored == (SOMAXCONN,)
    assert lives(target) == BEFORE and not pending_exists(target) and numbers(target) == []


def test_a_clamped_value_undoes_everything_and_exits_1(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target_module, "ProcSys", proc_class(clamp={SOMAXCONN: 5000}))
    with pytest.raises(Undone) as caught:
        apply(target, WEB)
    assert caught.value.exit_code == 1
    assert str(caught.value) == f"{SOMAXCONN}: the kernel keeps 5000, expected 8192; every change was undone"
    assert lives(target) == BEFORE and not own(target).exists() and numbers(target) == []


def full_disk_for(path: str, real: Callable[..., None]) -> Callable[..., None]:
    def write(target_path: str, text: str, mode: int = 0o644) -> None:
        if target_path == path:
            raise OSError(28, "No space left on device")
        real(target_path, text, mode)

    return write


def test_a_sysctl_file_that_cannot_be_written_puts_the_live_values_back(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcptune.persist

    monkeypatch.setattr(tcptune.persist, "atomic_write", full_disk_for(target.own_file, tcptune.persist.atomic_write))
    with pytest.raises(Undone) as caught:
        apply(target, WEB)
    assert str(caught.value) == (
        f"could not write {target.own_file}: no space left on device; the 3 changed key(s) were restored"
    )
    assert lives(target) == BEFORE and not own(target).exists() and numbers(target) == []


def test_a_generation_that_cannot_be_committed_undoes_everything(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcptune.state

    generation_1 = str(Path(target.state_dir, "generations", "1.json"))
    monkeypatch.setattr(tcptune.state, "atomic_write", full_disk_for(generation_1, tcptune.state.atomic_write))
    with pytest.raises(
        Undone, match=r"could not record generation 1: .*no space left on device; every change was undone"
    ):
        apply(target, WEB)
    assert lives(target) == BEFORE and not own(target).exists() and not pending_exists(target)


def test_a_pending_record_that_cannot_be_written_changes_nothing(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcptune.state

    pending = str(Path(target.state_dir, "pending.json"))
    monkeypatch.setattr(tcptune.state, "atomic_write", full_disk_for(pending, tcptune.state.atomic_write))
    with pytest.raises(Refused, match=r"cannot write .*pending\.json: no space left on device; nothing was changed"):
        apply(target, WEB)
    assert lives(target) == BEFORE


def test_an_interrupted_transaction_refuses_apply_until_recovered(target: Target) -> None:
    write_pending(Path(target.state_dir), writes=[{"key": SOMAXCONN, "old": "4096", "new": "8"}])
    ProcSys(target.proc_root).write(SOMAXCONN, "8")
    with pytest.raises(Refused, match=r"an interrupted apply \(generation 0 -> 1, .*run 'tcptune recover'"):
        apply(target, WEB)
    assert live(target, SOMAXCONN) == "8"


# ---- recover -----------------------------------------------------------------------------------------------


class Killed(BaseException):
    """What kill -9 looks like to the code under test: nothing after it runs (only `finally` blocks)."""


def killer(at: int) -> Callable[[str], None]:
    calls = []

    def before_write(key: str) -> None:
        calls.append(key)
        if len(calls) == at:
            raise Killed(key)

    return before_write


@pytest.mark.parametrize("at", [1, 2, 3])
def test_a_kill_between_writes_is_recovered_to_the_from_generation_exactly(target: Target, at: int) -> None:
    apply(target, SMALL)
    state_before = (lives(target), own(target).read_text(), numbers(target))
    with pytest.raises(Killed):
        apply(target, WEB, before_write=killer(at))
    assert pending_exists(target)
    recovery = engine(target).recover()
    assert recovery.action == "restored"
    assert (lives(target), own(target).read_text(), numbers(target)) == state_before
    assert not pending_exists(target)
    assert engine(target).recover().action == "nothing"


def test_a_kill_after_writing_a_key_the_kernel_prints_with_tabs_is_recoverable(target: Target) -> None:
    """The kernel prints ``32768\t60999``; the pending record holds it as one line, and recover writes it back."""
    ports = profile("ports", net__ipv4__ip_local_port_range="20000 60999", net__ipv4__tcp_fin_timeout="15")
    with pytest.raises(Killed):
        apply(target, ports, before_write=killer(2))
    pending = read_json(Path(target.state_dir, "pending.json"))
    assert pending["writes"][0] == {"key": "net.ipv4.ip_local_port_range", "old": "32768 60999", "new": "20000 60999"}
    assert live(target, "net.ipv4.ip_local_port_range") == "20000 60999"
    assert engine(target).recover().action == "restored"
    assert live(target, "net.ipv4.ip_local_port_range") == "32768 60999" and not pending_exists(target)


def test_recover_after_the_commit_only_removes_the_record(target: Target) -> None:
    apply(target, WEB)
    write_pending(Path(target.state_dir), from_=0, writes=[{"key": FIN, "old": "60", "new": "15"}])
    recovery = engine(target).recover()
    assert recovery.action == "completed" and live(target, FIN) == "15" and not pending_exists(target)


def test_recover_is_itself_crash_safe(target: Target) -> None:
    with pytest.raises(Killed):
        apply(target, WEB, before_write=killer(3))  # two keys written, then killed
    with pytest.raises(RestoreIncomplete):  # recover killed part-way (its hook raises an ordinary error)
        engine(target, before_write=lambda key: (_ for _ in ()).throw(OSError("stopped"))).recover()
    assert pending_exists(target)
    with pytest.raises(Killed):
        engine(target, before_write=killer(1)).recover()
    assert engine(target).recover().action == "restored"
    assert lives(target) == BEFORE and not pending_exists(target)


def test_recover_puts_the_file_back_only_if_it_is_what_the_transaction_wrote(target: Target) -> None:
    write_pending(
        Path(target.state_dir),
        file={"path": target.own_file, "old": None, "new": "# new\n"},
        writes=[{"key": FIN, "old": "60", "new": "15"}],
    )
    own(target).write_text("# new\n")
    ProcSys(target.proc_root).write(FIN, "15")
    recovery = engine(target).recover()
    assert recovery.file_action == "removed" and not own(target).exists() and live(target, FIN) == "60"


def test_recover_refuses_a_record_naming_another_file(target: Target, tmp_path: Path) -> None:
    victim = tmp_path / "precious.conf"
    victim.write_text("keep\n")
    write_pending(Path(target.state_dir), file={"path": str(victim), "old": None, "new": "keep\n"})
    with pytest.raises(Refused, match="pass --sysctl-dir"):
        engine(target).recover()
    assert victim.read_text() == "keep\n"


def test_a_malformed_pending_record_is_named(target: Target) -> None:
    path = write_pending(Path(target.state_dir), writes=[{"key": "kernel.core_pattern", "old": "c", "new": "|/x"}])
    with pytest.raises(StateError, match=f"{path}: malformed pending record"):
        engine(target).recover()


# ---- durability: what is fsync'd before what ----------------------------------------------------------------


class SyncSpy:
    """Records, in order, each fsync(2) (the path its fd refers to and its inode) and each write(2) to /proc/sys."""

    def __init__(self, target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
        self.proc_root = os.path.realpath(target.proc_root)
        self.state_dir = os.path.realpath(target.state_dir)
        self.events: list[tuple[str, str, int]] = []
        real_fsync, real_write = os.fsync, os.write

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_ino))

        def write(fd: int, data: bytes) -> int:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if path.startswith(self.proc_root + "/"):
                self.events.append(("write", path, self.inode("pending.json")))
            return real_write(fd, data)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)

    def inode(self, rel: str) -> int:
        return os.stat(os.path.join(self.state_dir, rel)).st_ino

    def index(self, kind: str, path: str | None = None, inode: int | None = None, after: int = -1) -> int:
        for i, (k, p, ino) in enumerate(self.events):
            if i > after and k == kind and (path is None or p == path) and (inode is None or ino == inode):
                return i
        raise AssertionError(f"no {kind} {path or ''} {inode or ''} after {after}: {self.events}")


def test_the_pending_record_then_its_directory_are_fsynced_before_the_first_write(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(target, SMALL)
    spy = SyncSpy(target, monkeypatch)
    apply(target, WEB)
    first_write = spy.index("write")
    pending = spy.events[first_write][2]
    record = spy.index("fsync", inode=pending)
    directory = spy.index("fsync", path=spy.state_dir, after=record)
    assert record < directory < first_write


def test_the_generation_file_and_its_directory_are_fsynced_after_the_last_write(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SyncSpy(target, monkeypatch)
    apply(target, WEB)
    last_write = max(i for i, e in enumerate(spy.events) if e[0] == "write")
    committed = spy.index("fsync", inode=spy.inode("generations/1.json"), after=last_write)
    spy.index("fsync", path=os.path.join(spy.state_dir, "generations"), after=committed)
    spy.index("fsync", path=spy.state_dir, after=committed)  # the pending record's unlink


def test_the_hook_runs_before_each_write_in_order(target: Target) -> None:
    seen: list[str] = []
    apply(target, WEB, before_write=seen.append)
    assert seen == [SOMAXCONN, FIN, TW]


# ---- shippable: the Ansible module runs this same code on hosts --------------------------------------------------

SHIPPED = (
    "engine",
    "state",
    "plan",
    "target",
    "failures",
    "live",
    "values",
    "persist",
    "preflight",
    "kernelfacts",
    "catalog",
    "kernel_write",
    "boot",
    "records",
)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_engine_and_what_it_imports_are_standard_library_only(name: str) -> None:
    """Relative imports among the shipped modules only, and nothing outside the standard library."""
    import ast

    source = Path(__file__).resolve().parents[2] / "tcptune" / f"{name}.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            modules = [node.module] if node.module else [alias.name for alias in node.names]  # "from . import x"
            assert node.level == 1 and set(modules) <= set(SHIPPED), (name, ast.dump(node))
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] in sys.stdlib_module_names, (name, node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in sys.stdlib_module_names, (name, alias.name)


# ---- kernel preflight runs inside every plan (the Ansible module gets it from the same engine) ----------------------


def test_every_plan_is_judged_by_kernel_preflight(target: Target) -> None:
    Path(target.proc_root, "kernel").mkdir()
    Path(target.proc_root, "kernel/osrelease").write_text("6.18.3\n")
    start = "net.ipv4.ip_unprivileged_port_start"
    with pytest.raises(Refused, match=r"ip_unprivileged_port_start: refused by this kernel: .*\(32768\)"):
        engine(target).plan_apply(profile("ports", net__ipv4__ip_unprivileged_port_start="40000"))
    assert live(target, start) == "1024" and numbers(target) == []
    Path(target.proc_root, "kernel/osrelease").write_text("4.9.0\n")
    Path(target.proc_root, "net/ipv4/tcp_tw_reuse").write_text("0\n")
    planned = engine(target).plan_apply(profile("old", net__ipv4__tcp_tw_reuse="2"))
    (state,) = planned.plan.keys
    assert (state.status, state.preflight) == ("differs", "warning")
    assert planned.warnings == (
        "net.ipv4.tcp_tw_reuse: this kernel (4.9.0) predates 2 (loopback-only reuse): taken as 1: reuse for every "
        "outgoing connection, not only loopback",
    )
