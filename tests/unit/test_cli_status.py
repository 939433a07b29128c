"""status and recommend through the real entry point, on captured /proc trees (no root, no kernel state)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcptune.cli import run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
TREES = ["--source", "proc", "--proc-net", str(FIXTURES), "--proc-root", str(FIXTURES / "proc_sys")]


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(tmp_path / "state"))


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert run([*args, *TREES, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---- status ----------------------------------------------------------------------------------------------------------


def test_status_json_counts_every_state(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "status")
    assert data["states"]["TIME_WAIT"] == 7 and data["states"]["CLOSE_WAIT"] == 9 and data["states"]["LISTEN"] == 8
    assert data["total"] == sum(data["states"].values())
    assert data["source"] == "proc" and data["source_label"] == "/proc/net/tcp (--source proc)"
    assert data["port_range"] == {"low": 32768, "high": 60999, "size": 28232}
    assert data["time_wait"]["count"] == 14


def test_status_text_has_bars_limits_and_breakdowns(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", *TREES]) == 0
    out = capsys.readouterr().out
    assert "source: /proc/net/tcp (--source proc)" in out
    assert "ESTABLISHED" in out and "█" in out
    assert "tcp_max_orphans not readable here" in out
    for heading in (
        "By port",
        "Outgoing connections per remote endpoint",
        "By remote address",
        "Listeners",
        "Kernel counters",
    ):
        assert heading in out
    assert "\x1b[" not in out  # no colour when piped


def test_status_port_filter_keeps_only_that_port(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "status", "--port", "7001")
    assert data["by_port"] == [
        {"port": 7001, "direction": "out", "total": 7, "states": {"TIME_WAIT": 7}},
        {"port": 7001, "direction": "in", "total": 1, "states": {"LISTEN": 1}},
    ]


def test_status_prometheus_is_textfile_format_bounded_by_top(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", *TREES, "--format", "prometheus", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert 'tcptune_sockets{state="time_wait"} 7' in out
    assert "# TYPE tcptune_sockets gauge" in out and "# HELP tcptune_sockets " in out
    assert (
        len(
            {
                line.split('port="')[1].split('"')[0] + line.split('direction="')[1][:3]
                for line in out.splitlines()
                if line.startswith("tcptune_sockets_by_port{")
            }
        )
        == 2
    )
    assert 'tcptune_kernel_counter_total{group="TcpExt",name="ListenOverflows"}' in out
    assert "tcptune_orphans_max" not in out  # unreadable inside a namespace: no sample rather than a fake 0
    families = [line.split()[2] for line in out.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families))
    for line in out.splitlines():
        assert line.startswith("#") or line.startswith("tcptune_")


def test_status_output_file_is_written_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "tcptune.prom"
    assert run(["status", *TREES, "--format", "prometheus", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert target.read_text().startswith("# HELP tcptune_sockets ")
    assert [p.name for p in tmp_path.iterdir()] == ["tcptune.prom"]


def test_status_watch_repeats_and_json_becomes_one_document_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", *TREES, "--format", "json", "--watch", "0.01", "--count", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    second = json.loads(lines[1])
    assert second["counter_deltas"]["TcpExt.ListenOverflows"] == 0 and second["window_seconds"] is not None


def test_status_watch_text_shows_counter_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", *TREES, "--watch", "0.01", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("TCP sockets in") == 2 and "+0" in out


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_status_watch_rejects_non_positive_seconds(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", *TREES, "--watch", seconds]) == 64
    assert "--watch" in capsys.readouterr().err


def test_status_watch_ends_cleanly_on_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    assert run(["status", *TREES, "--watch", "5"]) == 0
    assert "TCP sockets in" in capsys.readouterr().out


def test_status_missing_proc_net_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["status", "--source", "proc", "--proc-net", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tcptune: error:" in err and "Traceback" not in err


def test_status_on_a_file_that_is_not_proc_net_tcp_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tcp").write_text("  sl  local_address\n   0: 0100007F:XYZ 00000000:0000 0A 0:0 0 0 0 0 1\n")
    assert run(["status", "--source", "proc", "--proc-net", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"tcptune: error: cannot read {tmp_path}/tcp: not in the format of /proc/net/tcp\n"


# ---- recommend -------------------------------------------------------------------------------------------------------


def test_recommend_json_has_findings_suggestions_and_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "recommend", "--min-sockets", "3", "--no-owners")
    ids = [f["id"] for f in data["findings"]]
    assert "close-wait" in ids and "fin-wait2-orphans" in ids
    close_wait = [f for f in data["findings"] if f["id"] == "close-wait"]
    assert {(f["numbers"]["port"], f["numbers"]["direction"]) for f in close_wait} == {(7002, "in"), (7003, "out")}
    assert data["suggested"] == {"net.ipv4.tcp_fin_timeout": "30"}
    assert data["current"] == {"net.ipv4.tcp_fin_timeout": "60"}
    assert data["evidence"]["states"]["CLOSE_WAIT"] == 9 and data["written"] is None


def test_recommend_text_shows_numbers_change_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["recommend", *TREES, "--min-sockets", "3"]) == 0
    out = capsys.readouterr().out
    assert "evidence: 55 TCP sockets" in out and "via /proc/net/tcp (--source proc)" in out
    assert "net.ipv4.tcp_fin_timeout: 60 -> 30" in out
    assert "no sysctl fixes this" in out and "owner unknown" in out
    assert "why:" in out


def test_recommend_on_a_quiet_host_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["recommend", *TREES]) == 0
    assert "No findings" in capsys.readouterr().out


def test_recommend_write_produces_a_valid_profile_extending_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "from-evidence.yaml"
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--write", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    text = target.read_text()
    assert "name: from-evidence\n" in text and "extends: base\n" in text
    assert "net.ipv4.tcp_fin_timeout: 30" in text
    assert run(["validate", str(target)]) == 0
    assert not list(tmp_path.glob(".tcptune-*"))  # neither the validation probe nor a temp file is left


def test_recommend_write_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine.yaml"
    target.write_text("keep me\n")
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--write", str(target)]) == 1
    assert "--force" in capsys.readouterr().err and target.read_text() == "keep me\n"
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--write", str(target), "--force"]) == 0
    assert "tcp_fin_timeout" in target.read_text()


def test_recommend_write_extends_a_base_file_by_relative_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "profiles").mkdir()
    parent = tmp_path / "profiles" / "edge.yaml"
    parent.write_text("name: edge\nextends: base\nsettings:\n  net.core.somaxconn: 8192\n")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "next.yaml"
    assert (
        run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--write", str(target), "--base", str(parent)])
        == 0
    )
    capsys.readouterr()
    assert "extends: ../profiles/edge.yaml\n" in target.read_text()
    assert run(["show", str(target), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["chain"] == ["base", "edge", "next"]


def test_recommend_write_with_a_missing_base_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "x.yaml"
    assert (
        run(
            [
                "recommend",
                *TREES,
                "--min-sockets",
                "3",
                "--no-owners",
                "--write",
                str(target),
                "--base",
                "no-such-profile",
            ]
        )
        == 1
    )
    assert "no-such-profile" in capsys.readouterr().err
    assert not target.exists() and not list(tmp_path.glob(".tcptune-*"))


def test_recommend_write_without_suggestions_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x.yaml"
    assert run(["recommend", *TREES, "--write", str(target)]) == 0
    assert "not written" in capsys.readouterr().err and not target.exists()


def test_recommend_sample_reports_the_window(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    data = _json(capsys, "recommend", "--sample", "1", "--no-owners")
    assert data["evidence"]["window_seconds"] is not None
    assert run(["recommend", *TREES, "--sample", "0"]) == 64


# ---- output paths and --proc-root: one line naming the problem, exit 1 ---------------------------------------------


@pytest.mark.parametrize(("where", "says"), [("nodir/x.prom", "no such directory"), (".", "it is a directory")])
def test_status_output_to_an_unusable_path_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, says: str
) -> None:
    path = tmp_path / where
    assert run(["status", *TREES, "--format", "prometheus", "-o", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tcptune: error: cannot write {path}: ") and says in err
    assert len(err.strip().splitlines()) == 1


def test_recommend_write_into_a_missing_directory_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nodir" / "r.yaml"
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--write", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"tcptune: error: cannot write {path}: no such directory {path.parent}"


def test_recommend_write_to_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners", "--force", "--write", str(tmp_path)]) == 1
    assert "it is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("root", "says"), [("", "--proc-root must not be empty"), ("/nonexistent-tcptune", "no such directory")]
)
def test_status_rejects_an_empty_or_missing_proc_root(root: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "--source", "proc", "--proc-net", str(FIXTURES), "--proc-root", root]) == 1
    assert says in capsys.readouterr().err


def _interrupt_an_apply(state_dir: Path) -> None:
    from tests.unit.state_files import write_pending

    write_pending(state_dir)


def test_recommend_warns_about_an_interrupted_apply_in_its_own_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupt_an_apply(tmp_path / "elsewhere")  # $TCPTUNE_STATE_DIR (tmp_path/state) has nothing pending
    assert run(["recommend", *TREES, "--state-dir", str(tmp_path / "elsewhere")]) == 0
    err = capsys.readouterr().err
    assert "an interrupted apply (generation 0 -> 1" in err and "tcptune recover" in err


def test_recommend_ignores_the_environments_state_dir_when_given_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupt_an_apply(tmp_path / "state")  # $TCPTUNE_STATE_DIR
    assert run(["recommend", *TREES, "--state-dir", str(tmp_path / "clean")]) == 0
    assert "interrupted" not in capsys.readouterr().err
    assert run(["status", *TREES]) == 0  # no --state-dir: the environment's is the one to check
    assert "an interrupted apply" in capsys.readouterr().err


# ---- recommend judges counters over a window (issue 11) --------------------------------------------------------------


def _tree_with(tmp_path: Path, *, listen_overflows: int, somaxconn: str) -> list[str]:
    """The captured tree with a large since-boot ListenOverflows and a raised somaxconn: the state a host is in
    after applying recommend's own suggestion."""
    import shutil

    tree = tmp_path / "net"
    shutil.copytree(FIXTURES, tree)
    lines = (tree / "netstat").read_text().splitlines()
    for i in range(0, len(lines), 2):
        if lines[i].startswith("TcpExt:"):
            names, values = lines[i].split(), lines[i + 1].split()
            values[names.index("ListenOverflows")] = str(listen_overflows)
            lines[i + 1] = " ".join(values)
    (tree / "netstat").write_text("\n".join(lines) + "\n")
    (tree / "proc_sys/net/core/somaxconn").write_text(somaxconn + "\n")
    return ["--source", "proc", "--proc-net", str(tree), "--proc-root", str(tree / "proc_sys")]


def test_recommend_does_not_raise_somaxconn_again_from_since_boot_overflows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ratchet of issue 11: after applying somaxconn 16384, a second run must not suggest 65535."""
    trees = _tree_with(tmp_path, listen_overflows=7000, somaxconn="16384")
    assert run(["recommend", *trees, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["suggested"] == {} and data["counter_window"] is None
    assert [f["id"] for f in data["findings"]] == ["counter-history"]
    (history,) = data["findings"]
    assert history["numbers"] == {"ListenOverflows": 7000} and history["suggest"] == {}
    assert run(["recommend", *trees]) == 0
    out = capsys.readouterr().out
    assert "counters since boot (history only: --sample SECONDS)" in out
    assert "window:  since boot (history)" in out and "effect:  None: measure over a window first." in out


def test_recommend_sample_judges_only_what_happens_in_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    trees = _tree_with(tmp_path, listen_overflows=7000, somaxconn="16384")
    assert run(["recommend", *trees, "--sample", "2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["findings"] == [] and data["suggested"] == {}
    assert data["counter_window"].endswith("(--sample)")


def test_recommend_text_names_window_effect_and_the_release_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["recommend", *TREES, "--min-sockets", "3", "--no-owners"]) == 0
    out = capsys.readouterr().out
    assert "run:     tcptune release --state close-wait --sport 7002 --yes" in out
    assert "window:  now (the sockets as read)" in out
    assert "effect:  Each orphan is freed after 30 s instead of 60 s" in out
