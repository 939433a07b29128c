"""Shell completion through the protocol the shells' scripts speak: tcptune run with ``_TCPTUNE_COMPLETE`` and the
words typed so far in its environment (bash: COMP_WORDS/COMP_CWORD; zsh and fish: _TYPER_COMPLETE_ARGS), and bash
itself running the script ``tcptune completion bash`` prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tcptune import catalog
from tcptune.cli import run
from tcptune.profile import builtin_names

COMMANDS = [
    "init", "validate", "show", "explain", "schema", "import", "profiles", "diff", "apply", "history", "rollback",
    "reset", "recover", "role", "push", "status", "recommend", "release", "completion",
]  # fmt: skip


@pytest.fixture
def complete(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., list[str]]:
    """The candidates tcptune answers for the command line ``words`` (the cursor at its end), in this process."""

    def candidates(words: str, *, cwd: Path | None = None, shell: str = "bash", **env: str) -> list[str]:
        with monkeypatch.context() as patch:
            for variable in [v for v in os.environ if v.startswith(("TCPTUNE_", "_TCPTUNE", "COMP_", "_TYPER"))]:
                patch.delenv(variable)
            for variable, value in env.items():
                patch.setenv(variable, value)
            patch.setenv("_TCPTUNE_COMPLETE", f"complete_{shell}")
            if shell == "bash":
                typed = len(words.split()) - (0 if words.endswith(" ") else 1)
                patch.setenv("COMP_WORDS", words)
                patch.setenv("COMP_CWORD", str(typed))
            else:
                patch.setenv("_TYPER_COMPLETE_ARGS", words)
                patch.setenv("_TYPER_COMPLETE_FISH_ACTION", "get-args")
            if cwd is not None:
                patch.chdir(cwd)
            capsys.readouterr()
            with pytest.raises(SystemExit) as done:  # how typer ends a completion request
                run([])
        out, err = capsys.readouterr()
        assert done.value.code == 0 and not err, err
        return [line for line in out.splitlines() if line]

    return candidates


@pytest.fixture
def generations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory with generations 1 (apply of web-server) and 2 (apply of low-latency)."""
    proc = tmp_path / "proc"
    for key in ("net/ipv4/tcp_fin_timeout", "net/core/somaxconn"):
        (proc / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / key).write_text("60\n")
    for name, value in (("first.yaml", 30), ("second.yaml", 20)):
        (tmp_path / name).write_text(f"name: {name[:-5]}\nsettings:\n  net.ipv4.tcp_fin_timeout: {value}\n")
    (tmp_path / "root").mkdir()
    state = tmp_path / "state"
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(proc))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("TCPTUNE_SYSCTL_DIR", str(tmp_path / "sysctl.d"))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(state))
    assert run(["apply", str(tmp_path / "first.yaml"), "-y"]) == 0
    assert run(["apply", str(tmp_path / "second.yaml"), "-y"]) == 0
    return state


def test_command_names(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    assert complete("tcptune ", cwd=tmp_path) == COMMANDS
    assert complete("tcptune --", cwd=tmp_path) == ["--version", "--install-completion", "--show-completion", "--help"]
    assert complete("tcptune re", cwd=tmp_path) == ["reset", "recover", "recommend", "release"]


def test_options_of_a_command(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    assert {"--dry-run", "--skip-readonly", "--sysctl-root"} <= set(complete("tcptune apply --", cwd=tmp_path))


def test_profile_names_and_profile_files_in_the_directory(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    (tmp_path / "mine.yaml").write_text("settings: {}\n")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "edge.yml").write_text("settings: {}\n")
    assert complete("tcptune diff ", cwd=tmp_path) == [*builtin_names(), "mine.yaml"]
    assert complete("tcptune apply web", cwd=tmp_path) == ["web-server"]
    assert complete("tcptune show sub/", cwd=tmp_path) == ["sub/edge.yml"]
    assert complete("tcptune validate mine.yaml ", cwd=tmp_path) == [*builtin_names(), "mine.yaml"]


def test_profile_names_from_the_profile_path(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "edge-proxy.yaml").write_text("settings: {}\n")
    assert complete("tcptune show edge", cwd=tmp_path, TCPTUNE_PROFILE_PATH=str(library)) == ["edge-proxy"]


def test_init_offers_names_only(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    (tmp_path / "mine.yaml").write_text("settings: {}\n")
    assert complete("tcptune init ", cwd=tmp_path) == builtin_names()


def test_key_names_for_explain_full_bare_and_slash_forms(tmp_path: Path, complete: Callable[..., list[str]]) -> None:
    assert complete("tcptune explain tcp_keepalive_", cwd=tmp_path) == [
        "tcp_keepalive_intvl",
        "tcp_keepalive_probes",
        "tcp_keepalive_time",
    ]
    assert complete("tcptune explain net.core.somax", cwd=tmp_path) == ["net.core.somaxconn"]
    assert complete("tcptune explain net/core/somax", cwd=tmp_path) == ["net/core/somaxconn"]
    every = complete("tcptune explain net.", cwd=tmp_path)
    assert every == sorted(key.name for key in catalog.all_keys() if key.name.startswith("net."))


def test_generation_numbers_for_rollback_to(
    generations: Path, tmp_path: Path, complete: Callable[..., list[str]]
) -> None:
    assert complete("tcptune rollback --to ", cwd=tmp_path, TCPTUNE_STATE_DIR=str(generations)) == ["2", "1", "0"]
    typed_dir = f"tcptune rollback --state-dir {generations} --to "
    assert complete(typed_dir, cwd=tmp_path) == ["2", "1", "0"]


def test_zsh_and_fish_show_what_each_candidate_is(
    generations: Path, tmp_path: Path, complete: Callable[..., list[str]]
) -> None:
    zsh = "\n".join(complete("tcptune rollback --to ", shell="zsh", TCPTUNE_STATE_DIR=str(generations)))
    assert '"2":"apply of second, ' in zsh and '"0":"nothing managed"' in zsh
    fish = complete("tcptune explain tcp_fin_t", shell="fish", cwd=tmp_path)
    assert fish == [f"tcp_fin_timeout\t{catalog.get('net.ipv4.tcp_fin_timeout').summary}"]  # type: ignore[union-attr]


def test_an_unreadable_state_directory_offers_nothing_and_breaks_nothing(
    tmp_path: Path, complete: Callable[..., list[str]]
) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("x")
    assert complete("tcptune rollback --to ", cwd=tmp_path, TCPTUNE_STATE_DIR=str(not_a_dir)) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_runs_the_printed_script_and_completes_a_key(tmp_path: Path) -> None:
    bin_dir = os.path.dirname(sys.executable)
    assert shutil.which("tcptune", path=bin_dir), "the tcptune console script next to this python"
    script = (
        "source <(tcptune completion bash)\n"
        "COMP_WORDS=(tcptune explain tcp_fin_t); COMP_CWORD=2\n"
        "_tcptune_completion tcptune\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TCPTUNE_", "_TCPTUNE"))}
    environment["PATH"] = bin_dir + os.pathsep + environment.get("PATH", "")
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["tcp_fin_timeout"], done.stderr


@pytest.mark.parametrize(("shell", "first"), [("bash", "_tcptune_completion() {"), ("zsh", "#compdef tcptune")])
def test_completion_prints_the_scripts(shell: str, first: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first and "_TCPTUNE_COMPLETE=complete_" + shell in out


def test_completion_for_fish_asks_tcptune(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["completion", "fish"]) == 0
    assert "complete --command tcptune" in capsys.readouterr().out


def test_completion_of_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["completion", "tcsh"]) == 64


def test_root_help_offers_install_and_show_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out
