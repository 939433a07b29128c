"""The loader: inheritance, origins, name normalisation, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.errors import ProfileError
from tcptune.profile import MAX_PROFILE_BYTES, load_profile
from tcptune.validate import validate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "profiles" / "good"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_child_value_wins_over_parent_and_origin_is_recorded() -> None:
    profile = load_profile(FIXTURES / "child.yaml")
    assert profile.settings["net.ipv4.tcp_fin_timeout"].value == 20
    assert profile.settings["net.ipv4.tcp_fin_timeout"].origin == "child"
    assert profile.settings["net.ipv4.tcp_tw_reuse"].origin == "parent"
    assert profile.chain == ("parent", "child")


def test_later_parent_in_list_wins(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "settings:\n  net.ipv4.tcp_fin_timeout: 10\n")
    write(tmp_path, "b.yaml", "settings:\n  net.ipv4.tcp_fin_timeout: 11\n")
    child = write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\nsettings: {}\n")
    assert load_profile(child).settings["net.ipv4.tcp_fin_timeout"].value == 11


def test_bare_key_name_is_normalised_to_full_name(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "settings:\n  tcp_fin_timeout: 30\n")
    assert list(load_profile(path).settings) == ["net.ipv4.tcp_fin_timeout"]


def test_slash_key_name_is_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "settings:\n  net/ipv4/tcp_fin_timeout: 30\n")
    assert list(load_profile(path).settings) == ["net.ipv4.tcp_fin_timeout"]


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "edge-proxy.yaml", "settings:\n  tcp_fin_timeout: 30\n")
    assert load_profile(path).name == "edge-proxy"


def test_builtin_profile_is_found_by_name() -> None:
    assert load_profile("base").name == "base"


def test_missing_profile_suggests_builtin_names() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("web-servr")
    assert "did you mean 'web-server'" in str(info.value)


def test_oversized_file_is_rejected_without_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", "#" * (MAX_PROFILE_BYTES + 1))
    with pytest.raises(ProfileError, match="limited to"):
        load_profile(path)


def test_non_utf8_file_is_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"settings:\n  tcp_fin_timeout: \xff\n")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(path)


def test_deep_nesting_is_a_diagnostic_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.yaml", "[" * 1200 + "]" * 1200)
    with pytest.raises(ProfileError):
        load_profile(path)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "many.yaml",
        "colour: red\nsettings:\n  tcp_fin_timeout: -1\n  tcp_nope: 1\n  net.ipv4.tcp_rmem: [1, 2]\n",
    )
    errors = validate(load_profile(path)).errors
    assert len(errors) == 4
    assert [e.location.line for e in errors] == [1, 3, 4, 5]


def test_multiple_documents_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "two.yaml", "settings: {}\n---\nsettings: {}\n")
    with pytest.raises(ProfileError, match="YAML"):
        load_profile(path)


def test_fingerprint_changes_with_values(tmp_path: Path) -> None:
    a = load_profile(write(tmp_path, "a.yaml", "settings:\n  tcp_fin_timeout: 30\n"))
    b = load_profile(write(tmp_path, "b.yaml", "settings:\n  tcp_fin_timeout: 31\n"))
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(("written", "expected"), [("030", 30), ("0x400", 1024), ("0o17", 15), ("-5", -5)])
def test_numbers_follow_yaml_1_2_not_1_1(tmp_path: Path, written: str, expected: int) -> None:
    path = write(tmp_path, "p.yaml", f"settings:\n  tcp_fin_timeout: {written}\n")
    assert load_profile(path).settings["net.ipv4.tcp_fin_timeout"].value == expected


@pytest.mark.parametrize("written", ["2024-13-45", "2024-01-01 25:00:00", "1:00", "yes", "on"])
def test_yaml_1_1_oddities_stay_text_and_are_reported(tmp_path: Path, written: str) -> None:
    path = write(tmp_path, "p.yaml", f"settings:\n  tcp_fin_timeout: {written}\n")
    errors = validate(load_profile(path)).errors
    assert [str(e) for e in errors] == [
        f"{path}:2:20: net.ipv4.tcp_fin_timeout: expected a number, got '{written}' "
        "(a number of seconds, or with a unit: 30s, 2m, 1h)"
    ]


def test_file_name_that_is_not_a_plain_name_needs_a_name_field(tmp_path: Path) -> None:
    evil = write(tmp_path, "evil\nnet.ipv4.tcp_syncookies = 0\n#.yaml", "settings:\n  tcp_fin_timeout: 30\n")
    errors = validate(load_profile(evil)).errors
    assert any("not a plain name" in e.message for e in errors)
    named = write(tmp_path, "x{{ lookup('pipe','id') }}.yaml", "name: fine\nsettings:\n  tcp_fin_timeout: 30\n")
    assert validate(load_profile(named)).ok


def test_key_name_with_trailing_newline_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", 'settings:\n  "tcp_fin_timeout\\n": 30\n')
    assert any("is not a sysctl key name" in e.message for e in validate(load_profile(path)).errors)


@pytest.mark.parametrize("field", ["name", "settings", "extends", "description"])
def test_a_repeated_top_level_field_is_an_error_and_only_the_first_counts(tmp_path: Path, field: str) -> None:
    first = {
        "name": "name: first",
        "settings": "settings:\n  tcp_fin_timeout: 30",
        "extends": "extends: a.yaml",
        "description": "description: first",
    }
    again = {
        "name": "name: second",
        "settings": "settings:\n  tcp_keepalive_time: 600",
        "extends": "extends: b.yaml",
        "description": "description: second",
    }
    write(tmp_path, "a.yaml", "settings:\n  tcp_fin_timeout: 10\n")
    write(tmp_path, "b.yaml", "settings:\n  tcp_fin_timeout: 11\n  tcp_keepalive_time: 60\n")
    rest = [text for name, text in first.items() if name != field]
    path = write(tmp_path, "p.yaml", "\n".join([first[field], *rest, again[field]]) + "\n")
    profile = load_profile(path)
    line = 1 + sum(text.count("\n") + 1 for text in [first[field], *rest])
    assert [str(e) for e in validate(profile).errors] == [
        f"{path}:{line}:1: duplicate field '{field}' (each field may appear once)"
    ]
    assert profile.name == "first" and profile.description == "first" and profile.extends == ("a.yaml",)
    assert {k: s.value for k, s in profile.settings.items()} == {"net.ipv4.tcp_fin_timeout": 30}


def test_pyyaml_still_rejects_control_characters_after_the_deferred_compile() -> None:
    """profile.py lets PyYAML's pure-Python reader compile its non-printable class on first use (start-up time);
    that reader must still refuse a control character, and any other pattern compile as always."""
    import subprocess
    import sys

    code = (
        "import re, tcptune.profile, yaml\n"
        "assert re.compile.__module__ == 're' and re.compile('a+').fullmatch('aa')\n"
        "try:\n"
        "    yaml.load('a: \\x01', Loader=yaml.SafeLoader)\n"
        "except yaml.reader.ReaderError:\n"
        "    print('rejected')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "rejected"), done.stderr
