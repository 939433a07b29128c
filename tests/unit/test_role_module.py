"""The role's module (library/tcptune_sysctl.py) against a temporary /proc/sys tree, without Ansible running it.

Its ``module_utils`` imports are pointed at tcptune's own modules: the role ships byte-identical copies of them
(see test_role_render), so this is the code that runs on hosts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import tcptune.live
import tcptune.persist
import tcptune.values
from tcptune.ansible.render import MODULE_SOURCE


def _load_module() -> ModuleType:
    import ansible.module_utils  # noqa: F401 - the package the shipped copies live in on a host

    sys.modules.setdefault("ansible.module_utils.tcptune_values", tcptune.values)
    sys.modules.setdefault("ansible.module_utils.tcptune_persist", tcptune.persist)
    sys.modules.setdefault("ansible.module_utils.tcptune_live", tcptune.live)
    spec = importlib.util.spec_from_file_location("tcptune_sysctl_under_test", MODULE_SOURCE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mod = _load_module()

LIVE = {
    "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_rmem": "4096\t131072\t6291456",
    "net/core/somaxconn": "4096",
    "net/ipv4/tcp_keepalive_time": "7200",
}


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc_sys"
    for rel, text in LIVE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return root


def params(proc: Path, settings: dict, **extra: object) -> dict:
    return {
        "settings": settings,
        "persist": True,
        "sysctl_file": str(proc.parent / "sysctl.d" / "90-tcptune.conf"),
        "profile_name": "test",
        "fingerprint": "abc123",
        "proc_root": str(proc),
        **extra,
    }


def live(proc: Path, rel: str) -> str:
    return (proc / rel).read_text().strip()


def test_writes_only_keys_that_differ_and_reports_before_and_after(proc: Path) -> None:
    result, failure = mod.run(
        params(
            proc,
            {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": 4096, "net.ipv4.tcp_rmem": "4096 131072 6291456"},
        ),
        False,
    )
    assert failure is None
    assert result["changed"] is True
    assert result["changed_keys"] == ["net.ipv4.tcp_fin_timeout"]
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"] == {
        "before": "60",
        "after": "15",
        "desired": "15",
        "status": "changed",
    }
    assert result["sysctls"]["net.ipv4.tcp_rmem"]["status"] == "ok"  # the kernel's tabs are not drift
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "15"
    assert live(proc, "net/ipv4/tcp_rmem") == "4096\t131072\t6291456"  # untouched


def test_persists_exactly_what_the_cli_persists(proc: Path) -> None:
    settings = {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": "1024"}
    p = params(proc, settings)
    mod.run(p, False)
    assert Path(p["sysctl_file"]).read_text() == tcptune.persist.render_sysctl_conf("test", "abc123", settings)


def test_second_run_changes_nothing(proc: Path) -> None:
    p = params(proc, {"net.ipv4.tcp_fin_timeout": 15, "net.ipv4.tcp_rmem": [4096, 131072, 4194304]})
    first, _ = mod.run(p, False)
    second, failure = mod.run(p, False)
    assert first["changed"] and failure is None
    assert second["changed"] is False and second["changed_keys"] == [] and second["file_changed"] is False


def test_check_mode_reports_drift_and_writes_nothing(proc: Path) -> None:
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15"})
    result, failure = mod.run(p, True)
    assert failure is None and result["changed"] is True and result["file_changed"] is True
    assert result["changed_keys"] == ["net.ipv4.tcp_fin_timeout"]
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"
    assert not Path(p["sysctl_file"]).exists()
    keys_diff = result["diff"][0]
    assert keys_diff["before"] == "net.ipv4.tcp_fin_timeout = 60\n"
    assert keys_diff["after"] == "net.ipv4.tcp_fin_timeout = 15\n"


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "net.ipv4..x",
        "net/ipv4/tcp_fin_timeout",
        "net.ipv4.tcp fin",
        ".net.ipv4",
        "net.ipv4.tcp_fin_timeout\n",
    ],
)
def test_refuses_anything_but_a_plain_dotted_key_name(proc: Path, key: str) -> None:
    result, failure = mod.run(params(proc, {key: "1", "net.ipv4.tcp_fin_timeout": "15"}), False)
    assert failure and "not a sysctl key name" in failure
    assert result["failed_keys"][key]["reason"] == "invalid"
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


def test_key_names_are_checked_by_procsys_not_a_regex_of_its_own(proc: Path) -> None:
    assert not hasattr(mod, "KEY_NAME")
    (proc / "net" / "escape").symlink_to(proc.parent)  # a key that resolves outside the proc root
    _, failure = mod.run(params(proc, {"net.escape.x": "1", "net.ipv4.tcp_fin_timeout": "15"}), False)
    assert failure and "outside" in failure
    _, failure = mod.run(params(proc, {"tcp_fin_timeout": "1", "net.ipv4.tcp_fin_timeout": "15"}), False)
    assert failure and failure.startswith("nothing written") and "no such key" in failure
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


@pytest.mark.parametrize(
    "value",
    [
        "15\nnet.core.somaxconn = 1",
        "1\x00",
        "1\x1b[2J",
        None,
        {"a": 1},
        [1, "2\n"],
        [8080, "9000-9100"],
        [True, 2],
    ],
)
def test_refuses_values_that_are_not_one_line(proc: Path, value: object) -> None:
    _, failure = mod.run(params(proc, {"net.ipv4.tcp_fin_timeout": value}), False)
    assert failure and "one line" in failure
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


def test_an_empty_value_is_written_as_the_cli_writes_it(proc: Path) -> None:
    """A profile may clear ip_local_reserved_ports with "": its role must be able to do the same."""
    (proc / "net/ipv4/ip_local_reserved_ports").write_text("8080\n")
    p = params(proc, {"net.ipv4.ip_local_reserved_ports": ""})
    result, failure = mod.run(p, False)
    assert failure is None, failure
    assert result["changed_keys"] == ["net.ipv4.ip_local_reserved_ports"]
    assert live(proc, "net/ipv4/ip_local_reserved_ports") == ""
    assert "net.ipv4.ip_local_reserved_ports = \n" in Path(p["sysctl_file"]).read_text()


def test_missing_key_stops_the_host_before_any_write(proc: Path) -> None:
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15", "net.ipv4.tcp_no_such_key": "1"})
    result, failure = mod.run(p, False)
    assert failure and failure.startswith("nothing written")
    assert result["failed_keys"]["net.ipv4.tcp_no_such_key"]["reason"] == "missing"
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"]["status"] == "not-written"
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"
    assert not Path(p["sysctl_file"]).exists()


def test_a_failed_write_puts_the_host_back_and_skips_the_file(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing(tcptune.live.ProcSys):
        def write(self, key: str, text: str) -> None:
            if key == "net.ipv4.tcp_rmem" and text != "4096\t131072\t6291456":
                raise tcptune.live.WriteFailed(key, "invalid", "the kernel rejected it")
            super().write(key, text)

    monkeypatch.setattr(mod, "ProcSys", Refusing)
    p = params(
        proc,
        {
            "net.ipv4.tcp_fin_timeout": "15",
            "net.core.somaxconn": "1024",
            "net.ipv4.tcp_rmem": "1 2 3",
            "net.ipv4.tcp_keepalive_time": "600",
        },
    )
    result, failure = mod.run(p, False)
    assert failure and "every key written was put back" in failure
    assert result["failed_keys"] == {"net.ipv4.tcp_rmem": {"reason": "invalid", "message": "the kernel rejected it"}}
    statuses = {k: v["status"] for k, v in result["sysctls"].items()}
    assert statuses == {
        "net.core.somaxconn": "restored",
        "net.ipv4.tcp_fin_timeout": "restored",
        "net.ipv4.tcp_keepalive_time": "restored",
        "net.ipv4.tcp_rmem": "failed",
    }
    for rel, text in LIVE.items():
        assert live(proc, rel).split() == text.split(), rel
    assert result["changed"] is False
    assert not Path(p["sysctl_file"]).exists()


def test_a_value_the_kernel_does_not_keep_fails_and_is_put_back(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Clamping(tcptune.live.ProcSys):
        def write(self, key: str, text: str) -> None:
            super().write(key, "300" if key == "net.core.somaxconn" and text == "100000" else text)

    monkeypatch.setattr(mod, "ProcSys", Clamping)
    result, failure = mod.run(params(proc, {"net.core.somaxconn": "100000", "net.ipv4.tcp_fin_timeout": "15"}), False)
    assert failure and "shows 300" in failure
    assert result["failed_keys"]["net.core.somaxconn"]["reason"] == "not-kept"
    assert live(proc, "net/core/somaxconn") == "4096"
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


def test_default_fingerprint_is_a_hash_of_the_settings(proc: Path) -> None:
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15"}, fingerprint=None)
    mod.run(p, False)
    text = Path(p["sysctl_file"]).read_text()
    assert f"# fingerprint: {mod.fingerprint_of({'net.ipv4.tcp_fin_timeout': '15'})}" in text


def test_values_are_compared_and_written_in_canonical_form(proc: Path) -> None:
    p = params(
        proc,
        {
            "net.ipv4.tcp_fin_timeout": "060",
            "net.ipv4.tcp_rmem": ["4096", " 131072", "+6291456"],
            "net.core.somaxconn": "  01024 ",
        },
    )
    result, failure = mod.run(p, False)
    assert failure is None and result["changed_keys"] == ["net.core.somaxconn"]
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"]["status"] == "ok"
    assert result["sysctls"]["net.ipv4.tcp_rmem"] == {
        "before": "4096 131072 6291456",
        "after": "4096 131072 6291456",
        "desired": "4096 131072 6291456",
        "status": "ok",
    }
    assert live(proc, "net/core/somaxconn") == "1024"
    assert "net.ipv4.tcp_fin_timeout = 60\n" in Path(p["sysctl_file"]).read_text()


# ---- the kernel's cross-key rule: ip_unprivileged_port_start <= low port of ip_local_port_range ----------------

START, RANGE = "net/ipv4/ip_unprivileged_port_start", "net/ipv4/ip_local_port_range"


class PortKernel(tcptune.live.ProcSys):
    """Refuses what the kernel refuses (EINVAL): a range whose low port is below the unprivileged start, and a start
    above the range's low port. Records the order of writes."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str]] = []

    def write(self, key: str, text: str) -> None:
        start = int(self.read("net.ipv4.ip_unprivileged_port_start").text or 0)
        low = int((self.read("net.ipv4.ip_local_port_range").text or "0").split()[0])
        if key == "net.ipv4.ip_local_port_range" and int(text.split()[0]) < start:
            raise tcptune.live.WriteFailed(key, "invalid", "EINVAL: low port below ip_unprivileged_port_start")
        if key == "net.ipv4.ip_unprivileged_port_start" and int(text) > low:
            raise tcptune.live.WriteFailed(key, "invalid", "EINVAL: start above the low port")
        if key == "net.ipv4.tcp_rmem" and text.startswith("1 "):
            raise tcptune.live.WriteFailed(key, "invalid", "the kernel rejected it")
        self.writes.append((key, text))
        super().write(key, text)


@pytest.fixture
def ports(proc: Path, monkeypatch: pytest.MonkeyPatch) -> list[PortKernel]:
    (proc / START).write_text("1024\n")
    (proc / RANGE).write_text("32768\t60999\n")
    made: list[PortKernel] = []

    def factory(root: str) -> PortKernel:
        made.append(PortKernel(root))
        return made[-1]

    monkeypatch.setattr(mod, "ProcSys", factory)
    return made


def test_lowering_the_unprivileged_start_is_written_before_the_port_range(proc: Path, ports: list) -> None:
    """Alphabetically ip_local_port_range comes first, and the kernel would refuse "600 60999" (EINVAL)."""
    settings = {"net.ipv4.ip_local_port_range": "600 60999", "net.ipv4.ip_unprivileged_port_start": 500}
    result, failure = mod.run(params(proc, settings), False)
    assert failure is None, failure
    assert [k for k, _ in ports[-1].writes] == ["net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_port_range"]
    assert result["changed_keys"] == ["net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_port_range"]
    assert live(proc, START) == "500" and live(proc, RANGE) == "600 60999"
    # ... and raising it again writes the range first, the start last
    result, failure = mod.run(
        params(proc, {"net.ipv4.ip_local_port_range": "32768 60999", "net.ipv4.ip_unprivileged_port_start": 1024}),
        False,
    )
    assert failure is None, failure
    assert [k for k, _ in ports[-1].writes] == ["net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start"]
    assert live(proc, START) == "1024" and live(proc, RANGE) == "32768 60999"


def test_the_module_writes_in_the_order_the_cli_plans(proc: Path, ports: list) -> None:
    from tcptune import plan as cli_plan

    settings = {
        "net.ipv4.ip_local_port_range": "600 60999",
        "net.ipv4.ip_unprivileged_port_start": "500",
        "net.core.somaxconn": "1024",
        "net.ipv4.tcp_fin_timeout": "15",
    }
    result, _ = mod.run(params(proc, settings), True)
    proc_sys = tcptune.live.ProcSys(str(proc))
    cli = cli_plan.plan(settings, proc_sys.read_many(settings))
    assert result["changed_keys"] == [c.key for c in cli.changes]


def test_a_failure_after_lowering_puts_both_port_keys_back_in_a_valid_order(proc: Path, ports: list) -> None:
    settings = {
        "net.ipv4.ip_local_port_range": "600 60999",
        "net.ipv4.ip_unprivileged_port_start": 500,
        "net.ipv4.tcp_rmem": "1 2 3",
    }
    result, failure = mod.run(params(proc, settings), False)
    assert failure and "every key written was put back" in failure
    assert {k: v["status"] for k, v in result["sysctls"].items()} == {
        "net.ipv4.ip_unprivileged_port_start": "restored",
        "net.ipv4.ip_local_port_range": "restored",
        "net.ipv4.tcp_rmem": "failed",
    }
    assert live(proc, START) == "1024" and live(proc, RANGE).split() == ["32768", "60999"]


# ---- the persisted file ---------------------------------------------------------------------------------------


def test_a_directory_at_the_sysctl_file_path_fails_cleanly_before_any_write(proc: Path) -> None:
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15"})
    Path(p["sysctl_file"]).mkdir(parents=True)
    result, failure = mod.run(p, False)
    assert failure and "directory" in failure and failure.startswith("nothing written")
    assert result["failed_keys"][p["sysctl_file"]]["reason"] == "error"
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"]["status"] == "not-written"
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


def test_an_unreadable_sysctl_file_fails_cleanly(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(mod, "read_file", refuse)
    result, failure = mod.run(params(proc, {"net.ipv4.tcp_fin_timeout": "15"}), True)
    assert failure and "permission denied" in failure and result["file_changed"] is False
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


def test_a_file_that_cannot_be_written_puts_the_live_values_back(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "atomic_write", broken)
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": "1024"})
    result, failure = mod.run(p, False)
    assert failure and "live values put back" in failure
    assert result["changed"] is False and result["file_changed"] is False
    assert {k: v["status"] for k, v in result["sysctls"].items()} == {
        "net.core.somaxconn": "restored",
        "net.ipv4.tcp_fin_timeout": "restored",
    }
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60" and live(proc, "net/core/somaxconn") == "4096"


def test_module_has_no_copies_of_shared_logic() -> None:
    source = Path(MODULE_SOURCE).read_text()
    assert "import re\n" not in source and ".split())" not in source
    assert "order_writes" in source and "write_all" in source and "has_unsafe_characters" in source
