"""diff's after-reboot view (boot applier detected or chosen, unknown kept apart from drift), apply's override
warning, and diff --format prometheus, through the real entry point on temporary /proc/sys and sysctl.d trees."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tcptune.cli import run

FIN, KEEPALIVE = "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_time"
LIVE = {
    "net/ipv4/tcp_mem": "1\t2\t3",  # a host-wide key: this tree is the initial namespace, its keys are all there
    "net/ipv4/tcp_fin_timeout": "15",
    "net/ipv4/tcp_keepalive_time": "100",
    "net/ipv4/tcp_keepalive_intvl": "75",
    "net/core/somaxconn": "4096",
}
PROFILE = f"name: tt10-boot\nsettings:\n  {FIN}: 15\n  {KEEPALIVE}: 100\n"
DEBIAN = {
    "lib/systemd/systemd": "",
    "lib/systemd/systemd-sysctl": "",
    "lib/systemd/system/systemd-sysctl.service": "",
    "usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so": "",
    "var/lib/dpkg/status": "Package: systemd\nStatus: install ok installed\nVersion: 252.38-1~deb12u1\n",
}


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.state = root / "state"
        self.sysroot = root / "sysroot"
        self.own = self.sysroot / "etc/sysctl.d/90-tcptune.conf"
        self.profile = root / "boot.yaml"

    def file(self, rel: str, text: str) -> Path:
        path = self.sysroot / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def debian_image(self) -> None:
        for rel, text in DEBIAN.items():
            self.file(rel, text)
        (self.sysroot / "sbin").mkdir(parents=True, exist_ok=True)
        (self.sysroot / "sbin/init").symlink_to("/lib/systemd/systemd")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    for rel, text in LIVE.items():
        (e.proc / rel).parent.mkdir(parents=True, exist_ok=True)
        (e.proc / rel).write_text(text + "\n")
    (e.sysroot / "etc/sysctl.d").mkdir(parents=True)
    e.profile.write_text(PROFILE)
    monkeypatch.setenv("TCPTUNE_PROC_ROOT", str(e.proc))
    monkeypatch.setenv("TCPTUNE_STATE_DIR", str(e.state))
    monkeypatch.setenv("TCPTUNE_SYSCTL_ROOT", str(e.sysroot))
    for name in ("TCPTUNE_SYSCTL_DIR", "TCPTUNE_BOOT_APPLIER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - closed by pytest at exit
    return e


def boot_rows(data: dict) -> dict:  # type: ignore[type-arg]
    return {row["key"]: row["boot"] for row in data["keys"]}


# ---- which applier -----------------------------------------------------------------------------------------------


def test_diff_says_which_applier_it_detected_in_the_image(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.debian_image()
    env.file("etc/sysctl.d/50-x.conf", f"{FIN} = 15\n{KEEPALIVE} = 100\n")
    assert run(["diff", str(env.profile)]) == 0
    out = capsys.readouterr().out
    assert "after reboot, by systemd-sysctl 252 (252.38-1~deb12u1): every key as desired" in out
    assert run(["diff", "--format", "json", str(env.profile)]) == 0
    applier = json.loads(capsys.readouterr().out)["boot_applier"]
    assert (applier["name"], applier["version"]) == ("systemd", "252 (252.38-1~deb12u1)")
    assert applier["how"] == "systemd (/sbin/init) starts /lib/systemd/system/systemd-sysctl.service " + (
        "(/lib/systemd/systemd-sysctl)"
    )
    assert applier["reads_own_file"] is True


def test_boot_applier_chooses_and_procps_reads_etc_sysctl_conf_where_systemd_does_not(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.file("etc/sysctl.conf", f"{FIN} = 15\n{KEEPALIVE} = 100\n")
    assert run(["diff", "--boot-applier", "procps", str(env.profile)]) == 0
    assert "after reboot, by procps sysctl --system: every key as desired" in capsys.readouterr().out
    assert run(["diff", "--boot-applier", "systemd", str(env.profile)]) == 2
    out = capsys.readouterr().out
    assert "after reboot, by systemd-sysctl:" in out
    assert f"not persisted (all keys), the kernel default returns: {FIN}, {KEEPALIVE}" in out
    assert run(["diff", "--format", "json", "--boot-applier", "systemd", str(env.profile)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["boot_applier"]["how"] == "chosen with --boot-applier"
    assert data["summary"]["boot_not_persisted"] == 2 and data["summary"]["boot_unknown"] == 0


def test_a_glob_sets_the_keys_it_matches_and_an_explicit_key_beats_it(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.file("etc/sysctl.d/20-glob.conf", "net.ipv4.tcp_keepalive_* = 100\n")
    env.file("etc/sysctl.d/30-fin.conf", f"{FIN} = 15\n")
    for applier in ("systemd", "procps"):
        assert run(["diff", "--boot-applier", applier, str(env.profile)]) == 0
    explicit = env.file("etc/sysctl.d/10-explicit.conf", f"{KEEPALIVE} = 200\n")  # read first, wins anyway
    capsys.readouterr()
    for applier in ("systemd", "procps"):
        assert run(["diff", "--boot-applier", applier, "--format", "json", str(env.profile)]) == 2
        boot = boot_rows(json.loads(capsys.readouterr().out))[KEEPALIVE]
        assert (boot["status"], boot["value"], boot["file"], boot["line"]) == ("differs", "200", str(explicit), 1)


def test_a_value_the_kernel_refuses_at_boot_is_rejected_drift(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env.file("etc/sysctl.d/50-x.conf", f"{FIN} = +15\n{KEEPALIVE} = 100\n")
    assert run(["diff", "--boot-applier", "systemd", str(env.profile)]) == 2
    out = capsys.readouterr().out
    assert f"{FIN}: rejected at boot: {bad}:1 (+15): " in out and "; the kernel keeps 60" in out


def test_a_key_no_file_sets_is_no_drift_when_its_kernel_default_is_wanted(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    env.profile.write_text(f"settings:\n  {FIN}: 60\n")
    assert run(["diff", "--boot-applier", "systemd", "--format", "json", str(env.profile)]) == 0
    assert boot_rows(json.loads(capsys.readouterr().out))[FIN]["status"] == "kernel default"


# ---- unknown is neither drift nor "no drift" -----------------------------------------------------------------------


def test_an_unknown_applier_is_unknown_for_every_key_exit_0_with_a_warning(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["diff", str(env.profile)]) == 0  # live matches; what a reboot brings cannot be told
    captured = capsys.readouterr()
    assert (
        "unknown for every key: which program applies sysctl.d at boot is not known "
        "(no /sbin/init in the image: pass --boot-applier)" in captured.out
    )
    assert "after reboot 2 unknown" in captured.out and "drift found" not in captured.out
    assert (
        "tcptune: warning: the value after a reboot of 2 key(s) cannot be predicted "
        f"({FIN}, {KEEPALIVE}); not counted as drift" in captured.err
    )
    assert run(["diff", "--format", "json", str(env.profile)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["boot_unknown"] == 2 and data["summary"]["drift"] is False
    assert data["boot_applier"]["name"] == "unknown"


def test_a_glob_unknown_in_a_namespace_is_unknown_for_its_key_only(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    (env.proc / "net/ipv4/tcp_mem").unlink()  # what a child network namespace shows: the host's keys are unseen
    env.file("etc/sysctl.d/20-glob.conf", "net.ipv4.tcp_keepalive_* = 100\n")
    env.file("etc/sysctl.d/30-fin.conf", f"{FIN} = 15\n")
    assert run(["diff", "--boot-applier", "systemd", str(env.profile)]) == 0
    captured = capsys.readouterr()
    assert f"  {KEEPALIVE}: unknown: glob net/ipv4/tcp_keepalive_*: which keys the glob reaches is not known" in (
        captured.out
    )
    assert "of 1 key(s) cannot be predicted" in captured.err
    assert run(["diff", "--boot-applier", "systemd", "--live-only", str(env.profile)]) == 0
    assert "cannot be predicted" not in capsys.readouterr().err


# ---- after apply: who overrides tcptune's file at boot -------------------------------------------------------------


def test_apply_names_a_later_file_that_overrides_its_own(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    later = env.file("usr/lib/sysctl.d/99-vendor.conf", f"# vendor\n{FIN} = 30\n")
    assert run(["apply", "--yes", "--boot-applier", "systemd", str(env.profile)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {FIN}: {later}:2 sets 30 and overrides {env.own} at boot" in out
    assert KEEPALIVE not in out.split("warning:")[-1]
    assert run(["diff", "--boot-applier", "systemd", str(env.profile)]) == 2
    assert f"{FIN}: would be 30 from {later}:2, overriding {env.own}:4 (15)" in capsys.readouterr().out


def test_apply_says_when_nothing_applies_sysctl_d_at_boot(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.debian_image()
    env.file("etc/systemd/system/systemd-sysctl.service", "")
    os.unlink(env.sysroot / "etc/systemd/system/systemd-sysctl.service")
    (env.sysroot / "etc/systemd/system/systemd-sysctl.service").symlink_to("/dev/null")
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    assert run(["apply", "--yes", str(env.profile)]) == 0
    assert "note: nothing applies sysctl.d at boot here (systemd (/sbin/init), but systemd-sysctl.service is" in (
        capsys.readouterr().out
    )
    assert run(["diff", str(env.profile)]) == 2  # written to the file, but no program applies it at boot
    assert "after reboot (nothing applies sysctl.d at boot here: " in capsys.readouterr().out


def test_the_baseline_boot_value_is_the_applier_prediction_without_tcptunes_own_file(env: Env) -> None:
    env.file("etc/sysctl.d/50-vendor.conf", f"{FIN} = 0x2d\n")  # base 0: the kernel reads 45
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    env.own.write_text(f"{FIN} = 20\n")  # there before tcptune: it is tcptune's file now, never its baseline
    assert run(["apply", "--yes", "--boot-applier", "systemd", str(env.profile)]) == 0
    generation = json.loads((env.state / "generations/1.json").read_text())
    assert generation["baseline"][FIN] == {"live": "60", "boot": "45"}
    assert generation["baseline"][KEEPALIVE] == {"live": "100", "boot": None}


# ---- diff --format prometheus ----------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_after_apply_reports_the_generation_and_per_key_drift(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.debian_image()
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("60\n")
    assert run(["apply", "--yes", str(env.profile)]) == 0
    capsys.readouterr()
    target = tmp_path / "textfile/tcptune.prom"
    target.parent.mkdir()
    assert run(["diff", "--format", "prometheus", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    found = samples(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and os.listdir(target.parent) == ["tcptune.prom"]
    assert found[("tcptune_key_drift", (("key", FIN),))] == 0
    assert found[("tcptune_key_boot_drift", (("key", FIN),))] == 0
    assert found[("tcptune_generation", ())] == 1 and found[("tcptune_drift", ())] == 0
    ((info, _),) = [(labels, v) for (name, labels), v in found.items() if name == "tcptune_info"]
    assert dict(info)["profile"] == "tt10-boot" and dict(info)["generation"] == "1"
    assert dict(info)["boot_applier"] == "systemd-sysctl 252 (252.38-1~deb12u1)"
    (env.proc / "net/ipv4/tcp_fin_timeout").write_text("33\n")  # someone changed it
    assert run(["diff", "-f", "prometheus", "-o", str(target)]) == 2
    found = samples(target.read_text())
    assert found[("tcptune_key_drift", (("key", FIN),))] == 1 and found[("tcptune_drift", ())] == 1
    assert found[("tcptune_live_drift_keys", ())] == 1 and found[("tcptune_preflight_refused_keys", ())] == 0


def test_prometheus_with_nothing_managed_is_generation_0_exit_0(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["diff", "--format", "prometheus"]) == 0
    found = samples(capsys.readouterr().out)
    assert found[("tcptune_generation", ())] == 0 and found[("tcptune_managed_keys", ())] == 0
    assert run(["diff"]) == 1  # the text form still says how to start


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_prometheus_output_is_never_written_through_a_non_regular_file(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    target = tmp_path / "tcptune.prom"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(victim)
    else:
        target.mkdir()
    assert run(["diff", "--format", "prometheus", "-o", str(target), str(env.profile)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tcptune: error: cannot write {target}: "), err
    assert victim.read_text() == "keep\n"
    assert target.is_symlink() if kind == "symlink" else True


def test_output_needs_a_machine_format(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["diff", "-o", str(env.root / "x"), str(env.profile)]) == 64
    assert not (env.root / "x").exists()
    out = env.root / "d.json"
    assert run(["diff", "-f", "json", "-o", str(out), "--boot-applier", "systemd", str(env.profile)]) == 2
    assert json.loads(out.read_text())["summary"]["boot_not_persisted"] == 2
