"""The role's module (library/tcptune_sysctl.py) against a temporary /proc/sys tree, without Ansible running it.

Its ``module_utils`` imports are pointed at tcptune's own modules: the role ships byte-identical copies of them
(see test_role_render), so this is the code that runs on hosts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

import tcptune.live
import tcptune.persist
import tcptune.preflight
import tcptune.values
from tcptune import plan as cli_plan
from tcptune import target as target_module
from tcptune.ansible.render import MODULE_SOURCE
from tcptune.desired import known_key
from tcptune.engine import Engine
from tcptune.failures import CoreError, Undone
from tcptune.target import Target


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


# ---- differential: the module's planner, verify and put-back against tcptune's own ------------------------------
#
# The module still plans, verifies and puts back with code of its own (tcptune.plan and tcptune.apply do not ship
# to hosts). Generated desired values and /proc/sys-shaped trees go through both; where they must agree, they do.

SEED = int(os.environ.get("TCPTUNE_TEST_SEED", "20260801"))
DIFFERENTIAL = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))

SHAPES = {
    "net.core.somaxconn": "int",
    "net.core.rmem_max": "int",
    "net.ipv4.tcp_fin_timeout": "int",
    "net.ipv4.ip_unprivileged_port_start": "int",
    "net.ipv4.tcp_rmem": "triple",
    "net.ipv4.tcp_wmem": "triple",
    "net.ipv4.ip_local_port_range": "pair",
    "net.ipv4.ip_local_reserved_ports": "portlist",
    "net.ipv4.tcp_congestion_control": "string",
}
numbers = st.integers(0, 70000)


@st.composite
def kernel_value(draw: st.DrawFn, shape: str) -> str:
    """A value as tcptune writes it (what validate hands apply, and what a role passes the module)."""
    if shape == "int":
        return str(draw(numbers))
    if shape in ("triple", "pair"):
        count = 3 if shape == "triple" else 2
        return " ".join(map(str, sorted(draw(st.lists(numbers, min_size=count, max_size=count)))))
    if shape == "portlist":
        ports = draw(st.lists(st.integers(1, 40), max_size=5))
        return tcptune.values.format_portlist(tcptune.values.parse_portlist(",".join(str(8000 + p) for p in ports)))
    return draw(st.sampled_from(["cubic", "bbr", "reno"]))


@st.composite
def spelled(draw: st.DrawFn, value: str) -> str:
    """The same value as a kernel or a user may spell it: tabs, leading zeros, '+', ranges split into ports."""
    if value and all(t.isdigit() for t in value.split()):
        parts = [draw(st.sampled_from(["", "0", "00", "+"])) + t for t in value.split()]
        return draw(st.sampled_from([" ", "\t", "  "])).join(parts) + draw(st.sampled_from(["", " ", "\t"]))
    if value and set(value) <= set("0123456789,-"):
        ports = [p for lo, hi in tcptune.values.parse_portlist(value) for p in range(lo, hi + 1)]
        return draw(st.sampled_from([", ", ","])).join(map(str, draw(st.permutations(ports))))
    return draw(st.sampled_from(["", " "])) + value


LIVE_KINDS = ("same", "other", "missing", "group", "outside", "too long", "read-only same", "read-only other")
TOO_LONG = 64
"""live.MAX_VALUE_BYTES in these trees: a "too long" key holds more, and reads as unreadable."""


World = dict[str, tuple[str, str, str]]


@st.composite
def scenario(draw: st.DrawFn, kinds: tuple[str, ...] = LIVE_KINDS) -> World:
    """key -> (desired, live kind, live text), for 1..5 keys."""
    keys = draw(st.lists(st.sampled_from(sorted(SHAPES)), min_size=1, max_size=5, unique=True))
    out = {}
    for key in keys:
        desired = draw(kernel_value(SHAPES[key]))
        kind = draw(st.sampled_from(kinds))
        text = draw(spelled(desired)) if kind.endswith("same") else draw(kernel_value(SHAPES[key]))
        out[key] = (desired, kind, text)
    return out


def build_tree(root: Path, world: World) -> None:
    root.mkdir(parents=True)
    (root.parent / "outside").write_text("1\n")
    for key, (_desired, kind, text) in world.items():
        path = root.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "group":
            path.mkdir()
        elif kind == "outside":
            path.symlink_to(root.parent / "outside")
        elif kind == "too long":
            path.write_text("1" * (TOO_LONG + 1) + "\n")
        elif kind != "missing":
            path.write_text(text + "\n")
            if kind.startswith("read-only"):
                path.chmod(0o444)


def tree_values(root: Path, world: World) -> dict[str, str | None]:
    proc = tcptune.live.ProcSys(str(root))
    return {key: proc.read(key).text for key in world}


def writable_by_mode(path: str) -> bool:
    """Root may write any file of a temporary tree: here a key without write bits is the read-only one."""
    try:
        return bool(os.stat(path).st_mode & 0o222)
    except OSError:
        return False


@DIFFERENTIAL
@seed(SEED)
@given(scenario(), st.sampled_from(["as written", "spelled"]))
def test_the_module_plans_as_tcptune_plan_does(world: World, form: str) -> None:
    """Per-key status, blocked keys, the changes, their order and old values: the same for the same inputs."""
    note(f"seed {SEED} (set TCPTUNE_TEST_SEED to change it)")
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(tcptune.live, "_writable", writable_by_mode)
        patch.setattr(tcptune.live, "MAX_VALUE_BYTES", TOO_LONG)
        root = Path(tmp) / "proc"
        build_tree(root, world)
        proc = tcptune.live.ProcSys(str(root))
        desired = {key: d if form == "as written" else f" {d}\t" for key, (d, _kind, _text) in world.items()}
        wanted, problems = mod.check_input(proc, desired)
        results, changes, blocked = mod.plan(proc, wanted)
        cli = cli_plan.plan(desired, proc.read_many(desired))
        cli_status = {s.key: s.status for s in cli.keys}
        # a key that resolves outside the tree is refused as input by the module, unreadable to the CLI
        assert {k: cli_status[k] for k in problems} == {k: "unreadable" for k, w in world.items() if w[1] == "outside"}
        as_cli = {"changed": cli_plan.DIFFERS}
        assert {k: as_cli.get(r["status"], r["status"]) for k, r in results.items()} == {
            k: status for k, status in cli_status.items() if k not in problems
        }
        assert set(blocked) | set(problems) == {s.key for s in cli.blocked}
        assert [(key, old) for key, _new, old in changes] == [(c.key, c.old) for c in cli.changes]
        assert [new for _key, new, _old in changes] == [tcptune.values.canonical(c.new) for c in cli.changes]


class FaultyKernel(tcptune.live.ProcSys):
    """A tree that misbehaves as a kernel may, for one key: refuses the write, keeps another value, or refuses
    to take the old value back. Every write is logged (key, text), in order."""

    def __init__(self, root: str, fault: str, key: str | None, log: list[tuple[str, str]]) -> None:
        super().__init__(root)
        self.fault, self.key, self.log = fault, key, log

    def write(self, key: str, text: str) -> None:
        self.log.append((key, text))
        if key == self.key and self.fault == "refuse":
            raise tcptune.live.WriteFailed(key, "invalid", "the kernel rejected it")
        if key == self.key and self.fault == "refuse put-back" and sum(k == key for k, _ in self.log) > 1:
            raise tcptune.live.WriteFailed(key, "busy", "the kernel reports the setting as busy")
        if key == self.key and self.fault == "clamp" and sum(k == key for k, _ in self.log) == 1:
            text = "12345"  # the new value only: the old one is within what the kernel keeps
        super().write(key, text)


FAULTS = ("none", "refuse", "clamp", "file", "file + refuse put-back")


def run_module(root: Path, sysctl_dir: Path, world: World, fault: str, key: str | None) -> dict:
    log: list[tuple[str, str]] = []
    desired = {k: d for k, (d, _kind, _text) in world.items()}
    own = str(sysctl_dir / "90-tcptune.conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mod, "ProcSys", lambda r: FaultyKernel(r, fault.removeprefix("file + "), key, log))
        if fault.startswith("file"):
            patch.setattr(mod, "atomic_write", failing_write(own, tcptune.persist.atomic_write))
        p = {
            "settings": desired,
            "persist": True,
            "sysctl_file": own,
            "profile_name": "diff",
            "fingerprint": "fp",
            "proc_root": str(root),
        }
        result, failure = mod.run(p, False)
    exit_code = 0 if failure is None else 3 if result["changed"] else 1
    not_kept = sorted(k for k, v in result.get("failed_keys", {}).items() if v["reason"] == "not-kept")
    statuses = {k: v["status"] for k, v in result["sysctls"].items()}
    return {"exit": exit_code, "writes": log, "not_kept": not_kept, "statuses": statuses}


def run_cli(root: Path, sysctl_dir: Path, state: Path, world: World, fault: str, key: str | None) -> dict:
    """The engine the CLI runs: apply as one transaction."""
    log: list[tuple[str, str]] = []
    desired = cli_plan.Desired("diff", "fp", {k: d for k, (d, _kind, _text) in world.items()})
    target = Target(str(root), str(state), str(sysctl_dir), str(sysctl_dir.parent))
    engine = Engine(target, known_key)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(target_module, "ProcSys", lambda r: FaultyKernel(r, fault.removeprefix("file + "), key, log))
        # Kernel preflight (the engine's; this module predates it) judges writes by the real kernel's rules, which
        # this tree of plain files does not have: compared here are the writes, verification and put-back.
        patch.setattr(tcptune.preflight, "check", lambda *_args, **_kw: {})
        if fault.startswith("file"):
            patch.setattr(tcptune.persist, "atomic_write", failing_write(target.own_file, tcptune.persist.atomic_write))
        try:
            engine.execute(engine.plan_apply(desired))
        except Undone as exc:
            # "key: the kernel keeps X, expected Y; every change was undone": a value the kernel did not keep
            kept = str(exc).split(": the kernel keeps ", 1)
            return {"exit": exc.exit_code, "writes": log, "not_kept": [kept[0]] if len(kept) == 2 else []}
        except CoreError as exc:
            return {"exit": exc.exit_code, "writes": log, "not_kept": []}
    return {"exit": 0, "writes": log, "not_kept": []}


def failing_write(path: str, real: Callable[[str, str, int], None]) -> Callable[..., None]:
    """atomic_write, failing (ENOSPC) for the sysctl.d file only."""

    def write(target_path: str, text: str, mode: int = 0o644) -> None:
        if target_path == path:
            raise OSError(28, "No space left on device")
        real(target_path, text, mode)

    return write


@DIFFERENTIAL
@seed(SEED)
@given(
    scenario(kinds=("same", "other", "other", "other", "missing", "outside", "too long", "read-only other")),
    st.sampled_from(FAULTS),
    st.integers(0, 4),
)
def test_the_module_writes_verifies_and_puts_back_as_apply_does(world: World, fault: str, which: int) -> None:
    """The same writes in the same order (restores included), the same live values and sysctl.d file after, the
    same class of outcome (0 ok, 1 failed and put back, 3 something could not be put back), and the same clamp
    policy: a value the kernel does not keep puts every key back and writes no file (exit 1).
    """
    note(f"seed {SEED} (set TCPTUNE_TEST_SEED to change it)")
    key = sorted(world)[which % len(world)] if fault != "none" else None
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(tcptune.live, "_writable", writable_by_mode)
        patch.setattr(tcptune.live, "MAX_VALUE_BYTES", TOO_LONG)
        base = Path(tmp)
        for side in ("module", "cli"):
            build_tree(base / side / "proc", world)
            (base / side / "etc/sysctl.d").mkdir(parents=True)
        before = tree_values(base / "module" / "proc", world)
        module = run_module(base / "module" / "proc", base / "module" / "etc/sysctl.d", world, fault, key)
        cli = run_cli(base / "cli" / "proc", base / "cli" / "etc/sysctl.d", base / "state", world, fault, key)
        for side, outcome in (("module", module), ("cli", cli)):
            own = base / side / "etc/sysctl.d/90-tcptune.conf"
            outcome["live"] = tree_values(base / side / "proc", world)
            outcome["file"] = own.read_text() if own.exists() else None
    assert_statuses_are_true(module, before, world)
    assert module["not_kept"] == cli["not_kept"]
    if cli["not_kept"]:
        assert module["live"] == before and module["file"] is None
    assert module["writes"] == cli["writes"]
    assert module["live"] == cli["live"]
    assert module["file"] == cli["file"]
    assert module["exit"] == cli["exit"]


def assert_statuses_are_true(module: dict, before: dict[str, str | None], world: World) -> None:
    """What the module reports per key is what the tree holds after it."""
    for key, status in module["statuses"].items():
        now = module["live"][key]
        if status in ("restored", "failed", "not-written", "read-only"):
            assert now == before[key], (key, status)
        elif status == "restore-failed":
            assert now != before[key], (key, status)
        elif status in ("changed", "ok"):
            assert tcptune.values.same(now, world[key][0]), (key, status)
