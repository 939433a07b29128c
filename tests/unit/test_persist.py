"""tcptune's own sysctl.d file: rendered one setting per line, written atomically, put back or removed.

What the boot appliers make of sysctl.d trees is tests/unit/test_boot.py's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tcptune import boot, persist


def test_render_marks_skipped_keys_as_ignore_errors() -> None:
    text = persist.render_sysctl_conf("web", "abc", {"b.x": "1", "a.y": "2 3"}, ignore_errors={"b.x"})
    assert text.splitlines()[1:] == ["# profile: web", "# fingerprint: abc", "a.y = 2 3", "-b.x = 1"]
    lines, _overlong = boot.read_conf(text.encode(), "x")
    read = [(line.assignment.key, line.assignment.ignore_errors) for line in lines if line.assignment]
    assert read == [("a.y", False), ("b.x", True)]  # systemd-sysctl's reading of it


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
