"""The real tcptune CLI against the real kernel, each test in its own throwaway network namespace.

Every test checks /proc/sys with its own reads, and the fixture proves the machine's own values did not move.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kernel_sandbox import KernelSandbox, host_value

pytestmark = [pytest.mark.slow, pytest.mark.netns]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "profiles"

# keys written below, in the order tcptune writes them (sorted; see live.order_writes)
KEYS = (
    "net.core.optmem_max",
    "net.core.somaxconn",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
)
GUARDED = (
    *KEYS,
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_app_win",
    "net.core.rmem_max",
    "kernel.pid_max",
)

PROFILE = """\
name: tt3-kernel
settings:
  net.core.optmem_max: 65536
  net.core.somaxconn: 1234
  net.ipv4.tcp_fin_timeout: 17
  net.ipv4.tcp_keepalive_time: 600
  net.ipv4.tcp_rmem: [4096, 65536, 4194304]
"""


@pytest.fixture
def sandbox() -> Iterator[KernelSandbox]:
    before = {key: host_value(key) for key in GUARDED}
    box = KernelSandbox()
    try:
        yield box
    finally:
        box.close()
        assert {key: host_value(key) for key in GUARDED} == before, "the machine's own sysctls changed"


def profile(box: KernelSandbox, text: str = PROFILE, name: str = "p.yaml") -> str:
    path = box.dir / name
    path.write_text(text)
    return str(path)


def values(box: KernelSandbox, keys: tuple[str, ...] = KEYS) -> dict[str, str]:
    return {key: " ".join(box.read(key).split()) for key in keys}


def generations(box: KernelSandbox) -> list[dict[str, object]]:
    """``history --format json``'s generations, newest first."""
    out = box.run("history", "--format", "json")
    assert out.returncode == 0, out.stderr
    found: list[dict[str, object]] = json.loads(out.stdout)["generations"]
    return found


def traced(box: KernelSandbox, strace: list[str], *args: str, background: bool = False) -> object:
    """The CLI inside the namespace under ``strace`` (its output discarded): slowed or failing system calls
    injected from outside the product, e.g. ``-e inject=write:delay_enter=300000 -P /proc/sys/...``."""
    command = [*box._enter(), "strace", "-f", "-qq", "-o", "/dev/null", *strace, box.exe, *args]
    if background:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=box.env()
        )
        box._children.append(child)
        return child
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=box.env(), timeout=120)


def slow_writes(seconds: float) -> list[str]:
    """Each write(2) to one of KEYS in /proc/sys waits ``seconds`` first."""
    paths = [arg for key in KEYS for arg in ("-P", "/proc/sys/" + key.replace(".", "/"))]
    return ["-e", "trace=write", "-e", f"inject=write:delay_enter={int(seconds * 1e6)}", *paths]


def holder_pid(box: KernelSandbox) -> int:
    """tcptune's own pid (not strace's), from the pending record it wrote before its first change."""
    return int(json.loads((box.state_dir / "pending.json").read_text())["pid"])


def test_apply_sets_the_namespace_and_diff_is_clean_afterwards(sandbox: KernelSandbox) -> None:
    path = profile(sandbox)
    assert sandbox.run("diff", path).returncode == 2
    result = sandbox.run("apply", "--yes", path)
    assert result.returncode == 0, result.stderr
    assert values(sandbox) == {
        "net.core.optmem_max": "65536",
        "net.core.somaxconn": "1234",
        "net.ipv4.tcp_fin_timeout": "17",
        "net.ipv4.tcp_keepalive_time": "600",
        "net.ipv4.tcp_rmem": "4096 65536 4194304",
    }
    assert "\t" in sandbox.read("net.ipv4.tcp_rmem")  # the kernel prints tabs; diff must not call that drift
    persisted = (sandbox.sysctl_dir / "90-tcptune.conf").read_text()
    assert "# profile: tt3-kernel" in persisted and "net.ipv4.tcp_fin_timeout = 17" in persisted
    diff = sandbox.run("diff", path)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert sandbox.run("diff").returncode == 0  # the current generation's values


def test_second_apply_writes_nothing(sandbox: KernelSandbox) -> None:
    path = profile(sandbox)
    assert sandbox.run("apply", "--yes", path).returncode == 0
    again = sandbox.run("apply", "--yes", path)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert len(generations(sandbox)) == 1


SMALL = """\
name: tt3-small
settings:
  net.ipv4.tcp_fin_timeout: 23
"""


def test_switching_profiles_reverts_the_dropped_keys_to_their_baseline(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    assert sandbox.run("apply", "--yes", profile(sandbox)).returncode == 0
    switched = sandbox.run("apply", "--yes", profile(sandbox, SMALL, "small.yaml"))
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert "4 to revert to their baseline" in switched.stdout
    assert values(sandbox) == dict(before, **{"net.ipv4.tcp_fin_timeout": "23"})
    persisted = (sandbox.sysctl_dir / "90-tcptune.conf").read_text()
    assert "tcp_fin_timeout = 23" in persisted and "somaxconn" not in persisted
    diff = sandbox.run("diff")
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_rollback_to_a_generation_and_back_and_to_n_twice(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    assert sandbox.run("apply", "--yes", profile(sandbox)).returncode == 0
    web = values(sandbox)
    web_file = (sandbox.sysctl_dir / "90-tcptune.conf").read_text()
    assert sandbox.run("apply", "--yes", profile(sandbox, SMALL, "small.yaml")).returncode == 0
    to_1 = sandbox.run("rollback", "--to", "1", "--yes")
    assert to_1.returncode == 0, to_1.stderr
    assert values(sandbox) == web and (sandbox.sysctl_dir / "90-tcptune.conf").read_text() == web_file
    again = sandbox.run("rollback", "--to", "1", "--yes")
    assert again.returncode == 0 and "up to date" in again.stdout
    assert [(g["generation"], g["kind"], g["target"]) for g in generations(sandbox)] == [
        (3, "rollback", 1),
        (2, "apply", None),
        (1, "apply", None),
    ]
    assert sandbox.run("rollback", "--to", "0", "--yes").returncode == 0
    assert values(sandbox) == before and not (sandbox.sysctl_dir / "90-tcptune.conf").exists()


def test_reset_restores_the_baseline_and_the_file_that_was_there(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    own = sandbox.sysctl_dir / "90-tcptune.conf"
    own.write_text("# there before tcptune\nnet.ipv4.tcp_fin_timeout = 45\n")
    assert sandbox.run("apply", "--yes", profile(sandbox)).returncode == 0
    baseline = json.loads(sandbox.run("history", "--baseline", "-f", "json").stdout)
    assert baseline["baseline"]["net.ipv4.tcp_fin_timeout"]["live"] == before["net.ipv4.tcp_fin_timeout"]
    reset = sandbox.run("reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert values(sandbox) == before
    assert own.read_text() == "# there before tcptune\nnet.ipv4.tcp_fin_timeout = 45\n"
    assert generations(sandbox)[0]["kind"] == "reset"


def test_failure_midway_restores_the_keys_already_written(sandbox: KernelSandbox) -> None:
    # tcp_app_win takes 0..31; as a raw: key (unchecked by the catalog, its bounds unknown to kernel preflight) 32
    # gets as far as the kernel, which refuses it after net.core.* were written.
    before = values(sandbox, (*KEYS, "net.ipv4.tcp_app_win"))
    text = PROFILE + "raw:\n  net.ipv4.tcp_app_win: 32\n"
    result = sandbox.run("apply", "--yes", profile(sandbox, text))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "apply failed at net.ipv4.tcp_app_win" in result.stderr
    assert "the kernel rejected '32' as invalid" in result.stderr
    assert "Errno" not in result.stderr
    assert "restored (net.core.somaxconn, net.core.optmem_max); nothing is changed" in result.stderr
    assert values(sandbox, (*KEYS, "net.ipv4.tcp_app_win")) == before
    assert not (sandbox.sysctl_dir / "90-tcptune.conf").exists()
    assert generations(sandbox) == [] and not (sandbox.state_dir / "pending.json").exists()


def test_a_port_range_the_live_start_forbids_is_refused_before_any_write(sandbox: KernelSandbox) -> None:
    # The kernel refuses a port range whose low end is below ip_unprivileged_port_start. Validation cannot know
    # the live start (raised here); kernel preflight does, and nothing is written: not even with --dry-run.
    sandbox.write("net.ipv4.ip_unprivileged_port_start", "20000")
    before = values(sandbox, (*KEYS, "net.ipv4.ip_local_port_range"))
    text = PROFILE + '  net.ipv4.ip_local_port_range: "15000 60999"\n'
    diff = sandbox.run("diff", "--live-only", "--format", "json", profile(sandbox, text))
    assert diff.returncode == 2
    rows = {row["key"]: row for row in json.loads(diff.stdout)["keys"]}
    assert rows["net.ipv4.ip_local_port_range"]["status"] == "refused"
    assert "ip_unprivileged_port_start (20000)" in rows["net.ipv4.ip_local_port_range"]["note"]
    assert rows["net.ipv4.ip_local_port_range"]["preflight"]["outcome"] == "refused"
    assert sandbox.run("apply", "--dry-run", profile(sandbox, text)).returncode == 1
    result = sandbox.run("apply", "--yes", profile(sandbox, text))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was changed" in result.stderr
    assert "net.ipv4.ip_local_port_range: refused by this kernel" in result.stderr
    assert values(sandbox, (*KEYS, "net.ipv4.ip_local_port_range")) == before
    assert generations(sandbox) == [] and not (sandbox.sysctl_dir / "90-tcptune.conf").exists()


def test_a_global_key_is_read_only_here_and_refused_before_any_write(sandbox: KernelSandbox) -> None:
    before = values(sandbox, (*KEYS, "net.core.rmem_max"))
    path = profile(sandbox, PROFILE + "  net.core.rmem_max: 8388608\n")
    diff = sandbox.run("diff", "--format", "json", path)
    assert diff.returncode == 2
    rows = {row["key"]: row for row in json.loads(diff.stdout)["keys"]}
    assert rows["net.core.rmem_max"]["status"] == "read-only"
    assert "set it on the host" in rows["net.core.rmem_max"]["note"]
    result = sandbox.run("apply", "--yes", path)
    assert result.returncode == 1
    assert "net.core.rmem_max: read-only here" in result.stderr and "Errno" not in result.stderr
    assert values(sandbox, (*KEYS, "net.core.rmem_max")) == before
    skipped = sandbox.run("apply", "--yes", "--skip-readonly", path)
    assert skipped.returncode == 0, skipped.stderr
    assert sandbox.read("net.ipv4.tcp_fin_timeout") == "17"
    assert sandbox.read("net.core.rmem_max") == before["net.core.rmem_max"]
    assert "-net.core.rmem_max = 8388608" in (sandbox.sysctl_dir / "90-tcptune.conf").read_text()


def test_a_real_write_to_a_global_key_fails_as_read_only_and_the_rest_is_restored(sandbox: KernelSandbox) -> None:
    """The write path itself (not the planner) against the kernel: EACCES on net.core.rmem_max in a child netns."""
    before = values(sandbox, ("net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.core.rmem_max"))
    code = (
        "import json; from tcptune.live import ProcSys, write_all\n"
        "p = ProcSys()\n"
        "old = {k: p.read(k).text for k in ('net.core.somaxconn', 'net.ipv4.tcp_fin_timeout', 'net.core.rmem_max')}\n"
        "o = write_all(p, [('net.core.somaxconn', '999', old['net.core.somaxconn']),"
        " ('net.ipv4.tcp_fin_timeout', '23', old['net.ipv4.tcp_fin_timeout']),"
        " ('net.core.rmem_max', '8388608', old['net.core.rmem_max'])])\n"
        "print(json.dumps({'failed': o.failed, 'restored': o.restored, 'restore_failed': o.restore_failed}))\n"
    )
    out = sandbox.python(code)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    key, reason, message = result["failed"]
    assert (key, reason) == ("net.core.rmem_max", "read-only")
    assert "set it on the host" in message
    assert result["restored"] == ["net.ipv4.tcp_fin_timeout", "net.core.somaxconn"]
    assert values(sandbox, ("net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.core.rmem_max")) == before


def test_kill_9_mid_apply_then_recover(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    apply = traced(sandbox, slow_writes(0.5), "apply", "--yes", profile(sandbox), background=True)
    # optmem_max is written first, somaxconn second: kill between the second and third write
    sandbox.wait_for(lambda: sandbox.read("net.core.somaxconn") == "1234")
    os.kill(holder_pid(sandbox), signal.SIGKILL)
    apply.wait(timeout=30)  # type: ignore[attr-defined]
    assert sandbox.read("net.ipv4.tcp_keepalive_time") == before["net.ipv4.tcp_keepalive_time"]  # never reached

    history = sandbox.run("history")
    assert "an interrupted apply (generation 0 -> 1" in history.stderr and "tcptune recover" in history.stderr
    refused = sandbox.run("apply", "--yes", profile(sandbox))
    assert refused.returncode == 1 and "tcptune recover" in refused.stderr
    recovered = sandbox.run("recover", "--yes")
    assert recovered.returncode == 0, recovered.stderr
    assert "returned to generation 0: restored 2 key(s) (net.core.somaxconn, net.core.optmem_max)" in recovered.stdout
    assert values(sandbox) == before
    after = sandbox.run("history")
    assert "interrupted" not in after.stderr and generations(sandbox) == []
    assert sorted(p.name for p in sandbox.state_dir.iterdir()) == ["generations", "lock"]


def test_concurrent_transactions_one_runs_even_with_the_lock_file_deleted(sandbox: KernelSandbox) -> None:
    first = traced(sandbox, slow_writes(0.4), "apply", "--yes", profile(sandbox), background=True)
    sandbox.wait_for(lambda: (sandbox.state_dir / "pending.json").exists())
    pid = holder_pid(sandbox)
    (sandbox.state_dir / "lock").unlink()
    for argv in (
        ("apply", "--yes", profile(sandbox, PROFILE.replace("17", "19"), "other.yaml")),
        ("rollback", "--yes"),
        ("reset", "--yes"),
        ("recover", "--yes"),
    ):
        second = sandbox.run(*argv)
        assert second.returncode == 1, (argv, second.stdout, second.stderr)
        assert "another tcptune apply, rollback, reset or recover is running" in second.stderr, argv
    history = sandbox.run("history")
    assert "interrupted" not in history.stderr  # a running transaction is not called interrupted
    _out, err = first.communicate(timeout=120)  # type: ignore[attr-defined]
    assert first.returncode == 0, err  # type: ignore[attr-defined]
    assert sandbox.read("net.ipv4.tcp_fin_timeout") == "17"
    assert [g["generation"] for g in generations(sandbox)] == [1] and pid > 0


def test_diff_as_json_and_persistence_override_inside_the_namespace(sandbox: KernelSandbox) -> None:
    path = profile(sandbox)
    assert sandbox.run("apply", "--yes", path).returncode == 0
    unknown = sandbox.run("diff", path)  # the sysroot has no init to tell which program applies sysctl.d at boot
    assert unknown.returncode == 0, unknown.stdout + unknown.stderr
    assert "of 5 key(s) cannot be predicted" in unknown.stderr and "unknown for every key" in unknown.stdout
    assert sandbox.run("diff", "--boot-applier", "systemd", path).returncode == 0
    later = sandbox.sysctl_dir / "99-local.conf"
    later.write_text("# local admin\nnet.ipv4.tcp_fin_timeout = 30\n")
    reapplied = sandbox.run("apply", "--yes", "--boot-applier", "procps", profile(sandbox, PROFILE.replace("17", "18")))
    assert f"warning: net.ipv4.tcp_fin_timeout: {later}:2 sets 30 and overrides " in reapplied.stdout
    assert sandbox.run("apply", "--yes", path).returncode == 0
    diff = sandbox.run("diff", "--format", "json", "--boot-applier", "systemd", path)
    assert diff.returncode == 2
    rows = {row["key"]: row for row in json.loads(diff.stdout)["keys"]}
    boot = rows["net.ipv4.tcp_fin_timeout"]["boot"]
    assert (boot["file"], boot["line"], boot["value"]) == (str(later), 2, "30")
    assert boot["overrides"][0]["file"] == str(sandbox.sysctl_dir / "90-tcptune.conf")
    assert rows["net.ipv4.tcp_fin_timeout"]["status"] == "ok"


def test_a_read_only_sysctl_dir_is_refused_before_any_write(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    read_only = (
        "import subprocess, sys; subprocess.run(['sh', '-c', "
        """'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"', sys.argv[1]], check=True)"""
    )
    made = sandbox.python(read_only.replace("sys.argv[1]", repr(str(sandbox.sysctl_dir))))
    assert made.returncode == 0, made.stderr
    result = sandbox.run("apply", "--yes", profile(sandbox))
    assert result.returncode == 1, result.stdout + result.stderr
    own = sandbox.sysctl_dir / "90-tcptune.conf"
    assert f"cannot write {own}: {sandbox.sysctl_dir} is not writable; nothing was changed" in result.stderr
    assert values(sandbox) == before and not own.exists() and generations(sandbox) == []


def test_a_sysctl_file_that_cannot_be_written_puts_the_kernel_back(sandbox: KernelSandbox) -> None:
    """The rename onto 90-tcptune.conf fails (injected with strace: the transaction's second rename, after the
    pending record's): every written key is restored, and no temporary file is left behind."""
    before = values(sandbox)
    own = sandbox.sysctl_dir / "90-tcptune.conf"
    fail_rename = ["-e", "trace=rename", "-e", "inject=rename:error=EIO:when=2"]
    result = traced(sandbox, fail_rename, "apply", "--yes", profile(sandbox))
    assert result.returncode == 1, result.stdout + result.stderr  # type: ignore[attr-defined]
    assert (
        f"could not write {own}: input/output error; the 5 changed key(s) were restored" in result.stderr  # type: ignore[attr-defined]
    )
    assert values(sandbox) == before and not own.exists() and generations(sandbox) == []
    assert sorted(p.name for p in sandbox.sysctl_dir.iterdir()) == []  # no temporary file left behind


def test_the_port_edges_validate_accepts_are_the_kernels(sandbox: KernelSandbox) -> None:
    """The low local port may equal ip_unprivileged_port_start, 65535 is the highest reservable port and 65536 is
    refused, and the kernel prints adjacent reserved ports as one range (so "8080,8081" is no drift)."""
    path = profile(sandbox, (FIXTURES / "good" / "port-edges.yaml").read_text())
    assert sandbox.run("validate", path).returncode == 0
    result = sandbox.run("apply", "--yes", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox.read("net.ipv4.ip_unprivileged_port_start") == "2000"
    assert sandbox.read("net.ipv4.ip_local_port_range").split() == ["2000", "60999"]
    assert sandbox.read("net.ipv4.ip_local_reserved_ports") == "8080-8081,65535"
    diff = sandbox.run("diff", path)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    with pytest.raises(subprocess.CalledProcessError):
        sandbox.write("net.ipv4.ip_local_reserved_ports", "65536")
    assert sandbox.read("net.ipv4.ip_local_reserved_ports") == "8080-8081,65535"
    too_high = profile(sandbox, (FIXTURES / "bad" / "reserved-port-65536.yaml").read_text(), "bad.yaml")
    assert sandbox.run("validate", too_high).returncode == 1
