"""The sysctl.d precedence reader: the order systemd-sysctl and `sysctl --system` apply files, on temp trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tcptune import persist


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_are_applied_in_file_name_order_regardless_of_directory(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/sysctl.d/50-default.conf", "")
    write(tmp_path, "/etc/sysctl.d/20-admin.conf", "")
    write(tmp_path, "/run/sysctl.d/60-run.conf", "")
    write(tmp_path, "/usr/local/lib/sysctl.d/55-local.conf", "")
    names = [os.path.relpath(f, tmp_path) for f in persist.config_files(str(tmp_path))]
    assert names == [
        "etc/sysctl.d/20-admin.conf",
        "usr/lib/sysctl.d/50-default.conf",
        "usr/local/lib/sysctl.d/55-local.conf",
        "run/sysctl.d/60-run.conf",
    ]


def test_same_file_name_the_earlier_directory_wins(tmp_path: Path) -> None:
    for directory in ("/usr/lib/sysctl.d", "/usr/local/lib/sysctl.d", "/run/sysctl.d", "/etc/sysctl.d"):
        write(tmp_path, f"{directory}/50-x.conf", f"net.core.somaxconn = {len(directory)}\n")
    assert persist.config_files(str(tmp_path)) == [str(tmp_path / "etc/sysctl.d/50-x.conf")]
    write(tmp_path, "/etc/sysctl.d/60-y.conf", "")
    (tmp_path / "etc/sysctl.d/50-x.conf").unlink()
    assert persist.config_files(str(tmp_path))[0] == str(tmp_path / "run/sysctl.d/50-x.conf")


def test_etc_sysctl_conf_is_read_last(tmp_path: Path) -> None:
    write(tmp_path, "/etc/sysctl.conf", "net.core.somaxconn = 1\n")
    write(tmp_path, "/etc/sysctl.d/zz-last.conf", "net.core.somaxconn = 2\n")
    boot = persist.boot_values(str(tmp_path))["net.core.somaxconn"]
    assert boot.effective.value == "1"
    assert boot.effective.file == str(tmp_path / "etc/sysctl.conf")
    assert [e.value for e in boot.overridden] == ["2"]


def test_only_conf_files_count(tmp_path: Path) -> None:
    write(tmp_path, "/etc/sysctl.d/README", "net.core.somaxconn = 1\n")
    write(tmp_path, "/etc/sysctl.d/10-x.conf.dpkg-old", "net.core.somaxconn = 1\n")
    assert persist.config_files(str(tmp_path)) == []


def test_a_later_file_overrides_ours_and_is_named_by_file_and_line(tmp_path: Path) -> None:
    ours = write(tmp_path, "/etc/sysctl.d/90-tcptune.conf", "# header\nnet.ipv4.tcp_fin_timeout = 15\n")
    write(tmp_path, "/usr/lib/sysctl.d/99-vendor.conf", "\n; vendor\nnet/ipv4/tcp_fin_timeout=30\n")
    boot = persist.boot_values(str(tmp_path), ["net.ipv4.tcp_fin_timeout"])["net.ipv4.tcp_fin_timeout"]
    assert boot.effective.where() == f"{tmp_path}/usr/lib/sysctl.d/99-vendor.conf:3"
    assert boot.effective.value == "30"
    assert [(e.file, e.line, e.value) for e in boot.overridden] == [(str(ours), 2, "15")]


def test_keys_not_asked_for_are_left_out(tmp_path: Path) -> None:
    write(tmp_path, "/etc/sysctl.d/10.conf", "kernel.pid_max = 1\nnet.core.somaxconn = 2\n")
    assert set(persist.boot_values(str(tmp_path), ["net.core.somaxconn"])) == {"net.core.somaxconn"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("net.core.somaxconn = 4096", ("net.core.somaxconn", "4096", False)),
        ("net.core.somaxconn=4096", ("net.core.somaxconn", "4096", False)),
        ("  -net.core.somaxconn = 4096  ", ("net.core.somaxconn", "4096", True)),
        ("net/core/somaxconn = 4096", ("net.core.somaxconn", "4096", False)),
        ("net.ipv4.tcp_rmem = 4096\t87380   6291456", ("net.ipv4.tcp_rmem", "4096 87380 6291456", False)),
        ("net/ipv4/conf/enp3s0.200/forwarding = 1", ("net.ipv4.conf.enp3s0/200.forwarding", "1", False)),
        ("kernel.domainname = a=b", ("kernel.domainname", "a=b", False)),
    ],
)
def test_parse_assignment_lines(line: str, expected: tuple[str, str, bool]) -> None:
    (entry,) = persist.parse_sysctl_text(line + "\n", "f.conf")
    assert (entry.key, entry.value, entry.ignore_errors) == expected
    assert entry.line == 1


@pytest.mark.parametrize("line", ["# comment", "; comment", "", "   ", "-net.core.somaxconn", "garbage line"])
def test_lines_that_set_nothing(line: str) -> None:
    assert persist.parse_sysctl_text(line + "\n", "f.conf") == []


def test_masking_with_dev_null_symlink_hides_the_vendor_file(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/sysctl.d/50-vendor.conf", "net.core.somaxconn = 1\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    os.symlink("/dev/null", tmp_path / "etc/sysctl.d/50-vendor.conf")
    assert persist.boot_values(str(tmp_path)) == {}


def test_render_marks_skipped_keys_as_ignore_errors() -> None:
    text = persist.render_sysctl_conf("web", "abc", {"b.x": "1", "a.y": "2 3"}, ignore_errors={"b.x"})
    assert text.splitlines()[1:] == ["# profile: web", "# fingerprint: abc", "a.y = 2 3", "-b.x = 1"]
    assert [e.key for e in persist.parse_sysctl_text(text, "x")] == ["a.y", "b.x"]


def test_atomic_write_replaces_with_mode_0644_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "90-tcptune.conf"
    target.write_text("old\n")
    persist.atomic_write(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["90-tcptune.conf"]


def test_restore_file_rewrites_or_removes(tmp_path: Path) -> None:
    target = tmp_path / "90-tcptune.conf"
    persist.restore_file(str(target), "before\n")
    assert persist.read_own_file(str(target)) == "before\n"
    persist.restore_file(str(target), None)
    assert persist.read_own_file(str(target)) is None
    persist.restore_file(str(target), None)  # already gone: fine


def test_rendered_file_keeps_every_setting_on_its_own_line() -> None:
    from tcptune.persist import render_sysctl_conf

    text = render_sysctl_conf("evil\nnet.ipv4.tcp_syncookies = 0", "abc\n", {"net.ipv4.tcp_fin_timeout": "30"})
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["net.ipv4.tcp_fin_timeout = 30"]
    with pytest.raises(ValueError):
        render_sysctl_conf("p", "f", {"net.ipv4.tcp_fin_timeout": "30\nkernel.modprobe = /tmp/x"})
