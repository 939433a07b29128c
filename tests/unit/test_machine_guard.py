"""The guard that fails a test run or a benchmark when this machine's own sysctl state changed (tests/machine.py),
pointed at temporary trees: it must see a file created, changed or removed, and a sysctl value changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import machine


@pytest.fixture
def trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    sysctl_d, proc = tmp_path / "sysctl.d", tmp_path / "proc"
    sysctl_d.mkdir()
    proc.mkdir()
    (sysctl_d / "99-sysctl.conf").write_text("# nothing\n")
    (proc / "tcp_fin_timeout").write_text("60\n")
    monkeypatch.setattr(machine, "MACHINE_FILES", (str(sysctl_d),))
    monkeypatch.setattr(machine, "MACHINE_SYSCTLS", (str(proc),))
    return sysctl_d, proc


def test_a_run_that_changes_nothing_keeps_its_exit_code(trees: tuple[Path, Path]) -> None:
    assert machine.guarded("bench/x", lambda: 0) == 0
    assert machine.guarded("bench/x", lambda: 3) == 3


@pytest.mark.parametrize("change", ["create", "rewrite", "remove", "sysctl"])
def test_a_run_that_changes_the_machine_fails_and_says_where(
    trees: tuple[Path, Path], change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sysctl_d, proc = trees

    def run() -> int:
        if change == "create":
            (sysctl_d / "90-tcptune.conf").write_text("net.ipv4.tcp_fin_timeout = 15\n")
        elif change == "rewrite":
            (sysctl_d / "99-sysctl.conf").write_text("net.core.somaxconn = 1\n")
        elif change == "remove":
            (sysctl_d / "99-sysctl.conf").unlink()
        else:
            (proc / "tcp_fin_timeout").write_text("15\n")
        return 0

    assert machine.guarded("bench/x", run) == 1
    err = capsys.readouterr().err
    assert err.startswith("bench/x: this machine's own sysctl state changed: ") and str(trees[0].parent) in err


def test_a_run_that_raises_is_still_checked(trees: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    def run() -> int:
        (trees[0] / "90-tcptune.conf").write_text("x = 1\n")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        machine.guarded("bench/x", run)
    assert "90-tcptune.conf" in capsys.readouterr().err
