"""Counters since the last transaction: apply, rollback and reset record the kernel counters (and the network
namespace) in their generation; recommend without --sample judges the counters' changes since then, not since boot.

On captured /proc trees copied to a temporary directory: the counters are edited between the steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tcptune.cli import run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
PROFILE = "name: tt11-window\nsettings:\n  net.ipv4.tcp_fin_timeout: 30\n"


class Trees:
    def __init__(self, root: Path) -> None:
        self.net = root / "net"
        self.proc = root / "proc_sys"
        self.state = root / "state"
        self.profile = root / "p.yaml"

    def set_counter(self, name: str, value: int) -> None:
        """Set TcpExt.<name> in the captured netstat (the header line names the column)."""
        path = self.net / "netstat"
        lines = path.read_text().splitlines()
        for i in range(0, len(lines), 2):
            names, values = lines[i].split(), lines[i + 1].split()
            if names[0] == "TcpExt:" and name in names:
                values[names.index(name)] = str(value)
                lines[i + 1] = " ".join(values)
        path.write_text("\n".join(lines) + "\n")

    def args(self) -> list[str]:
        return ["--proc-net", str(self.net), "--proc-root", str(self.proc)]

    def generation(self, number: int) -> dict:  # type: ignore[type-arg]
        return dict(json.loads((self.state / "generations" / f"{number}.json").read_text()))


@pytest.fixture
def trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trees:
    t = Trees(tmp_path)
    t.net.mkdir()
    for name in ("tcp", "tcp6", "netstat", "snmp", "sockstat", "sockstat6"):
        shutil.copy(FIXTURES / name, t.net / name)
    shutil.copytree(FIXTURES / "proc_sys", t.proc)
    t.profile.write_text(PROFILE)
    (tmp_path / "sysroot/etc/sysctl.d").mkdir(parents=True)
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(t.state))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(tmp_path / "sysroot"))
    monkeypatch.setenv("TCPTUNE_BOOT_APPLIER", "systemd")
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return t


def recommend(trees: Trees, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert run(["recommend", "--source", "proc", "--no-owners", "--format", "json", *trees.args()]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_apply_records_the_counters_and_recommend_judges_them_since_then(
    trees: Trees, capsys: pytest.CaptureFixture[str]
) -> None:
    trees.set_counter("ListenOverflows", 5000)  # since boot: history, whatever happened before tcptune
    before = recommend(trees, capsys)
    assert before["counter_window"] is None
    assert "listen-overflows" not in [f["id"] for f in before["findings"]]

    assert run(["apply", "--yes", *trees.args(), str(trees.profile)]) == 0
    generation = trees.generation(1)
    assert generation["counters"]["TcpExt.ListenOverflows"] == 5000
    assert generation["counters_netns"] == os.readlink("/proc/self/ns/net")

    quiet = recommend(trees, capsys)  # nothing overflowed since the apply: nothing to raise
    assert re.fullmatch(r"the \d+ s since generation 1 was applied", quiet["counter_window"])
    assert "listen-overflows" not in [f["id"] for f in quiet["findings"]]
    assert quiet["notes"] == []

    trees.set_counter("ListenOverflows", 5900)  # overflowing again since the apply
    busy = recommend(trees, capsys)
    (finding,) = [f for f in busy["findings"] if f["id"] == "listen-overflows"]
    assert finding["numbers"]["ListenOverflows"] == 900


def test_rollback_and_reset_record_counters_too_and_sample_ignores_them(
    trees: Trees, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["apply", "--yes", *trees.args(), str(trees.profile)]) == 0
    trees.set_counter("ListenOverflows", 7)
    assert run(["reset", "--yes", *trees.args()]) == 0
    assert trees.generation(2)["counters"]["TcpExt.ListenOverflows"] == 7
    trees.set_counter("ListenOverflows", 8)
    assert run(["rollback", "--to", "1", "--yes", *trees.args()]) == 0
    assert trees.generation(3)["counters"]["TcpExt.ListenOverflows"] == 8
    assert recommend(trees, capsys)["counter_window"].endswith("since generation 3 (a rollback) was made")
    import time

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    capsys.readouterr()
    argv = ["recommend", "--source", "proc", "--no-owners", "-f", "json", "--sample", "1", *trees.args()]
    assert run(argv) == 0
    assert json.loads(capsys.readouterr().out)["counter_window"].endswith("(--sample)")


def test_counters_from_another_network_namespace_are_not_a_window(
    trees: Trees, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "--yes", *trees.args(), str(trees.profile)]) == 0
    path = trees.state / "generations/1.json"
    doc = json.loads(path.read_text())
    doc["counters_netns"] = "net:[1]"
    path.write_text(json.dumps(doc))
    found = recommend(trees, capsys)
    assert found["counter_window"] is None
    assert found["notes"] == [
        "the counters recorded when generation 1 was applied are from another network namespace: counters judged "
        "without a window (--sample SECONDS gives one)"
    ]


def test_a_malformed_current_generation_is_a_note_not_an_error(
    trees: Trees, capsys: pytest.CaptureFixture[str]
) -> None:
    (trees.state / "generations").mkdir(parents=True, mode=0o700)
    (trees.state / "generations/1.json").write_text("{")
    found = recommend(trees, capsys)
    assert found["counter_window"] is None
    (note,) = found["notes"]
    assert note.startswith(f"counters since the last apply not read ({trees.state}/generations/1.json: malformed")
