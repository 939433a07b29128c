"""diff and apply through the real entry point, on temporary /proc/sys and sysctl.d trees."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.live import ProcSys
from tests.unit.state_files import generation_doc, write_generation, write_pending

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
    monkeypatch.setenv("TCPTUNE_BOOT_APPLIER", "systemd")  # the tree has no init to detect it from
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
    assert "nothing is managed: no generation is recorded in" in err and "tcptune apply" in err


def test_apply_without_yes_and_without_a_terminal_refuses(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", str(env.profile)]) == 64
    assert "pass --yes" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--dry-run", str(env.profile)]) == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out.splitlines()[0] and out.splitlines()[-1] == "dry run: nothing was changed"
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
    assert sorted(p.name for p in (env.state / "generations").iterdir()) == ["1.json"]


def test_apply_json_output(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--yes", "--format", "json", str(env.profile)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["applied"] is True and sorted(data["written"]) == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]
    assert (data["generation"], data["from"], data["to"], data["file_action"]) == (1, 0, 1, "written")


def test_apply_dry_run_json_says_dry_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", "--dry-run", "-f", "json", str(env.profile)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["dry_run"], data["applied"], data["generation"]) == (True, False, None)
    assert [w["key"] for w in data["writes"]] == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]


def test_switching_profiles_shows_revert_rows_and_keep_unmanaged_keeps_them(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "--yes", str(env.profile)]) == 0
    small = tmp_path / "small.yaml"
    small.write_text("name: tt3-small\nsettings:\n  net.ipv4.tcp_fin_timeout: 20\n")
    capsys.readouterr()
    assert run(["apply", "--dry-run", str(small)]) == 0
    out = capsys.readouterr().out
    assert "net.core.somaxconn        8192  4096  revert to baseline" in out
    assert "1 to change, 0 already at the desired value, 1 to revert to their baseline" in out
    assert run(["apply", "--yes", "--keep-unmanaged", str(small)]) == 0
    out = capsys.readouterr().out
    assert "revert" not in out and "no longer persisted: a reboot resets them to their boot values" in out
    assert env.live("net/core/somaxconn") == "8192" and env.live("net/ipv4/tcp_fin_timeout") == "20"
    assert "somaxconn" not in env.own.read_text()


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


# ---- damaged state, unusable paths: an error or a warning, never a traceback ---------------------------------


def test_a_malformed_pending_record_is_one_warning_not_a_crash(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_pending(env.state, writes=[{"key": "kernel.core_pattern", "old": "core", "new": "|/bin/sh"}])
    for argv in (["explain", "tcp_fin_timeout"], ["diff", str(env.profile)]):
        assert run(argv) in (0, 2), argv
        err = capsys.readouterr().err
        assert f"warning: {bad}: malformed pending record: writes[0].key" in err, argv
        assert len(err.strip().splitlines()) == 1 and "internal error" not in err
    assert run(["apply", "--yes", str(env.profile)]) == 1  # refuses to act next to a damaged record
    assert f"{bad}: malformed pending record" in capsys.readouterr().err
    assert env.live("net/ipv4/tcp_fin_timeout") == "60"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"profile": "x"}, "'profile' must be an object"),
        ({"values": [1, 2]}, "'values' must be an object"),
        (
            {"values": {"../../etc/passwd": "1"}, "baseline": {"../../etc/passwd": {"live": None, "boot": None}}},
            "not a sysctl key name",
        ),
    ],
)
def test_a_bare_diff_with_a_malformed_current_generation_is_an_error(
    env: Env, capsys: pytest.CaptureFixture[str], edit: dict[str, object], says: str
) -> None:
    path = write_generation(env.state, generation_doc(1, **edit))  # type: ignore[arg-type]
    assert run(["diff"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: malformed generation" in err and says in err and len(err.strip().splitlines()) == 1


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
    err = capsys.readouterr().err.splitlines()
    assert (
        err[-1] == "tcptune: error: net.core.somaxconn: the kernel keeps 5000, expected 8192; every change was undone"
    )
    assert env.live("net/core/somaxconn") == "4096" and env.live("net/ipv4/tcp_fin_timeout") == "60"
    assert not env.own.exists() and not (env.state / "generations" / "1.json").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["symlink", "fifo", "not utf-8"])
def test_an_own_file_that_must_not_be_replaced_is_refused_in_one_line(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("keep\n")
    if kind == "symlink":
        env.own.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(env.own)
    else:
        env.own.write_bytes(b"# \xff\n")
    for argv in (["apply", "--yes", str(env.profile)], ["apply", "--dry-run", str(env.profile)]):
        assert run(argv) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
        assert len(err) == 1 and err[0].startswith(f"tcptune: error: {env.own}: it is "), err
        assert err[0].endswith("nothing was changed (move it away)")
    assert env.live("net/ipv4/tcp_fin_timeout") == "60" and victim.read_text() == "keep\n"
    assert run(["diff", str(env.profile)]) == 2  # reading it for the boot view never blocks either
