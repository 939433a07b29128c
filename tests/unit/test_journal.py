"""The state directory: owner-only, a non-blocking lock naming its holder, journals, crash detection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune.journal import COMPLETE, PENDING, LockHeld, StateDir


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


def test_a_pending_journal_of_a_dead_process_is_interrupted(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    journal = state.begin("apply")
    journal.update(pid=int(dead.stdout))
    assert [j.id for j in state.interrupted()] == [journal.id]


def test_a_pending_journal_of_a_live_process_is_not_interrupted(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            state.begin("apply").update(pid=child.pid)
            assert state.interrupted() == []
        finally:
            child.kill()


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
    state.write_last_applied({"profile": {"name": "x"}})
    assert state.read_last_applied() == {"profile": {"name": "x"}}
    state.clear_last_applied()
    assert state.read_last_applied() is None
