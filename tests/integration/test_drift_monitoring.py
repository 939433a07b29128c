"""Drift monitoring against the real kernel, in a throwaway network namespace: the systemd service's own command
(contrib/systemd/tcptune-drift.service, its paths from its own Environment= lines) writes the gauges after a real
apply and sees a change made behind tcptune's back; the real CLI's apply and rollback reach a log socket the test
binds, as they would reach /dev/log."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.kernel_sandbox import KernelSandbox, host_value
from tests.unit.test_contrib_systemd import command, environment

pytestmark = [pytest.mark.slow, pytest.mark.netns]

KEYS = ("net.ipv4.tcp_fin_timeout", "net.core.somaxconn")
PROFILE = "name: tt12-monitor\nsettings:\n  net.ipv4.tcp_fin_timeout: 19\n  net.core.somaxconn: 1536\n"


@pytest.fixture
def sandbox() -> Iterator[KernelSandbox]:
    before = {key: host_value(key) for key in KEYS}
    box = KernelSandbox()
    try:
        yield box
    finally:
        box.close()
        assert {key: host_value(key) for key in KEYS} == before, "the machine's own sysctls changed"


def samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        s.name + "".join(f" {k}={v}" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_services_command_reports_the_namespaces_drift(sandbox: KernelSandbox) -> None:
    path = sandbox.dir / "p.yaml"
    path.write_text(PROFILE)
    assert sandbox.run("apply", "--yes", str(path)).returncode == 0
    textfile = sandbox.dir / "textfile"
    textfile.mkdir()
    env = environment(TEXTFILE_DIR=str(textfile), TCPTUNE_STATE_DIR=str(sandbox.state_dir))
    argv = [sandbox.exe, *command(env)[1:]]

    def check() -> tuple[int, dict[str, float]]:
        out = subprocess.run(
            [*sandbox._enter(), *argv], env=sandbox.env(**env), capture_output=True, text=True, timeout=60
        )
        assert out.stdout == "" and "Traceback" not in out.stderr, out.stderr
        return out.returncode, samples((textfile / "tcptune-drift.prom").read_text())

    code, found = check()
    assert code == 0
    assert found["tcptune_generation"] == 1 and found["tcptune_live_drift_keys"] == 0
    assert found["tcptune_key_drift key=net.core.somaxconn"] == 0
    sandbox.write("net.core.somaxconn", "1000")  # behind tcptune's back
    code, found = check()
    assert code == 2
    assert found["tcptune_key_drift key=net.core.somaxconn"] == 1
    assert found["tcptune_key_drift key=net.ipv4.tcp_fin_timeout"] == 0 and found["tcptune_drift"] == 1


def test_apply_and_rollback_of_the_real_cli_are_logged(sandbox: KernelSandbox) -> None:
    path = sandbox.dir / "p.yaml"
    path.write_text(PROFILE)
    log = sandbox.dir / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(str(log))
        journal.settimeout(5)
        applied = sandbox.run("apply", "--yes", str(path), TCPTUNE_LOG_SOCKET=str(log))
        assert applied.returncode == 0, applied.stderr
        first = journal.recv(65536).decode()
        rolled = sandbox.run("rollback", "--yes", TCPTUNE_LOG_SOCKET=str(log))
        assert rolled.returncode == 0, rolled.stderr
        second = journal.recv(65536).decode()
    assert re.fullmatch(
        r"<13>\w{3} [ \d]\d \d\d:\d\d:\d\d tcptune\[\d+\]: apply: generation 0 -> 1, profile tt12-monitor "
        r"\(fingerprint \w+\); 2 key\(s\) written: net\.core\.somaxconn \d+ -> 1536, net\.ipv4\.tcp_fin_timeout "
        rf"\d+ -> 19; written {re.escape(str(sandbox.sysctl_dir))}/90-tcptune\.conf; by uid 0.*",
        first,
    ), first
    assert "rollback to generation 0: generation 1 -> 2, nothing managed; 2 key(s) written" in second
