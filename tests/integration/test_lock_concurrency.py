"""Several real tcptune processes at once (applies, rollbacks, resets, recover), the `lock` file deleted under them:
at most one transaction runs at a time.

Each process runs under its own strace inside the namespace: every write to a /proc/sys key is slowed
(`-e inject=write:delay_enter=...`, restricted with `-P` to the keys' paths, so nothing else is slowed and the
product has no test hook), and each change the transaction makes is logged with its time (`-ttt`): the writes to
/proc/sys, the renames onto pending.json, tcptune's sysctl.d file and generations/<N>.json, and the unlink of
pending.json. The first test also freezes a running apply inside its transaction (SIGSTOP to the process, from
outside) while the others start, so the race happens however loaded the machine is. The proof, from outside the
product:
- the spans [first change, last change] of the processes are pairwise disjoint (no interleaved live values);
- every process either succeeds or exits 1 having changed nothing, and the refusals say another tcptune is running;
- the generations form one sequence (N made from N-1, one per successful transaction), and the machine is exactly at
  the last one: live values, the sysctl.d file, no pending record, no temp files.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crash_harness import (
    KEYS,
    PROFILES,
    SITE_FILE,
    STRACE,
    SYSCTL_FILE,
    Bench,
    parse_trace,
    profile_values,
    temp_files,
)
from tests.integration.kernel_sandbox import KernelSandbox, die_with_parent, host_value

pytestmark = [pytest.mark.slow, pytest.mark.netns]

WRITE_DELAY_US = 250_000
"""Each /proc/sys write takes a quarter second: a transaction of 4-6 writes lasts longer than the others need to
start, so they really meet a running transaction."""
REFUSED = "another tcptune"
MAX_GENERATIONS = 40

GUARDED = (*KEYS, "kernel.pid_max", "net.core.rmem_max")


@pytest.fixture
def bench() -> Iterator[Bench]:
    before = {key: host_value(key) for key in GUARDED}
    box = KernelSandbox()
    try:
        bench = Bench(box, KEYS)
        (box.sysctl_dir / SITE_FILE[0]).write_text(SITE_FILE[1])
        for name, text in PROFILES.items():
            (box.dir / f"{name}.yaml").write_text(text)
        bench.fresh = bench.snapshot("fresh")
        yield bench
    finally:
        box.close()
        assert {key: host_value(key) for key in GUARDED} == before, "the machine's own sysctls changed"


def _args(bench: Bench, *command: str) -> tuple[str, ...]:
    return tuple(part.format(**{n: str(bench.box.dir / f"{n}.yaml") for n in PROFILES}) for part in command)


@dataclass
class Racer:
    """One tcptune process under its own strace."""

    label: str
    process: subprocess.Popen[str]
    trace: Path
    started: float
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None

    def finish(self, timeout: float = 120) -> None:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        self.returncode = self.process.returncode

    def tracee(self) -> int:
        """The tcptune process (strace's child; nsenter exec'd strace, so ``process`` is strace)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def changes(self, bench: Bench) -> list[tuple[float, str]]:
        """(time, what) of every change this process made, from its trace."""
        out = []
        for call in parse_trace(self.trace.read_text()):
            assert call.ts is not None
            name, paths = call.name, call.paths
            if name in ("write", "pwrite64", "writev") and paths and paths[0].startswith("/proc/sys/net/"):
                out.append((call.ts, f"write {paths[0]}"))
            elif name.startswith("rename") and len(paths) == 2:
                out.append((call.ts, f"rename onto {paths[1]}"))
            elif name.startswith("unlink") and paths:
                out.append((call.ts, f"unlink {paths[0]}"))
        return out


def start(bench: Bench, label: str, *command: str) -> Racer:
    """tcptune COMMAND in the namespace; its /proc/sys writes slowed, its changes logged with their time."""
    state = bench.state_dir
    watched = [
        str(state),
        f"{state}/pending.json",
        str(bench.sysctl_dir / SYSCTL_FILE),
        *(f"{state}/generations/{n}.json" for n in range(1, MAX_GENERATIONS + 1)),
        *("/proc/sys/" + key.replace(".", "/") for key in KEYS),
    ]
    trace = bench.traces / f"race-{label}-{time.monotonic_ns()}.txt"
    strace = [STRACE, "-f", "-qq", "-ttt", "-y", "-e", "signal=none", "-o", str(trace)]
    strace += [arg for path in watched for arg in ("-P", path)]
    strace += ["-e", "trace=write,pwrite64,writev,flock,close,rename,renameat,renameat2,unlink,unlinkat"]
    strace += ["-e", f"inject=write:delay_enter={WRITE_DELAY_US}"]
    process = subprocess.Popen(
        [*bench.box.enter, *strace, "--", bench.box.exe, *_args(bench, *command)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bench.box.env(),
        preexec_fn=die_with_parent,
    )
    bench.box.adopt(process)
    return Racer(label, process, trace, time.monotonic())


class LockDeleter:
    """Deletes the state directory's `lock` file every few milliseconds while running (the issue's attack: a
    fresh lock file must not let a second transaction in)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self.deleted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.path.unlink()
                self.deleted += 1
            except FileNotFoundError:
                pass

    def __enter__(self) -> LockDeleter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def generations(bench: Bench) -> list[dict[str, Any]]:
    directory = bench.state_dir / "generations"
    docs = [json.loads(p.read_text()) for p in directory.iterdir() if p.name.endswith(".json")]
    return sorted(docs, key=lambda d: int(d["generation"]))


def check_one_at_a_time(bench: Bench, racers: list[Racer]) -> list[Racer]:
    """The proof (see the module docstring); returns the racers that committed a transaction."""
    for racer in racers:
        assert racer.returncode in (0, 1), f"{racer.label}: exit {racer.returncode}\n{racer.stderr}"
    spans = []
    for racer in racers:
        changes = racer.changes(bench)
        if racer.returncode == 1:
            assert not changes, f"{racer.label} failed (exit 1) after changing things: {changes}\n{racer.stderr}"
        if changes:
            spans.append((changes[0][0], changes[-1][0], racer.label))
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        assert end < begin, f"{first} and {second} changed the machine at the same time: {spans}"
    return [r for r in racers if r.returncode == 0 and r.changes(bench)]


def check_at_last_generation(bench: Bench, committed_before: int, committed_now: int) -> None:
    """One consistent sequence of generations, and the machine exactly at the last one."""
    docs = generations(bench)
    numbers = [int(d["generation"]) for d in docs]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    for doc in docs:
        assert int(doc["from"]) == int(doc["generation"]) - 1, doc
    assert len(docs) == committed_before + committed_now, (len(docs), committed_before, committed_now)
    assert not (bench.state_dir / "pending.json").exists()
    assert not temp_files(bench.state_dir, bench.sysctl_dir)
    current = docs[-1] if docs else None
    live = bench.live()
    values: dict[str, str] = current["values"] if current else {}
    for key in KEYS:
        want = " ".join(values[key].split()) if key in values else bench.fresh.live[key]
        assert live[key] == want, f"{key}: live {live[key]!r}, generation {numbers[-1:]} wants {want!r}"
    file_doc = current.get("file") if current else None
    if isinstance(file_doc, dict):
        on_disk = bench.sysctl_file.read_text() if bench.sysctl_file.exists() else None
        assert on_disk == file_doc["content"]
    history = bench.history()
    assert REFUSED not in json.dumps(history)


def test_lock_file_deleted_while_an_apply_runs_lets_nobody_else_in(bench: Bench) -> None:
    bench.must(*_args(bench, "apply", "--yes", "{a}"))
    first = start(bench, "apply-b", "apply", "--yes", "{b}")
    bench.box.wait_for(lambda: (bench.state_dir / "pending.json").exists(), timeout=30)
    # freeze the apply inside its transaction (lock held, pending record written, a first write under way), so
    # that however slowly the others start on a loaded machine, they all meet it running
    frozen = first.tracee()
    os.kill(frozen, signal.SIGSTOP)
    try:
        (bench.state_dir / "lock").unlink()  # the lock file is informational: deleting it must change nothing
        others = [
            start(bench, "rollback", "rollback", "--yes"),
            start(bench, "reset", "reset", "--yes"),
            start(bench, "apply-c", "apply", "--yes", "{c}"),
            start(bench, "rollback-to-1", "rollback", "--to", "1", "--yes"),
            # the running apply's pending record is not an interrupted one: recover must not act on it
            start(bench, "recover", "recover", "--yes"),
        ]
        looking = bench.run("history")
        assert looking.returncode == 0, looking.stderr
        assert "tcptune recover" not in looking.stderr, f"a running apply called interrupted: {looking.stderr}"
        for racer in others:
            racer.finish()
            assert racer.returncode == 1, f"{racer.label}: exit {racer.returncode}\n{racer.stdout}{racer.stderr}"
            assert REFUSED in racer.stderr and "running" in racer.stderr, racer.stderr
            assert racer.stderr.count("tcptune: error:") == 1 and "Traceback" not in racer.stderr, racer.stderr
        assert first.process.poll() is None
    finally:
        os.kill(frozen, signal.SIGCONT)
    first.finish()
    assert first.returncode == 0, first.stderr
    committed = check_one_at_a_time(bench, [first, *others])
    assert [r.label for r in committed] == ["apply-b"]
    check_at_last_generation(bench, 1, 1)
    wanted = profile_values("b")
    assert {k: v for k, v in bench.live().items() if k in wanted} == wanted


def test_five_at_once_with_the_lock_file_deleted_run_one_at_a_time(bench: Bench) -> None:
    seed = int(os.environ.get("TCPTUNE_RACE_SEED", random.randrange(1 << 30)))
    print(f"race seed {seed} (TCPTUNE_RACE_SEED={seed} to repeat)")
    rng = random.Random(seed)
    bench.must(*_args(bench, "apply", "--yes", "{a}"))
    bench.must(*_args(bench, "apply", "--yes", "{b}"))
    committed_total = 2
    commands = [
        ("apply-a", ("apply", "--yes", "{a}")),
        ("apply-c", ("apply", "--yes", "{c}")),
        ("rollback", ("rollback", "--yes")),
        ("rollback-to-1", ("rollback", "--to", "1", "--yes")),
        ("reset", ("reset", "--yes")),
    ]
    refused = 0
    most_committed = 0
    # burst rounds: all five start within 50 ms (one wins, the others meet it running); spread rounds: starts up to
    # 0.7 s apart, so some run after others finished and several transactions follow each other in one round
    for round_number, spread in enumerate((0.05, 0.05, 0.7, 0.7)):
        rng.shuffle(commands)
        with LockDeleter(bench.state_dir) as deleter:
            racers = []
            for label, command in commands:
                racers.append(start(bench, f"{round_number}-{label}", *command))
                time.sleep(rng.uniform(0, spread))
            for racer in racers:
                racer.finish()
        for racer in racers:
            if racer.returncode == 1:
                assert REFUSED in racer.stderr or "changed since" in racer.stderr, racer.stderr
                refused += REFUSED in racer.stderr
        committed = check_one_at_a_time(bench, racers)
        assert committed, f"round {round_number}: nobody committed: {[(r.label, r.stderr) for r in racers]}"
        check_at_last_generation(bench, committed_total, len(committed))
        committed_total += len(committed)
        most_committed = max(most_committed, len(committed))
        outcome = {r.label: r.returncode for r in racers}
        done = [r.label for r in committed]
        print(f"round {round_number}: exits {outcome}, committed {done}, lock file deleted {deleter.deleted}x")
    print(f"{refused} refusals; at most {most_committed} transactions one after the other in a round")
    assert refused, "no process ever met a running transaction: the race did not happen"
