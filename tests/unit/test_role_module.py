"""The role's module as shipped (library/tcptune_sysctl.py + module_utils/tcptune_core_<h>/ of a freshly rendered
role) against temporary /proc/sys trees, without Ansible running it: a thin adapter over tcptune's engine.

The differential test at the end runs the module and the CLI (``tcptune apply``) on identical generated trees and
checks they end identical: live values, the sysctl.d file, the generations, the exit class.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

import tcptune.live
import tcptune.values
from tcptune.ansible import render
from tcptune.cli import run as cli
from tcptune.load import load_valid

ROLE_DIR = Path(tempfile.mkdtemp(prefix="tcptune-module-test-"))
atexit.register(shutil.rmtree, ROLE_DIR, True)  # the loaded module reads it for the whole run; gone at the end


def _load_shipped_module() -> ModuleType:
    """Import the rendered module with its shipped core package registered where Ansible puts it."""
    import ansible.module_utils  # noqa: F401 - the package the core lives in on a host

    role = render.render_role(render.generic_spec(), ROLE_DIR)
    (package,) = (role / "module_utils").iterdir()
    name = f"ansible.module_utils.{package.name}"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec and spec.loader
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])
    spec = importlib.util.spec_from_file_location("tcptune_sysctl_shipped", role / "library" / "tcptune_sysctl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mod = _load_shipped_module()


def shipped(name: str) -> ModuleType:
    """A module of the shipped core package, as the module imported it."""
    return sys.modules[f"ansible.module_utils.{render.core_package()}.{name}"]


LIVE = {
    "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_rmem": "4096\t131072\t6291456",
    "net/core/somaxconn": "4096",
    "net/ipv4/tcp_keepalive_time": "7200",
}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host as a tree: proc/ (its /proc/sys), etc/sysctl.d/, state/."""
    for rel, text in LIVE.items():
        (tmp_path / "proc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "proc" / rel).write_text(text + "\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    return tmp_path


def params(host: Path, settings: dict | None = None, **extra: object) -> dict:
    p: dict[str, Any] = {name: option.get("default") for name, option in mod.ARGUMENT_SPEC.items()}
    p.update(
        settings=settings or {},
        proc_root=str(host / "proc"),
        state_dir=str(host / "state"),
        sysctl_file=str(host / "etc/sysctl.d/90-tcptune.conf"),
        sysctl_root=str(host),
        profile_name="test",
        fingerprint="abc123",
    )
    p.update(extra)
    return p


def live(host: Path, rel: str) -> str:
    return " ".join((host / "proc" / rel).read_text().split())


def history(host: Path) -> list[dict]:
    """``tcptune history --format json`` on the host's state directory: what an admin there sees."""
    return json.loads(_cli_json(["history", "--state-dir", str(host / "state")]))["generations"]


def _cli_json(args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", *args, "--format", "json"], capture_output=True, text=True, check=True
    )
    return proc.stdout


def test_the_module_is_a_thin_adapter_with_no_planner_of_its_own() -> None:
    for name in ("apply_changes", "put_back", "order_writes", "write_all", "check_input"):
        assert not hasattr(mod, name), name
    source = render.MODULE_SOURCE.read_text()
    for needle in ("write_all", "put_back", "order_writes", "atomic_write", ".write("):
        assert needle not in source, needle


def test_a_push_creates_a_generation_that_tcptune_history_lists(host: Path) -> None:
    result, failure, _ = mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 15, "net.core.somaxconn": 4096}), False)
    assert failure is None and result["changed"] is True and result["generation"] == 1
    assert result["changed_keys"] == ["net.ipv4.tcp_fin_timeout"]
    assert result["sysctls"]["net.ipv4.tcp_fin_timeout"] == {
        "before": "60",
        "after": "15",
        "desired": "15",
        "status": "changed",
    }
    assert live(host, "net/ipv4/tcp_fin_timeout") == "15"
    (gen,) = history(host)
    assert gen["generation"] == 1 and gen["kind"] == "apply" and gen["profile"] == "test"
    assert gen["values"] == {"net.core.somaxconn": "4096", "net.ipv4.tcp_fin_timeout": "15"}


def test_second_run_changes_nothing_and_records_no_generation(host: Path) -> None:
    p = params(host, {"net.ipv4.tcp_fin_timeout": 15, "net.ipv4.tcp_rmem": [4096, 131072, 4194304]})
    assert mod.run(p, False)[0]["changed"]
    second, failure, _ = mod.run(p, False)
    assert failure is None and second["changed"] is False and second["changed_keys"] == []
    assert second["generation"] == 1 and len(history(host)) == 1


def test_check_mode_plans_only(host: Path) -> None:
    result, failure, _ = mod.run(params(host, {"net.ipv4.tcp_fin_timeout": "15"}), True)
    assert failure is None and result["changed"] is True and result["file_changed"] is True
    assert result["generation"] == 1 and result["from_generation"] == 0
    assert live(host, "net/ipv4/tcp_fin_timeout") == "60"
    assert not (host / "etc/sysctl.d/90-tcptune.conf").exists() and not (host / "state").exists()
    assert result["diff"][0]["before"] == "net.ipv4.tcp_fin_timeout = 60\n"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"net.ipv4.tcp_fin_timeout": 9999}, "net.ipv4.tcp_fin_timeout: 9999 is out of range (valid: 1..600 seconds)"),
        ({"net.ipv4.tcp_tw_reuse": 7}, "net.ipv4.tcp_tw_reuse: 7 is not valid (one of 0, 1, 2"),
        ({"net.ipv4.tcp_fin_timeot": 15}, "net.ipv4.tcp_fin_timeot: unknown sysctl key (did you mean "),
        ({"net.ipv4.tcp_rmem": "1 2"}, "net.ipv4.tcp_rmem: expected 3 numbers, got 2"),
        ({"net.ipv4.tcp_fin_timeout": "15\nnet.core.somaxconn = 1"}, "newline or control character"),
        ({"../../etc/passwd": 1}, "../../etc/passwd: unknown sysctl key"),
        ({"net.ipv4.tcp_tw_recycle": 0}, "net.ipv4.tcp_tw_recycle: removed from the kernel in 4.12"),
    ],
)
def test_inventory_values_get_the_catalog_checks_of_a_profile_one_line_per_key(
    host: Path, settings: dict, problem: str
) -> None:
    result, failure, _ = mod.run(params(host, {**settings, "net.core.somaxconn": 1024}), False)
    assert failure is not None and problem in failure
    assert "\n" not in failure and len(failure) < 400
    assert result["reason"] == "invalid" and set(result["failed_keys"]) == set(settings)
    assert live(host, "net/core/somaxconn") == "4096" and not (host / "state").exists()


def test_every_bad_key_is_named_and_nothing_else(host: Path) -> None:
    _, failure, _ = mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 9999, "net.core.somaxconn": -5}), False)
    assert failure is not None
    assert failure.count("net.") == 2 and "Supported parameters" not in failure


def test_raw_keys_pass_only_when_listed_and_under_net(host: Path) -> None:
    (host / "proc/net/ipv4/tcp_thing").write_text("1\n")
    _, failure, _ = mod.run(params(host, {"net.ipv4.tcp_thing": 2}), False)
    assert failure and "unknown sysctl key" in failure
    _, failure, _ = mod.run(params(host, {"net.ipv4.tcp_thing": 2}, raw=["net.ipv4.tcp_thing"]), False)
    assert failure is None and live(host, "net/ipv4/tcp_thing") == "2"
    _, failure, _ = mod.run(params(host, {"kernel.x": 2}, raw=["kernel.x"]), False)
    assert failure and "must be under net." in failure


def test_a_read_only_key_fails_the_host_naming_it_and_writes_nothing(host: Path) -> None:
    ro = host / "proc/net/core/somaxconn"
    ro.chmod(0o444)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shipped("live"), "_writable", lambda path: bool(os.stat(path).st_mode & 0o222))
        result, failure, _ = mod.run(params(host, {"net.core.somaxconn": 1024, "net.ipv4.tcp_fin_timeout": 15}), False)
        assert failure and "net.core.somaxconn" in failure and result["reason"] == "read-only"
        assert result["failed_keys"]["net.core.somaxconn"]["reason"] == "read-only"
        assert result["sysctls"]["net.core.somaxconn"]["status"] == "read-only"
        assert live(host, "net/ipv4/tcp_fin_timeout") == "60"
        skipped, failure, warnings = mod.run(
            params(host, {"net.core.somaxconn": 1024, "net.ipv4.tcp_fin_timeout": 15}, skip_readonly=True), False
        )
        assert failure is None and skipped["changed_keys"] == ["net.ipv4.tcp_fin_timeout"]
        assert any("net.core.somaxconn" in w for w in warnings)


def test_a_value_the_kernel_does_not_keep_undoes_everything_as_the_cli_does(host: Path) -> None:
    class Clamping(shipped("live").ProcSys):  # type: ignore[misc,name-defined]
        def write(self, key: str, text: str) -> None:
            super().write(key, "300" if key == "net.core.somaxconn" and text == "100000" else text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shipped("target"), "ProcSys", Clamping)
        result, failure, _ = mod.run(
            params(host, {"net.core.somaxconn": "100000", "net.ipv4.tcp_fin_timeout": "15"}), False
        )
    assert failure and "the kernel keeps 300, expected 100000" in failure
    assert result["reason"] == "not-kept" and list(result["failed_keys"]) == ["net.core.somaxconn"]
    assert result["changed"] is False
    assert live(host, "net/core/somaxconn") == "4096" and live(host, "net/ipv4/tcp_fin_timeout") == "60"
    assert not (host / "etc/sysctl.d/90-tcptune.conf").exists()


def test_apply_rollback_reset_through_the_module(host: Path) -> None:
    mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 15}), False)
    mod.run(params(host, {"net.ipv4.tcp_keepalive_time": 600}), False)  # fin_timeout reverts to its baseline
    assert live(host, "net/ipv4/tcp_fin_timeout") == "60" and live(host, "net/ipv4/tcp_keepalive_time") == "600"
    result, failure, _ = mod.run(params(host, action="rollback", to=1), False)
    assert failure is None and result["generation"] == 3
    assert live(host, "net/ipv4/tcp_fin_timeout") == "15" and live(host, "net/ipv4/tcp_keepalive_time") == "7200"
    assert mod.run(params(host, action="rollback", to=1), False)[0]["changed"] is False  # twice: a no-op
    result, failure, _ = mod.run(params(host, action="reset"), False)
    assert failure is None and live(host, "net/ipv4/tcp_fin_timeout") == "60"
    assert not (host / "etc/sysctl.d/90-tcptune.conf").exists()
    assert [g["kind"] for g in history(host)] == ["reset", "rollback", "apply", "apply"]


def test_recover_without_a_pending_transaction_changes_nothing(host: Path) -> None:
    result, failure, _ = mod.run(params(host, action="recover"), False)
    assert failure is None and result["changed"] is False


# ---- owners: two roles on one host --------------------------------------------------------------------------------


def test_two_owners_share_the_host_both_persisted_and_both_settle(host: Path) -> None:
    web = params(host, {"net.ipv4.tcp_fin_timeout": 15}, owner="tcptune_web", profile_name="web")
    generic = params(host, {"net.ipv4.tcp_keepalive_time": 600}, owner="tcptune")
    for _ in range(2):
        mod.run(web, False)
        mod.run(generic, False)
    assert mod.run(web, False)[0]["changed"] is False and mod.run(generic, False)[0]["changed"] is False
    text = (host / "etc/sysctl.d/90-tcptune.conf").read_text()
    assert "net.ipv4.tcp_fin_timeout = 15" in text and "net.ipv4.tcp_keepalive_time = 600" in text
    assert live(host, "net/ipv4/tcp_fin_timeout") == "15" and live(host, "net/ipv4/tcp_keepalive_time") == "600"
    assert len(history(host)) == 2


def test_a_key_two_owners_want_differently_fails_the_second_naming_the_first(host: Path) -> None:
    mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 15}, owner="tcptune_web", profile_name="web"), False)
    result, failure, _ = mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 20}, owner="tcptune"), False)
    assert failure and "role tcptune_web (profile web) sets 15" in failure and result["reason"] == "conflict"
    assert live(host, "net/ipv4/tcp_fin_timeout") == "15"


def test_an_owner_dropping_a_key_reverts_it_unless_another_owner_keeps_it(host: Path) -> None:
    mod.run(params(host, {"net.ipv4.tcp_fin_timeout": 15, "net.core.somaxconn": 1024}, owner="a"), False)
    mod.run(params(host, {"net.core.somaxconn": 1024}, owner="b"), False)
    mod.run(params(host, {"net.ipv4.tcp_keepalive_time": 600}, owner="a"), False)
    assert live(host, "net/ipv4/tcp_fin_timeout") == "60"  # back to its baseline
    assert live(host, "net/core/somaxconn") == "1024"  # b keeps it


# ---- the shipped code runs on the oldest Python the role declares -------------------------------------------------


def _python(version: tuple[int, int]) -> str | None:
    for candidate in (
        shutil.which(f"python{version[0]}.{version[1]}"),
        *sorted(Path("/root/.pyenv/versions").glob(f"{version[0]}.{version[1]}.*/bin/python")),
    ):
        if not candidate:
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == f"{version[0]}.{version[1]}":
            return str(candidate)
    return None


@pytest.mark.parametrize("version", [render.MIN_HOST_PYTHON, (3, 9)])
def test_shipped_core_runs_on_the_declared_oldest_python(host: Path, version: tuple[int, int]) -> None:
    """The engine transaction of the shipped package, under that Python (meta/main.yml lists only such hosts)."""
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version[0]}.{version[1]} on this machine")
    (package,) = (ROLE_DIR / "tcptune" / "module_utils").iterdir()
    script = f"""
import sys, importlib
sys.path.insert(0, {str(package.parent)!r})
core = importlib.import_module({package.name!r})
from {package.name}.engine import Engine
from {package.name}.keyfacts import known_key, KEYS
from {package.name}.keycheck import kernel_text
from {package.name}.plan import Desired
from {package.name}.target import Target
text, problem = kernel_text(KEYS["net.ipv4.tcp_rmem"], "4096 131072 16MiB")
assert problem is None, problem
engine = Engine(Target({str(host / "proc")!r}, {str(host / "state")!r}, {str(host / "etc/sysctl.d")!r}, {str(host)!r}),
                known_key)
result = engine.execute(engine.plan_apply(Desired("old", "fp", {{"net.ipv4.tcp_rmem": text}})))
print(result.generation)
"""
    out = subprocess.run([python, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1" and live(host, "net/ipv4/tcp_rmem") == "4096 131072 16777216"


# ---- differential: the module and the CLI on identical trees ------------------------------------------------------

SEED = int(os.environ.get("TCPTUNE_TEST_SEED", "20260801"))
DIFFERENTIAL = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))

SHAPES = {
    "net.core.somaxconn": "int",
    "net.ipv4.tcp_fin_timeout": "int",
    "net.ipv4.tcp_keepalive_time": "int",
    "net.ipv4.ip_unprivileged_port_start": "int",
    "net.ipv4.tcp_rmem": "triple",
    "net.ipv4.ip_local_port_range": "pair",
    "net.ipv4.ip_local_reserved_ports": "portlist",
}
BOUNDS = {
    "net.ipv4.tcp_fin_timeout": (1, 600),
    "net.ipv4.tcp_keepalive_time": (1, 32767),
    "net.ipv4.ip_unprivileged_port_start": (0, 1000),
}


@st.composite
def value(draw: st.DrawFn, key: str) -> str:
    shape = SHAPES[key]
    if shape == "int":
        low, high = BOUNDS.get(key, (1, 70000))
        return str(draw(st.integers(low, high)))
    if shape == "triple":
        return " ".join(map(str, sorted(draw(st.lists(st.integers(4096, 70000), min_size=3, max_size=3)))))
    if shape == "pair":
        low = draw(st.integers(1024, 30000))
        return f"{low} {draw(st.integers(low + 1, 60999))}"
    ports = draw(st.lists(st.integers(1, 40), max_size=4))
    return tcptune.values.format_portlist(tcptune.values.parse_portlist(",".join(str(8000 + p) for p in ports)))


@st.composite
def steps(draw: st.DrawFn) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Live values of a tree, and 1..3 profiles applied one after another."""
    keys = sorted(SHAPES)
    start = {key: draw(value(key)) for key in keys}
    profiles = []
    for _ in range(draw(st.integers(1, 3))):
        chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
        profiles.append({key: draw(value(key)) for key in chosen})
    return start, profiles


def _tree(base: Path, start: dict[str, str]) -> None:
    for key, text in start.items():
        path = base / "proc" / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace(" ", "\t") + "\n")
    (base / "etc/sysctl.d").mkdir(parents=True)


def _outcome(base: Path) -> dict[str, Any]:
    proc = tcptune.live.ProcSys(str(base / "proc"))
    own = base / "etc/sysctl.d/90-tcptune.conf"
    generations = []
    for path in sorted((base / "state/generations").glob("*.json"), key=lambda p: int(p.stem)):
        doc = json.loads(path.read_text().replace(str(base), "<host>"))
        generations.append({k: doc[k] for k in ("generation", "kind", "values", "baseline", "file", "skipped")})
    return {
        "live": {key: " ".join((proc.read(key).text or "").split()) for key in SHAPES},
        "file": own.read_text() if own.exists() else None,
        "generations": generations,
    }


@DIFFERENTIAL
@seed(SEED)
@given(steps())
def test_module_and_cli_leave_identical_trees(case: tuple[dict[str, str], list[dict[str, str]]]) -> None:
    """The same profiles applied by the module and by 'tcptune apply' (then a rollback to generation 1 and a reset):
    the same live values, sysctl.d file and generations (values, baselines, file records) after every step."""
    note(f"seed {SEED} (set TCPTUNE_TEST_SEED to change it)")
    start, profiles = case
    with tempfile.TemporaryDirectory() as tmp:
        module_side, cli_side = Path(tmp, "module"), Path(tmp, "cli")
        _tree(module_side, start)
        _tree(cli_side, start)
        paths = ["--proc-root", str(cli_side / "proc"), "--state-dir", str(cli_side / "state")]
        paths += ["--sysctl-root", str(cli_side), "-y"]
        for number, profile in enumerate(profiles, start=1):
            name = f"p{number}"
            Path(tmp, f"{name}.yaml").write_text(
                f"name: {name}\nsettings:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in profile.items())
            )
            fingerprint = load_valid(str(Path(tmp, f"{name}.yaml"))).profile.fingerprint()
            _, failure, _ = mod.run(params(module_side, profile, profile_name=name, fingerprint=fingerprint), False)
            code = cli(["apply", str(Path(tmp, f"{name}.yaml")), *paths])
            assert (failure is None) == (code == 0), (failure, code)
            assert _outcome(module_side) == _outcome(cli_side)
        for action, args in (("rollback", ["--to", "1"]), ("reset", [])):
            _, failure, _ = mod.run(params(module_side, action=action, to=1 if args else None), False)
            code = cli([action, *args, *paths])
            assert (failure is None) == (code == 0), (action, failure, code)
            assert _outcome(module_side) == _outcome(cli_side)
