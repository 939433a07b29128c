"""The catalog's own consistency: the facts every other part (validation, schema, roles, explain) relies on."""

from __future__ import annotations

import pytest

from tcptune import catalog
from tcptune.validate import _range_problems
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
