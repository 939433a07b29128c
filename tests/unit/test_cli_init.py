"""``tcptune init NAME``: a profile to start from, written from an empty directory, valid as written, the same
values as NAME once every line is uncommented, and never written over an existing file without --force."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tcptune import catalog
from tcptune.cli import run
from tcptune.load import load_valid
from tcptune.profile import builtin_names

KEY_LINE = re.compile(r"^  # ((?:net|kernel|vm|fs)\.[\w.\-/]+): (.+)$")


def tcptune(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TCPTUNE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tcptune", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def uncommented(text: str) -> str:
    return "\n".join(
        f"  {m.group(1)}: {m.group(2)}" if (m := KEY_LINE.match(line)) else line for line in text.split("\n")
    )


def test_init_in_an_empty_directory_writes_name_yaml_that_validates(tmp_path: Path) -> None:
    done = tcptune("init", "web-server", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_path) == ["web-server.yaml"]
    assert "wrote web-server.yaml" in done.stdout and "tcptune diff web-server.yaml" in done.stdout
    checked = tcptune("validate", "--strict", "web-server.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_init_works_without_a_network(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a network namespace without interfaces")
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "tcptune", "init", "database"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "database.yaml").is_file()


def test_the_file_extends_name_and_lists_each_key_commented_with_value_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["init", "web-server"]) == 0
    text = (tmp_path / "web-server.yaml").read_text()
    assert "\nextends: web-server\n" in text and "\nname: my-web-server\n" in text
    parent = load_valid("web-server")
    lines = text.splitlines()
    listed = {m.group(1): n for n, line in enumerate(lines) if (m := KEY_LINE.match(line))}
    assert set(listed) == set(parent.values)
    for key, n in listed.items():
        entry = catalog.get(key)
        assert entry is not None
        assert entry.summary.split()[0] in lines[n - 1], f"{key}: its summary is not the line above it"
    own = load_valid(str(tmp_path / "web-server.yaml"))
    assert own.profile.settings.keys() == parent.profile.settings.keys()
    assert all(s.origin != "my-web-server" for s in own.profile.settings.values())  # nothing set yet: all commented


@pytest.mark.parametrize("name", builtin_names())
def test_uncommenting_every_key_gives_the_same_values_as_the_built_in(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["init", name, "-o", "mine.yaml"]) == 0
    path = tmp_path / "mine.yaml"
    path.write_text(uncommented(path.read_text()))
    own, parent = load_valid(str(path)), load_valid(name)
    assert [d.message for d in own.warnings] == [d.message for d in parent.warnings]
    assert own.values == parent.values
    assert own.profile.fingerprint() == parent.profile.fingerprint()
    assert {s.origin for s in own.profile.settings.values()} == {"mine"}  # every value now set by the file itself


def test_an_existing_file_is_kept_without_force_and_replaced_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "web-server.yaml"
    target.write_text("settings:\n  net.ipv4.tcp_fin_timeout: 20\n")
    assert run(["init", "web-server"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "web-server.yaml exists; use --force" in err
    assert target.read_text() == "settings:\n  net.ipv4.tcp_fin_timeout: 20\n"
    assert run(["init", "web-server", "--force"]) == 0
    assert "extends: web-server" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["web-server.yaml"]  # no temporary file left behind


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_target_that_is_not_a_regular_file_is_refused_even_with_force(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.yaml"
    elsewhere = tmp_path / "elsewhere.yaml"
    if kind == "symlink":
        elsewhere.write_text("keep me\n")
        target.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    assert run(["init", "web-server", "-o", str(target), "--force"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tcptune: error: cannot write {target}") and err.count("\n") == 1
    if kind == "symlink":
        assert target.is_symlink() and elsewhere.read_text() == "keep me\n"


def test_output_dash_prints_the_profile_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["init", "database", "-o", "-"]) == 0
    assert "extends: database\n" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_another_file_name_names_the_profile_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["init", "web-server", "-o", "edge.yaml"]) == 0
    assert load_valid("edge.yaml").profile.name == "edge"


def test_an_unknown_name_is_one_line_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["init", "web-servr"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'web-server'?" in err
    assert list(tmp_path.iterdir()) == []


def test_a_path_instead_of_a_name_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["init", str(tmp_path / "x.yaml")]) == 64
    assert "give the name of a built-in profile" in capsys.readouterr().err


def test_the_written_file_can_be_diffed_and_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's quick start: init, diff, apply, on a /proc/sys tree."""
    monkeypatch.chdir(tmp_path)
    parent = load_valid("web-server")
    for key in parent.values:
        path = tmp_path / "proc" / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1\n")
    (tmp_path / "root/etc/sysctl.d").mkdir(parents=True)
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(tmp_path / "proc"))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(tmp_path / "state"))
    assert run(["init", "web-server"]) == 0
    assert run(["diff", "web-server.yaml"]) == 2
    assert run(["apply", "web-server.yaml", "-y"]) == 0
    assert run(["diff", "web-server.yaml", "--format", "json"]) == 0
    capsys.readouterr()
    assert run(["history", "--format", "json"]) == 0
    generation = json.loads(capsys.readouterr().out)["generations"][0]
    assert generation["profile"] == "my-web-server"
    for key, value in parent.values.items():
        assert (tmp_path / "proc" / key.replace(".", "/")).read_text().split() == value.split()
