"""history, rollback, reset and recover through the real entry point, on temporary /proc/sys and sysctl.d trees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tcptune.cli import run
from tests.unit.state_files import generation_doc, private_dir, read_json, write_generation, write_pending

WEB = """\
name: tt9-web
settings:
  net.ipv4.tcp_fin_timeout: 15
  net.core.somaxconn: 8192
"""
SMALL = """\
name: tt9-small
settings:
  net.ipv4.tcp_fin_timeout: 20
"""
LIVE = {"net/ipv4/tcp_fin_timeout": "60", "net/core/somaxconn": "4096"}


class Env:
    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.state = root / "state"
        self.sysctl_root = root / "sysroot"
        self.own = self.sysctl_root / "etc/sysctl.d/90-tcptune.conf"
        self.web = root / "web.yaml"
        self.small = root / "small.yaml"

    def live(self, rel: str) -> str:
        return (self.proc / rel).read_text().rstrip("\n")

    def values(self) -> tuple[str, str]:
        return self.live("net/ipv4/tcp_fin_timeout"), self.live("net/core/somaxconn")

    def generations(self) -> list[str]:
        directory = self.state / "generations"
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    for rel, text in LIVE.items():
        (e.proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (e.proc / rel).write_text(text + "\n")
    (e.sysctl_root / "etc/sysctl.d").mkdir(parents=True)
    e.web.write_text(WEB)
    e.small.write_text(SMALL)
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(e.proc))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(e.state))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(e.sysctl_root))
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return e


def history(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    capsys.readouterr()
    assert run(["history", "-f", "json", *extra]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_history_lists_generations_newest_first_with_the_current_one_marked(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["history"]) == 0
    assert f"no generations recorded in {env.state}" in capsys.readouterr().out
    assert run(["apply", "-y", str(env.web)]) == 0
    assert run(["apply", "-y", str(env.small)]) == 0
    capsys.readouterr()
    assert run(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["GEN", "KIND", "PROFILE", "FINGERPRINT", "KEYS", "CREATED", "(UTC)", "NOTE"]
    assert lines[1].split()[:3] == ["*2", "apply", "tt9-small"] and lines[2].split()[:3] == ["1", "apply", "tt9-web"]
    data = history(capsys)
    assert data["current"] == 2 and data["pending"] is None
    gens = data["generations"]
    assert [(g["generation"], g["current"], g["kind"], g["profile"]) for g in gens] == [  # type: ignore[union-attr]
        (2, True, "apply", "tt9-small"),
        (1, False, "apply", "tt9-web"),
    ]
    assert gens[1]["keys"] == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]  # type: ignore[index]


def test_history_baseline_shows_each_keys_value_before_tcptune(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.own.write_text("# mine\n")
    assert run(["apply", "-y", str(env.web)]) == 0
    data = history(capsys, "--baseline")
    assert data == {
        "generation": 1,
        "baseline": {
            "net.core.somaxconn": {"live": "4096", "boot": None},
            "net.ipv4.tcp_fin_timeout": {"live": "60", "boot": None},
        },
        "file": {"path": str(env.own), "baseline": "# mine\n"},
    }
    assert run(["history", "--baseline"]) == 0
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_fin_timeout  60    -" in out and f"{env.own} before tcptune: 1 line(s)" in out


def test_rollback_asks_then_converges_to_the_previous_generation_as_a_new_one(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["apply", "-y", str(env.web)])
    run(["apply", "-y", str(env.small)])
    capsys.readouterr()
    assert run(["rollback"]) == 64  # no terminal, no --yes
    assert "pass --yes" in capsys.readouterr().err and env.values() == ("20", "4096")
    assert run(["rollback", "--yes"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("roll back from generation 2 (apply of tt9-small, ")
        and " to generation 1 (apply of tt9-web" in out
    )
    assert "now at generation 3" in out
    assert env.values() == ("15", "8192") and "# profile: tt9-web" in env.own.read_text()
    gens = history(capsys)["generations"]
    assert next((g["generation"], g["kind"], g["target"]) for g in gens) == (3, "rollback", 1)  # type: ignore[union-attr]


def test_rollback_to_n_twice_is_up_to_date_the_second_time(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "-y", str(env.web)])
    run(["apply", "-y", str(env.small)])
    assert run(["rollback", "--to", "1", "-y"]) == 0
    capsys.readouterr()
    assert run(["rollback", "--to", "1"]) == 0  # nothing to confirm
    assert "up to date: nothing to do" in capsys.readouterr().out
    assert env.generations() == ["1.json", "2.json", "3.json"]


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["rollback", "-y"], 1, "nothing to roll back: no generation is recorded"),
        (["rollback", "--to", "-1", "-y"], 64, "--to"),
        (["rollback", "--to", "x", "-y"], 64, "--to"),
    ],
)
def test_rollback_errors(env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str) -> None:
    assert run(argv) == code
    assert says in capsys.readouterr().err


def test_rollback_to_a_generation_that_does_not_exist(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "-y", str(env.web)])
    capsys.readouterr()
    assert run(["rollback", "--to", "7", "-y"]) == 1
    assert "no generation 7: the generations here are 1 to 1" in capsys.readouterr().err


def test_reset_restores_the_baseline_removes_the_file_and_ends_management(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["apply", "-y", str(env.web)])
    capsys.readouterr()
    assert run(["reset"]) == 64
    assert run(["reset", "-y"]) == 0
    assert "nothing is managed now (generation 2)" in capsys.readouterr().out
    assert env.values() == ("60", "4096") and not env.own.exists()
    assert run(["reset", "-y"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert run(["diff"]) == 1
    assert "nothing is managed since generation 2 (a reset)" in capsys.readouterr().err


def test_reset_leaves_a_file_someone_changed_with_a_warning(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "-y", str(env.web)])
    env.own.write_text("# hand edited\n")
    capsys.readouterr()
    assert run(["reset", "-y"]) == 0
    assert "was changed by someone else since tcptune last wrote it; left as it is" in capsys.readouterr().out
    assert env.own.read_text() == "# hand edited\n" and env.values() == ("60", "4096")


def test_an_interrupted_apply_is_announced_by_every_command_and_recover_undoes_it(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    write_pending(env.state, writes=[{"key": "net.core.somaxconn", "old": "4096", "new": "8"}])
    (env.proc / "net/core/somaxconn").write_text("8\n")
    for argv in (["explain", "tcp_fin_timeout"], ["history"], ["diff", str(env.web)], ["reset", "-y"]):
        run(argv)
        err = capsys.readouterr().err
        assert "an interrupted apply (generation 0 -> 1, started 2024-05-01T12:00:00Z)" in err, argv
        assert "run 'tcptune recover' to return to generation 0" in err, argv
    assert run(["apply", "--yes", str(env.web)]) == 1
    assert "run 'tcptune recover'" in capsys.readouterr().err
    assert history(capsys)["pending"]["state"] == "interrupted: run 'tcptune recover'"  # type: ignore[index]
    assert run(["recover"]) == 64  # undoing needs confirmation
    assert run(["recover", "--yes"]) == 0
    assert "returned to generation 0: restored 1 key(s) (net.core.somaxconn)" in capsys.readouterr().out
    assert env.live("net/core/somaxconn") == "4096"
    assert run(["history"]) == 0
    assert "interrupted" not in capsys.readouterr().err
    assert run(["recover"]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_recover_of_a_committed_transaction_only_removes_its_record(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["apply", "-y", str(env.web)])
    write_pending(env.state, writes=[{"key": "net.core.somaxconn", "old": "4096", "new": "8192"}])
    capsys.readouterr()
    assert run(["history"]) == 0
    assert "completed but left" in capsys.readouterr().err
    assert run(["recover"]) == 0  # nothing is undone: no confirmation needed
    assert "had completed; removed its pending record" in capsys.readouterr().out
    assert env.values() == ("15", "8192")


def test_rollback_with_a_pending_transaction_recovers_and_stops_there(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["apply", "-y", str(env.web)])
    gen2 = generation_doc(2, values={"net.ipv4.tcp_fin_timeout": "20"})
    write_pending(
        env.state, from_=1, writes=[{"key": "net.ipv4.tcp_fin_timeout", "old": "15", "new": "20"}], generation=gen2
    )
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("20\n")
    capsys.readouterr()
    assert run(["rollback", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "doing what 'tcptune recover' does, and stopping there" in out
    assert "returned to generation 1" in out and "run 'tcptune rollback' again" in out
    assert env.values() == ("15", "8192") and env.generations() == ["1.json"]


def test_history_notes_the_old_journal_layout_and_ignores_it(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    private_dir(env.state / "journal")
    (env.state / "last-applied.json").write_text("{}")
    assert run(["history"]) == 0
    out = capsys.readouterr().out
    assert "last-applied.json (tcptune 0.1.0's journal) are no longer used" in out
    assert "no generations recorded" in out


def test_history_lists_an_unreadable_generation_by_name(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    write_generation(env.state, generation_doc(1))
    bad = write_generation(env.state, "[" * 50_000, number=2)
    assert run(["history"]) == 0
    out = capsys.readouterr().out
    assert f"unreadable: {bad}: malformed generation: JSON nested too deeply" in out
    data = history(capsys)
    assert [g["error"] is None for g in data["generations"]] == [False, True]  # type: ignore[union-attr]


def test_rollback_refuses_a_generation_persisted_in_another_sysctl_dir(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert run(["apply", "--yes", "--sysctl-dir", str(elsewhere), str(env.web)]) == 0
    assert run(["apply", "--yes", "--sysctl-dir", str(elsewhere), str(env.small)]) == 0
    capsys.readouterr()
    assert run(["rollback", "--yes"]) == 1
    assert f"pass --sysctl-dir {elsewhere}" in capsys.readouterr().err
    assert env.values() == ("20", "4096")
    assert run(["rollback", "--yes", "--sysctl-dir", str(elsewhere)]) == 0
    assert env.values() == ("15", "8192") and "tt9-web" in (elsewhere / "90-tcptune.conf").read_text()


def test_every_transaction_needs_root_on_the_real_kernel(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", "/proc/sys")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for argv in (["rollback", "-y"], ["reset", "-y"], ["recover", "-y"]):
        assert run(argv) == 1, argv
        assert "must run as root" in capsys.readouterr().err


def test_history_json_of_a_generation_records_who_and_what(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    run(["apply", "-y", str(env.web)])
    on_disk = read_json(env.state / "generations" / "1.json")
    assert set(on_disk["by"]) == {"uid", "pid", "host"} and on_disk["created"].endswith("Z")
    (gen,) = history(capsys)["generations"]  # type: ignore[misc]
    assert gen["persisted"] == str(env.own) and gen["source"] == str(env.web)
