"""Kernel preflight with plain values: one behaviour per test, facts written out by hand (the real kernel is in
tests/integration/test_preflight_kernel.py)."""

from __future__ import annotations

from pathlib import Path

from tcptune import preflight
from tcptune.kernelfacts import Facts, parse_version, read_facts
from tcptune.live import LiveValue, ProcSys

HOST_LIVE = {
    "net.ipv4.tcp_mem": "1 2 3",
    "net.ipv4.tcp_ecn": "2",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_fack": "0",
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_available_congestion_control": "reno cubic",
    "net.ipv4.tcp_allowed_congestion_control": "reno cubic",
    "net.ipv4.ip_local_port_range": "32768\t60999",
    "net.ipv4.ip_unprivileged_port_start": "1024",
    "net.ipv4.tcp_reordering": "3",
    "net.ipv4.tcp_max_reordering": "300",
    "net.core.optmem_max": "20480",
    "net.ipv4.tcp_app_win": "31",
    "net.ipv4.tcp_rmem": "4096\t131072\t6291456",
}


def facts(
    release: str = "6.18.1",
    child: bool = False,
    live: dict[str, str] | None = None,
    read_only: tuple[str, ...] = (),
    **kw: object,
) -> Facts:
    values = dict(HOST_LIVE if live is None else live)
    if child:
        values.pop("net.ipv4.tcp_mem", None)
    table = {k: LiveValue(k, v, "ok", k not in read_only) for k, v in values.items()}
    base: dict[str, object] = {
        "release": release,
        "child_netns": child,
        "available_cc": frozenset(values.get("net.ipv4.tcp_available_congestion_control", "").split()),
        "allowed_cc": frozenset(values.get("net.ipv4.tcp_allowed_congestion_control", "").split()),
        "can_load_modules": True,
        "modules": None,
        "live": table,
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def verdict(key: str, value: str, the_facts: Facts, raw: tuple[str, ...] = ()) -> preflight.Verdict:
    return preflight.check({key: value}, the_facts, raw)[key]


def test_a_value_already_in_place_is_ok_whatever_its_checks() -> None:
    assert verdict("net.ipv4.tcp_ecn", "2", facts()).outcome == "ok"


def test_accurate_ecn_is_refused_up_to_6_19_and_unconfirmed_after() -> None:
    refused = verdict("net.ipv4.tcp_ecn", "3", facts("6.19.2"))
    assert refused.outcome == "refused" and "6.19" in refused.reason
    later = verdict("net.ipv4.tcp_ecn", "5", facts("7.0.1"))
    assert later.outcome == "warning" and "cannot tell" in later.reason
    assert verdict("net.ipv4.tcp_ecn", "1", facts("6.19.2")).outcome == "ok"


def test_tw_reuse_2_on_a_kernel_before_4_18_is_a_warning_that_says_it_acts_as_1() -> None:
    live = dict(HOST_LIVE, **{"net.ipv4.tcp_tw_reuse": "0"})
    old = verdict("net.ipv4.tcp_tw_reuse", "2", facts("4.14.300", live=live))
    assert old.outcome == "warning" and "as 1" in old.reason
    assert verdict("net.ipv4.tcp_tw_reuse", "1", facts("4.14.300", live=live)).outcome == "ok"
    assert verdict("net.ipv4.tcp_tw_reuse", "2", facts("4.18.0", live=live)).outcome == "ok"


def test_an_unknown_kernel_version_turns_version_facts_into_warnings() -> None:
    unknown = verdict("net.ipv4.tcp_ecn", "3", facts(release=None))  # type: ignore[arg-type]
    assert unknown.outcome == "warning" and "unknown" in unknown.reason


def test_retired_keys_are_a_warning_not_a_refusal() -> None:
    result = verdict("net.ipv4.tcp_fack", "1", facts())
    assert result.outcome == "warning" and "does nothing since Linux 4.15" in result.reason
    assert verdict("net.ipv4.tcp_fack", "1", facts("4.14.1")).outcome == "ok"


def test_congestion_control_in_a_namespace_must_be_allowed() -> None:
    live = dict(HOST_LIVE, **{"net.ipv4.tcp_allowed_congestion_control": "reno bbr"})
    live["net.ipv4.tcp_available_congestion_control"] = "reno bbr cubic"
    result = verdict("net.ipv4.tcp_congestion_control", "bbr", facts(child=True, live=live))
    assert result.outcome == "ok"
    live["net.ipv4.tcp_congestion_control"] = "bbr"
    refused = verdict("net.ipv4.tcp_congestion_control", "cubic", facts(child=True, live=live))
    assert refused.outcome == "refused" and "EPERM" in refused.reason and "reno bbr" in refused.reason


def test_congestion_control_on_the_host_may_need_a_module() -> None:
    name = "net.ipv4.tcp_congestion_control"
    loadable = verdict(name, "htcp", facts(modules=frozenset({"tcp_htcp"})))
    assert loadable.outcome == "warning" and "load module tcp_htcp" in loadable.reason
    absent = verdict(name, "htcp", facts(modules=frozenset({"tcp_bbr"})))
    assert absent.outcome == "refused" and "no module tcp_htcp" in absent.reason
    no_modules = verdict(name, "htcp", facts(can_load_modules=False))
    assert no_modules.outcome == "refused" and "cannot load modules" in no_modules.reason
    unknown = verdict(name, "htcp", facts())
    assert unknown.outcome == "warning" and "tcp_htcp" in unknown.reason
    assert verdict(name, "reno", facts()).outcome == "ok"


def test_the_allowed_list_takes_only_available_names() -> None:
    result = verdict("net.ipv4.tcp_allowed_congestion_control", "reno htcp", facts())
    assert result.outcome == "refused" and "htcp" in result.reason and "ENOENT" in result.reason


def test_unprivileged_port_start_is_checked_against_the_live_port_range() -> None:
    result = verdict("net.ipv4.ip_unprivileged_port_start", "40000", facts())
    assert result.outcome == "refused" and "ip_local_port_range (32768)" in result.reason


def test_port_writes_are_judged_in_apply_order_against_the_values_before_them() -> None:
    both = preflight.check(
        {"net.ipv4.ip_unprivileged_port_start": "40000", "net.ipv4.ip_local_port_range": "40000 60999"}, facts()
    )
    assert {v.outcome for v in both.values()} == {"ok"}
    lowered = preflight.check(
        {"net.ipv4.ip_unprivileged_port_start": "500", "net.ipv4.ip_local_port_range": "500 60999"}, facts()
    )
    assert {v.outcome for v in lowered.values()} == {"ok"}
    alone = verdict("net.ipv4.ip_local_port_range", "500 60999", facts())
    assert alone.outcome == "refused" and "ip_unprivileged_port_start (1024)" in alone.reason


def test_reordering_is_capped_by_the_max_the_plan_leaves() -> None:
    assert verdict("net.ipv4.tcp_reordering", "400", facts()).outcome == "refused"
    both = preflight.check({"net.ipv4.tcp_reordering": "400", "net.ipv4.tcp_max_reordering": "500"}, facts())
    assert both["net.ipv4.tcp_reordering"].outcome == "ok"
    assert verdict("net.ipv4.tcp_reordering", "400", facts("6.12.1")).outcome == "ok"  # rule verified from 6.18


def test_a_host_wide_key_in_a_namespace_is_refused_with_advice() -> None:
    live = dict(HOST_LIVE, **{"net.core.rmem_max": "212992"})
    result = verdict("net.core.rmem_max", "8388608", facts(child=True, live=live, read_only=("net.core.rmem_max",)))
    assert result.outcome == "refused" and "set it on the host" in result.reason


def test_optmem_max_is_host_wide_before_6_8() -> None:
    old = facts("6.6.10", child=True, read_only=("net.core.optmem_max",))
    result = verdict("net.core.optmem_max", "1048576", old)
    assert result.outcome == "refused" and "per network namespace only since Linux 6.8" in result.reason
    assert verdict("net.core.optmem_max", "1048576", facts("6.8.1", child=True)).outcome == "ok"


def test_missing_keys_say_why() -> None:
    conntrack = verdict("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "60", facts())
    assert conntrack.reason == "missing: module nf_conntrack is not loaded (tcptune does not load modules)"
    newer = verdict("net.ipv4.tcp_rto_max_ms", "60000", facts("6.12.1"))
    assert newer.outcome == "refused" and "added in Linux 6.15" in newer.reason
    host_only = verdict("net.ipv4.tcp_low_latency", "1", facts(child=True))
    assert host_only.outcome == "refused" and "host-wide" in host_only.reason


def test_a_read_only_proc_sys_is_refused() -> None:
    result = verdict("net.ipv4.tcp_ecn", "1", facts(read_only=("net.ipv4.tcp_ecn",)))
    assert result.outcome == "refused" and "not writable here" in result.reason


def test_raw_keys_are_checked_for_existence_and_shape() -> None:
    raw = ("net.ipv4.tcp_app_win", "net.ipv4.nope")
    assert verdict("net.ipv4.tcp_app_win", "16", facts(), raw) == preflight.Verdict(
        "net.ipv4.tcp_app_win", "ok", (), True
    )
    text = verdict("net.ipv4.tcp_app_win", "lots", facts(), raw)
    assert text.outcome == "refused" and "not numbers" in text.reason
    fewer = verdict("net.ipv4.tcp_app_win", "1 2", facts(), raw)
    assert fewer.outcome == "warning"
    missing = verdict("net.ipv4.nope", "1", facts(), raw)
    assert missing.outcome == "refused" and missing.reason.startswith("missing") and missing.raw


def test_keys_to_read_include_the_keys_the_kernel_checks_read() -> None:
    wanted = preflight.keys_to_read(["net.ipv4.ip_local_port_range", "net.netfilter.nf_conntrack_tcp_timeout_fin_wait"])
    assert {"net.ipv4.ip_unprivileged_port_start", "net.netfilter.nf_conntrack_max"} <= wanted


def test_verdicts_serialise() -> None:
    result = verdict("net.ipv4.tcp_ecn", "3", facts())
    assert result.as_dict() == {"outcome": "refused", "reasons": list(result.reasons), "raw": False}


# ---- reading the facts -------------------------------------------------------------------------------------------


def tree(root: Path, values: dict[str, str]) -> ProcSys:
    for key, value in values.items():
        path = root.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return ProcSys(str(root))


def test_facts_come_from_the_tree_given(tmp_path: Path) -> None:
    proc = tree(
        tmp_path,
        {
            "kernel.osrelease": "6.6.10-generic",
            "kernel.modprobe": "/sbin/modprobe",
            "kernel.modules_disabled": "0",
            "net.ipv4.tcp_available_congestion_control": "reno cubic",
            "net.ipv4.tcp_allowed_congestion_control": "reno cubic",
            "net.ipv4.tcp_ecn": "2",
        },
    )
    found = read_facts(proc, ["net.ipv4.tcp_ecn"], real_kernel=False)
    assert found.release == "6.6.10-generic" and found.version == (6, 6, 10)
    assert found.child_netns is True  # no tcp_mem: a child namespace
    assert found.available_cc == {"reno", "cubic"} and found.can_load_modules is True
    assert found.live["net.ipv4.tcp_ecn"].text == "2" and found.modules is None


def test_module_support_and_the_host_namespace_are_read(tmp_path: Path) -> None:
    proc = tree(tmp_path, {"net.ipv4.tcp_mem": "1 2 3", "kernel.modules_disabled": "1", "kernel.modprobe": "x"})
    found = read_facts(proc, [], real_kernel=False)
    assert found.child_netns is False and found.can_load_modules is False and found.release is None
    assert read_facts(tree(tmp_path / "b", {"net.ipv4.tcp_mem": "1"}), [], real_kernel=False).can_load_modules is False


def test_modules_are_listed_from_modules_dep(tmp_path: Path) -> None:
    from tcptune.kernelfacts import _modules

    release = tmp_path / "6.1.0-1"
    release.mkdir()
    (release / "modules.dep").write_text("kernel/net/ipv4/tcp_htcp.ko.xz:\nkernel/net/ipv4/tcp-bic.ko: x.ko\n")
    (release / "modules.builtin").write_text("kernel/net/ipv4/tcp_cubic.ko\n")
    assert _modules(str(tmp_path), "6.1.0-1") == {"tcp_htcp", "tcp_bic", "tcp_cubic"}
    assert _modules(str(tmp_path), "6.2.0") is None


def test_modules_dep_is_read_only_when_a_congestion_control_write_needs_it(tmp_path: Path) -> None:
    (tmp_path / "modules/6.1.0-1").mkdir(parents=True)
    (tmp_path / "modules/6.1.0-1/modules.dep").write_text("kernel/net/ipv4/tcp_htcp.ko:\n")
    proc = tree(tmp_path / "proc", {"kernel.osrelease": "6.1.0-1", "net.ipv4.tcp_mem": "1 2 3"})
    roots = {"modules_root": str(tmp_path / "modules"), "real_kernel": True}
    assert read_facts(proc, ["net.ipv4.tcp_congestion_control"], **roots).modules == {"tcp_htcp"}  # type: ignore[arg-type]
    assert read_facts(proc, ["net.ipv4.tcp_fin_timeout"], **roots).modules is None  # type: ignore[arg-type]


def test_versions_parse() -> None:
    assert parse_version("6.18.44-fc-v669") == (6, 18, 44)
    assert parse_version("7.0") == (7, 0)
    assert parse_version("unknown") is None


# ---- folding verdicts into a plan ----------------------------------------------------------------------------------


def test_fold_turns_a_refused_difference_into_a_refused_key_and_drops_its_write() -> None:
    from tcptune.plan import plan

    live = {k: LiveValue(k, v, "ok", True) for k, v in {"a.b": "1", "c.d": "2", "e.f": "3"}.items()}
    live["g.h"] = LiveValue("g.h", None, "missing", False)
    current = plan({"a.b": "5", "c.d": "6", "e.f": "3", "g.h": "1"}, live)
    verdicts = {
        "a.b": preflight.Verdict("a.b", "refused", ("no",)),
        "c.d": preflight.Verdict("c.d", "warning", ("hm",), raw=True),
        "e.f": preflight.Verdict("e.f", "ok"),
        "g.h": preflight.Verdict("g.h", "refused", ("missing: module x is not loaded",)),
    }
    folded = preflight.fold(current, verdicts)
    states = {s.key: s for s in folded.keys}
    assert (states["a.b"].status, states["a.b"].note, states["a.b"].preflight) == ("refused", "no", "refused")
    assert (states["c.d"].status, states["c.d"].reasons, states["c.d"].raw) == ("differs", ("hm",), True)
    assert states["e.f"].status == "ok" and states["g.h"].note == "module x is not loaded"
    assert [c.key for c in folded.changes] == ["c.d"]
    assert [k.key for k in folded.blocked] == ["a.b", "g.h"] and folded.counts()["refused"] == 1
    assert states["a.b"].as_dict()["preflight"] == {"outcome": "refused", "reasons": ["no"]}
