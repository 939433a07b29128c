"""A profile's raw: mapping: net.* keys the catalog does not know, carried through to the values diff and apply use,
marked as unchecked everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.profile import load_profile
from tcptune.validate import validate


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_raw_keys_reach_the_values_and_are_named_as_raw(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        "settings:\n  net.ipv4.tcp_fin_timeout: 20\nraw:\n  net.ipv4.tcp_thin_linear_timeouts: 1\n"
        "  net.ipv4.ping_group_range: [0, 2147483647]\n",
    )
    verdict = validate(load_profile(path))
    assert verdict.ok, [str(d) for d in verdict.errors]
    assert verdict.values["net.ipv4.tcp_thin_linear_timeouts"] == "1"
    assert verdict.values["net.ipv4.ping_group_range"] == "0 2147483647"
    assert verdict.raw == {"net.ipv4.tcp_thin_linear_timeouts", "net.ipv4.ping_group_range"}
    assert "net.ipv4.tcp_fin_timeout" not in verdict.raw


def test_a_profile_with_only_raw_keys_is_valid(tmp_path: Path) -> None:
    verdict = validate(load_profile(write(tmp_path, "p.yaml", "raw:\n  net.ipv4.tcp_thin_dupack: 0\n")))
    assert verdict.ok and verdict.values == {"net.ipv4.tcp_thin_dupack": "0"}


def test_slash_keys_are_dotted_unless_a_component_holds_a_dot(tmp_path: Path) -> None:
    text = "raw:\n  net/ipv4/tcp_thin_dupack: 1\n  net/ipv4/conf/eth0.100/rp_filter: 2\n"
    verdict = validate(load_profile(write(tmp_path, "p.yaml", text)))
    assert set(verdict.values) == {"net.ipv4.tcp_thin_dupack", "net/ipv4/conf/eth0.100/rp_filter"}


def test_raw_keys_inherit_and_the_child_wins(tmp_path: Path) -> None:
    write(tmp_path, "parent.yaml", "raw:\n  net.ipv4.tcp_thin_dupack: 1\n  net.ipv4.tcp_stdurg: 0\n")
    child = write(tmp_path, "child.yaml", "extends: parent.yaml\nraw:\n  net.ipv4.tcp_thin_dupack: 0\n")
    verdict = validate(load_profile(child))
    assert verdict.values == {"net.ipv4.tcp_thin_dupack": "0", "net.ipv4.tcp_stdurg": "0"}
    assert verdict.raw == {"net.ipv4.tcp_thin_dupack", "net.ipv4.tcp_stdurg"}


def test_raw_keys_change_the_fingerprint_and_profiles_without_them_keep_theirs(tmp_path: Path) -> None:
    assert load_profile("base").fingerprint() == "4dd88f82e07a"  # as before raw: existed (same settings)
    plain = write(tmp_path, "a.yaml", "settings:\n  net.ipv4.tcp_fin_timeout: 20\n")
    with_raw = write(tmp_path, "b.yaml", "settings:\n  net.ipv4.tcp_fin_timeout: 20\nraw:\n  net.ipv4.tcp_stdurg: 0\n")
    assert load_profile(plain).fingerprint() != load_profile(with_raw).fingerprint()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("raw:\n  vm.swappiness: 10\n", "only net.* keys may be set under 'raw:'"),
        ("raw:\n  kernel.modprobe: /tmp/x\n", "only net.* keys may be set under 'raw:'"),
        ('raw:\n  net.ipv4.tcp_x: "1\\n2"\n', "value contains a newline or control character"),
        ("raw:\n  net.ipv4.tcp_x: 1.5\n", "expected a number or text, got float"),
        ("raw:\n  net.ipv4.tcp_x: {a: 1}\n", "expected a value, got a mapping"),
        ("raw:\n  net.ipv4.tcp_x: 1\n  net/ipv4/tcp_x: 2\n", "duplicate key"),
        ("raw: [1]\n", "'raw' must be a mapping"),
        (f'raw:\n  net.ipv4.tcp_x: "{"1" * 4096}"\n', "the kernel takes at most 4095"),
    ],
)
def test_bad_raw_entries_are_errors_with_a_location(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "p.yaml", text)
    errors = [str(d) for d in validate(load_profile(path)).errors]
    assert any(message in e and e.startswith(f"{path}:") for e in errors), errors


def test_validate_and_show_mark_raw_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.yaml", "raw:\n  net.ipv4.tcp_stdurg: 0\n")
    assert run(["validate", str(path)]) == 0
    assert "1 raw key(s) unchecked by the catalog: net.ipv4.tcp_stdurg" in capsys.readouterr().out
    assert run(["validate", "--format", "json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["profiles"][0]["raw"] == ["net.ipv4.tcp_stdurg"]
    assert run(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "net.ipv4.tcp_stdurg (raw)" in out and "unchecked by the catalog" in out
    assert run(["show", "--format", "json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["net.ipv4.tcp_stdurg"]["raw"] is True


def test_a_role_accepts_the_profiles_raw_keys(tmp_path: Path) -> None:
    from tcptune.ansible.render import role_files, spec_from_verdict

    path = write(tmp_path, "p.yaml", "settings:\n  net.ipv4.tcp_fin_timeout: 20\nraw:\n  net.ipv4.tcp_stdurg: 0\n")
    spec = spec_from_verdict(validate(load_profile(path)))
    tasks = str(role_files(spec)["tasks/main.yml"])
    assert "raw: [net.ipv4.tcp_stdurg]" in tasks  # the module accepts exactly these keys outside the catalog
