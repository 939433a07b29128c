"""Kernel preflight through diff, apply, rollback and reset, on temporary /proc/sys trees: refused keys are shown
with the reason, JSON carries each key's verdict, and nothing is written when the kernel would refuse a write.

The verdicts themselves are tests/unit/test_preflight.py's; against the real kernel, tests/integration/
test_preflight_kernel.py's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tcptune.cli import run

LIVE = {
    "kernel/osrelease": "6.18.3-test",
    "net/ipv4/tcp_mem": "1 2 3",
    "net/ipv4/tcp_ecn": "2",
    "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_fack": "0",
    "net/ipv4/tcp_stdurg": "0",
    "net/ipv4/ip_local_port_range": "32768\t60999",
    "net/ipv4/ip_unprivileged_port_start": "1024",
}


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proc = tmp_path / "proc"
    for rel, text in LIVE.items():
        (proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (proc / rel).write_text(text + "\n")
    (tmp_path / "sysroot/etc/sysctl.d").mkdir(parents=True)
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(proc))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(tmp_path / "sysroot"))
    monkeypatch.setenv("TCPTUNE_BOOT_APPLIER", "systemd")
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return tmp_path


def profile(tree: Path, text: str, name: str = "p.yaml") -> str:
    path = tree / name
    path.write_text(text)
    return str(path)


def live(tree: Path, rel: str) -> str:
    return (tree / "proc" / rel).read_text().rstrip("\n")


def set_live(tree: Path, rel: str, text: str) -> None:
    (tree / "proc" / rel).write_text(text + "\n")


def generations(tree: Path) -> list[str]:
    directory = tree / "state/generations"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


REFUSED = "settings:\n  net.ipv4.tcp_ecn: 3\n  net.ipv4.tcp_fin_timeout: 20\n"


def test_diff_shows_a_refused_key_with_the_reason(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["diff", "--live-only", profile(tree, REFUSED)]) == 2
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("net.ipv4.tcp_ecn "))
    assert row.split() == ["net.ipv4.tcp_ecn", "2", "3", "refused"]
    assert "net.ipv4.tcp_ecn: this kernel (6.18.3-test) refuses 3 (Accurate ECN)" in out
    assert "1 differs, 1 refused" in out


def test_diff_json_carries_each_keys_preflight_verdict(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = REFUSED + "  net.ipv4.tcp_fack: 1\nraw:\n  net.ipv4.tcp_stdurg: 1\n"
    assert run(["diff", "--live-only", "--format", "json", profile(tree, text)]) == 2
    data = json.loads(capsys.readouterr().out)
    keys = {k["key"]: k for k in data["keys"]}
    assert keys["net.ipv4.tcp_ecn"]["preflight"]["outcome"] == "refused"
    assert keys["net.ipv4.tcp_ecn"]["status"] == "refused"
    assert keys["net.ipv4.tcp_fin_timeout"]["preflight"] == {"outcome": "ok", "reasons": []}
    assert keys["net.ipv4.tcp_fack"]["preflight"]["outcome"] == "warning"
    assert keys["net.ipv4.tcp_stdurg"]["raw"] is True and keys["net.ipv4.tcp_fin_timeout"]["raw"] is False
    assert data["summary"]["refused"] == 1


@pytest.mark.parametrize("skips", [[], ["--skip-missing", "--skip-readonly"]])
def test_apply_refuses_before_the_first_write(tree: Path, capsys: pytest.CaptureFixture[str], skips: list[str]) -> None:
    assert run(["apply", "--yes", *skips, profile(tree, REFUSED)]) == 1
    err = capsys.readouterr().err
    assert "nothing was changed" in err
    assert "net.ipv4.tcp_ecn: refused by this kernel: this kernel (6.18.3-test) refuses 3 (Accurate ECN)" in err
    assert live(tree, "net/ipv4/tcp_fin_timeout") == "60"  # the key that was fine was not written either
    assert not (tree / "sysroot/etc/sysctl.d/90-tcptune.conf").exists()
    assert generations(tree) == []


def test_apply_dry_run_exits_1_on_a_refused_key(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--dry-run", profile(tree, REFUSED)]) == 1
    assert "refused by this kernel" in capsys.readouterr().err
    assert run(["apply", "--dry-run", profile(tree, "settings:\n  net.ipv4.tcp_fin_timeout: 20\n")]) == 0


def test_port_checks_use_the_live_range(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "settings:\n  net.ipv4.ip_unprivileged_port_start: 40000\n"
    assert run(["apply", "--yes", profile(tree, text)]) == 1
    assert "above the start of ip_local_port_range (32768)" in capsys.readouterr().err
    assert live(tree, "net/ipv4/ip_unprivileged_port_start") == "1024"


def test_apply_writes_and_marks_raw_keys_and_shows_warnings(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "settings:\n  net.ipv4.tcp_fack: 1\nraw:\n  net.ipv4.tcp_stdurg: 1\n"
    assert run(["apply", "--yes", profile(tree, text)]) == 0
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_stdurg (raw)" in out and "unchecked by the catalog" in out
    assert "warning: net.ipv4.tcp_fack: accepted but does nothing since Linux 4.15" in out
    assert live(tree, "net/ipv4/tcp_stdurg") == "1" and live(tree, "net/ipv4/tcp_fack") == "1"
    assert "net.ipv4.tcp_stdurg = 1" in (tree / "sysroot/etc/sysctl.d/90-tcptune.conf").read_text()
    generation = json.loads((tree / "state/generations/1.json").read_text())
    assert generation["raw"] == ["net.ipv4.tcp_stdurg"]
    assert run(["diff", "--live-only"]) == 0  # the generation keeps the raw keys
    assert "net.ipv4.tcp_stdurg (raw)" in capsys.readouterr().out


def test_a_raw_key_this_kernel_lacks_is_refused(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--yes", profile(tree, "raw:\n  net.ipv4.tcp_nope: 1\n")]) == 1
    assert "net.ipv4.tcp_nope: missing on this kernel: this kernel has no such key" in capsys.readouterr().err


def test_a_rollback_to_a_value_this_kernel_now_refuses_is_refused_up_front(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_live(tree, "kernel/osrelease", "6.20.1")  # a kernel that may take Accurate ECN: a warning, not a refusal
    assert run(["apply", "--yes", profile(tree, REFUSED)]) == 0
    assert "cannot tell whether this kernel (6.20.1) takes it" in capsys.readouterr().out
    assert run(["apply", "--yes", profile(tree, "settings:\n  net.ipv4.tcp_fin_timeout: 30\n", "q.yaml")]) == 0
    assert live(tree, "net/ipv4/tcp_ecn") == "2"  # reverted to its baseline
    set_live(tree, "kernel/osrelease", "6.18.3-test")  # booted back into a kernel without it
    capsys.readouterr()
    assert run(["rollback", "--to", "1", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "net.ipv4.tcp_ecn: refused by this kernel: this kernel (6.18.3-test) refuses 3" in err
    assert "nothing was changed" in err
    assert live(tree, "net/ipv4/tcp_fin_timeout") == "30" and live(tree, "net/ipv4/tcp_ecn") == "2"
    assert generations(tree) == ["1.json", "2.json"]


def test_a_reset_leaves_a_baseline_this_kernel_refuses_and_says_so(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_live(tree, "kernel/osrelease", "6.20.1")
    set_live(tree, "net/ipv4/tcp_ecn", "3")  # the value before tcptune: its baseline
    assert (
        run(["apply", "--yes", profile(tree, "settings:\n  net.ipv4.tcp_ecn: 1\n  net.ipv4.tcp_fin_timeout: 20\n")])
        == 0
    )
    set_live(tree, "kernel/osrelease", "6.18.3-test")
    capsys.readouterr()
    assert run(["reset", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_ecn leaves management; this kernel would refuse '3'" in out and "left as it is" in out
    assert live(tree, "net/ipv4/tcp_ecn") == "1" and live(tree, "net/ipv4/tcp_fin_timeout") == "60"
    assert generations(tree) == ["1.json", "2.json"]
