"""Every command's --help has examples that are real command lines, fits 80 columns, and the man page shipped in
the wheel is the one the CLI generates now, and renders."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from tcptune.cli import run
from tcptune.cli.app import COMMANDS, build_app
from tcptune.cli.examples import EXAMPLES
from tcptune.cli.manpage import PAGE, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def help_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    def text(*args: str) -> str:
        monkeypatch.setenv("COLUMNS", "80")
        capsys.readouterr()
        assert run([*args, "--help"]) == 0
        return capsys.readouterr().out

    return text


def test_every_command_has_examples() -> None:
    assert set(EXAMPLES) == {"", *COMMANDS}
    assert all(EXAMPLES[name] for name in EXAMPLES)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_the_examples_within_80_columns(command: str, help_text: Callable[..., str]) -> None:
    text = help_text(*([command] if command else []))
    examples = text.split("Examples:\n", 1)[1]
    for line, _what in EXAMPLES[command]:
        assert line in examples
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide


def options_of(command: str) -> set[str]:
    group = typer.main.get_command(build_app([]))
    context = typer.Context(group, info_name="tcptune")
    target = group.get_command(context, command) if command else group  # type: ignore[attr-defined]
    names = {"-h", "--help"}
    for param in target.params:
        names.update(getattr(param, "opts", []), getattr(param, "secondary_opts", []))
    return names


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_example_uses_options_the_command_has(command: str) -> None:
    for line, _what in EXAMPLES[command]:
        words = shlex.split(line.split(" > ")[0].split("<(")[-1].rstrip(")"))
        while "=" in words[0]:  # VARIABLE=value before the command
            words = words[1:]
        assert words[0] == "tcptune", line
        named = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
        assert named in COMMANDS or named == "", line
        if named != command:
            assert command == "" and named in COMMANDS, f"{line}: an example of '{command}' runs '{named}'"
        unknown = [w for w in words[2:] if w.startswith("-") and w != "-" and w not in options_of(named)]
        assert not unknown, f"{line}: {unknown}"


def test_the_shipped_man_page_is_what_the_cli_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("TCPTUNE_")]:
        monkeypatch.delenv(variable)
    assert PAGE.read_text(encoding="utf-8") == render(), "run: python -m tcptune.cli.manpage"


def test_the_man_page_has_every_command_its_options_and_examples() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for command in COMMANDS:
        assert f'.SS "tcptune {command} ' in page
    for option in ("\\-\\-sysctl\\-root", "\\-\\-dry\\-run", "\\-\\-watch"):
        assert option in page
    assert ".SH EXIT STATUS" in page and ".SH EXAMPLES" in page
    assert "tcptune init web\\-server" in page


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_the_man_page_renders_without_warnings() -> None:
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(PAGE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    text = re.sub(".\b", "", done.stdout)  # no overstrike bold
    assert "tcptune diff [OPTIONS] [profile]" in " ".join(text.split())


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_shows_the_page() -> None:
    done = subprocess.run(
        ["man", "-l", str(PAGE)],
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "TCPTUNE(1)" in done.stdout and "EXIT STATUS" in done.stdout


def test_the_wheel_ships_the_man_page_where_man_finds_it() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["shared-data"] == {"tcptune/_data/man/tcptune.1": "share/man/man1/tcptune.1"}
    assert wheel["packages"] == ["tcptune"]  # and so tcptune/_data/man/tcptune.1 inside the package


@pytest.mark.slow
def test_a_built_wheel_holds_the_man_page(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("tcptune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tcptune/_data/man/tcptune.1" in names
    assert any(name.endswith(".data/data/share/man/man1/tcptune.1") for name in names)


def test_version_and_help_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tcptune ")
