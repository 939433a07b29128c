"""The state directory: owner-only, a lock on the directory itself, and every file read back bounded and validated."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcptune import catalog
from tcptune.failures import LockHeld, MalformedState, StateError
from tcptune.state import StateDir
from tests.unit.state_files import FIN, generation_doc, private_dir, write_generation, write_pending


def known(key: str) -> bool:
    return catalog.get(key) is not None


def state_at(path: Path) -> StateDir:
    return StateDir(str(path), known)


# ---- the directory -----------------------------------------------------------------------------------------------


def test_state_dir_is_created_owner_only(tmp_path: Path) -> None:
    state = state_at(tmp_path / "state")
    state.ensure()
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state.generations_dir).st_mode) == 0o700


def test_a_group_writable_state_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state").chmod(0o770)
    with pytest.raises(StateError, match="chmod 700"):
        state_at(tmp_path / "state").ensure()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_a_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(StateError, match="owned by uid 65534"):
        state_at(directory).ensure()


# ---- the lock ------------------------------------------------------------------------------------------------------


def test_a_second_lock_fails_at_once_and_names_the_holder(tmp_path: Path) -> None:
    state = state_at(tmp_path)
    with state.lock(), pytest.raises(LockHeld) as caught, state_at(tmp_path).lock():
        pass
    assert caught.value.pid == os.getpid() and f"(pid {os.getpid()})" in str(caught.value)
    assert caught.value.exit_code == 1
    with state.lock():  # released: can be taken again
        pass


HOLDER = textwrap.dedent(
    """
    import sys
    from tcptune.state import StateDir
    state = StateDir(sys.argv[1], lambda key: True)
    with state.lock():
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of tmp_path/state until its stdin is closed."""
    private_dir(tmp_path / "state")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)


def test_deleting_the_lock_file_lets_no_second_transaction_in(holder: subprocess.Popen[str], tmp_path: Path) -> None:
    lock_file = tmp_path / "state" / "lock"
    assert lock_file.read_text().strip() == str(holder.pid)
    lock_file.unlink()
    state = state_at(tmp_path / "state")
    with pytest.raises(LockHeld), state.lock():
        pass
    assert state.is_busy()
    lock_file.write_text("")  # even a fresh, free lock file changes nothing
    with pytest.raises(LockHeld), state.lock():
        pass


def test_a_pending_record_is_interrupted_only_while_nobody_holds_the_lock(
    holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    write_pending(tmp_path / "state")
    (tmp_path / "state" / "lock").unlink()
    state = state_at(tmp_path / "state")
    assert state.has_pending() and not state.interrupted()  # a running transaction's record
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    assert state.interrupted() and not state.is_busy()


def test_while_holding_the_lock_a_pending_record_is_interrupted(tmp_path: Path) -> None:
    write_pending(tmp_path / "state")
    state = state_at(tmp_path / "state")
    with state.lock():
        assert state.interrupted()


def test_a_directory_replaced_between_open_and_lock_is_locked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state directory renamed away and recreated while the lock is being taken: the lock that is kept is on
    the directory the path names afterwards, not on the one moved away."""
    state = state_at(tmp_path / "state")
    state.ensure()
    real_flock = fcntl.flock
    replaced: list[bool] = []

    def flock_after_a_replacement(fd: int, operation: int) -> None:
        if not replaced and operation & fcntl.LOCK_EX:
            os.rename(state.path, tmp_path / "moved-away")
            private_dir(tmp_path / "state")
            replaced.append(True)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_replacement)
    with state.lock():
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert replaced and state.is_busy()
        assert not state_at(tmp_path / "moved-away").is_busy()


def test_the_lock_file_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    private_dir(tmp_path / "state")
    (tmp_path / "state" / "lock").symlink_to(victim)
    with state_at(tmp_path / "state").lock():
        pass
    assert victim.read_text() == "keep\n"


# ---- generations: numbers, order, validation -----------------------------------------------------------------


def test_generations_sort_numerically_and_other_names_are_ignored(tmp_path: Path) -> None:
    for n in (1, 2, 9, 10):
        write_generation(tmp_path, generation_doc(n))
    gens = tmp_path / "generations"
    for name in ("07.json", "x.json", "3.json.bak", ".tcptune-abc.tmp", "-1.json"):
        (gens / name).write_text("{}")
    state = state_at(tmp_path)
    assert state.numbers() == [1, 2, 9, 10]
    assert state.current_number() == 10
    assert [n for n, _ in state.history()] == [10, 9, 2, 1]


def test_a_generation_reads_back_as_written(tmp_path: Path) -> None:
    own = str(tmp_path / "90-tcptune.conf")
    doc = generation_doc(2, file={"path": own, "content": "x = 1\n", "baseline": None})
    write_generation(tmp_path, doc)
    generation = state_at(tmp_path).read_generation(2)
    assert generation.values == {FIN: "15"} and generation.from_ == 1 and generation.kind == "apply"
    assert generation.file is not None and generation.file.content == "x = 1\n"
    assert generation.as_json() == doc


def test_counters_and_their_network_namespace_read_back(tmp_path: Path) -> None:
    doc = generation_doc(1, counters={"TcpExt.ListenOverflows": 5}, counters_netns="net:[4026531840]")
    write_generation(tmp_path, doc)
    generation = state_at(tmp_path).read_generation(1)
    assert generation.counters == {"TcpExt.ListenOverflows": 5} and generation.counters_netns == "net:[4026531840]"
    assert generation.as_json() == doc


HOSTILE = [
    (lambda d: d.update(values={"kernel.core_pattern": "|/bin/sh"}, baseline={}), "not a key tcptune manages"),
    (
        lambda d: d.update(
            values={"kernel.core_pattern": "|/x"}, raw=["kernel.core_pattern"], baseline={"kernel.core_pattern": {}}
        ),
        "keys outside the catalog must be under net.",
    ),
    (lambda d: d.update(values={"net/ipv4/tcp_fin_timeout": "1"}), "not a dotted key name"),
    (lambda d: d.update(values={"../../etc/passwd": "1"}), "not a sysctl key name"),
    (lambda d: d.update(values={FIN: 15}), "must be a string"),
    (lambda d: d.update(values={FIN: "15\nnet.core.somaxconn = 1"}), "control character"),
    (lambda d: d.update(values={FIN: "1" * 5000}), "longer than 4096 bytes"),
    (lambda d: d.update(values=[FIN]), "'values' must be an object"),
    (lambda d: d.update(generation=2), "'generation' is 2 but the file name says 1"),
    (lambda d: d.update(generation=True), "'generation' must be an integer"),
    (lambda d: d.update(format=2), "'format' must be 1"),
    (lambda d: d.update(kind="journal"), "'kind' must be one of"),
    (lambda d: d.update(surprise=1), "unknown field(s) 'surprise'"),
    (lambda d: d.pop("baseline"), "lacks 'baseline'"),
    (lambda d: d.update(baseline={}), "'baseline' must name exactly the keys of 'values'"),
    (lambda d: d.update(skipped=["net.core.somaxconn"]), "'skipped' names a key that is not in 'values'"),
    (lambda d: d.update(kind="rollback"), "a rollback must name its 'target'"),
    (lambda d: d.update(file={"path": "relative", "content": None, "baseline": None}), "absolute path"),
    (lambda d: d.update(by=None), "'by' must be an object"),
    (lambda d: d.update({"from": 5}), "'from' (5) must be below"),
    (lambda d: d.update(counters={"x": 1}, counters_netns="net:[1]\n"), "'counters_netns' holds a control character"),
    (lambda d: d.update(counters={"x": 1}, counters_netns=4026531840), "'counters_netns' must be a string"),
    (lambda d: d.update(counters_netns="net:[1]"), "'counters_netns' without 'counters'"),
    (lambda d: d.update(counters={"x": -1}), "counters['x'] must be at least 0"),
]


@pytest.mark.parametrize(("edit", "says"), HOSTILE)
def test_a_hostile_generation_is_refused_naming_the_file_and_the_field(tmp_path: Path, edit: object, says: str) -> None:
    doc = generation_doc(1)
    edit(doc)  # type: ignore[operator]
    path = write_generation(tmp_path, doc, number=1)
    with pytest.raises(MalformedState) as caught:
        state_at(tmp_path).read_generation(1)
    message = str(caught.value)
    assert message.startswith(f"{path}: malformed generation: ") and says in message, message
    assert message.endswith("(correct the file or move it away)") and "\n" not in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("{not json", "not valid JSON"),
        ('{"format": 1, "format": 1}', "duplicate field 'format'"),
        (b"\xff\xfe".decode("latin-1"), "not valid JSON"),
        ("[]", "the document must be an object"),
    ],
)
def test_unparsable_state_files_are_malformed_not_crashes(tmp_path: Path, text: str, says: str) -> None:
    path = write_generation(tmp_path, text, number=1)
    with pytest.raises(MalformedState, match=f"{path}: malformed generation: .*{says}"):
        state_at(tmp_path).read_generation(1)


def test_a_state_file_over_1_mib_is_refused_unread(tmp_path: Path) -> None:
    path = write_generation(tmp_path, " " * (1 << 20) + "{}", number=1)
    with pytest.raises(MalformedState, match="larger than 1048576 bytes"):
        state_at(tmp_path).read_generation(1)
    assert path.stat().st_size > 1 << 20


@pytest.mark.timeout(20)
def test_a_fifo_in_place_of_a_generation_does_not_block(tmp_path: Path) -> None:
    private_dir(private_dir(tmp_path) / "generations")
    os.mkfifo(tmp_path / "generations" / "1.json")
    with pytest.raises(MalformedState, match="it is a FIFO, not a regular file"):
        state_at(tmp_path).read_generation(1)
    assert [type(g).__name__ for _, g in state_at(tmp_path).history()] == ["MalformedState"]


def test_a_symlinked_generation_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(generation_doc(1)))
    private_dir(private_dir(tmp_path / "state") / "generations")
    (tmp_path / "state" / "generations" / "1.json").symlink_to(elsewhere)
    with pytest.raises(MalformedState, match="symbolic link"):
        state_at(tmp_path / "state").read_generation(1)


def test_history_lists_an_unreadable_old_generation_and_still_reads_the_others(tmp_path: Path) -> None:
    write_generation(tmp_path, generation_doc(1, values={"kernel.core_pattern": "|/x"}, baseline={}))
    write_generation(tmp_path, generation_doc(2))
    state = state_at(tmp_path)
    (two, good), (one, bad) = state.history()
    assert (two, one) == (2, 1) and good.values == {FIN: "15"}  # type: ignore[union-attr]
    assert isinstance(bad, MalformedState) and "1.json" in str(bad)
    assert state.current() is not None  # the current one is fine: apply, reset and recover can run


# ---- the pending record ---------------------------------------------------------------------------------------------


def test_a_pending_record_reads_back(tmp_path: Path) -> None:
    write_pending(tmp_path, writes=[{"key": FIN, "old": "60", "new": "15"}])
    pending = state_at(tmp_path).read_pending()
    assert pending is not None
    assert (pending.from_, pending.to, pending.kind) == (0, 1, "apply")
    assert [(c.key, c.old, c.new) for c in pending.writes] == [(FIN, "60", "15")]


@pytest.mark.parametrize(
    ("writes", "says"),
    [
        ([{"key": "kernel.core_pattern", "old": "core", "new": "|/bin/sh"}], "not a key tcptune manages"),
        ([{"key": FIN, "old": "60"}], "lacks 'new'"),
        ([{"key": FIN, "old": "60", "new": ["15"]}], "must be a string"),
    ],
)
def test_a_hostile_pending_record_is_refused(tmp_path: Path, writes: list[dict[str, str]], says: str) -> None:
    path = write_pending(tmp_path, writes=writes)
    with pytest.raises(MalformedState, match=f"{path}: malformed pending record: .*{says}"):
        state_at(tmp_path).read_pending()


def test_a_pending_record_whose_generation_disagrees_is_refused(tmp_path: Path) -> None:
    write_pending(tmp_path, from_=3, generation=generation_doc(7))
    with pytest.raises(MalformedState, match="its generation is 7, not 'to' \\(4\\)"):
        state_at(tmp_path).read_pending()


def test_raw_keys_of_the_generation_may_be_written_when_under_net(tmp_path: Path) -> None:
    raw = "net.ipv4.conf.all.rp_filter"
    gen = generation_doc(1, values={raw: "1"}, raw=[raw])
    write_pending(tmp_path, writes=[{"key": raw, "old": "2", "new": "1"}], generation=gen)
    pending = state_at(tmp_path).read_pending()
    assert pending is not None and pending.writes[0].key == raw


def test_commit_never_replaces_a_generation(tmp_path: Path) -> None:
    write_generation(tmp_path, generation_doc(1))
    state = state_at(tmp_path)
    generation = state.read_generation(1)
    with pytest.raises(StateError, match="exists already"):
        state.commit(generation)


def test_temporary_files_of_a_killed_write_are_swept(tmp_path: Path) -> None:
    write_generation(tmp_path, generation_doc(1))
    leftovers = [tmp_path / ".tcptune-x1.tmp", tmp_path / "generations" / ".tcptune-y2.tmp"]
    for path in leftovers:
        path.write_text("{")
    keep = tmp_path / "generations" / "notes.tmp"
    keep.write_text("mine")
    removed = state_at(tmp_path).sweep_temp_files()
    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert keep.exists() and not any(p.exists() for p in leftovers)
