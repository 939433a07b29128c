"""`molecule test` for the shipped generic role, a generated role (top-level scenarios) and a generated role's own
scenario: namespace hosts, converge, idempotence, verify (read back, persisted file, check-mode drift), destroy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tcptune.ansible import render
from tcptune.profile import load_profile
from tcptune.validate import validate

pytestmark = [pytest.mark.slow, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]


def molecule(cwd: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLECULE_")}
    env.update({"ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"})
    proc = subprocess.run(["molecule", "test", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def test_molecule_default_scenario_for_the_shipped_generic_role() -> None:
    molecule(REPO)


def test_molecule_scenario_for_a_generated_role() -> None:
    molecule(REPO, "-s", "generated")


def test_generated_roles_own_molecule_scenario(tmp_path: Path) -> None:
    verdict = validate(load_profile(str(REPO / "molecule" / "generated" / "profiles" / "molecule-fleet.yaml")))
    role = render.render_role(render.spec_from_verdict(verdict), tmp_path / "roles")
    molecule(role)
