"""The profile commands through the real entry point: output, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcptune import catalog
from tcptune.cli import run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "profiles"


def test_validate_good_profile_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", str(FIXTURES / "good" / "child.yaml")]) == 0
    assert "ok (0 errors" in capsys.readouterr().out


def test_validate_bad_profile_exits_one_with_located_lines(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "bad" / "out-of-range.yaml"
    assert run(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:3:29: net.ipv4.tcp_fin_timeout: -5 is out of range" in out
    assert "Traceback" not in out


def test_validate_many_reports_each_and_fails_if_any_fails(capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = FIXTURES / "good" / "parent.yaml", FIXTURES / "bad" / "unknown-key.yaml"
    assert run(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out and f"{bad}: invalid" in out


def test_validate_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    run(["validate", "--format", "json", str(FIXTURES / "bad" / "port-range-order.yaml")])
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    diagnostic = data["profiles"][0]["diagnostics"][0]
    assert (diagnostic["line"], diagnostic["column"], diagnostic["key"]) == (3, 33, "net.ipv4.ip_local_port_range")


def test_strict_turns_warnings_into_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "low.yaml"
    path.write_text("settings:\n  net.ipv4.tcp_fin_timeout: 3\n")
    assert run(["validate", str(path)]) == 0
    assert run(["validate", "--strict", str(path)]) == 1
    assert "warning: net.ipv4.tcp_fin_timeout: 3 s is very low" in capsys.readouterr().out


def test_container_flag_warns_about_global_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("settings:\n  net.core.rmem_max: 16MiB\n")
    run(["validate", "--container", str(path)])
    assert "global key in a profile meant for containers" in capsys.readouterr().out


def test_missing_file_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", "/nonexistent/p.yaml"]) == 1
    out = capsys.readouterr().out
    assert "/nonexistent/p.yaml: no such profile file or built-in profile" in out


def test_usage_error_is_not_confused_with_drift(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", "--no-such-option", "x"]) == 64
    assert run(["no-such-command"]) == 64


def test_show_prints_origin_of_each_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", str(FIXTURES / "good" / "child.yaml")]) == 0
    out = capsys.readouterr().out
    assert "chain: parent -> child" in out
    line = next(line for line in out.splitlines() if line.startswith("net.ipv4.tcp_tw_reuse"))
    assert "parent" in line and "parent.yaml:5" in line


def test_show_sysctl_format_is_a_sysctl_d_file(capsys: pytest.CaptureFixture[str]) -> None:
    run(["show", "--format", "sysctl", str(FIXTURES / "good" / "units.yaml")])
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_rmem = 4096 131072 16777216" in out
    assert "net.ipv4.ip_local_port_range = 10240 65535" in out


def test_show_refuses_invalid_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", str(FIXTURES / "bad" / "unknown-key.yaml")]) == 1
    assert "unknown sysctl key" in capsys.readouterr().err


def test_explain_by_bare_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["explain", "tcp_fin_timeout"]) == 0
    out = capsys.readouterr().out
    assert "FIN_WAIT2" in out and "TIME_WAIT" in out and "default:  60" in out


def test_explain_removed_key_shows_history(capsys: pytest.CaptureFixture[str]) -> None:
    run(["explain", "net.ipv4.tcp_tw_recycle"])
    assert "removed in Linux 4.12" in capsys.readouterr().out


def test_explain_unknown_key_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["explain", "tcp_fin_timout"]) == 1
    assert "did you mean net.ipv4.tcp_fin_timeout" in capsys.readouterr().err


def test_explain_json_has_every_fact(capsys: pytest.CaptureFixture[str]) -> None:
    run(["explain", "--format", "json", "net.ipv4.tcp_rmem"])
    data = json.loads(capsys.readouterr().out)
    assert {"unit", "valid", "default", "scope", "advice"} <= set(data)


def test_explain_list_covers_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    run(["explain", "--list", "--format", "json"])
    assert len(json.loads(capsys.readouterr().out)) == len(catalog.all_keys())


def test_profiles_lists_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["profiles", "--format", "json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert {
        "base",
        "web-server",
        "reverse-proxy",
        "database",
        "high-bandwidth-10g",
        "high-bandwidth-100g",
        "low-latency",
        "container-safe",
    } <= names


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tcptune ")


def test_help_lists_every_command_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    commands = capsys.readouterr().out.split("Commands:")[1].split("Examples:")[0]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert listed == [
        "init",
        "validate",
        "show",
        "explain",
        "schema",
        "import",
        "profiles",
        "diff",
        "apply",
        "history",
        "rollback",
        "reset",
        "recover",
        "role",
        "push",
        "status",
        "recommend",
        "release",
        "completion",
    ]
