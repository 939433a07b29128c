"""What a command imports, measured in a fresh interpreter: commands that read no profile stay light.

PyYAML, jinja2 and Ansible cost tens of milliseconds each at start-up; rich is for terminals only. A command that
does not need them must not load them: add new light commands to LIGHT_COMMANDS.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tcptune.cli import run

HEAVY = ["yaml", "jinja2", "ansible", "ansible_runner", "rich"]
SOCKETS = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
TREES = ["--source", "proc", "--proc-net", str(SOCKETS), "--proc-root", str(SOCKETS / "proc_sys")]

LIGHT_COMMANDS = [
    pytest.param(["status", *TREES], id="status"),
    pytest.param(["status", *TREES, "--format", "json"], id="status-json"),
    pytest.param(["status", *TREES, "--format", "prometheus"], id="status-prometheus"),
    pytest.param(["history"], id="history"),
    pytest.param(["history", "--format", "json"], id="history-json"),
    pytest.param(["history", "--baseline"], id="history-baseline"),
    pytest.param(["rollback", "--yes"], id="rollback"),
    pytest.param(["release", "--state", "syn-sent", "--dport", "1"], id="release"),
    pytest.param(["release", "--state", "syn-sent", "--dport", "1", "--format", "json"], id="release-json"),
    pytest.param(["recover", "--yes"], id="recover"),
    pytest.param(["reset", "--yes"], id="reset"),
]

PROBE = """\
import json, sys
from tcptune.cli import run
code = run(sys.argv[1:])
sys.stderr.write("\\n" + json.dumps({"exit": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}) + "\\n")
"""


def fresh(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """Run the CLI in a new interpreter (output piped, so not a terminal): exit code, top-level modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    try:
        data = json.loads(last)
    except json.JSONDecodeError:
        pytest.fail(f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return data["exit"], set(data["modules"]), proc.stderr


@pytest.fixture
def applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A temporary /proc/sys and sysctl.d tree with one apply recorded; the environment that points at it."""
    proc = tmp_path / "proc"
    (proc / "net/ipv4").mkdir(parents=True)
    (proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    (tmp_path / "sysroot/etc/sysctl.d").mkdir(parents=True)
    profile = tmp_path / "p.yaml"
    profile.write_text("name: light\nsettings:\n  net.ipv4.tcp_fin_timeout: 15\n")
    env = {
        "TCPTUNE_PROC_ROOT": str(proc),
        "TCPTUNE_STATE_DIR": str(tmp_path / "state"),
        "TCPTUNE_SYSCTL_ROOT": str(tmp_path / "sysroot"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    assert run(["apply", "--yes", str(profile)]) == 0
    return {**os.environ, **env}


@pytest.mark.parametrize("argv", LIGHT_COMMANDS)
def test_light_commands_do_not_import_yaml_jinja_ansible_or_rich(argv: list[str], applied: dict[str, str]) -> None:
    code, modules, err = fresh(argv, applied)
    assert code == 0, err
    assert sorted(modules & set(HEAVY)) == []


def test_the_probe_sees_heavy_imports_where_there_are_some(applied: dict[str, str], tmp_path: Path) -> None:
    code, modules, err = fresh(["validate", "base"], applied)
    assert code == 0, err
    assert "yaml" in modules
    code, modules, err = fresh(["role", "base", "--out", str(tmp_path / "roles")], applied)
    assert code == 0, err
    assert {"yaml", "jinja2"} <= modules


def test_importing_the_package_loads_no_profile_machinery() -> None:
    probe = "import sys, tcptune; print(sorted({m.split('.')[0] for m in sys.modules} & {'yaml'}), tcptune.__version__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "[]"


def test_the_package_exports_load_on_first_use_and_validate_is_the_function() -> None:
    probe = (
        "import importlib, tcptune\n"
        "from tcptune import Profile, Verdict, load_profile, validate\n"
        "module = importlib.import_module('tcptune.validate')\n"
        "assert validate is module.validate and tcptune.validate is validate, validate\n"
        "assert Verdict is module.Verdict and Profile.__name__ == 'Profile'\n"
        "verdict = validate(load_profile('base'))\n"
        "print(verdict.ok, sorted(tcptune.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split(" ", 1) == ["True", "['Profile', 'Verdict', '__version__', 'load_profile', 'validate']\n"]


def test_an_unknown_package_attribute_is_an_attribute_error() -> None:
    import tcptune

    with pytest.raises(AttributeError):
        _ = tcptune.no_such_name


def test_python_dash_m_and_the_console_script_entry_point_run_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.run([sys.executable, "-m", "tcptune", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("tcptune ")
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "tcptune"]
    assert script.value == "tcptune.cli:main"
    main = script.load()
    monkeypatch.setattr(sys, "argv", ["tcptune", "--version"])
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        gc.unfreeze()  # main sets this interpreter's objects aside from collection; give pytest's back
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("tcptune ")


def test_importing_the_cli_package_leaves_start_up_to_its_entry_point() -> None:
    probe = "import sys, tcptune.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click'}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_entry_point_runs_the_command_with_the_collector_on_and_start_up_set_aside() -> None:
    """Long commands (push, status --watch) must still collect garbage; what start-up made is frozen once."""
    probe = (
        "import gc, sys\n"
        "import tcptune.cli, tcptune.cli.app as app\n"
        "def command():\n"
        "    print(gc.isenabled(), gc.get_freeze_count())\n"
        "    return 0\n"
        "app.run = command\n"
        "tcptune.cli.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    enabled, frozen = proc.stdout.split()
    assert enabled == "True" and int(frozen) > 10_000
