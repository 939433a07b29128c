"""What a user sees on a real terminal: the real command in a tmux pane of a given size, read back with
``capture-pane``.

Two readings per screen: the rows as displayed (a name the terminal broke across two rows is not whole on any
row), and the rows joined where the terminal wrapped them (``-J``: a line wider than the pane shows up wider than
the pane). Each test runs in its own tmux server (private socket), torn down at the end.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.load import load_valid
from tcptune.sockets import COUNTER_HELP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/bootstrap --test)"),
]

SIZES = [(80, 24), (120, 40)]
SOCKETS = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
STATUS = ["status", "--source", "proc", "--proc-net", str(SOCKETS), "--proc-root", str(SOCKETS / "proc_sys")]
WEB_SERVER = load_valid("web-server")


class Screen:
    def __init__(self, rows: list[str], joined: list[str], rc: int | None) -> None:
        self.rows, self.joined, self.rc = rows, joined, rc

    @property
    def text(self) -> str:
        return "\n".join(self.rows)

    def assert_fits(self, width: int) -> None:
        """No line was wider than the pane (the terminal wrapped none), and nothing was cut off with an ellipsis."""
        wide = [line for line in self.joined if len(line.rstrip()) > width]
        assert not wide, f"lines wider than {width} columns: {wide}"
        assert "…" not in self.text

    def assert_whole(self, names: list[str]) -> None:
        """Each name appears whole on one row (not broken by the terminal or cut by a table)."""
        tokens = {token.strip(",;()") for row in self.rows for token in row.split()}
        missing = [name for name in names if name not in tokens]
        assert not missing, f"not whole on any row: {missing}\n{self.text}"


class Tmux:
    def __init__(self, work: Path) -> None:
        self.work, self.socket = work, work / "tmux.sock"
        self.names = (f"t{n}" for n in itertools.count())

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, args: list[str], size: tuple[int, int], env: dict[str, str] | None = None) -> tuple[str, Path]:
        """``python -m tcptune ARGS`` in a new pane of ``size``, with the environment tmux gives a pane (TERM set,
        no COLUMNS/LINES/NO_COLOR) plus ``env``; it writes its exit status to a file, then waits to be read."""
        name = next(self.names)
        status = self.work / f"{name}.rc"
        unset = [f"-u{var}" for var in ("COLUMNS", "LINES", "NO_COLOR", "TCPTUNE_STATE_DIR", "TCPTUNE_PROC_ROOT")]
        command = shlex.join(
            ["env", *unset, *(f"{k}={v}" for k, v in (env or {}).items()), sys.executable, "-m", "tcptune", *args]
        )
        # the shell catches Ctrl-C (so that it records the exit status), the command gets its default handling
        script = f"trap : INT; {command}; echo $? > {shlex.quote(str(status))}; exec sleep 600"
        width, height = size
        self("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "sh", "-c", script)
        return name, status

    def screen(self, name: str, status: Path | None = None) -> Screen:
        rows = self("capture-pane", "-p", "-t", name).splitlines()
        joined = self("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", name).splitlines()
        rc = int(status.read_text()) if status is not None and status.exists() else None
        return Screen(rows, joined, rc)

    def wait(self, done: object, what: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def show(self, args: list[str], size: tuple[int, int], env: dict[str, str] | None = None) -> Screen:
        """Run to the end and read everything it printed (scrollback included)."""
        name, status = self.start(args, size, env)
        self.wait(lambda: status.exists() and status.read_text().strip(), f"tcptune {' '.join(args)}")
        screen = self.screen(name, status)
        all_rows = self("capture-pane", "-p", "-S", "-", "-E", "-", "-t", name).splitlines()
        return Screen(all_rows, screen.joined, screen.rc)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-S", str(server.socket), "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def machine() -> Iterator[dict[str, str]]:
    """A /proc/sys tree where every web-server key is 1, an empty sysctl.d tree, a state directory; under a short
    path, as /etc/sysctl.d is (a path longer than the terminal cannot be shown without breaking it)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="tt12-", dir="/tmp"))
    try:
        yield _machine(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _machine(tmp_path: Path) -> dict[str, str]:
    proc = tmp_path / "proc"
    for key in WEB_SERVER.values:
        path = proc / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1\n")
    (tmp_path / "root" / "etc" / "sysctl.d").mkdir(parents=True)
    return {
        "TCPTUNE_PROC_ROOT": str(proc),
        "TCPTUNE_SYSCTL_ROOT": str(tmp_path / "root"),
        "TCPTUNE_STATE_DIR": str(tmp_path / "state"),
    }


@pytest.mark.parametrize("size", SIZES)
def test_show_keeps_every_key_name_and_location_whole(size: tuple[int, int], tmux: Tmux) -> None:
    screen = tmux.show(["show", "web-server"], size)
    assert screen.rc == 0
    screen.assert_fits(size[0])
    screen.assert_whole(list(WEB_SERVER.values))
    settings = WEB_SERVER.profile.settings.values()
    screen.assert_whole([f"{Path(s.location.file).name}:{s.location.line}" for s in settings])


def test_show_without_colour_is_plain_and_still_fits(tmux: Tmux) -> None:
    screen = tmux.show(["show", "web-server"], (80, 24), {"NO_COLOR": "1"})
    assert screen.rc == 0 and "KEY" in screen.text  # the plain table (upper-case headers), not rich's
    screen.assert_fits(80)
    screen.assert_whole(list(WEB_SERVER.values))


@pytest.mark.parametrize("size", SIZES)
def test_diff_wraps_the_reboot_list_at_key_boundaries(
    size: tuple[int, int],
    tmux: Tmux,
    machine: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    applier = ["--boot-applier", "systemd"]  # the tree has no /sbin/init to tell it from
    screen = tmux.show(["diff", "web-server", *applier], size, machine)
    assert screen.rc == 2
    screen.assert_fits(size[0])
    screen.assert_whole(list(WEB_SERVER.values))
    after = screen.text.split("the kernel default returns:", 1)[1].split(" keys: ")[0]
    listed = {token.strip(",") for token in after.split() if token.startswith("net.")}
    for variable, value in machine.items():
        monkeypatch.setenv(variable, value)
    assert run(["diff", "web-server", *applier, "--format", "json"]) == 2
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert len(listed) > 5
    assert listed == {k["key"] for k in keys if k["boot"]["status"] == "not persisted"}  # all there, each whole


@pytest.mark.parametrize("size", SIZES)
def test_status_wraps_counter_meanings_at_word_boundaries(size: tuple[int, int], tmux: Tmux) -> None:
    screen = tmux.show(STATUS, size)
    assert screen.rc == 0
    screen.assert_fits(size[0])
    shown = {token for row in screen.rows for token in row.split()}
    for name, meaning in COUNTER_HELP.items():
        if name.split(".", 1)[1] in shown:
            assert set(meaning.split()) <= shown, f"{name}: a word of its meaning is broken: {meaning}"


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (80, 40)])
def test_status_watch_frame_fits_the_terminal(size: tuple[int, int], tmux: Tmux) -> None:
    width, height = size
    name, status = tmux.start([*STATUS, "--watch", "30"], size)

    def drawn() -> bool:
        text = tmux.screen(name).text
        return "Ctrl-C to stop" in text and ("not shown" in text or "Kernel counters" in text)

    tmux.wait(drawn, "the first frame")
    screen = tmux.screen(name)
    screen.assert_fits(width)
    assert screen.rows[0] == "every 30 s; Ctrl-C to stop"  # the frame's first line is still on screen
    used = [row for row in screen.rows if row.strip()]
    assert len(screen.rows) <= height and screen.rows.index(used[-1]) < height - 1  # the last row stays free
    for state in ("ESTABLISHED", "FIN_WAIT2", "TIME_WAIT", "CLOSE_WAIT", "LISTEN"):
        assert any(row.split()[:1] == [state] for row in screen.rows), state
    text = " ".join(screen.text.split())
    if height == 24:
        assert "not shown:" in text and "kernel counters (--format json shows all)" in text
    tmux("send-keys", "-t", name, "C-c")
    tmux.wait(lambda: status.exists() and status.read_text().strip(), "the exit status after Ctrl-C")
    assert int(status.read_text()) == 0


@pytest.mark.parametrize("size", SIZES)
def test_apply_dry_run_says_so(size: tuple[int, int], tmux: Tmux, machine: dict[str, str]) -> None:
    screen = tmux.show(["apply", "web-server", "--dry-run"], size, machine)
    assert screen.rc == 0
    screen.assert_fits(size[0])
    text = screen.text
    heading = " ".join(text.split("\nkey ", 1)[0].split())  # the lines above the plan's table
    assert heading.startswith("profile web-server") and heading.endswith("(dry run)")
    assert re.search(r"^would write .*90-tcptune\.conf$", text, re.M) and "will write" not in text
    assert text.rstrip().endswith("dry run: nothing was changed")
    assert not (Path(machine["TCPTUNE_SYSCTL_ROOT"]) / "etc/sysctl.d/90-tcptune.conf").exists()


def test_explain_list_keeps_every_key_name_whole(tmux: Tmux) -> None:
    from tcptune import catalog

    screen = tmux.show(["explain", "--list"], (80, 24))
    assert screen.rc == 0
    screen.assert_fits(80)
    screen.assert_whole([key.name for key in catalog.all_keys()])


def test_history_keeps_fingerprints_and_times_whole(
    tmux: Tmux, machine: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in machine.items():
        monkeypatch.setenv(variable, value)
    assert run(["apply", "web-server", "-y"]) == 0
    assert run(["apply", "database", "-y", "--skip-missing"]) == 0
    screen = tmux.show(["history"], (80, 24), machine)
    assert screen.rc == 0
    screen.assert_fits(80)
    created = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", screen.text)
    assert len(created) == 2
    assert WEB_SERVER.profile.fingerprint() in screen.text


def test_the_environment_of_the_pane_is_a_terminal_of_that_size(tmux: Tmux) -> None:
    """The premise of the tests above: tcptune sees a terminal, exactly as wide as the pane."""
    name, status = tmux.start(["explain", "tcp_fin_timeout"], (80, 24))
    tmux.wait(lambda: status.exists() and status.read_text().strip(), "explain")
    probe = subprocess.run(
        ["tmux", "-S", str(tmux.socket), "display-message", "-p", "-t", name, "#{pane_width}x#{pane_height}"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "80x24"
