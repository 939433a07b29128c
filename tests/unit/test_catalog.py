"""The catalog's own consistency: the facts every other part (validation, schema, roles, explain) relies on."""

from __future__ import annotations

import pytest

from tcptune import catalog
from tcptune.keycheck import range_problems as _range_problems
from tcptune.values import parse_value

KEYS = catalog.all_keys()
REQUIRED = [
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_orphan_retries",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.optmem_max",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.netdev_max_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_congestion_control",
    "net.core.default_qdisc",
    "net.ipv4.tcp_window_scaling",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_fastopen",
    "net.ipv4.tcp_mtu_probing",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "fs.file-max",
    "fs.nr_open",
    "net.ipv4.tcp_tw_recycle",
]


def test_catalog_covers_the_keys_a_tuning_tool_must_know() -> None:
    assert len(KEYS) >= 50
    missing = [name for name in REQUIRED if catalog.get(name) is None]
    assert not missing


def test_names_are_unique() -> None:
    names = [k.name for k in KEYS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("key", [k for k in KEYS if k.default is not None], ids=lambda k: k.name)
def test_kernel_default_is_valid_under_its_own_rules(key: catalog.Key) -> None:
    parsed = parse_value(key.default, key.shape, key.unit, key.units_accepted)
    assert list(_range_problems(key, parsed)) == []


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_entry_is_complete(key: catalog.Key) -> None:
    assert key.summary.endswith(".")
    assert key.scope in ("netns", "global")
    if key.shape in ("enum", "bool"):
        assert key.choices
    if key.choice_meanings:
        assert len(key.choice_meanings) == len(key.choices)
    if key.shape in ("triple", "pair"):
        assert len(key.elements) == key.arity
    if key.removed:
        assert key.removed_reason


def test_host_wide_keys_are_marked_global() -> None:
    for name in (
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.ipv4.tcp_mem",
        "net.core.netdev_max_backlog",
        "net.core.default_qdisc",
        "fs.file-max",
        "fs.nr_open",
    ):
        assert catalog.get(name).scope == "global", name  # type: ignore[union-attr]
    for name in ("net.ipv4.tcp_fin_timeout", "net.core.somaxconn", "net.ipv4.ip_local_port_range"):
        assert catalog.get(name).scope == "netns", name  # type: ignore[union-attr]


def test_bare_and_slash_names_resolve() -> None:
    assert catalog.canonical_name("tcp_fin_timeout") == "net.ipv4.tcp_fin_timeout"
    assert catalog.canonical_name("net/core/somaxconn") == "net.core.somaxconn"
    assert catalog.canonical_name("no_such_key") is None


def test_suggestions_for_typos() -> None:
    assert "net.ipv4.tcp_keepalive_time" in catalog.suggest("net.ipv4.tcp_keepalive_tim")
    assert "net.core.somaxconn" in catalog.suggest("somaxcon")


ADDED_IN_ISSUE_10 = [
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_child_ehash_entries",
    "net.ipv4.tcp_allowed_congestion_control",
    "net.ipv4.tcp_syn_linear_timeouts",
    "net.ipv4.tcp_shrink_window",
    "net.ipv4.tcp_pingpong_thresh",
    "net.ipv4.tcp_rto_min_us",
    "net.ipv4.tcp_rto_max_ms",
    "net.ipv4.tcp_frto",
    "net.ipv4.tcp_reordering",
    "net.ipv4.tcp_max_reordering",
    "net.ipv4.tcp_recovery",
    "net.ipv4.tcp_pacing_ss_ratio",
    "net.ipv4.tcp_pacing_ca_ratio",
    "net.ipv4.tcp_min_tso_segs",
    "net.ipv4.tcp_fastopen_blackhole_timeout_sec",
    "net.ipv4.tcp_migrate_req",
    "net.ipv4.udp_wmem_min",
    "net.ipv4.udp_mem",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
]


@pytest.mark.parametrize("name", ADDED_IN_ISSUE_10)
def test_keys_tuners_reach_for_are_known(name: str) -> None:
    assert catalog.get(name) is not None


@pytest.mark.parametrize("name", [n for n in ADDED_IN_ISSUE_10 if "conntrack" in n])
def test_conntrack_keys_name_their_module(name: str) -> None:
    assert catalog.get(name).module == "nf_conntrack"  # type: ignore[union-attr]


def test_retired_but_accepted_keys_are_obsolete_not_removed() -> None:
    for name, version in (("net.ipv4.tcp_fack", "4.15"), ("net.ipv4.tcp_low_latency", "4.14")):
        key = catalog.get(name)
        assert key is not None and key.removed is None and key.obsolete == version, name
    assert catalog.get("net.ipv4.tcp_tw_recycle").removed == "4.12"  # type: ignore[union-attr]


def test_tcp_low_latency_is_host_wide() -> None:
    assert catalog.get("net.ipv4.tcp_low_latency").scope == "global"  # type: ignore[union-attr]


def test_optmem_max_became_per_netns_in_6_8() -> None:
    key = catalog.get("net.core.optmem_max")
    assert key is not None and key.scope == "netns" and key.netns_since == "6.8"


def test_accurate_ecn_values_are_refused_up_to_6_19() -> None:
    (history,) = catalog.get("net.ipv4.tcp_ecn").value_history  # type: ignore[union-attr]
    assert (history.low, history.high, history.older_through, history.since, history.older_effect) == (
        3,
        5,
        "6.19",
        None,
        None,
    )


def test_tw_reuse_2_arrived_in_4_18_and_older_kernels_take_it_as_1() -> None:
    (history,) = catalog.get("net.ipv4.tcp_tw_reuse").value_history  # type: ignore[union-attr]
    assert (history.low, history.high, history.older_through, history.since) == (2, 2, "4.17", "4.18")
    assert history.older_effect is not None and "as 1" in history.older_effect


def test_syn_retries_advice_gives_the_timing_with_linear_timeouts() -> None:
    advice = " ".join(catalog.get("net.ipv4.tcp_syn_retries").advice)  # type: ignore[union-attr]
    assert "127 s" in advice and "131 s" in advice and "6.5" in advice


def test_buffer_advice_does_not_claim_the_kernel_orders_the_triple() -> None:
    for name in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
        advice = " ".join(catalog.get(name).advice)  # type: ignore[union-attr]
        assert "not their order" in advice


_TYPE_RANGE = {"u8": (0, 255), "uint": (0, 2**32 - 1), "int": (-(2**31), 2**31 - 1), "ulong": (0, 2**64 - 1)}


@pytest.mark.parametrize("name", sorted(catalog.KERNEL_WRITES), ids=str)
def test_policy_range_lies_within_what_the_kernel_accepts(name: str) -> None:
    """Except for values with a kernel-version history, tcptune never lets through a value Linux 6.18 refuses."""
    key, rule = catalog.get(name), catalog.KERNEL_WRITES[name]
    assert key is not None, f"{name} has a kernel write rule but no catalog entry"
    if rule.handler not in _TYPE_RANGE or key.shape not in ("int", "enum", "bool", "triple", "pair"):
        return
    low = rule.low if rule.low is not None else _TYPE_RANGE[rule.handler][0]
    high = rule.high if rule.high is not None else _TYPE_RANGE[rule.handler][1]
    allowed = [int(c) for c in key.choices] if key.choices else [key.minimum, key.maximum]
    covered = {v for h in key.value_history for v in range(h.low, h.high + 1)}
    for value in allowed:
        if value is not None and value not in covered:
            assert low <= value <= high, f"{name}: {value} outside the kernel's {low}..{high}"


def test_names_shape_reads_lists_and_strings_and_compares_as_a_set() -> None:
    from tcptune.values import canonical

    assert parse_value(["reno", "bbr"], "names") == "reno bbr"
    assert parse_value(" reno  cubic ", "names") == "reno cubic"
    assert canonical("reno\tbbr") == canonical("bbr reno")
    assert canonical("1 2") != canonical("2 1")  # numbers keep their order


def test_explain_shows_value_history_obsolescence_scope_changes_and_modules() -> None:
    from tcptune.explain import describe_key, key_as_dict

    ecn = describe_key(catalog.get("net.ipv4.tcp_ecn"))  # type: ignore[arg-type]
    assert "3-5 (Accurate ECN): Linux 6.19 and older: refused" in ecn
    assert "does nothing since Linux 4.15" in describe_key(catalog.get("net.ipv4.tcp_fack"))  # type: ignore[arg-type]
    assert "since Linux 6.8; global before" in describe_key(catalog.get("net.core.optmem_max"))  # type: ignore[arg-type]
    conntrack = catalog.get("net.netfilter.nf_conntrack_tcp_timeout_time_wait")
    assert "nf_conntrack kernel module is loaded" in describe_key(conntrack)  # type: ignore[arg-type]
    data = key_as_dict(catalog.get("net.ipv4.tcp_tw_reuse"))  # type: ignore[arg-type]
    assert data["value_history"] == [
        {
            "values": "2",
            "what": "loopback-only reuse",
            "older_through": "4.17",
            "since": "4.18",
            "older_effect": "taken as 1: reuse for every outgoing connection, not only loopback",
        }
    ]
