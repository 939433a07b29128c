"""Boot prediction on small hand-made sysctl.d trees: one behaviour of systemd-sysctl 252 / procps 4.0.2 per test.

The same behaviours are checked against the real programs by tests/integration/test_boot_appliers_differential.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcptune import boot
from tcptune.boot import ApplierName
from tcptune.kernel_write import KernelFacts

FIN = "net/ipv4/tcp_fin_timeout"
INITIAL = {
    FIN: "60",
    "net/ipv4/tcp_keepalive_time": "7200",
    "net/ipv4/tcp_keepalive_intvl": "75",
    "net/ipv4/tcp_keepalive_probes": "9",
    "net/ipv4/tcp_syn_retries": "6",
    "net/ipv4/tcp_rmem": "4096\t131072\t6291456",
    "net/ipv4/ip_local_port_range": "32768\t60999",
    "net/ipv4/ip_unprivileged_port_start": "1024",
    "net/core/somaxconn": "4096",
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv4/conf/lo/rp_filter": "0",
    "net/core/rmem_max": "212992",
    "net/core/netdev_max_backlog": "1000",
}
VIEW = boot.KernelView(
    names=frozenset(INITIAL),
    read_only=frozenset({"net/core/rmem_max"}),
    initial=INITIAL,
    facts=KernelFacts(hz=250),
)


class Link(str):
    """A symlink target, in the file map given to ``make``."""


def make(root: Path, files: dict[str, str | bytes | Link]) -> str:
    for rel, content in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(str(content))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return str(root)


def value(root: str, applier: ApplierName, key: str = FIN, view: boot.KernelView = VIEW) -> str | None:
    return boot.predict(root, [key], applier, view)[key].value


def both(root: str, key: str = FIN, view: boot.KernelView = VIEW) -> tuple[str | None, str | None]:
    return value(root, "systemd", key, view), value(root, "procps", key, view)


# ---- which files, in which order -------------------------------------------------------------------------------------


def test_files_apply_in_name_order_across_directories(tmp_path: Path) -> None:
    root = make(tmp_path, {"/usr/lib/sysctl.d/50-a.conf": f"{FIN} = 30\n", "/etc/sysctl.d/40-b.conf": f"{FIN} = 20\n"})
    assert both(root) == ("30", "30")


def test_equal_file_names_the_earlier_directory_wins(tmp_path: Path) -> None:
    root = make(tmp_path, {"/usr/lib/sysctl.d/50-a.conf": f"{FIN} = 30\n", "/run/sysctl.d/50-a.conf": f"{FIN} = 20\n"})
    assert both(root) == ("20", "20")


def test_a_link_to_dev_null_masks_the_file_of_the_same_name(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/usr/lib/sysctl.d/50-a.conf": f"{FIN} = 30\n",
            "/etc/sysctl.d/50-a.conf": Link("/dev/null"),
            "/dev/null": f"{FIN} = 99\n",  # what an image holds there does not matter: at boot it is the null device
        },
    )
    assert both(root) == ("60", "60")


def test_hidden_files_are_read_by_procps_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/.hidden.conf": f"{FIN} = 30\n", "/etc/sysctl.d/.conf": "x"})
    assert both(root) == ("60", "30")


def test_etc_sysctl_conf_is_read_last_by_procps_and_never_directly_by_systemd(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.conf": f"{FIN} = 30\n", "/usr/lib/sysctl.d/99-z.conf": f"{FIN} = 40\n"})
    assert both(root) == ("40", "30")


def test_systemd_reads_sysctl_conf_through_the_debian_link_in_name_order(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/etc/sysctl.conf": f"{FIN} = 30\n",
            "/etc/sysctl.d/99-sysctl.conf": Link("../sysctl.conf"),
            "/etc/sysctl.d/99-zz.conf": f"{FIN} = 40\n",
        },
    )
    # procps reads sysctl.conf twice: as 99-sysctl.conf, and again last
    assert both(root) == ("40", "30")


def test_absolute_links_resolve_inside_the_root_not_on_this_machine(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/usr/lib/sysctl.d/vendor.txt": f"{FIN} = 30\n",
            "/etc/sysctl.d/10-link.conf": Link("/usr/lib/sysctl.d/vendor.txt"),
            "/etc/sysctl.d/20-host.conf": Link("/etc/hostname"),  # exists on the machine, not in the image
            "/etc/sysctl.d/30-up.conf": Link("../../../../../../usr/lib/sysctl.d/vendor.txt"),  # .. stops at root
        },
    )
    prediction = boot.predict(root, [FIN], "systemd", VIEW)[FIN]
    assert prediction.value == "30"
    assert prediction.source is not None and prediction.source.where() == "/etc/sysctl.d/10-link.conf:1"
    assert [a.where() for a in prediction.overridden] == ["/etc/sysctl.d/30-up.conf:1"]


def test_dangling_and_looping_links_and_directories_contribute_nothing(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/etc/sysctl.d/10-gone.conf": Link("/nowhere/x.conf"),
            "/etc/sysctl.d/20-loop.conf": Link("21-loop.conf"),
            "/etc/sysctl.d/21-loop.conf": Link("20-loop.conf"),
            "/etc/sysctl.d/30-dir.conf/x": "",
        },
    )
    assert both(root) == ("60", "60")


# ---- lines -----------------------------------------------------------------------------------------------------------


def test_lone_cr_ends_a_line_for_systemd_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"net.core.somaxconn = 100\r{FIN} = 30\n".encode()})
    assert both(root) == ("30", "60")
    # procps writes "100\r..." to somaxconn, which the kernel refuses
    assert both(root, "net/core/somaxconn") == ("100", "4096")


def test_crlf_and_nul_byte_line_ends(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\r\nnet.core.somaxconn = 7\0{FIN} = 40\n".encode()})
    assert both(root) == ("40", "30")  # procps stops the line at the NUL byte


def test_vertical_tab_before_a_key_is_stripped_by_procps_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"\v{FIN} = 30\n"})
    assert both(root) == ("60", "30")


def test_form_feed_after_a_value_is_stripped_by_procps_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\f\n"})
    assert both(root) == ("60", "30")
    refused = boot.predict(root, [FIN], "systemd", VIEW)[FIN]
    assert refused.status == "rejected" and "\\x0c" in refused.refused[0][1]


def test_dash_space_key_is_set_by_systemd_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"- {FIN} = 30\n"})
    assert both(root) == ("30", "60")


def test_double_dash_key_is_set_by_procps_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"--{FIN} = 30\n"})
    assert both(root) == ("60", "30")


def test_leading_slash_keeps_slashes_but_not_dots(tmp_path: Path) -> None:
    dots = make(tmp_path / "dots", {"/etc/sysctl.d/a.conf": "/net.ipv4.tcp_fin_timeout = 30\n"})
    slashes = make(tmp_path / "slashes", {"/etc/sysctl.d/a.conf": "/net/ipv4/tcp_fin_timeout = 30\n"})
    assert both(dots) == ("60", "60")
    assert both(slashes) == ("30", "30")


def test_a_slash_spelled_explicit_key_beats_a_glob_in_systemd_only(tmp_path: Path) -> None:
    lines = "/net/ipv4/tcp_keepalive_time = 600\nnet.ipv4.tcp_keepalive_* = 100\n"
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": lines})
    # systemd normalises the key, so the glob skips it; procps compares "/proc/sys//net/..." literally
    assert both(root, "net/ipv4/tcp_keepalive_time") == ("600", "100")


def test_trailing_separator_is_simplified_away_by_systemd_only(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_fin_timeout. = 30\n"})
    assert both(root) == ("30", "60")


def test_a_later_assignment_replaces_an_earlier_one_in_systemd_before_anything_is_written(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\n{FIN} = oops\n"})
    systemd = boot.predict(root, [FIN], "systemd", VIEW)[FIN]
    procps = boot.predict(root, [FIN], "procps", VIEW)[FIN]
    # systemd writes only "oops" (refused: the kernel default stays); procps writes 30, then "oops" (refused)
    assert (systemd.status, systemd.value) == ("rejected", "60")
    assert (procps.status, procps.value) == ("ok", "30")
    assert procps.source is not None and procps.source.where() == "/etc/sysctl.d/a.conf:1"
    assert [a.value for a in procps.overridden] == ["oops"]


# ---- globs -----------------------------------------------------------------------------------------------------------


def test_a_glob_sets_every_key_it_matches(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_keepalive_* = 100\n"})
    for key in ("net/ipv4/tcp_keepalive_time", "net/ipv4/tcp_keepalive_intvl", "net/ipv4/tcp_keepalive_probes"):
        assert both(root, key) == ("100", "100")
        prediction = boot.predict(root, [key], "systemd", VIEW)[key]
        assert prediction.source is not None and prediction.source.via == "net/ipv4/tcp_keepalive_*"


@pytest.mark.parametrize("order", ["explicit first", "glob first"])
def test_an_explicit_key_beats_a_glob_whatever_the_order(tmp_path: Path, order: str) -> None:
    lines = ["net.ipv4.tcp_keepalive_time = 600", "net.ipv4.tcp_keepalive_* = 100"]
    if order == "glob first":
        lines.reverse()
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "\n".join(lines) + "\n"})
    assert both(root, "net/ipv4/tcp_keepalive_time") == ("600", "600")
    assert both(root, "net/ipv4/tcp_keepalive_intvl") == ("100", "100")


def test_a_dash_key_keeps_a_glob_off_it_and_in_systemd_also_cancels_it(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/etc/sysctl.d/a.conf": "net.ipv4.tcp_keepalive_probes = 5\nnet.ipv4.tcp_keepalive_* = 100\n"
            "-net.ipv4.tcp_keepalive_probes\n-net.ipv4.tcp_keepalive_intvl\n"
        },
    )
    assert both(root, "net/ipv4/tcp_keepalive_intvl") == ("75", "75")
    assert both(root, "net/ipv4/tcp_keepalive_probes") == ("9", "5")


def test_systemd_expands_braces_in_globs_procps_does_not(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_keepalive_{time,in*} = 100\n"})
    assert both(root, "net/ipv4/tcp_keepalive_intvl") == ("100", "75")
    assert both(root, "net/ipv4/tcp_keepalive_time") == ("100", "7200")


def test_interface_globs_and_the_default_copy(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\n"})
    # lo is kept off the glob, but the kernel copies default's new value to every interface never written
    assert both(root, "net/ipv4/conf/lo/rp_filter") == ("2", "2")


def test_systemd_skips_a_write_equal_to_the_current_value(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {"/etc/sysctl.d/a.conf": "net.ipv4.conf.lo.rp_filter = 0\nnet.ipv4.conf.default.rp_filter = 1\n"},
    )
    # procps writes lo (the kernel marks it as set, so default is not copied); systemd skips lo's write (already 0)
    assert both(root, "net/ipv4/conf/lo/rp_filter") == ("1", "0")


# ---- what the kernel does with the value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("017", "15"),
        ("0x11", "17"),
        ("0X1f", "31"),
        ("08", "60"),
        ("+17", "60"),
        ("17abc", "60"),
        ("17 abc", "17"),
        ("17 # was 20", "17"),
        ("17#x", "60"),
        ("17 ; x", "17"),
        ("17;x", "60"),
        ("", "60"),
        ("\u00a017", "60"),
        ("17\u00a0", "60"),
        ("-5", "-5"),
        ("8589934", "8589934"),
        ("8589935", "60"),
        ("000000000000000000017", "60"),
    ],
)
def test_values_as_the_kernel_parses_them(tmp_path: Path, written: str, kept: str) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = {written}\n"})
    assert both(root) == (kept, kept)


def test_latin1_nbsp_before_a_number_is_kernel_whitespace(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = \xa017\n".encode("latin-1")})
    assert both(root) == ("17", "17")


def test_a_refused_value_leaves_the_earlier_value_in_procps_and_the_default_in_systemd(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/etc/sysctl.d/10-a.conf": "net.ipv4.tcp_syn_retries = 3\n",
            "/etc/sysctl.d/20-b.conf": "tcp = 1\nnet.ipv4.tcp_syn_retries = 200\n",
        },
    )
    assert both(root, "net/ipv4/tcp_syn_retries") == ("6", "3")


def test_a_vector_keeps_the_elements_written_before_a_bad_one(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_rmem = 8192 0 16777216\n"})
    prediction = boot.predict(root, ["net.ipv4.tcp_rmem"], "systemd", VIEW)["net.ipv4.tcp_rmem"]
    assert (prediction.status, prediction.value) == ("partial", "8192\t131072\t6291456")


@pytest.mark.parametrize("range_first", [True, False])
def test_port_range_and_unprivileged_start_are_checked_against_each_other_in_write_order(
    tmp_path: Path, range_first: bool
) -> None:
    lines = ["net.ipv4.ip_local_port_range = 1024 65000", "net.ipv4.ip_unprivileged_port_start = 2000"]
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "\n".join(lines if range_first else lines[::-1]) + "\n"})
    range_, start = "net/ipv4/ip_local_port_range", "net/ipv4/ip_unprivileged_port_start"
    if range_first:  # the range moves below 2000 first, so the start may not rise above it
        assert (both(root, range_), both(root, start)) == (("1024\t65000",) * 2, ("1024",) * 2)
    else:  # the start rises first, so a range starting below it is refused
        assert (both(root, range_), both(root, start)) == (("32768\t60999",) * 2, ("2000",) * 2)


def test_missing_and_read_only_keys_are_rejected(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_tw_recycle = 1\nnet.core.rmem_max = 16777216\n"})
    missing = boot.predict(root, ["net.ipv4.tcp_tw_recycle"], "systemd", VIEW)["net.ipv4.tcp_tw_recycle"]
    read_only = boot.predict(root, ["net.core.rmem_max"], "procps", VIEW)["net.core.rmem_max"]
    assert (missing.status, missing.value) == ("rejected", None)
    assert (read_only.status, read_only.value) == ("rejected", "212992")


# ---- what cannot be told ---------------------------------------------------------------------------------------------


def status(root: str, applier: ApplierName, key: str = FIN, view: boot.KernelView = VIEW) -> str:
    return boot.predict(root, [key], applier, view)[key].status


def test_jiffies_near_the_limit_are_unknown_without_hz(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 3000000\n"})
    assert status(root, "systemd", view=VIEW._replace(facts=KernelFacts())) == "unknown"
    assert status(root, "systemd") == "ok"


def test_unmodelled_keys_and_unknown_defaults_are_unknown(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.core.netdev_max_backlog = 5000\nnet.ipv4.tcp_rmem = 1\n"})
    assert status(root, "procps", "net/core/netdev_max_backlog") == "unknown"
    no_default = VIEW._replace(initial={})
    assert status(root, "procps", "net/ipv4/tcp_rmem", no_default) == "unknown"


def test_globs_are_unknown_when_the_kernel_keys_are_not_known(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.tcp_keepalive_* = 100\nnet.ipv4.tcp_keepalive_probes=3\n"})
    blind = VIEW._replace(names=None)
    assert status(root, "systemd", "net/ipv4/tcp_keepalive_time", blind) == "unknown"
    assert value(root, "systemd", "net/ipv4/tcp_keepalive_probes", blind) == "3"  # explicit: the glob skips it


def test_procps_file_names_with_glob_characters_are_unknown(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/z[ab].conf": f"{FIN} = 30\n", "/etc/sysctl.d/a.conf": f"{FIN} = 40\n"})
    assert status(root, "procps") == "unknown"
    assert value(root, "systemd") == "30"


def test_unreadable_files_are_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads a mode-0 file, so the refusal is the kernel's answer as boot.py sees it: EACCES from open()."""
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\n"})
    os.chmod(tmp_path / "etc/sysctl.d/a.conf", 0)
    real_open = os.open

    def refusing_open(path: str | bytes, flags: int, *args: int) -> int:
        if os.fsdecode(path).endswith("a.conf"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(boot.os, "open", refusing_open)
    assert status(root, "systemd") == "unknown"


def test_fifo_is_unknown_and_never_opened_blocking(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/b.conf": ""})
    os.mkfifo(tmp_path / "etc/sysctl.d/a.conf")
    assert status(root, "systemd") == "unknown"


def test_keys_of_real_interfaces_are_unknown(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.conf.eth0.rp_filter = 1\n"})
    eth0 = VIEW._replace(names=VIEW.names | {"net/ipv4/conf/eth0/rp_filter"})  # type: ignore[operator]
    assert status(root, "systemd", "net/ipv4/conf/eth0/rp_filter", eth0) == "unknown"


def test_busybox_is_unknown_and_no_applier_sets_nothing(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\n"})
    assert status(root, "busybox") == "unknown"
    none = boot.predict(root, [FIN], "none", VIEW)[FIN]
    assert (none.status, none.value) == ("not-set", "60")


def test_all_keys_when_none_are_asked_for(tmp_path: Path) -> None:
    root = make(tmp_path, {"/etc/sysctl.d/a.conf": f"{FIN} = 30\nnet.core.somaxconn = 1000\n"})
    assert {k: p.value for k, p in boot.predict(root, None, "systemd", VIEW).items()} == {
        "net.ipv4.tcp_fin_timeout": "30",
        "net.core.somaxconn": "1000",
    }


# ---- which applier ---------------------------------------------------------------------------------------------------

DPKG = """Package: systemd
Status: install ok installed
Version: 252.38-1~deb12u1

Package: procps
Status: install ok installed
Version: 2:4.0.2-3
"""


def test_detects_systemd_sysctl_in_a_debian_image(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/lib/systemd/systemd": "",
            "/sbin/init": Link("/lib/systemd/systemd"),
            "/lib/systemd/systemd-sysctl": "",
            "/lib/systemd/system/systemd-sysctl.service": "",
            "/lib/systemd/system/procps.service": Link("systemd-sysctl.service"),
            "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so": "",
            "/var/lib/dpkg/status": DPKG,
        },
    )
    applier = boot.detect_applier(root)
    assert (applier.name, applier.version) == ("systemd", "252 (252.38-1~deb12u1)")
    assert applier.describe() == "systemd-sysctl 252 (252.38-1~deb12u1)"


def test_a_masked_unit_means_no_applier(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/sbin/init": Link("/lib/systemd/systemd"),
            "/lib/systemd/systemd": "",
            "/lib/systemd/systemd-sysctl": "",
            "/lib/systemd/system/systemd-sysctl.service": "",
            "/etc/systemd/system/systemd-sysctl.service": Link("/dev/null"),
        },
    )
    assert boot.detect_applier(root).name == "none"


def test_detects_procps_under_sysvinit_and_busybox(tmp_path: Path) -> None:
    sysv = make(
        tmp_path / "sysv",
        {
            "/sbin/init": "sysvinit INIT_VERSION",
            "/etc/init.d/procps": "sysctl --system",
            "/usr/sbin/sysctl": b"\x7fELF procps-ng 4.0.2 ",
        },
    )
    busybox = make(
        tmp_path / "bb",
        {
            "/sbin/init": "sysvinit INIT_VERSION",
            "/etc/init.d/sysctl": "",
            "/bin/busybox": b"BusyBox v1.36.1 (2023)",
            "/bin/sysctl": Link("busybox"),
        },
    )
    assert boot.detect_applier(sysv)[:2] == ("procps", "4.0.2")
    assert boot.detect_applier(busybox)[:2] == ("busybox", "1.36.1")
    empty = boot.detect_applier(str(tmp_path / "empty"))
    assert (empty.name, empty.how) == ("unknown", "no /sbin/init in the image: pass --boot-applier")
    root = make(tmp_path / "t", {"/etc/sysctl.d/a.conf": f"{FIN} = 30\n"})
    (unknown,) = boot.predict(root, [FIN], empty, VIEW).values()
    assert (unknown.status, unknown.value) == ("unknown", None)
    assert unknown.reason == (
        "which program applies sysctl.d at boot is not known (no /sbin/init in the image: pass --boot-applier)"
    )


# ---- what tcptune asks of the model: its own file left out, which files are read, the kernel seen from here ----------


def test_an_excluded_file_is_as_if_absent_and_a_same_named_vendor_file_shows_through(tmp_path: Path) -> None:
    own = "/etc/sysctl.d/90-tcptune.conf"
    root = make(
        tmp_path,
        {
            own: f"{FIN} = 15\n",
            "/usr/lib/sysctl.d/90-tcptune.conf": f"{FIN} = 25\n",
            "/etc/sysctl.conf": f"{FIN} = 5\n",
        },
    )
    for applier, expected in (("systemd", "25"), ("procps", "5")):
        assert boot.predict(root, [FIN], applier, VIEW)[FIN].value == ("15" if applier == "systemd" else "5")
        assert boot.predict(root, [FIN], applier, VIEW, exclude=[own])[FIN].value == expected
    assert boot.predict(root, [FIN], "procps", VIEW, exclude=[own, "/etc/sysctl.conf"])[FIN].value == "25"


def test_files_read_in_order_and_whether_a_file_not_yet_written_would_be(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "/usr/lib/sysctl.d/50-default.conf": "",
            "/etc/sysctl.d/README": "",
            "/etc/sysctl.d/10-x.conf.dpkg-old": "",
            "/etc/sysctl.d/.hidden.conf": "",
            "/etc/sysctl.conf": "",
        },
    )
    assert boot.files_read(root, "systemd") == ["/usr/lib/sysctl.d/50-default.conf"]
    assert boot.files_read(root, "procps") == [
        "/etc/sysctl.d/.hidden.conf",
        "/usr/lib/sysctl.d/50-default.conf",
        "/etc/sysctl.conf",
    ]
    own = "/etc/sysctl.d/90-tcptune.conf"
    assert boot.files_read(root, "systemd", [own]) == ["/usr/lib/sysctl.d/50-default.conf", own]
    assert own not in (boot.files_read(root, "systemd", ["/etc/tcptune/90-tcptune.conf"]) or [])
    assert boot.files_read(root, "none") == [] and boot.files_read(root, "busybox") is None


def proc_tree(root: Path, files: dict[str, str], read_only: tuple[str, ...] = ()) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        if rel in read_only:
            path.chmod(0o444)
    return str(root)


def test_kernel_view_lists_the_keys_and_the_read_only_ones_and_starts_from_catalog_defaults(tmp_path: Path) -> None:
    proc = proc_tree(
        tmp_path,
        {"net/ipv4/tcp_mem": "1 2 3", FIN: "15", "net/core/rmem_max": "212992", "kernel/osrelease": "6.18"},
        read_only=("kernel/osrelease",),
    )
    view = boot.kernel_view(proc)
    assert isinstance(view.names, boot.ProcNames)
    assert FIN in view.names and "net/ipv4" not in view.names and "net/ipv4/nope" not in view.names
    assert "../proc/net/ipv4/tcp_mem" not in view.names and "/etc/passwd" not in view.names
    assert view.names.listing() == frozenset({"net/ipv4/tcp_mem", FIN, "net/core/rmem_max", "kernel/osrelease"})
    assert "kernel/osrelease" in view.read_only and FIN not in view.read_only
    assert view.initial[FIN] == "60"  # the catalog's default, not today's live 15
    assert "net/ipv4/tcp_max_tw_buckets" not in view.initial  # its default depends on the machine: unknown
    many = boot.kernel_view(proc, limit=3).names
    assert isinstance(many, boot.ProcNames) and many.listing() is None  # too many to list: globs are unknown
    assert FIN in many  # one by one, still known


def test_kernel_view_in_a_child_namespace_claims_no_key_list(tmp_path: Path) -> None:
    proc = proc_tree(tmp_path, {FIN: "15", "net/core/somaxconn": "4096"})  # no host-only tcp_mem: a child netns
    view = boot.kernel_view(proc)
    assert view.names is None and view.read_only == frozenset() and view.initial[FIN] == "60"


def test_an_interface_write_systemd_may_skip_leaves_the_default_copy_unknown(tmp_path: Path) -> None:
    """systemd skips a write equal to the current value; when that value is not known (no fresh namespace to read
    it from: what diff has), whether lo counts as written, and so whether the default is copied to it, is not known.
    Found by the boot differential test."""
    root = make(
        tmp_path, {"/etc/sysctl.d/a.conf": "net.ipv4.conf.lo.rp_filter = 0\nnet.ipv4.conf.default.rp_filter = 1\n"}
    )
    unknown_start = VIEW._replace(initial={k: v for k, v in INITIAL.items() if "rp_filter" not in k})
    lo = "net.ipv4.conf.lo.rp_filter"
    assert boot.predict(root, [lo], "systemd", unknown_start)[lo].status == "unknown"
    assert boot.predict(root, [lo], "systemd", VIEW)[lo].value == "1"  # from 0: skipped, so the default's 1 is copied
    assert boot.predict(root, [lo], "procps", unknown_start)[lo].value == "0"  # procps always writes: lo is written
