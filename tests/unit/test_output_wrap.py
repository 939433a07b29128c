"""Text for a terminal: lines wrapped at word boundaries, table cells wrapped, names never cut, and the status view
trimmed to a height. Pure renderers on plain values (what a real terminal shows: tests/unit/test_terminal_tmux.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tcptune.cli import run
from tcptune.output import plain_table, status_text, wrap_words

SOCKETS = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
TREES = ["--source", "proc", "--proc-net", str(SOCKETS), "--proc-root", str(SOCKETS / "proc_sys")]
KEYS = [f"net.ipv4.tcp_keepalive_{name}" for name in ("time", "intvl", "probes")] + ["net.core.somaxconn"]


def words(lines: list[str]) -> list[str]:
    return " ".join(lines).split()


def test_wrap_breaks_only_at_spaces_and_keeps_every_word() -> None:
    text = "  not persisted, the kernel default returns: " + ", ".join(KEYS * 3)
    lines = wrap_words(text, 50, indent="    ")
    assert all(len(line) <= 50 for line in lines)
    assert words(lines) == text.split()
    assert all(line.startswith("    ") for line in lines[1:])


def test_a_word_longer_than_the_line_gets_a_line_of_its_own_uncut() -> None:
    name = "net.netfilter.nf_conntrack_tcp_timeout_close_wait"
    lines = wrap_words(f"keys: {name} and more", 20)
    assert name in [line.strip() for line in lines]


def test_fold_continues_a_long_word_on_the_next_line_without_losing_characters() -> None:
    path = "/opt/tcptune/lib/python3.11/site-packages/tcptune/_data/profiles/web-server.yaml:12"
    lines = wrap_words(path, 20, indent="", fold=True)
    assert all(len(line) <= 20 for line in lines) and "".join(lines) == path


def test_without_a_width_text_is_never_wrapped() -> None:
    text = "x " * 200
    assert wrap_words(text, None) == [text]


def test_colour_codes_take_no_columns() -> None:
    coloured = "\x1b[33mdrift\x1b[0m " * 10
    lines = wrap_words(coloured, 12)
    assert all(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) <= 12 for line in lines)


def test_a_table_wider_than_the_terminal_wraps_other_cells_and_keeps_key_names_whole() -> None:
    rows = [(key, "4096 131072 16777216", "a long explanation of what this key does " * 2) for key in KEYS]
    lines = plain_table(["key", "value", "meaning"], rows, width=80)
    assert all(len(line) <= 80 for line in lines)
    for key in KEYS:
        assert any(line.startswith(key + " ") for line in lines)
    assert words(lines) == words(plain_table(["key", "value", "meaning"], rows))


def test_piped_tables_keep_one_line_per_row() -> None:
    rows = [(key, "x " * 60) for key in KEYS]
    assert len(plain_table(["key", "meaning"], rows)) == 1 + len(KEYS)


def status(capsys: pytest.CaptureFixture[str]) -> dict:
    assert run(["status", *TREES, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("width", "height"), [(80, 22), (120, 38), (80, 10), (100, 30)])
def test_a_status_frame_fits_the_height_states_first_and_says_what_it_left_out(
    width: int, height: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data = status(capsys)
    lines = status_text(data, width=width, height=height).splitlines()
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)
    assert lines[0].startswith("TCP sockets in")
    for state, count in data["states"].items():
        if count:
            assert any(line.split()[:2] == [state, str(count)] for line in lines if line.strip()), state
    start = next(n for n, line in enumerate(lines) if line.startswith("not shown:"))
    note = " ".join(" ".join(lines[start:]).split())
    assert "kernel counters" in note and note.endswith("(--format json shows all)")


def test_a_status_frame_that_fits_is_the_whole_view(capsys: pytest.CaptureFixture[str]) -> None:
    data = status(capsys)
    whole = status_text(data, width=120)
    assert status_text(data, width=120, height=500) == whole
    assert "not shown" not in whole
    assert all(len(line) <= 120 for line in whole.splitlines())


def test_status_counter_meanings_wrap_at_words(capsys: pytest.CaptureFixture[str]) -> None:
    data = status(capsys)
    lines = status_text(data, width=80).splitlines()
    assert all(len(line) <= 80 for line in lines)
    from tcptune.sockets import COUNTER_HELP

    shown = set(words(lines))
    for name in data["counters"]:
        assert set(COUNTER_HELP.get(name, "").split()) <= shown, name


@pytest.mark.parametrize(("width", "height"), [(30, 3), (20, 1), (80, 5)])
def test_a_tiny_terminal_gets_at_most_its_height(width: int, height: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(status_text(status(capsys), width=width, height=height).splitlines()) <= height
