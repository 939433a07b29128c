"""Inputs and environments that once made tcptune exit 70 (internal error): each is one line now, exit 1 or 64.

Some need a real process (closed or full standard output, the output encoding), so they run ``python -m tcptune``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune.cli import run
from tests.unit.state_files import write_generation

SOCKETS = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
TREES = ["--source", "proc", "--proc-net", str(SOCKETS), "--proc-root", str(SOCKETS / "proc_sys")]


def tcptune(*args: str, stdout: object = subprocess.PIPE, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TCPTUNE_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
        timeout=120,
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["status", *TREES, "--watch", "inf"], "--watch"),
        (["status", *TREES, "--watch", "1e308"], "--watch"),
        (["status", *TREES, "--watch", "nan"], "--watch"),
        (["recommend", *TREES, "--sample", "inf"], "--sample"),
        (["recommend", *TREES, "--sample", "1e308"], "--sample"),
    ],
)
def test_an_interval_too_long_to_sleep_is_a_bad_option(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*argv, "--state-dir", str(tmp_path)] if argv[0] == "recommend" else argv) == 64
    err = capsys.readouterr().err
    assert option in err and "at most 86400" in err and "internal error" not in err


def test_a_5000_character_profile_path_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = "a/" * 2500 + "x.yaml"
    for argv in (["diff", path], ["show", path], ["apply", "--dry-run", path]):
        assert run(argv) == 1, argv
        line = one_error_line(capsys.readouterr().err)
        assert line.endswith("(5006 characters): cannot read the profile: file name too long"), argv
    assert run(["validate", path]) == 1
    assert "cannot read the profile: file name too long" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("9" * 5000, "net.ipv4.tcp_fin_timeout"),
        ("[4096, 1, " + "9" * 400 + "KiB]", "too large"),
    ],
)
def test_huge_numbers_in_a_profile_are_one_line(
    value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "net.ipv4.tcp_rmem" if "KiB" in value else "net.ipv4.tcp_fin_timeout"
    profile = tmp_path / "p.yaml"
    profile.write_text(f"settings:\n  {key}: {value}\n")
    assert run(["diff", str(profile), "--proc-root", str(SOCKETS / "proc_sys")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"{profile}:2:") and says in line


def test_a_deeply_nested_current_generation_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_generation(tmp_path / "state", "[" * 100_000 + "]" * 100_000, number=1)
    assert run(["diff", "--state-dir", str(tmp_path / "state")]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"tcptune: error: {path}: malformed generation: JSON nested too deeply (correct the file or move it away)"
    )


@pytest.mark.parametrize("argv", [["explain", "--list"], ["explain", "tcp_fin_timeout"]], ids=["long", "short"])
def test_output_to_a_full_disk_is_one_line(argv: list[str]) -> None:
    """Long output fails while it is written, short output only when it is flushed at the end."""
    with open("/dev/full", "w") as full:
        proc = tcptune(*argv, stdout=full)
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == "tcptune: error: cannot write to standard output: no space left on device"


def test_a_closed_standard_output_is_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.close(1); sys.argv[1:] = ['explain', 'tcp_fin_timeout'];"
            " from tcptune.cli import main; main()",
        ],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line.startswith("tcptune: error: cannot write to standard output: "), line


def test_a_closed_standard_output_from_the_start_is_one_line() -> None:
    """``tcptune ... >&-``: the interpreter starts with sys.stdout None."""
    proc = subprocess.run(
        f"{sys.executable} -m tcptune explain tcp_fin_timeout >&-", shell=True, stderr=subprocess.PIPE, text=True
    )
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == "tcptune: error: cannot write to standard output: the stream is closed"


def test_an_ascii_output_encoding_shows_what_it_can() -> None:
    proc = tcptune("status", *TREES, PYTHONIOENCODING="ascii")
    assert proc.returncode == 0, proc.stderr
    assert "?" in proc.stdout and "ESTABLISHED" in proc.stdout  # the bars, replaced
    assert proc.stderr == ""


def test_a_broken_pipe_exits_1_quietly() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m tcptune explain --list | head -c 10 >/dev/null",
        shell=True,
        stderr=subprocess.PIPE,
        text=True,
        executable="/bin/bash",
    )
    assert proc.stderr == ""


# ---- files that are not regular files: never written through, replaced, or read without bounds --------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a device node")
@pytest.mark.parametrize("fmt", ["prometheus", "json"])
def test_status_output_to_a_device_is_refused(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o /dev/null``, with a null device of the test's own: a regression must never replace the machine's."""
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert run(["status", *TREES, "-f", fmt, "-o", str(null)]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"tcptune: error: cannot write {null}: it is a character device, not a regular file; "
        "refusing to read, write or replace it"
    )
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.listdir(tmp_path) == ["null"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["symlink", "fifo", "socket"])
def test_status_output_to_a_link_fifo_or_socket_is_refused(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tcptune.prom"
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    if kind == "symlink":
        out.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(out))
        sock.close()
    assert run(["status", *TREES, "-f", "prometheus", "-o", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"tcptune: error: cannot write {out}: it is a ") and "not a regular file" in line
    assert victim.read_text() == "keep\n" and not stat.S_ISREG(os.lstat(out).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tcptune.prom", "victim"]  # no temporary file left


@pytest.mark.timeout(60)
def test_a_fifo_in_sysctl_d_makes_the_boot_view_unknown_never_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    (root / "etc/sysctl.d").mkdir(parents=True)
    os.mkfifo(root / "etc/sysctl.d/50-fifo.conf")
    argv = ["diff", "base", "--proc-root", str(SOCKETS / "proc_sys"), "--sysctl-root", str(root)]
    assert run([*argv, "--boot-applier", "systemd", "--format", "json"]) in (0, 2)
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["boot_unknown"] == data["summary"]["keys"] > 0
    reasons = {row["boot"]["reason"] for row in data["keys"]}
    why = "is not a regular file (the applier would block on it or read a device)"
    assert reasons == {f"/etc/sysctl.d/50-fifo.conf {why}"}
    os.unlink(root / "etc/sysctl.d/50-fifo.conf")
    (root / "usr/lib/sysctl.d").mkdir(parents=True)
    (root / "usr/lib/sysctl.d/60-big.conf").write_text("#" * (1 << 20) + "\n")
    assert run([*argv, "--boot-applier", "systemd"]) in (0, 2)
    out = capsys.readouterr().out
    assert "unknown for every key: /usr/lib/sysctl.d/60-big.conf has a line over 1 MiB" in out


# ---- FIFOs, devices and directories where a file is expected: refused at once, never waited on -------------------


@pytest.mark.parametrize(("kind", "words"), [("fifo", "a FIFO"), ("directory", "a directory"), ("device", "a device")])
def test_a_profile_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str, words: str) -> None:
    path = tmp_path / "profile.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody ever writes to it: reading it would wait forever
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # endless: reading it would never finish
    done = tcptune("validate", str(path), TCPTUNE_STATE_DIR=str(tmp_path / "state"))
    assert done.returncode == 1
    assert f"{path}: not a regular file ({words}" in done.stdout + done.stderr


@pytest.mark.parametrize("name", ["snmp", "netstat", "sockstat", "tcp6"])
def test_status_never_waits_on_a_fifo_in_proc_net(tmp_path: Path, name: str) -> None:
    """A counter file that is a FIFO counts as missing; tcp6 as a FIFO is an error naming it (tcp is read)."""
    tree = tmp_path / "net"
    shutil.copytree(SOCKETS, tree)
    (tree / name).unlink()
    os.mkfifo(tree / name)
    done = tcptune("status", "--source", "proc", "--proc-net", str(tree), "--proc-root", str(tree / "proc_sys"))
    if name == "tcp6":
        assert done.returncode == 1
        assert one_error_line(done.stderr) == f"tcptune: error: cannot read {tree}/tcp6: not a regular file"
    else:
        assert done.returncode == 0, done.stderr
