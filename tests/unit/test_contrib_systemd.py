"""contrib/systemd: the drift check's service and timer. The service's own ExecStart runs, with its paths taken from
its own Environment= lines (pointed at temporary directories, as a drop-in would), against temporary trees; systemd
checks the units themselves (systemd-analyze verify). The same command against the real kernel, in a namespace:
tests/integration/test_drift_monitoring.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune.cli import run

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
SERVICE, TIMER = CONTRIB / "tcptune-drift.service", CONTRIB / "tcptune-drift.timer"
PROGRAM = "/usr/local/bin/tcptune"
"""Where the units expect tcptune (scripts/bootstrap's link); the tests run this environment's instead."""


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: sections of (key, value) in order (keys may repeat); comments skipped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, line
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def command(env: dict[str, str]) -> list[str]:
    """The service's ExecStart, ${NAME} expanded from ``env`` as systemd does (one word each)."""
    (line,) = values(unit(SERVICE)["Service"], "ExecStart")
    words = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word) for word in shlex.split(line)]
    assert words[0] == PROGRAM
    return words


def environment(**override: str) -> dict[str, str]:
    """The service's Environment= lines, with ``override`` (a drop-in's Environment= lines)."""
    env = dict(line.split("=", 1) for line in values(unit(SERVICE)["Service"], "Environment"))
    assert set(override) <= set(env), "override only what the unit sets"
    return {**env, **override}


def tcptune() -> str:
    return str(Path(sys.executable).parent / "tcptune")


def test_the_units_are_what_systemd_accepts() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service, timer = unit(SERVICE), unit(TIMER)
    assert values(service["Service"], "Type") == ["oneshot"]
    assert values(service["Service"], "SuccessExitStatus") == ["2"]  # drift found is a successful check
    env = environment()
    assert env["TEXTFILE_DIR"] == "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter
    assert values(service["Service"], "ReadWritePaths") == ["-" + env["TEXTFILE_DIR"]]
    assert not values(service["Service"], "PrivateNetwork") and not values(service["Service"], "ProtectKernelTunables")
    assert values(timer["Timer"], "OnUnitActiveSec") == ["15min"] and values(timer["Install"], "WantedBy") == [
        "timers.target"
    ]
    assert not values(timer["Timer"], "Unit")  # so it starts the service of its own name
    staged = Path(os.environ.get("TMPDIR", "/tmp")) / f"tt12-units-{os.getpid()}"
    staged.mkdir()
    try:
        (staged / SERVICE.name).write_text(SERVICE.read_text().replace(PROGRAM, tcptune()))
        shutil.copy(TIMER, staged / TIMER.name)
        out = subprocess.run(
            [analyze, "verify", "--man=no", str(staged / SERVICE.name), str(staged / TIMER.name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(staged)
    assert out.returncode == 0 and out.stderr == "", out.stderr


LIVE = {"net/ipv4/tcp_mem": "1 2 3", "net/ipv4/tcp_fin_timeout": "60", "net/core/somaxconn": "4096"}
PROFILE = "name: tt12-drift\nsettings:\n  net.ipv4.tcp_fin_timeout: 15\n  net.core.somaxconn: 8192\n"


def test_the_services_command_writes_the_gauges_into_the_textfile_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    proc, state, textfile = tmp_path / "proc", tmp_path / "state", tmp_path / "textfile"
    for rel, text in LIVE.items():
        (proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (proc / rel).write_text(text + "\n")
    (tmp_path / "sysroot/etc/sysctl.d").mkdir(parents=True)
    textfile.mkdir()
    trees = {"TCPTUNE_PROC_ROOT": str(proc), "TCPTUNE_SYSCTL_ROOT": str(tmp_path / "sysroot")}
    for name, value in trees.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "p.yaml").write_text(PROFILE)
    assert run(["apply", "--yes", "--state-dir", str(state), str(tmp_path / "p.yaml")]) == 0

    env = environment(TEXTFILE_DIR=str(textfile), TCPTUNE_STATE_DIR=str(state))
    argv = [tcptune(), *command(env)[1:]]
    base = {k: v for k, v in os.environ.items() if not k.startswith("TCPTUNE_")}

    def check() -> tuple[int, dict[str, float]]:
        out = subprocess.run(argv, env={**base, **env, **trees}, capture_output=True, text=True, timeout=60)
        assert out.stdout == "" and "Traceback" not in out.stderr, out.stderr
        assert os.listdir(textfile) == ["tcptune-drift.prom"]  # no temporary file left behind
        found = {}
        for family in text_string_to_metric_families((textfile / "tcptune-drift.prom").read_text()):
            for sample in family.samples:
                found[sample.name + "".join(f" {k}={v}" for k, v in sorted(sample.labels.items()))] = sample.value
        return out.returncode, found

    code, found = check()
    assert code == 0
    assert found["tcptune_generation"] == 1 and found["tcptune_drift"] == 0
    assert found["tcptune_key_drift key=net.core.somaxconn"] == 0
    (proc / "net/core/somaxconn").write_text("128\n")
    code, found = check()
    assert code == 2  # SuccessExitStatus=2: the unit does not fail, the gauges tell
    assert found["tcptune_key_drift key=net.core.somaxconn"] == 1 and found["tcptune_drift"] == 1
