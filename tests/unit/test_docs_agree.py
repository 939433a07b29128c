"""README says what the tool does: its profile example is the shipped web-server, its quick start runs, what it
says about Prometheus labels holds, documented options are visible, and `profiles` says where each profile is from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.load import load_valid

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SOCKETS = ROOT / "tests" / "fixtures" / "sockets"
TREES = ["--source", "proc", "--proc-net", str(SOCKETS), "--proc-root", str(SOCKETS / "proc_sys")]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_profile_example_is_the_shipped_web_server() -> None:
    blocks = code_blocks(section("Profiles"), "yaml")
    assert blocks[0] == (ROOT / "profiles" / "web-server.yaml").read_text()


def test_the_readme_example_of_a_profile_of_ones_own_is_valid(tmp_path: Path) -> None:
    example = code_blocks(section("Profiles"), "yaml")[1]
    path = tmp_path / "my-edge.yaml"
    path.write_text(example)
    verdict = load_valid(str(path))
    assert verdict.profile.extends == ("web-server",) and verdict.values["net.ipv4.tcp_rmem"] == "4096 131072 16777216"


def test_the_quick_start_is_init_diff_apply_of_the_file() -> None:
    (block,) = code_blocks(section("Quick start"), "bash")[:1]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["tcptune init web-server", "tcptune diff web-server.yaml", "tcptune apply web-server.yaml"]


def test_the_two_commands_are_unchanged() -> None:
    block = code_blocks(section("Two commands"), "bash")[0]
    assert "./scripts/bootstrap && tcptune diff web-server\n" in block
    assert "./scripts/bootstrap --test && /opt/tcptune/bin/python -m pytest\n" in block


def test_remote_addresses_are_labels_of_the_endpoint_gauge_only_and_bounded_by_top(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["status", *TREES, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["endpoints"]) > 3  # more endpoints than --top below
    assert run(["status", *TREES, "--format", "prometheus", "--top", "3"]) == 0
    samples = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    with_remote = [line for line in samples if 'remote="' in line]
    assert {line.split("{")[0] for line in with_remote} == {"tcptune_endpoint_ports_in_use"}
    assert len(with_remote) == 3
    words = " ".join(section("Evidence first: `tcptune status`, `tcptune recommend` and `tcptune release`").split())
    assert "Remote addresses are not exported as labels" not in words
    assert "remote addresses appear as labels only in `tcptune_endpoint_ports_in_use`" in words


@pytest.mark.parametrize("command", ["diff", "apply", "rollback", "reset", "recover"])
def test_sysctl_root_is_documented_and_visible(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "| `--sysctl-root DIR` | `TCPTUNE_SYSCTL_ROOT` |" in README
    assert run([command, "--help"]) == 0
    assert "--sysctl-root" in capsys.readouterr().out


@pytest.fixture
def profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $TCPTUNE_PROFILE_PATH directory with a profile of its own and one named like a built-in."""
    mine = tmp_path / "site-profiles"
    mine.mkdir()
    (mine / "edge.yaml").write_text("description: our edge\nextends: web-server\nsettings: {}\n")
    (mine / "base.yaml").write_text("description: our base\nsettings:\n  net.ipv4.tcp_fin_timeout: 20\n")
    monkeypatch.setenv("TCPTUNE_PROFILE_PATH", str(mine))
    return mine


def test_profiles_says_where_each_profile_comes_from(profile_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["profiles"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert f"{profile_path} (hides the built-in)" in rows["base"]
    assert f" {profile_path} " in rows["edge"] and "built-in" not in rows["edge"]
    assert " built-in " in rows["web-server"]


def test_profiles_json_names_the_source_and_the_file(profile_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["profiles", "--format", "json"]) == 0
    found = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert found["edge"]["source"] == "path" and found["edge"]["path"] == str(profile_path / "edge.yaml")
    assert found["base"]["source"] == "path"
    assert found["web-server"]["source"] == "built-in"
    assert Path(found["web-server"]["path"]).name == "web-server.yaml"
