"""The real tcptune CLI against the real kernel, each test in its own throwaway network namespace.

Every test checks /proc/sys with its own reads, and the fixture proves the machine's own values did not move.
"""

from __future__ import annotations

import json
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


def journals(box: KernelSandbox) -> list[dict[str, object]]:
    out = box.run("history", "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


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
    assert sandbox.run("diff").returncode == 0  # the last applied profile


def test_second_apply_writes_nothing(sandbox: KernelSandbox) -> None:
    path = profile(sandbox)
    assert sandbox.run("apply", "--yes", path).returncode == 0
    again = sandbox.run("apply", "--yes", path)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert len(journals(sandbox)) == 1


def test_rollback_restores_the_previous_values_and_file(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    assert sandbox.run("apply", "--yes", profile(sandbox)).returncode == 0
    result = sandbox.run("rollback", "--yes")
    assert result.returncode == 0, result.stderr
    assert values(sandbox) == before
    assert not (sandbox.sysctl_dir / "90-tcptune.conf").exists()
    assert [(j["kind"], j["status"]) for j in journals(sandbox)] == [("apply", "rolled-back"), ("rollback", "complete")]


def test_failure_midway_restores_the_keys_already_written(sandbox: KernelSandbox) -> None:
    # The kernel refuses a port range whose low end is below ip_unprivileged_port_start. Validation cannot know
    # the live start (raised here), so the failure happens for real, after net.core.* were written.
    sandbox.write("net.ipv4.ip_unprivileged_port_start", "20000")
    before = values(sandbox, (*KEYS, "net.ipv4.ip_local_port_range"))
    text = PROFILE + '  net.ipv4.ip_local_port_range: "15000 60999"\n'
    result = sandbox.run("apply", "--yes", profile(sandbox, text))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "apply failed at net.ipv4.ip_local_port_range" in result.stderr
    assert "the low port must be at least net.ipv4.ip_unprivileged_port_start" in result.stderr
    assert "Errno" not in result.stderr
    assert "restored (net.core.somaxconn, net.core.optmem_max)" in result.stderr
    assert values(sandbox, (*KEYS, "net.ipv4.ip_local_port_range")) == before
    assert not (sandbox.sysctl_dir / "90-tcptune.conf").exists()
    (journal,) = journals(sandbox)
    assert journal["status"] == "failed"


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


def test_kill_9_mid_apply_then_rollback(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    apply = sandbox.start("apply", "--yes", profile(sandbox), TCPTUNE_TEST_WRITE_DELAY="0.5")
    # optmem_max is written first, somaxconn second: kill between the second and third write
    sandbox.wait_for(lambda: sandbox.read("net.core.somaxconn") == "1234")
    apply.send_signal(signal.SIGKILL)
    apply.wait(timeout=30)
    assert apply.returncode == -signal.SIGKILL
    assert sandbox.read("net.ipv4.tcp_keepalive_time") == before["net.ipv4.tcp_keepalive_time"]  # never reached

    history = sandbox.run("history")
    assert "was interrupted" in history.stderr and "tcptune rollback" in history.stderr
    refused = sandbox.run("apply", "--yes", profile(sandbox))
    assert refused.returncode == 1 and "rollback" in refused.stderr
    rolled = sandbox.run("rollback", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert values(sandbox) == before
    after = sandbox.run("history")
    assert "was interrupted" not in after.stderr
    assert [(j["kind"], j["status"]) for j in journals(sandbox)] == [("apply", "rolled-back"), ("rollback", "complete")]


def test_concurrent_applies_one_waits_for_nobody_and_fails_clearly(sandbox: KernelSandbox) -> None:
    first = sandbox.start("apply", "--yes", profile(sandbox), TCPTUNE_TEST_WRITE_DELAY="0.4")
    sandbox.wait_for(
        lambda: (
            any(Path(sandbox.state_dir, "journal").glob("*.pending.json"))
            if Path(sandbox.state_dir, "journal").exists()
            else False
        )
    )
    second = sandbox.run("apply", "--yes", profile(sandbox, PROFILE.replace("17", "19"), "other.yaml"))
    assert second.returncode == 1
    assert f"another tcptune apply or rollback is running (pid {first.pid})" in second.stderr
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert sandbox.read("net.ipv4.tcp_fin_timeout") == "17"
    assert len(journals(sandbox)) == 1


def test_diff_as_json_and_persistence_override_inside_the_namespace(sandbox: KernelSandbox) -> None:
    path = profile(sandbox)
    assert sandbox.run("apply", "--yes", path).returncode == 0
    later = sandbox.sysctl_dir / "99-local.conf"
    later.write_text("# local admin\nnet.ipv4.tcp_fin_timeout = 30\n")
    diff = sandbox.run("diff", "--format", "json", path)
    assert diff.returncode == 2
    rows = {row["key"]: row for row in json.loads(diff.stdout)["keys"]}
    boot = rows["net.ipv4.tcp_fin_timeout"]["boot"]
    assert (boot["file"], boot["line"], boot["value"]) == (str(later), 2, "30")
    assert boot["overrides"][0]["file"] == str(sandbox.sysctl_dir / "90-tcptune.conf")
    assert rows["net.ipv4.tcp_fin_timeout"]["status"] == "ok"


def test_a_sysctl_dir_that_cannot_be_written_leaves_the_kernel_as_it_was(sandbox: KernelSandbox) -> None:
    before = values(sandbox)
    read_only = (
        "import subprocess, sys; subprocess.run(['sh', '-c', "
        '\'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"\', sys.argv[1]], check=True)'
    )
    made = sandbox.python(read_only.replace("sys.argv[1]", repr(str(sandbox.sysctl_dir))))
    assert made.returncode == 0, made.stderr
    result = sandbox.run("apply", "--yes", profile(sandbox))
    assert result.returncode == 1, result.stdout + result.stderr
    own = sandbox.sysctl_dir / "90-tcptune.conf"
    assert f"could not write {own}: Read-only file system; the 5 changed key(s) were restored" in result.stderr
    assert values(sandbox) == before
    assert not own.exists()
    assert [j["status"] for j in journals(sandbox)] == ["failed"]


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
