"""``tcptune import``: real-world sysctl files become profiles that load, validate and hold the values
systemd-sysctl would set; what cannot be imported is left out with the reason, never silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcptune import boot
from tcptune.cli import run
from tcptune.importer import import_conf, profile_name_for
from tcptune.profile import load_profile
from tcptune.validate import validate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysctl"
GOOD = ["debian-sysctl.conf", "ubuntu-10-network-security.conf", "kubernetes-node.conf", "web-tuning.conf"]


def imported(tmp_path: Path, name: str) -> tuple[Path, str]:
    source = FIXTURES / name
    result = import_conf(source.read_bytes(), str(source))
    assert not result.errors, [str(d) for d in result.errors]
    path = tmp_path / "imported.yaml"
    path.write_text(result.text)
    return path, result.text


def systemd_values(source: Path) -> dict[str, str]:
    """What systemd-sysctl would write per key: the last assignment wins."""
    lines, _ = boot.read_conf(source.read_bytes(), str(source))
    return {line.path: (line.value or b"").decode() for line in lines if line.path and line.value is not None}


@pytest.mark.parametrize("name", GOOD)
def test_real_world_files_become_valid_profiles_with_the_values_systemd_would_set(tmp_path: Path, name: str) -> None:
    path, _ = imported(tmp_path, name)
    verdict = validate(load_profile(path))
    assert verdict.ok, [str(d) for d in verdict.errors]
    expected = systemd_values(FIXTURES / name)
    for key, value in verdict.values.items():
        slash = key if "/" in key else key.replace(".", "/")
        assert " ".join(value.split()) == " ".join(expected[slash].split()), key


def test_catalog_keys_go_to_settings_and_other_net_keys_to_raw(tmp_path: Path) -> None:
    path, text = imported(tmp_path, "kubernetes-node.conf")
    profile = load_profile(path)
    assert set(profile.raw) == {
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
        "net.ipv4.ip_forward",
    }
    assert profile.settings == {}
    for left_out in ("vm.overcommit_memory", "kernel.panic", "fs.inotify.max_user_watches"):
        assert f"{left_out} = " in text and "not a net.* key" in text


def test_every_line_that_is_not_imported_is_named_with_its_reason(tmp_path: Path) -> None:
    _, text = imported(tmp_path, "web-tuning.conf")
    assert "# - line 12: net.ipv4.tcp_tw_recycle = 0: removed from the kernel in Linux 4.12" in text
    assert "'-' prefix in the file" in text  # -net.ipv4.tcp_fastopen
    assert 'net.ipv4.tcp_rmem: "4096 87380 16777216"' in text
    assert "net.netfilter.nf_conntrack_max: 1048576" in text


def test_comments_are_kept_above_their_keys_and_at_the_top(tmp_path: Path) -> None:
    _, text = imported(tmp_path, "web-tuning.conf")
    assert "# Tuning for busy nginx front ends" in text.split("name:")[0]
    assert "  # Accept queues\n  net.core.somaxconn: 65535" in text


def test_a_file_of_comments_gives_an_empty_profile_that_loads(tmp_path: Path) -> None:
    path, text = imported(tmp_path, "debian-sysctl.conf")
    assert "settings: {}" in text and "# net.ipv4.tcp_syncookies=1" in text
    assert validate(load_profile(path)).values == {}


def test_duplicates_keep_the_last_value_and_say_so(tmp_path: Path) -> None:
    source = tmp_path / "dup.conf"
    source.write_text("net.core.somaxconn = 1024\nnet.core.somaxconn = 4096\n")
    text = import_conf(source.read_bytes(), str(source)).text
    assert "net.core.somaxconn: 4096" in text and "line 1: net.core.somaxconn = 1024: overridden by line 2" in text


def test_globs_and_slash_keys(tmp_path: Path) -> None:
    source = tmp_path / "g.conf"
    source.write_text("net.ipv4.conf.*.rp_filter = 2\nnet/ipv4/conf/eth0.100/rp_filter = 1\n")
    text = import_conf(source.read_bytes(), str(source)).text
    assert "glob keys are not supported" in text and "  net/ipv4/conf/eth0.100/rp_filter: 1" in text


def test_bad_values_are_reported_at_file_and_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = FIXTURES / "inline-comment.conf"
    out = tmp_path / "p.yaml"
    assert run(["import", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{source}:2:1: net.ipv4.tcp_keepalive_time: expected a number, got '600   # ten minutes'" in err[0]
    assert "no end-of-line comments" in err[0]
    assert err[1].startswith(f"{source}:3:1: net.ipv4.tcp_syncookies: 3 is not valid")
    assert err[2] == f"{source}: not imported (2 invalid values; nothing written)"
    assert not out.exists()


def test_output_is_written_atomically_and_never_over_a_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = FIXTURES / "web-tuning.conf"
    out = tmp_path / "p.yaml"
    assert run(["import", str(source), "-o", str(out)]) == 0
    first = out.read_text()
    assert "wrote" in capsys.readouterr().out
    out.write_text("mine\n")
    assert run(["import", str(source), "-o", str(out)]) == 1
    assert "exists; use --force" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert run(["import", str(source), "-o", str(out), "--force"]) == 0
    assert out.read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]  # no temporary file left behind
    assert run(["validate", str(out)]) == 0


def test_without_output_the_profile_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["import", str(FIXTURES / "ubuntu-10-network-security.conf")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Imported by tcptune from") and "raw:" in captured.out
    assert "0 checked setting(s), 2 raw key(s), 0 line(s) left out" in captured.err


def test_a_fifo_is_refused_without_waiting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "f.conf"
    os.mkfifo(fifo)
    assert run(["import", str(fifo)]) == 1
    assert capsys.readouterr().err.strip() == f"tcptune: error: {fifo}: not a regular file"


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["import", str(tmp_path / "nope.conf")]) == 1
    assert capsys.readouterr().err.strip().endswith("nope.conf: cannot read: no such file or directory")


def test_a_bad_name_is_a_command_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["import", str(FIXTURES / "web-tuning.conf"), "--name", "a b"]) == 64


def test_names_come_from_the_file_name() -> None:
    assert profile_name_for("/etc/sysctl.d/99-net tuning.conf") == "99-net-tuning"
    assert profile_name_for("/etc/sysctl.conf") == "sysctl"
    assert profile_name_for("/x/.conf") == "imported"


def test_control_characters_in_values_are_left_out(tmp_path: Path) -> None:
    source = tmp_path / "c.conf"
    source.write_bytes(b"net.ipv4.tcp_x = a\x1bb\nnet.ipv4.tcp_y = \xff\n")
    result = import_conf(source.read_bytes(), str(source))
    assert "control or non-printable" in result.text and "not UTF-8" in result.text
    assert "\x1b" not in result.text and "\n" not in result.text.split("Left out")[1].splitlines()[1]
