"""The state directory: owner-only, a non-blocking lock naming its holder, journals, crash detection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune.errors import LiveStateError
from tcptune.journal import COMPLETE, PENDING, LockHeld, Malformed, StateDir, StateWriteError


def test_state_dir_is_created_owner_only(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    state.ensure()
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state.journal_dir).st_mode) == 0o700


def test_an_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    StateDir(str(tmp_path)).ensure()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "journal").stat().st_mode) == 0o700


def test_second_lock_fails_at_once_and_names_the_holder(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    with state.lock(), pytest.raises(LockHeld) as caught, StateDir(str(tmp_path)).lock():
        pass
    assert caught.value.pid == os.getpid()
    assert f"pid {os.getpid()}" in str(caught.value)
    with state.lock():  # released: can be taken again
        pass


def test_journal_is_on_disk_as_pending_before_anything_else(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    journal = state.begin("apply", changes=[{"key": "a.b", "old": "1", "new": "2"}])
    assert journal.path.endswith(".pending.json")
    data = json.loads(Path(journal.path).read_text())
    assert data["status"] == PENDING and data["changes"][0]["old"] == "1"
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    assert state.has_pending_files()


def test_finish_renames_and_history_lists_oldest_first(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    first = state.begin("apply", profile={"name": "one", "fingerprint": "f1"})
    first.finish(COMPLETE)
    second = state.begin("apply", profile={"name": "two", "fingerprint": "f2"})
    second.finish(COMPLETE)
    assert not state.has_pending_files()
    assert [j.summary()["profile"] for j in state.journals()] == ["one", "two"]
    assert state.find(second.id).id == second.id


def test_journals_stay_in_start_order_across_a_second_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """time(2), which gmtime() reads without an argument, lags the precise clock by a few ms after each second."""
    import time

    real_gmtime = time.gmtime
    clock = [1_700_000_000.9]

    def coarse_gmtime(seconds: float | None = None) -> time.struct_time:
        return real_gmtime(int(clock[0] - 0.004) if seconds is None else seconds)

    monkeypatch.setattr(time, "time", lambda: clock[0])
    monkeypatch.setattr(time, "gmtime", coarse_gmtime)
    state = StateDir(str(tmp_path))
    first = state.begin("apply", profile={"name": "one"})
    clock[0] = 1_700_000_001.002  # 2 ms into the next second
    second = state.begin("apply", profile={"name": "two"})
    assert second.data["started"] == "2023-11-14T22:13:21.002000Z"
    assert [j.id for j in state.journals()] == [first.id, second.id]


def test_a_pending_journal_of_a_dead_process_is_interrupted(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    journal = state.begin("apply")
    journal.update(pid=int(dead.stdout))
    assert [j.id for j in state.interrupted()] == [journal.id]


def test_a_pending_journal_whose_pid_was_reused_is_still_interrupted(tmp_path: Path) -> None:
    """pid 1 is always alive: a pid check would call this apply running forever. The free lock says otherwise."""
    state = StateDir(str(tmp_path))
    journal = state.begin("apply")
    journal.update(pid=1)
    assert [j.id for j in state.interrupted()] == [journal.id]


def test_a_pending_journal_is_not_interrupted_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    journal = state.begin("apply")
    holder = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "locked"
            assert state.lock_is_held()
            assert state.interrupted() == []
        finally:
            child.kill()
    assert [j.id for j in state.interrupted()] == [journal.id]


def test_while_holding_the_lock_every_pending_journal_is_interrupted(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    journal = state.begin("apply")
    journal.update(pid=1)
    with state.lock():
        assert [j.id for j in state.interrupted()] == [journal.id]


def test_finished_journal_wins_over_a_stale_pending_twin(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    journal = state.begin("apply")
    pending_text = Path(journal.path).read_text()
    pending_path = journal.path
    journal.finish(COMPLETE)
    Path(pending_path).write_text(pending_text)  # as if the crash came between the two steps of finish()
    (only,) = state.journals()
    assert only.status == COMPLETE


def test_find_by_prefix_and_errors(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    journal = state.begin("apply")
    assert state.find(journal.id[:10]).id == journal.id
    with pytest.raises(Exception, match="no apply with id"):
        state.find("nope")


def test_last_applied_round_trip(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    assert state.read_last_applied() is None
    record = {"profile": {"name": "x", "fingerprint": "f", "source": None, "values": {"a.b": "1"}, "scopes": {}}}
    state.write_last_applied(record)
    assert state.read_last_applied() == record
    state.clear_last_applied()
    assert state.read_last_applied() is None


# ---- malformed state files: refused with the file and the field named, before anything acts on them ----------


def write_journal(state: StateDir, name: str, data: object) -> Path:
    Path(state.journal_dir).mkdir(parents=True, exist_ok=True)
    path = Path(state.journal_dir) / name
    path.write_text(json.dumps(data))
    return path


GOOD = {
    "id": "20240101-000000-abcd",
    "kind": "apply",
    "status": "complete",
    "started": "2024-01-01T00:00:00Z",
    "pid": 1,
    "profile": {"name": "p"},
    "changes": [{"key": "net.core.somaxconn", "old": "4096", "new": "8"}],
}


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"status": None}, "'status' must be one of"),
        ({"changes": 5}, "'changes' must be a list"),
        ({"profile": "x"}, "'profile' must be an object"),
        ({"changes": [{"key": "net.core.somaxconn", "old": [5], "new": "8"}]}, "changes[0].old must be a string"),
        ({"changes": [{"key": "../../etc/passwd", "old": "1", "new": "2"}]}, "changes[0].key"),
        ({"changes": ["x"]}, "changes[0] must be an object"),
        ({"persist": {"path": 5}}, "persist.path must be a string"),
        ({"pid": "1"}, "'pid' must be an integer"),
        ({"id": ""}, "'id' must be a non-empty string"),
        ({"desired": {"name": "p", "values": [1, 2]}}, "desired.values must be an object"),
    ],
)
def test_a_malformed_journal_is_refused_naming_the_file_and_field(
    tmp_path: Path, change: dict[str, object], what: str
) -> None:
    state = StateDir(str(tmp_path))
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = write_journal(state, "20240101-000000-abcd.json", data)
    with pytest.raises(Malformed) as caught:
        state.journals()
    assert str(caught.value).startswith(f"{path}: malformed journal: ") and what in str(caught.value)


def test_a_journal_that_is_not_json_is_malformed(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    write_journal(state, "x.pending.json", {})
    (Path(state.journal_dir) / "x.pending.json").write_text("{not json")
    with pytest.raises(Malformed, match="not valid JSON"):
        state.interrupted()


def test_integer_values_in_a_journal_are_read_as_text(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    write_journal(state, "j.json", {**GOOD, "changes": [{"key": "net.core.somaxconn", "old": 4096, "new": 8}]})
    (journal,) = state.journals()
    assert journal.changes == [{"key": "net.core.somaxconn", "old": "4096", "new": "8"}]


def test_malformed_journals_can_be_skipped_and_reported(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    write_journal(state, "bad.pending.json", {"id": "bad", "changes": 5})
    good = state.begin("apply")
    seen: list[str] = []
    assert [j.id for j in state.interrupted(on_malformed=lambda exc: seen.append(str(exc)))] == [good.id]
    assert len(seen) == 1 and "bad.pending.json: malformed journal" in seen[0]


@pytest.mark.parametrize(
    ("record", "what"),
    [
        ({"profile": "x"}, "'profile' must be an object"),
        ({"profile": {"name": "x", "values": [1, 2]}}, "profile.values must be an object"),
        ({"profile": {"name": "x", "values": {"../etc/passwd": "1"}}}, "not a sysctl key name"),
        ({"profile": {"name": "x", "values": {"a.b": {"c": 1}}}}, "must be a string"),
        ([], "not a JSON object"),
    ],
)
def test_a_malformed_last_applied_record_is_refused(tmp_path: Path, record: object, what: str) -> None:
    state = StateDir(str(tmp_path))
    Path(state.last_applied_path).write_text(json.dumps(record))
    with pytest.raises(Malformed) as caught:
        state.read_last_applied()
    assert f"{state.last_applied_path}: malformed last-applied record" in str(caught.value)
    assert what in str(caught.value)


def test_a_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state_dir.chmod(0o777)
    with pytest.raises(LiveStateError, match=r"writable by group or others \(mode 0777\); 'chmod 700 .*state'"):
        StateDir(str(state_dir)).ensure()
    assert not (state_dir / "journal").exists()  # refused before anything was created in it
    state_dir.chmod(0o700)
    (state_dir / "journal").mkdir()
    (state_dir / "journal").chmod(0o775)
    with pytest.raises(LiveStateError, match="journal"):
        StateDir(str(state_dir)).lock().__enter__()


def test_a_state_dir_owned_by_someone_else_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(LiveStateError, match=r"owned by uid .* not by this user .*'chown"):
        StateDir(str(tmp_path)).ensure()


def test_state_dir_write_failures_are_live_state_errors(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    Path(state.last_applied_path).mkdir(parents=True)
    with pytest.raises(StateWriteError, match=r"cannot write .*last-applied\.json"):
        state.write_last_applied({"profile": {"name": "x", "values": {}}})
