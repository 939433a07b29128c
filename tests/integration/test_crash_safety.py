"""kill -9 the real tcptune at every file-system call of a transaction, then `tcptune recover`: the machine must be
EXACTLY at the from- or the to-generation.

For each scenario (apply over nothing, apply switching profiles, rollback, rollback --to, reset removing the file,
reset putting back a file older than tcptune) the command is first run to the end under strace to list its calls
(the reference trace); the machine before it is the from-state and after it the to-state. Then, for every call the
transaction makes (each family: openat, write, fsync, rename, unlink, mkdir, chmod, truncate, link, flock; N = 1..k
of each call name, from the first call touching the state directory on: the calls before it are Python starting and
importing, proven change-free, see ``transaction_start``), the machine is put back to the from-state,
tcptune is killed on entry to that call (`strace -e inject=<call>:signal=KILL:when=N`), and `tcptune recover` runs.
The result must equal the from-state when the kill came at or before the commit (the rename that publishes the new
generation, DESIGN-9.md) and the to-state after it: live values read by the test from the namespace's /proc/sys,
tcptune's sysctl.d file, every state file (generation documents field by field), `history --format json`; no
pending record and no `.tcptune-*` temp file anywhere. A second `recover` must then say "nothing to recover" and
change nothing. `recover` itself is killed at every call too (three interrupted states), then re-run.

The reference traces also prove the durability order the issue asks for: the pending record is written, fsync'd and
its directory fsync'd before the first write to /proc/sys or the sysctl.d file; every rename/unlink/mkdir is followed
by an fsync of its directory; every file is fsync'd before it is renamed into place.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crash_harness import (
    FAMILY_OF,
    KEYS,
    PROFILES,
    SITE_FILE,
    Bench,
    Call,
    KillPoint,
    Machine,
    Snapshot,
    check_nothing_changes_before,
    commit_index,
    iter_family_counts,
    kill_points,
    profile_values,
    temp_files,
    transaction_start,
)
from tests.integration.kernel_sandbox import KernelSandbox, host_value

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(1800)]

GUARDED = (*KEYS, "kernel.pid_max", "net.core.rmem_max")


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: tuple[tuple[str, ...], ...]
    command: tuple[str, ...]
    from_generation: int
    to_generation: int
    to_profile: str | None
    """The profile whose values are live at the to-generation (None: every key at its baseline)."""
    own_file: str | None = None
    """A 90-tcptune.conf that was there before tcptune managed anything (the file's baseline)."""


OLD_OWN_FILE = "# written by hand before tcptune was installed\nnet.ipv4.tcp_fin_timeout = 45\n"

APPLY_A = ("apply", "--yes", "{a}")
APPLY_B = ("apply", "--yes", "{b}")
APPLY_C = ("apply", "--yes", "{c}")

SCENARIOS = [
    Scenario("apply-first", (), APPLY_A, 0, 1, "a"),
    Scenario("apply-switch", (APPLY_A,), APPLY_B, 1, 2, "b"),
    Scenario("rollback", (APPLY_A, APPLY_B), ("rollback", "--yes"), 2, 3, "a"),
    Scenario("rollback-to", (APPLY_A, APPLY_B, APPLY_C), ("rollback", "--to", "1", "--yes"), 3, 4, "a"),
    Scenario("reset", (APPLY_A, APPLY_B), ("reset", "--yes"), 2, 3, None),
    # reset puts back a file that was there before tcptune (atomic rewrite rather than unlink)
    Scenario("reset-file-baseline", (APPLY_A,), ("reset", "--yes"), 1, 2, None, OLD_OWN_FILE),
]


WORKERS = max(1, int(os.environ.get("TCPTUNE_CRASH_WORKERS", "2")))
"""Namespaces working through the cases side by side (one per core on CI's 2 cores)."""


@pytest.fixture(scope="module")
def benches() -> Iterator[list[Bench]]:
    before = {key: host_value(key) for key in GUARDED}
    boxes: list[KernelSandbox] = []
    try:
        made = []
        for _ in range(WORKERS):
            box = KernelSandbox()
            boxes.append(box)
            bench = Bench(box, KEYS)
            (box.sysctl_dir / SITE_FILE[0]).write_text(SITE_FILE[1])
            for name, text in PROFILES.items():
                (box.dir / f"{name}.yaml").write_text(text)
            bench.fresh = bench.snapshot("fresh")
            made.append(bench)
        yield made
    finally:
        for box in boxes:
            box.close()
        assert {key: host_value(key) for key in GUARDED} == before, "the machine's own sysctls changed"


def _args(bench: Bench, command: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.format(**{n: str(bench.box.dir / f"{n}.yaml") for n in PROFILES}) for part in command)


@dataclass
class Prepared:
    """One namespace's from-state, reference trace and to-state for one command."""

    bench: Bench
    args: tuple[str, ...]
    from_snap: Snapshot
    from_state: Machine
    to_state: Machine
    calls: list[Call]
    points: list[KillPoint]
    commit: int | None

    @property
    def skipped(self) -> int:
        """Calls before the transaction started (not kill points: nothing changes there)."""
        return self.points[0].at.index if self.points else len(self.calls)

    def shape(self) -> list[str]:
        """The kill points, independent of the namespace's directory names."""
        return [f"{p.call} #{p.nth} {p.at.where()}".replace(str(self.bench.box.dir), "<dir>") for p in self.points]


def prepare(
    bench: Bench, setup: tuple[tuple[str, ...], ...], command: tuple[str, ...], tag: str, own_file: str | None = None
) -> Prepared:
    """Reach the from-state from a fresh namespace, snapshot it, and trace the command once to the end."""
    bench.restore(bench.fresh)
    if own_file is not None:
        bench.sysctl_file.write_text(own_file)
    for step in setup:
        bench.must(*_args(bench, step))
    from_snap = bench.snapshot(tag)
    from_state = bench.observe()
    assert not from_state.pending and not from_state.temp_files
    args = _args(bench, command)
    bench.must(*args)  # warm-up: byte-code caches written, so the traced and the killed runs make the same calls
    bench.restore(from_snap)
    out, calls = bench.trace(*args)
    assert out.returncode == 0, out.stderr
    to_state = bench.observe()
    assert not to_state.pending and not to_state.temp_files
    assert to_state != from_state, "the command changed nothing: no transaction to interrupt"
    return Prepared(bench, args, from_snap, from_state, to_state, calls, _points(bench, calls), None)


def _points(bench: Bench, calls: list[Call]) -> list[KillPoint]:
    start = transaction_start(calls, bench.state_dir)
    check_nothing_changes_before(calls, start)
    return kill_points(calls, start)


def prepare_all(
    benches: list[Bench],
    setup: tuple[tuple[str, ...], ...],
    command: tuple[str, ...],
    tag: str,
    own_file: str | None = None,
) -> list[Prepared]:
    prepared = [prepare(bench, setup, command, tag, own_file) for bench in benches]
    for other in prepared[1:]:
        assert other.shape() == prepared[0].shape(), "two namespaces made different calls: not deterministic"
    for each in prepared:
        each.commit = commit_index(each.calls, each.bench.state_dir)
    return prepared


def check_case(
    bench: Bench,
    point: KillPoint,
    args: tuple[str, ...],
    expected: Machine,
    expected_name: str,
    pending_seen: set[str],
) -> list[str]:
    """Kill ``args`` at ``point``, recover twice; the problems found (empty: the case passed)."""
    out, seen = bench.kill_at(point.call, point.nth, *args)
    if out.returncode != -9:
        return [f"not killed (exit {out.returncode}): the run made fewer calls than the reference trace"]
    if len(seen) != point.nth or seen[-1].where() != point.at.where():
        got = seen[-1].where() if seen else "nothing"
        return [f"killed at {got} (call {len(seen)}), not at the reference's {point.at.where()}: not deterministic"]
    problems = []
    pending = bench.state_dir / "pending.json"
    if pending.exists():
        # every command warns about a pending transaction; checked once per distinct pending record (the record
        # is the same for every kill between its publication and its removal)
        record = pending.read_text()
        if record not in pending_seen:
            pending_seen.add(record)
            warned = bench.run("history")
            if "tcptune recover" not in warned.stderr:
                problems.append(f"history does not warn about the pending transaction: {warned.stderr.strip()!r}")
    first = bench.run("recover", "--yes")
    if first.returncode != 0:
        return [*problems, f"recover -> exit {first.returncode}: {(first.stdout + first.stderr).strip()}"]
    after = bench.observe()
    if after != expected:
        problems.append(f"after recover not at the {expected_name}-state: " + "; ".join(after.differences(expected)))
    if after.pending:
        problems.append("pending.json still there after recover")
    if after.temp_files:
        problems.append(f"temp files left: {list(after.temp_files)}")
    second = bench.run("recover", "--yes")
    if second.returncode != 0 or "nothing to recover" not in second.stdout + second.stderr:
        problems.append(f"second recover not a no-op: exit {second.returncode}: {(second.stdout + second.stderr)!r}")
    elif bench.observe(history=False) != after.without_history():
        problems.append("second recover changed the machine")
    return problems


Expect = Callable[[Prepared, KillPoint], tuple[Machine, str]]


def run_cases(
    prepared: list[Prepared],
    snaps: list[Snapshot],
    args: list[tuple[str, ...]],
    expect: Expect,
    label: str,
    case_log: Callable[[str], None],
) -> None:
    """Every kill point of ``prepared[0].points``, spread over the namespaces (point i on namespace i % n); each
    namespace is put back to its own snapshot before each case."""
    started = time.monotonic()
    count = len(prepared[0].points)

    def work(worker: int) -> list[str]:
        mine, snap = prepared[worker], snaps[worker]
        pending_seen: set[str] = set()
        failures = []
        for index in range(worker, count, len(prepared)):
            point = mine.points[index]
            mine.bench.restore(snap)
            expected, name = expect(mine, point)
            for problem in check_case(mine.bench, point, args[worker], expected, name, pending_seen):
                failures.append(f"kill at {point.call} #{point.nth} ({point.at.where()}): {problem}")
        return failures

    with ThreadPoolExecutor(len(prepared)) as pool:
        failures = [f for found in pool.map(work, range(len(prepared))) for f in found]
    families = ", ".join(f"{family} {n}" for family, n in iter_family_counts(prepared[0].points))
    took = time.monotonic() - started
    case_log(
        f"{label}: {count} kill points ({families}), after {prepared[0].skipped} change-free start-up calls; "
        f"{took:.0f} s on {len(prepared)} namespaces"
    )
    assert not failures, f"{len(failures)} of {count} cases failed:\n" + "\n".join(failures[:25])


# ---- the transactions -------------------------------------------------------------------------------------------


def check_to_state(scenario: Scenario, prepared: Prepared) -> None:
    """The reference run did what the scenario says (so the cases interrupt a real transition)."""
    bench = prepared.bench
    before = _current(json.loads(prepared.from_state.history))
    assert (int(before["generation"]) if before else 0) == scenario.from_generation, prepared.from_state.history
    history = bench.history()
    current = _current(history)
    assert current is not None and int(current["generation"]) == scenario.to_generation, history
    live = dict(prepared.to_state.live)
    fresh = bench.fresh.live
    wanted = profile_values(scenario.to_profile) if scenario.to_profile else {}
    for key in KEYS:
        # a key the to-generation does not manage is back at its value before tcptune (its baseline)
        assert live[key] == wanted.get(key, fresh[key]), (key, live[key], wanted.get(key, fresh[key]))
    persisted = prepared.to_state.sysctl_file
    if scenario.to_profile is None:
        assert persisted == scenario.own_file, "reset did not put the file back as it was before tcptune"
    else:
        assert persisted is not None
        lines = dict(line.partition(" = ")[::2] for line in persisted.splitlines() if " = " in line)
        assert lines == wanted, f"the persisted file does not hold exactly the profile's values:\n{persisted}"


def _current(history: object) -> dict[str, Any] | None:
    """The current generation in `history --format json` (a list, newest first, the current one marked)."""
    entries = history.get("generations", []) if isinstance(history, dict) else history
    assert isinstance(entries, list), history
    marked = [e for e in entries if isinstance(e, dict) and e.get("current")]
    return marked[0] if marked else None


def _from_or_to(prepared: Prepared, point: KillPoint) -> tuple[Machine, str]:
    """At or before the commit rename (killed on entry: it did not happen): the from-state; after it: the to-state."""
    assert prepared.commit is not None
    if point.at.index <= prepared.commit:
        return prepared.from_state, "from"
    return prepared.to_state, "to"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_kill_9_at_every_call_then_recover(
    benches: list[Bench], scenario: Scenario, case_log: Callable[[str], None]
) -> None:
    prepared = prepare_all(benches, scenario.setup, scenario.command, scenario.name, scenario.own_file)
    for each in prepared:
        check_to_state(scenario, each)
        assert each.commit is not None, "no rename publishing generations/<N>.json in the reference trace"
    snaps = [p.from_snap for p in prepared]
    run_cases(prepared, snaps, [p.args for p in prepared], _from_or_to, scenario.name, case_log)


# ---- recover, killed while it recovers ---------------------------------------------------------------------------


def _is_proc_write(call: Call, state_dir: Path) -> bool:
    return FAMILY_OF[call.name] == "write" and bool(call.paths) and call.paths[0].startswith("/proc/sys/net/")


def _is_commit(call: Call, state_dir: Path) -> bool:
    return (
        FAMILY_OF[call.name] == "rename"
        and len(call.paths) == 2
        and call.paths[1].startswith(f"{state_dir}/generations/")
    )


def _is_pending_unlink(call: Call, state_dir: Path) -> bool:
    return FAMILY_OF[call.name] == "unlink" and call.paths == (f"{state_dir}/pending.json",)


INTERRUPTIONS: dict[str, tuple[Callable[[Call, Path], bool], str]] = {
    # killed on entry to the last write to /proc/sys: every other key already changed, the file not yet
    "mid-writes": (_is_proc_write, "from"),
    # killed on entry to the commit rename: the sysctl.d file already replaced, no new generation
    "file-persisted": (_is_commit, "from"),
    # killed on entry to the unlink of the pending record: the new generation is committed
    "committed": (_is_pending_unlink, "to"),
}


def interrupted_apply(prepared: Prepared, interruption: str) -> tuple[Snapshot, Machine]:
    """Kill the traced command at the interruption's call; the machine left behind, and where recover must take it."""
    bench = prepared.bench
    matches, side = INTERRUPTIONS[interruption]
    found = [p for p in prepared.points if matches(p.at, bench.state_dir)]
    assert found, f"no call for {interruption} in the reference trace"
    point = found[-1] if interruption == "mid-writes" else found[0]
    bench.restore(prepared.from_snap)
    out, _ = bench.kill_at(point.call, point.nth, *prepared.args)
    assert out.returncode == -9
    assert (bench.state_dir / "pending.json").exists(), "killed inside the transaction but no pending record"
    if interruption == "mid-writes":
        assert dict(bench.observe().live) != dict(prepared.from_state.live), "nothing written yet: pick a later call"
    expected = prepared.to_state if side == "to" else prepared.from_state
    return bench.snapshot(f"killed-{interruption}"), expected


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_kill_9_recover_at_every_call_then_recover_again(
    benches: list[Bench], interruption: str, case_log: Callable[[str], None]
) -> None:
    applies = prepare_all(benches, (APPLY_A,), APPLY_B, f"recover-{interruption}")
    recovers, snaps, expected = [], [], {}
    for each in applies:
        bench = each.bench
        killed, target = interrupted_apply(each, interruption)
        bench.must("recover", "--yes")  # warm-up (byte-code caches of recover's imports)
        bench.restore(killed)
        out, calls = bench.trace("recover", "--yes")
        assert out.returncode == 0, out.stderr
        recovered = bench.observe()
        assert recovered == target, recovered.differences(target)
        recover = Prepared(bench, ("recover", "--yes"), killed, target, target, calls, _points(bench, calls), None)
        recovers.append(recover)
        snaps.append(killed)
        expected[id(recover)] = target
    for other in recovers[1:]:
        assert other.shape() == recovers[0].shape(), "two namespaces made different calls: not deterministic"
    name = INTERRUPTIONS[interruption][1]
    run_cases(
        recovers,
        snaps,
        [r.args for r in recovers],
        lambda prepared, point: (expected[id(prepared)], name),
        f"recover ({interruption})",
        case_log,
    )


# ---- durability order, from the reference traces -----------------------------------------------------------------


def durability_problems(calls: list[Call], state_dir: Path, sysctl_dir: Path) -> list[str]:
    """What the trace shows about fsync ordering (see the module docstring); empty when all is in order."""
    state, sysctl = str(state_dir), str(sysctl_dir)

    def ours(path: str) -> bool:
        return path == state or path.startswith((state + "/", sysctl + "/"))

    def is_fsync_of(call: Call, path: str) -> bool:
        return FAMILY_OF[call.name] == "fsync" and call.name != "syncfs" and call.paths == (path,)

    def changes_kernel_or_file(call: Call) -> bool:
        target = call.paths[0] if call.paths else ""
        return (FAMILY_OF[call.name] == "write" and target.startswith("/proc/sys/net/")) or (
            FAMILY_OF[call.name] in ("rename", "unlink") and any(p.startswith(sysctl + "/") for p in call.paths)
        )

    problems: list[str] = []
    pending = f"{state}/pending.json"
    first_change = next((c.index for c in calls if changes_kernel_or_file(c)), None)
    published = next((c.index for c in calls if FAMILY_OF[c.name] == "rename" and c.paths[1:] == (pending,)), None)
    if first_change is not None:
        if published is None or published > first_change:
            problems.append("the pending record is not renamed into place before the first change")
        elif not any(is_fsync_of(c, state) for c in calls[published:first_change]):
            problems.append("the state directory is not fsync'd between publishing pending.json and the first change")

    dir_changes = [
        c
        for c in calls
        if FAMILY_OF[c.name] in ("rename", "unlink", "mkdir", "link")
        and any(ours(p) for p in c.paths)
        and not (FAMILY_OF[c.name] == "unlink" and "/.tcptune-" in c.paths[0])  # a stray temp file need not stay gone
    ]
    boundaries = sorted(
        {c.index for c in dir_changes} | {c.index for c in calls if changes_kernel_or_file(c)} | {len(calls)}
    )
    for change in dir_changes:
        if change.ret.startswith("-1"):
            continue  # failed (e.g. unlink of a file that was not there): nothing to make durable
        parents = {str(Path(p).parent) for p in change.paths if ours(p)}
        following = next(b for b in boundaries if b > change.index)
        window = calls[change.index + 1 : following]
        for parent in sorted(parents):
            if not any(is_fsync_of(c, parent) for c in window):
                problems.append(f"{change.where()} is not followed by an fsync of {parent} before the next change")
    for rename in (c for c in dir_changes if FAMILY_OF[c.name] == "rename"):
        source = rename.paths[0]
        writes = [c for c in calls[: rename.index] if c.paths[:1] == (source,) and FAMILY_OF[c.name] == "write"]
        last_write = writes[-1].index if writes else -1
        if not any(is_fsync_of(c, source) for c in calls[last_write + 1 : rename.index]):
            problems.append(f"{rename.where()}: the file is not fsync'd before it is renamed into place")
    return problems


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_reference_trace_keeps_the_durability_order(benches: list[Bench], scenario: Scenario) -> None:
    bench = benches[0]
    prepared = prepare(bench, scenario.setup, scenario.command, f"order-{scenario.name}", scenario.own_file)
    problems = durability_problems(prepared.calls, bench.state_dir, bench.sysctl_dir)
    assert not problems, "\n".join(problems)
    assert not temp_files(bench.state_dir, bench.sysctl_dir)
