"""live.py on a temporary /proc/sys-shaped tree: key paths, reads, writes, and write-all-or-restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptune.live import LiveValue, ProcSys, WriteFailed, order_writes, put_back, write_all


@pytest.fixture
def proc(tmp_path: Path) -> ProcSys:
    values = {
        "net/ipv4/tcp_fin_timeout": "60",
        "net/ipv4/tcp_rmem": "4096\t131072\t6291456",
        "net/core/somaxconn": "4096",
        "net/ipv4/tcp_tw_reuse": "2",
    }
    for rel, text in values.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return ProcSys(str(tmp_path))


class FailingProc(ProcSys):
    """A tree where chosen keys refuse writes, as the kernel does (EINVAL, read-only in a child netns)."""

    def __init__(self, root: str, fail: dict[str, str], fail_restore: set[str] | None = None) -> None:
        super().__init__(root)
        self.fail, self.fail_restore, self.writes = fail, fail_restore or set(), []

    def write(self, key: str, text: str) -> None:
        self.writes.append((key, text))
        if key in self.fail and self.fail[key] != "done":
            raise WriteFailed(key, self.fail[key], f"refused ({self.fail[key]})")
        if key in self.fail_restore and sum(k == key for k, _ in self.writes) > 1:
            raise WriteFailed(key, "busy", "the kernel reports the setting as busy")
        super().write(key, text)


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "/etc/passwd",
        "net..ipv4",
        "net.ipv4.",
        ".net",
        "net/../../x",
        "net.ipv4.tcp fin",
        "net.ipv4.tcp_fin_timeout\n",
        "",
        "net.-x",
    ],
)
def test_path_rejects_anything_but_plain_keys(proc: ProcSys, key: str) -> None:
    with pytest.raises(ValueError):
        proc.path(key)


def test_path_accepts_dotted_and_slash_keys(proc: ProcSys, tmp_path: Path) -> None:
    expected = str(tmp_path / "net/ipv4/tcp_fin_timeout")
    assert proc.path("net.ipv4.tcp_fin_timeout") == expected
    assert proc.path("net/ipv4/tcp_fin_timeout") == expected


def test_path_refuses_a_symlink_out_of_the_tree(proc: ProcSys, tmp_path: Path) -> None:
    (tmp_path / "net/escape").symlink_to("/etc")
    with pytest.raises(ValueError, match="outside"):
        proc.path("net.escape.passwd")


def test_read_strips_only_the_trailing_newline(proc: ProcSys) -> None:
    value = proc.read("net.ipv4.tcp_rmem")
    assert value == LiveValue("net.ipv4.tcp_rmem", "4096\t131072\t6291456", "ok", True)


def test_read_reports_missing_keys_as_data(proc: ProcSys) -> None:
    value = proc.read("net.ipv4.tcp_no_such_key")
    assert (value.status, value.text, value.writable) == ("missing", None, False)
    assert "no such key" in (value.error or "")


def test_read_many_keeps_the_keys_asked_for(proc: ProcSys) -> None:
    assert set(proc.read_many(["net.core.somaxconn", "net.x"])) == {"net.core.somaxconn", "net.x"}


def test_write_replaces_the_whole_value_in_a_plain_tree(proc: ProcSys, tmp_path: Path) -> None:
    proc.write("net.core.somaxconn", "8")
    assert (tmp_path / "net/core/somaxconn").read_text() == "8\n"


def test_write_to_a_missing_key_says_missing(proc: ProcSys) -> None:
    with pytest.raises(WriteFailed) as caught:
        proc.write("net.ipv4.tcp_no_such_key", "1")
    assert caught.value.reason == "missing"
    assert "Errno" not in caught.value.message


def test_write_refuses_newlines(proc: ProcSys) -> None:
    with pytest.raises(WriteFailed) as caught:
        proc.write("net.core.somaxconn", "1\nkernel.x = 1")
    assert caught.value.reason == "invalid"


def test_write_all_writes_in_order_and_calls_before_each_first(proc: ProcSys) -> None:
    seen: list[str] = []
    outcome = write_all(
        proc, [("net.core.somaxconn", "8", "4096"), ("net.ipv4.tcp_fin_timeout", "15", "60")], before_each=seen.append
    )
    assert outcome.ok and outcome.applied == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]
    assert seen == outcome.applied
    assert proc.read("net.ipv4.tcp_fin_timeout").text == "15"


def test_write_all_restores_written_keys_newest_first_on_failure(tmp_path: Path, proc: ProcSys) -> None:
    failing = FailingProc(str(tmp_path), {"net.ipv4.tcp_tw_reuse": "read-only"})
    changes = [
        ("net.core.somaxconn", "8", "4096"),
        ("net.ipv4.tcp_fin_timeout", "15", "60"),
        ("net.ipv4.tcp_tw_reuse", "1", "2"),
        ("net.ipv4.tcp_rmem", "1 2 3", "4096\t131072\t6291456"),
    ]
    outcome = write_all(failing, changes)
    assert outcome.failed == ("net.ipv4.tcp_tw_reuse", "read-only", "refused (read-only)")
    assert outcome.applied == ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"]
    assert outcome.restored == ["net.ipv4.tcp_fin_timeout", "net.core.somaxconn"]
    assert outcome.restore_failed == []
    assert proc.read("net.core.somaxconn").text == "4096"
    assert proc.read("net.ipv4.tcp_fin_timeout").text == "60"
    assert ("net.ipv4.tcp_rmem", "1 2 3") not in failing.writes


def test_write_all_reports_keys_it_could_not_restore(tmp_path: Path) -> None:
    failing = FailingProc(str(tmp_path), {"net.ipv4.tcp_tw_reuse": "invalid"}, fail_restore={"net.core.somaxconn"})
    (tmp_path / "net/core").mkdir(parents=True)
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/core/somaxconn").write_text("4096\n")
    (tmp_path / "net/ipv4/tcp_tw_reuse").write_text("2\n")
    outcome = write_all(failing, [("net.core.somaxconn", "8", "4096"), ("net.ipv4.tcp_tw_reuse", "1", "2")])
    assert outcome.restore_failed == [("net.core.somaxconn", "the kernel reports the setting as busy")]
    assert outcome.restored == []


def test_write_all_puts_back_a_failing_key_the_kernel_half_stored(tmp_path: Path, proc: ProcSys) -> None:
    class HalfStoring(ProcSys):
        def write(self, key: str, text: str) -> None:
            super().write(key, text)
            if text.startswith("1 "):
                raise WriteFailed(key, "invalid", "the kernel rejected it")

    outcome = write_all(HalfStoring(str(tmp_path)), [("net.ipv4.tcp_rmem", "1 2 x", "4096\t131072\t6291456")])
    assert outcome.restored == ["net.ipv4.tcp_rmem"]
    assert proc.read("net.ipv4.tcp_rmem").text == "4096\t131072\t6291456"


def test_put_back_undoes_every_key_it_can_even_when_one_refuses(tmp_path: Path, proc: ProcSys) -> None:
    changes = [
        ("net.core.somaxconn", "8", "4096"),
        ("net.ipv4.tcp_fin_timeout", "15", "60"),
        ("net.ipv4.tcp_tw_reuse", "1", "2"),
    ]
    assert write_all(proc, changes).ok
    refusing = FailingProc(str(tmp_path), {}, fail_restore={"net.ipv4.tcp_fin_timeout"})
    refusing.writes.append(("net.ipv4.tcp_fin_timeout", "15"))  # it was written once already
    outcome = put_back(refusing, changes)
    assert [key for key, _ in refusing.writes[1:]] == [key for key, _, _ in reversed(changes)]  # newest first
    assert outcome.restored == ["net.ipv4.tcp_tw_reuse", "net.core.somaxconn"]
    assert outcome.restore_failed == [("net.ipv4.tcp_fin_timeout", "the kernel reports the setting as busy")]
    assert [proc.read(key).text for key, _, _ in changes] == ["4096", "15", "2"]


def test_a_before_each_failure_stops_before_the_write_and_puts_back_the_rest(proc: ProcSys) -> None:
    def hook(key: str) -> None:
        if key == "net.ipv4.tcp_fin_timeout":
            raise OSError("disk full")

    outcome = write_all(proc, [("net.core.somaxconn", "8", "4096"), ("net.ipv4.tcp_fin_timeout", "15", "60")], hook)
    assert outcome.failed is not None and outcome.failed[0] == "net.ipv4.tcp_fin_timeout"
    assert outcome.failed[2] == "stopped before writing it: disk full"
    assert outcome.restored == ["net.core.somaxconn"]
    assert proc.read("net.ipv4.tcp_fin_timeout").text == "60"
    assert proc.read("net.core.somaxconn").text == "4096"


def test_a_key_file_that_links_out_of_the_tree_reads_as_unreadable(proc: ProcSys, tmp_path: Path) -> None:
    (tmp_path / "net/core/passwd").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="outside"):
        proc.path("net.core.passwd")
    value = proc.read("net.core.passwd")
    assert (value.status, value.text) == ("unreadable", None) and "outside" in (value.error or "")


def test_writing_a_key_that_links_out_of_the_tree_is_refused(proc: ProcSys, tmp_path: Path) -> None:
    target = tmp_path.parent / f"{tmp_path.name}-outside"
    target.write_text("1\n")
    (tmp_path / "net/core/escape").symlink_to(target)
    outcome = write_all(proc, [("net.core.escape", "2", "1")])
    assert outcome.failed is not None and outcome.failed[0] == "net.core.escape" and "outside" in outcome.failed[2]
    assert target.read_text() == "1\n"


def test_a_value_longer_than_a_page_is_read_whole(proc: ProcSys, tmp_path: Path) -> None:
    long = " ".join(f"item{i}" for i in range(2000))  # ~17 KB: more than one page of /proc/sys output
    (tmp_path / "net/core/long").write_text(long + "\n")
    assert proc.read("net.core.long").text == long


def test_a_value_over_the_cap_is_unreadable_never_truncated(
    proc: ProcSys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tcptune.live.MAX_VALUE_BYTES", 100)
    (tmp_path / "net/core/long").write_text("x" * 101)
    value = proc.read("net.core.long")
    assert (value.status, value.text) == ("unreadable", None) and "longer than 100 bytes" in (value.error or "")
    (tmp_path / "net/core/long").write_text("x" * 99 + "\n")
    assert proc.read("net.core.long").text == "x" * 99


def test_order_writes_lowers_the_unprivileged_start_first_and_raises_it_last() -> None:
    lower = [
        ("net.ipv4.ip_local_port_range", "1000 2000", "32768 60999"),
        ("net.core.somaxconn", "8", "4096"),
        ("net.ipv4.ip_unprivileged_port_start", "500", "1024"),
    ]
    assert [k for k, _, _ in order_writes(lower)] == [
        "net.ipv4.ip_unprivileged_port_start",
        "net.core.somaxconn",
        "net.ipv4.ip_local_port_range",
    ]
    raise_ = [("net.ipv4.ip_unprivileged_port_start", "2000", "1024"), ("net.core.somaxconn", "8", "4096")]
    assert [k for k, _, _ in order_writes(raise_)] == ["net.core.somaxconn", "net.ipv4.ip_unprivileged_port_start"]
    assert order_writes([("b", "1", "2"), ("a", "1", "2")]) == [("a", "1", "2"), ("b", "1", "2")]


def test_write_all_decides_a_moved_failing_key_with_the_given_comparison(proc: ProcSys, tmp_path: Path) -> None:
    """The failing key is put back only if it moved; '030' is '30' for values.same, not for a token compare."""
    (tmp_path / "net/core/somaxconn").write_text("030\n")

    class Refusing(ProcSys):
        def write(self, key: str, text: str) -> None:
            self.writes = [*getattr(self, "writes", []), (key, text)]
            if text == "8":
                raise WriteFailed(key, "invalid", "refused")
            super().write(key, text)

    from tcptune.values import same

    tokens = Refusing(str(tmp_path))
    write_all(tokens, [("net.core.somaxconn", "8", "30")])
    assert tokens.writes == [("net.core.somaxconn", "8"), ("net.core.somaxconn", "30")]  # token compare: moved
    (tmp_path / "net/core/somaxconn").write_text("030\n")
    normalised = Refusing(str(tmp_path))
    write_all(normalised, [("net.core.somaxconn", "8", "30")], same=same)
    assert normalised.writes == [("net.core.somaxconn", "8")]  # same value: nothing to put back


def test_non_root_diff_judges_writability_as_root_would(
    proc: ProcSys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-root `diff` must not call every differing key read-only: it asks whether root could write it."""
    (tmp_path / "net/core/rmem_max").write_text("212992\n")
    (tmp_path / "net/core/rmem_max").chmod(0o444)  # how the kernel shows host-wide keys in a child netns
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert proc.read("net.core.somaxconn").writable is True
    assert proc.read("net.core.rmem_max").writable is False


def test_real_proc_sys_reads_without_writing() -> None:
    value = ProcSys().read("net.ipv4.tcp_rmem")
    assert value.status == "ok" and value.text is not None and len(value.text.split()) == 3
