"""diff / apply / history / rollback through the real entry point, on temporary /proc/sys and sysctl.d trees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.journal import StateDir
from tcptune.live import ProcSys

PROFILE = """\
name: tt3-web
settings:
  net.ipv4.tcp_fin_timeout: 15
  net.ipv4.tcp_rmem: "4096 131072 6291456"
  net.core.somaxconn: 8192
"""
LIVE = {
    "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_rmem": "4096\t131072\t6291456",
    "net/core/somaxconn": "4096",
    "net/ipv4/tcp_tw_reuse": "2",
}


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.state = root / "state"
        self.sysctl_root = root / "sysroot"
        self.own = self.sysctl_root / "etc/sysctl.d/90-tcptune.conf"
        self.profile = root / "web.yaml"

    def live(self, rel: str) -> str:
        return (self.proc / rel).read_text().rstrip("\n")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    for rel, text in LIVE.items():
        (e.proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (e.proc / rel).write_text(text + "\n")
    (e.sysctl_root / "etc/sysctl.d").mkdir(parents=True)
    e.profile.write_text(PROFILE)
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(e.proc))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(e.state))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(e.sysctl_root))
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return e


def test_diff_exits_2_on_drift_and_shows_each_key(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["diff", str(env.profile)]) == 2
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_fin_timeout  60" in out and "differs" in out
    assert "net.ipv4.tcp_rmem" in out and "\x1b[" not in out  # piped: plain text


def test_tabs_in_the_kernels_triple_are_not_drift(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["diff", "--format", "json", str(env.profile)])
    keys = {k["key"]: k for k in json.loads(capsys.readouterr().out)["keys"]}
    assert keys["net.ipv4.tcp_rmem"]["status"] == "ok"
    assert keys["net.ipv4.tcp_rmem"]["live"] == "4096\t131072\t6291456"


def test_diff_json_has_one_object_per_key_and_a_summary(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["diff", "-f", "json", str(env.profile)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert len(data["keys"]) == 3
    assert data["summary"]["differs"] == 2 and data["summary"]["drift"] is True
    assert data["keys"][0]["boot"]["status"] == "not persisted"


def test_diff_reports_missing_keys(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.profile.write_text(PROFILE + "  net.ipv4.tcp_mem: [1, 2, 3]\n")
    assert run(["diff", str(env.profile)]) == 2
    assert "missing on this kernel" in capsys.readouterr().out


def test_diff_of_an_invalid_profile_exits_1(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.profile.write_text("settings:\n  net.ipv4.tcp_fin_timeout: -5\n")
    assert run(["diff", str(env.profile)]) == 1
    assert "out of range" in capsys.readouterr().err


def test_diff_without_a_profile_before_any_apply_says_how_to_start(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["diff"]) == 1
    err = capsys.readouterr().err
    assert "no applied profile" in err and "tcptune apply" in err


def test_apply_without_yes_and_without_a_terminal_refuses(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", str(env.profile)]) == 64
    assert "pass --yes" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--dry-run", str(env.profile)]) == 0
    out = capsys.readouterr().out
    assert "2 to change, 1 already at the desired value" in out
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"
    assert not env.own.exists() and not env.state.exists()


def test_apply_then_diff_is_clean_and_a_bare_diff_uses_the_applied_profile(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "--yes", str(env.profile)]) == 0
    assert env.live("net/ipv4/tcp_fin_timeout") == "15"
    assert "# profile: tt3-web" in env.own.read_text()
    assert run(["diff", str(env.profile)]) == 0
    assert run(["diff"]) == 0
    assert "no drift" in capsys.readouterr().out
    env.proc.joinpath("net/core/somaxconn").write_text("128\n")
    assert run(["diff"]) == 2


def test_second_apply_is_up_to_date(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "--yes", str(env.profile)])
    capsys.readouterr()
    assert run(["apply", str(env.profile)]) == 0  # nothing to confirm: no --yes needed
    assert "up to date" in capsys.readouterr().out
    assert len(StateDir(str(env.state)).journals()) == 1


def test_apply_json_output(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--yes", "--format", "json", str(env.profile)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["applied"] is True and sorted(data["written"]) == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]


def test_no_persist_leaves_sysctl_d_alone_and_diff_reports_it(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--yes", "--no-persist", str(env.profile)]) == 0
    assert not env.own.exists()
    assert run(["diff", str(env.profile)]) == 2
    assert "not persisted" in capsys.readouterr().out
    assert run(["diff", "--live-only", str(env.profile)]) == 0


def test_diff_names_the_file_and_line_that_overrides_ours(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "--yes", str(env.profile)])
    later = env.sysctl_root / "usr/lib/sysctl.d/99-vendor.conf"
    later.parent.mkdir(parents=True)
    later.write_text("# vendor\nnet.ipv4.tcp_fin_timeout = 30\n")
    capsys.readouterr()
    assert run(["diff", str(env.profile)]) == 2
    out = capsys.readouterr().out
    assert f"would be 30 from {later}:2, overriding {env.own}:" in out


def test_missing_key_refused_before_any_write_unless_skipped(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.profile.write_text(PROFILE + "  net.ipv4.tcp_mem: [1, 2, 3]\n")
    assert run(["apply", "--yes", str(env.profile)]) == 1
    assert "net.ipv4.tcp_mem: missing on this kernel" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"
    assert run(["apply", "--yes", "--skip-missing", str(env.profile)]) == 0
    assert "warning: skipping net.ipv4.tcp_mem" in capsys.readouterr().out


def test_history_and_rollback(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "--yes", str(env.profile)])
    capsys.readouterr()
    assert run(["history"]) == 0
    out = capsys.readouterr().out
    assert "tt3-web" in out and "complete" in out
    assert run(["rollback"]) == 64  # no terminal, no --yes
    assert run(["rollback", "--yes"]) == 0
    assert env.live("net/ipv4/tcp_fin_timeout") == "60" and not env.own.exists()
    capsys.readouterr()
    run(["history", "--format", "json"])
    kinds = [(j["kind"], j["status"]) for j in json.loads(capsys.readouterr().out)]
    assert kinds == [("apply", "rolled-back"), ("rollback", "complete")]


def test_an_interrupted_apply_is_announced_by_every_command(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    journal = StateDir(str(env.state)).begin(
        "apply",
        profile={"name": "tt3-web"},
        proc_root=str(env.proc),
        changes=[{"key": "net.core.somaxconn", "old": "4096", "new": "8"}],
    )
    journal.update(pid=2**22 + 11)
    env.proc.joinpath("net/core/somaxconn").write_text("8\n")
    for argv in (["explain", "tcp_fin_timeout"], ["history"], ["diff", str(env.profile)]):
        run(argv)
        assert "was interrupted" in capsys.readouterr().err, argv
    assert run(["apply", "--yes", str(env.profile)]) == 1
    assert "run 'tcptune rollback' first" in capsys.readouterr().err
    assert run(["rollback", "--yes"]) == 0
    assert env.live("net/core/somaxconn") == "4096"
    run(["history"])
    assert "was interrupted" not in capsys.readouterr().err


def test_apply_on_the_real_kernel_as_non_root_fails_up_front(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", "/proc/sys")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert run(["apply", "--yes", str(env.profile)]) == 1
    assert "must run as root" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    run(["diff", "--help"])
    assert "2 drift found" in capsys.readouterr().out


# ---- damaged state, reused pids, unusable paths: an error or a warning, never a traceback ---------------------


def test_a_malformed_pending_journal_is_one_warning_not_a_crash(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    journal_dir = env.state / "journal"
    journal_dir.mkdir(parents=True)
    bad = journal_dir / "x.pending.json"
    bad.write_text(json.dumps({"id": "x", "changes": 5}))
    for argv in (["explain", "tcp_fin_timeout"], ["diff", str(env.profile)]):
        assert run(argv) in (0, 2), argv
        err = capsys.readouterr().err
        assert f"warning: skipping {bad}: malformed journal: 'status' must be one of" in err, argv
        assert len(err.strip().splitlines()) == 1 and "internal error" not in err
    assert run(["apply", "--yes", str(env.profile)]) == 1  # refuses to act next to a damaged journal
    assert f"{bad}: malformed journal" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"


def test_an_interrupted_apply_with_a_reused_pid_is_announced(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    journal = StateDir(str(env.state)).begin("apply", profile={"name": "tt3-web"}, proc_root=str(env.proc))
    journal.update(pid=1)  # init: alive, so a pid check would think the apply is still running
    run(["explain", "tcp_fin_timeout"])
    assert "was interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ({"profile": "x"}, "'profile' must be an object"),
        ({"profile": {"name": "x", "values": [1, 2]}}, "profile.values must be an object"),
        ({"profile": {"name": "x", "values": {"../../etc/passwd": "1"}}}, "not a sysctl key name"),
    ],
)
def test_a_bare_diff_with_a_malformed_last_applied_record_is_an_error(
    env: Env, capsys: pytest.CaptureFixture[str], record: object, says: str
) -> None:
    env.state.mkdir()
    (env.state / "last-applied.json").write_text(json.dumps(record))
    assert run(["diff"]) == 1
    err = capsys.readouterr().err
    assert f"{env.state / 'last-applied.json'}: malformed last-applied record" in err and says in err


def test_apply_that_cannot_record_last_applied_succeeds_with_a_warning(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    (env.state / "last-applied.json").mkdir(parents=True, mode=0o700)
    env.state.chmod(0o700)
    assert run(["apply", "--yes", str(env.profile)]) == 0
    captured = capsys.readouterr()
    assert "warning: cannot write" in captured.out and "last-applied.json" in captured.out
    assert env.live("net/ipv4/tcp_fin_timeout") == "15" and env.own.exists()


@pytest.mark.parametrize(
    ("root", "says"),
    [
        ("", "--proc-root must not be empty"),
        ("/nonexistent-tcptune", "--proc-root /nonexistent-tcptune: no such directory"),
    ],
)
def test_diff_and_apply_reject_an_empty_or_missing_proc_root(
    env: Env, capsys: pytest.CaptureFixture[str], root: str, says: str
) -> None:
    for argv in (["diff", str(env.profile)], ["apply", "--yes", str(env.profile)]):
        assert run([*argv, "--proc-root", root]) == 1, argv
        assert says in capsys.readouterr().err


def test_rollback_restores_the_file_in_the_sysctl_dir_it_is_given(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert run(["apply", "--yes", "--sysctl-dir", str(elsewhere), str(env.profile)]) == 0
    assert (elsewhere / "90-tcptune.conf").exists()
    capsys.readouterr()
    assert run(["rollback", "--yes"]) == 1  # this run's own file is in <sysctl root>/etc/sysctl.d
    assert "refusing to restore or delete any other file" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "15"
    assert run(["rollback", "--yes", "--sysctl-dir", str(elsewhere)]) == 0
    assert not (elsewhere / "90-tcptune.conf").exists() and env.live("net/ipv4/tcp_fin_timeout") == "60"


def test_apply_exits_1_and_names_the_key_when_the_kernel_clamps_a_value(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ClampingProcSys(ProcSys):
        """somaxconn capped at 5000, as a kernel handler may store less than it was given without failing."""

        def write(self, key: str, text: str) -> None:
            if key == "net.core.somaxconn" and int(text) > 5000:
                text = "5000"
            super().write(key, text)

    monkeypatch.setattr("tcptune.target.ProcSys", ClampingProcSys)
    assert run(["apply", "--yes", str(env.profile)]) == 1
    out = capsys.readouterr().out
    assert "warning: net.core.somaxconn: live 5000, expected 8192 (the kernel clamped or ignored the value)" in out
    assert env.live("net/core/somaxconn") == "5000" and env.live("net/ipv4/tcp_fin_timeout") == "15"
    assert run(["apply", "--yes", "--format", "json", str(env.profile)]) == 1
    assert json.loads(capsys.readouterr().out)["mismatches"] == [
        {"key": "net.core.somaxconn", "live": "5000", "expected": "8192"}
    ]
