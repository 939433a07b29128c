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
    return {"settings": settings, "persist": True, "sysctl_file": str(proc.parent / "sysctl.d" / "90-tcptune.conf"),
            "profile_name": "test", "fingerprint": "abc123", "proc_root": str(proc), **extra}


def live(proc: Path, rel: str) -> str:
    return (proc / rel).read_text().strip()


def test_writes_only_keys_that_differ_and_reports_before_and_after(proc: Path) -> None:
    result, failure = mod.run(params(proc, {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": 4096,
                                            "net.ipv4.tcp_rmem": "4096 131072 6291456"}), False)
    assert failure is None
    assert result["changed"] is True
    assert result["changed_keys"] == ["net.ipv4.tcp_fin_timeout"]
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"] == {"before": "60", "after": "15", "desired": "15",
                                                             "status": "changed"}
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


@pytest.mark.parametrize("key", ["../../etc/passwd", "net.ipv4..x", "net/ipv4/tcp_fin_timeout", "tcp_fin_timeout",
                                 "net.ipv4.tcp fin", ".net.ipv4"])
def test_refuses_anything_but_a_plain_dotted_key_name(proc: Path, key: str) -> None:
    _, failure = mod.run(params(proc, {key: "1", "net.ipv4.tcp_fin_timeout": "15"}), False)
    assert failure and "not a sysctl key name" in failure
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


@pytest.mark.parametrize("value", ["15\nnet.core.somaxconn = 1", "1\x00", None, {"a": 1}, ""])
def test_refuses_values_that_are_not_one_line(proc: Path, value: object) -> None:
    _, failure = mod.run(params(proc, {"net.ipv4.tcp_fin_timeout": value}), False)
    assert failure and "one line" in failure
    assert live(proc, "net/ipv4/tcp_fin_timeout") == "60"


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
    p = params(proc, {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": "1024", "net.ipv4.tcp_rmem": "1 2 3",
                      "net.ipv4.tcp_keepalive_time": "600"})
    result, failure = mod.run(p, False)
    assert failure and "every key written was put back" in failure
    assert result["failed_keys"] == {"net.ipv4.tcp_rmem": {"reason": "invalid", "message": "the kernel rejected it"}}
    statuses = {k: v["status"] for k, v in result["sysctls"].items()}
    assert statuses == {"net.core.somaxconn": "restored", "net.ipv4.tcp_fin_timeout": "restored",
                        "net.ipv4.tcp_keepalive_time": "restored", "net.ipv4.tcp_rmem": "failed"}
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
