"""Repository-level checks that CI must keep true: lint, format, types, the shipped profiles, README's commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "check",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_static_checks_are_clean(check: list[str]) -> None:
    """Run through this interpreter (the [test] extras install all three): a missing tool fails, never skips."""
    result = subprocess.run([sys.executable, "-m", *check], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builtin_profiles_validate_through_the_cli() -> None:
    profiles = sorted(str(p) for p in (ROOT / "profiles").glob("*.yaml"))
    assert len(profiles) >= 8
    result = subprocess.run(
        [sys.executable, "-m", "tcptune", "validate", "--strict", *profiles], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """README's "Two commands" block: the second command is the test command, and .ci/run ends with it verbatim."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[1].startswith("./scripts/bootstrap --test && ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == commands[1]
