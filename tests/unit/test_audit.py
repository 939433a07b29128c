"""Applies, rollbacks, resets and recoveries are told to the system log: a socket of the test's own, bound where
TCPTUNE_LOG_SOCKET points, receives what /dev/log would. Logging never changes a transaction's outcome."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcptune import audit
from tcptune.cli import run
from tcptune.live import ProcSys
from tests.unit.state_files import write_pending

PROFILE = "name: tt12-log\nsettings:\n  net.ipv4.tcp_fin_timeout: 15\n  net.core.somaxconn: 8192\n"
LIVE = {"net/ipv4/tcp_fin_timeout": "60", "net/core/somaxconn": "4096"}
HEADER = re.compile(r"<(\d+)>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d tcptune\[(\d+)\]: (.*)", re.S)


class Env:
    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.state = root / "state"
        self.sysroot = root / "sysroot"
        self.own = self.sysroot / "etc/sysctl.d/90-tcptune.conf"
        self.profile = root / "p.yaml"
        self.log = root / "log.sock"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    for rel, text in LIVE.items():
        (e.proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (e.proc / rel).write_text(text + "\n")
    (e.sysroot / "etc/sysctl.d").mkdir(parents=True)
    e.profile.write_text(PROFILE)
    for name, value in (
        ("TCPTUNE_PROC_ROOT", e.proc),
        ("TCPTUNE_STATE_DIR", e.state),
        ("TCPTUNE_SYSCTL_ROOT", e.sysroot),
        ("TCPTUNE_BOOT_APPLIER", "systemd"),
        ("TCPTUNE_LOG_SOCKET", e.log),
        ("SUDO_USER", "alice\nroot"),
        ("SUDO_UID", "1000"),
    ):
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("TCPTUNE_SYSCTL_DIR", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return e


@pytest.fixture
def journal(env: Env) -> Iterator[socket.socket]:
    """What journald is to /dev/log: a datagram socket, bound where tcptune is told to log."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(env.log))
        sock.setblocking(False)
        yield sock


def messages(sock: socket.socket) -> list[tuple[int, str]]:
    """(priority, text) of every datagram received so far."""
    found = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return found
        match = HEADER.fullmatch(data.decode())
        assert match, data
        assert int(match.group(2)) == os.getpid()  # run() is in-process: tcptune's pid is ours
        found.append((int(match.group(1)), match.group(3)))


def who() -> str:
    return f"uid {os.getuid()}, sudo by alice root (uid 1000)"


def test_apply_rollback_and_reset_are_logged_with_who_what_and_generations(
    env: Env, journal: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "--yes", str(env.profile)]) == 0
    assert (
        messages(journal)
        == [
            (
                13,  # user.notice
                "apply: generation 0 -> 1, profile tt12-log (fingerprint "
                + capsys.readouterr().out.split("(fingerprint ")[1].split(")")[0]
                + "); 2 key(s) written: net.core.somaxconn 4096 -> 8192, net.ipv4.tcp_fin_timeout 60 -> 15; "
                f"written {env.own}; by {who()}",
            )
        ]
    )
    assert run(["apply", "--yes", str(env.profile)]) == 0  # up to date: nothing changed, nothing logged
    assert messages(journal) == []
    assert run(["rollback", "--yes"]) == 0
    ((priority, text),) = messages(journal)
    assert priority == 13 and text.startswith("rollback to generation 0: generation 1 -> 2, nothing managed; ")
    assert text.endswith(f"; removed {env.own}; by {who()}")
    assert run(["rollback", "--to", "1", "--yes"]) == 0
    messages(journal)
    assert run(["reset", "--yes"]) == 0
    ((_, text),) = messages(journal)
    assert text.startswith("reset: generation 3 -> 4, nothing managed; 2 key(s) written: ")


def test_a_failed_apply_is_logged_as_a_warning(
    env: Env, journal: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ProcSys.write

    def clamp(self: ProcSys, key: str, value: str) -> None:  # the kernel keeps another value than the one written
        real(self, key, "9999" if key == "net.ipv4.tcp_fin_timeout" else value)

    monkeypatch.setattr(ProcSys, "write", clamp)
    assert run(["apply", "--yes", str(env.profile)]) == 1
    ((priority, text),) = messages(journal)
    assert priority == 12  # user.warning
    assert text.startswith("apply: generation 0 -> 1, profile tt12-log (fingerprint ")
    assert "FAILED: net.ipv4.tcp_fin_timeout: the kernel keeps 9999, expected 15; every change was undone" in text


def test_recover_is_logged(env: Env, journal: socket.socket) -> None:
    write_pending(env.state, writes=[{"key": "net.core.somaxconn", "old": "128", "new": "4096"}])
    assert run(["recover", "--yes"]) == 0
    ((priority, text),) = messages(journal)
    assert priority == 13
    assert text == (
        "recover: the interrupted apply (generation 0 -> 1) was undone, back at generation 0: 1 key(s) restored "
        f"(net.core.somaxconn); by {who()}"
    )


@pytest.mark.parametrize("kind", ["absent", "regular file", "nobody reading", "off"])
def test_a_log_that_cannot_be_written_changes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "regular file":
        env.log.write_text("")
    elif kind == "nobody reading":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(env.log))
        sock.close()  # the path stays, nobody listens: ECONNREFUSED
    elif kind == "off":
        monkeypatch.setenv("TCPTUNE_LOG_SOCKET", "")
    assert run(["apply", "--yes", str(env.profile)]) == 0
    assert capsys.readouterr().err == ""
    assert (env.proc / "net/core/somaxconn").read_text() == "8192\n"


def test_a_stream_log_socket_gets_the_message_ended_by_a_nul(env: Env) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(env.log))
        server.listen(1)
        assert audit.log("hello\nworld\x1b[2J", audit.NOTICE, str(env.log))
        connection, _ = server.accept()
        with connection:
            data = connection.recv(65536)
    assert data.endswith(b": hello world [2J\x00") and data.startswith(b"<13>")


def test_a_bug_in_composing_a_message_is_swallowed() -> None:
    def broken() -> str:
        raise KeyError("a bug")

    assert audit.tell(broken, to="/nonexistent") is False
