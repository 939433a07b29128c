"""The kernel write model: what Linux 6.18's proc handlers do with the bytes an applier writes (newline included)."""

from __future__ import annotations

import pytest

from tcptune.catalog import KernelWrite, kernel_write
from tcptune.kernel_write import KernelFacts, Unknown, Written, parse_shown, show, write

INT = KernelWrite("int")
U8 = KernelWrite("u8", low=1, high=127)
UINT = KernelWrite("uint")
TRIPLE = KernelWrite("int", arity=3, low=1)
HZ = KernelFacts(hz=250)


def run(rule: KernelWrite, data: bytes, current: tuple[int, ...] | Unknown = (60,), **kw: object) -> Written:
    return write(rule, current, data + b"\n", kw.pop("facts", HZ), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        (b"17", (17,)),
        (b"  \t17", (17,)),
        (b"017", (15,)),
        (b"0x11", (17,)),
        (b"0XfF", (255,)),
        (b"-2147483648", (-2147483648,)),
        (b"-0", (0,)),
        (b"17 trailing words", (17,)),
        (b"17\ttab", (17,)),
        (b"\xa017", (17,)),
        (b"\x0c17", (17,)),
        (b"00000000000000000017", (15,)),
    ],
)
def test_accepted_ints(data: bytes, stored: tuple[int, ...]) -> None:
    assert run(INT, data) == Written(True, stored)


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"+17", b"17abc", b"17#x", b"17;x", b"08", b"0x", b"0xg", b"2147483648", b"-2147483649",
     b"17\x0c", b"17\x0b", b"17\r", b"17\xa0", b"\xc2\xa017", b"000000000000000000017", b"1.5", b"-", b"--1",
     b"18446744073709551616"],
)  # fmt: skip
def test_refused_ints_leave_the_value(data: bytes) -> None:
    outcome = run(INT, data)
    assert (outcome.accepted, outcome.value, outcome.partial) == (False, (60,), False)
    assert outcome.reason


def test_unsigned_keys_refuse_a_sign_even_minus_zero() -> None:
    assert run(U8, b"-0").accepted is False
    assert run(UINT, b"-0").accepted is False
    assert run(UINT, b"4294967295") == Written(True, (4294967295,))
    assert run(UINT, b"4294967296").accepted is False


def test_u8_bounds_come_from_the_handler() -> None:
    assert run(U8, b"127") == Written(True, (127,))
    assert run(U8, b"128").accepted is False
    assert run(U8, b"0").accepted is False
    assert run(KernelWrite("u8"), b"255") == Written(True, (255,))
    assert run(KernelWrite("u8"), b"256").accepted is False


def test_jiffies_limit_depends_on_hz() -> None:
    jiffies = KernelWrite("jiffies")
    assert run(jiffies, b"8589934") == Written(True, (8589934,))
    assert run(jiffies, b"8589935").accepted is False
    assert run(jiffies, b"-5") == Written(True, (-5,))
    unsure = run(jiffies, b"8589934", facts=KernelFacts())
    assert unsure.accepted is None and isinstance(unsure.value, Unknown)
    assert run(jiffies, b"2147483", facts=KernelFacts()).accepted is True
    assert run(jiffies, b"21474837", facts=KernelFacts()).accepted is False


def test_vectors_store_element_by_element() -> None:
    current = (4096, 131072, 6291456)
    assert run(TRIPLE, b"8192 87380 16777216", current) == Written(True, (8192, 87380, 16777216))
    assert run(TRIPLE, b"8192", current) == Written(True, (8192, 131072, 6291456))
    assert run(TRIPLE, b"8192 87380 16777216 99", current) == Written(True, (8192, 87380, 16777216))
    partial = run(TRIPLE, b"8192 0 16777216", current)
    assert (partial.accepted, partial.value, partial.partial) == (False, (8192, 131072, 6291456), True)
    assert run(TRIPLE, b"8192,87380", current).value == current
    assert isinstance(run(TRIPLE, b"8192", Unknown("?")).value, Unknown)


def test_ulong_vectors_refuse_negatives() -> None:
    tcp_mem = KernelWrite("ulong", arity=3)
    assert run(tcp_mem, b"1 2 18446744073709551615", (0, 0, 0)) == Written(True, (1, 2, 2**64 - 1))
    assert run(tcp_mem, b"-1", (0, 0, 0)).accepted is False


def test_port_range_needs_low_at_or_above_the_unprivileged_start_and_ordered_bounds() -> None:
    port_range = KernelWrite("port_range", arity=2, low=1, high=65535)
    current = (32768, 60999)
    assert run(port_range, b"1024 65535", current, peer=(1024,)) == Written(True, (1024, 65535))
    assert run(port_range, b"40000", current, peer=(1024,)) == Written(True, (40000, 60999))
    assert run(port_range, b"1023 65535", current, peer=(1024,)).accepted is False
    assert run(port_range, b"50000 40000", current, peer=(1024,)).accepted is False
    assert run(port_range, b"1024 65536", current, peer=(1024,)).value == current  # atomic: parsed into a copy
    assert run(port_range, b"2000 3000", current, peer=Unknown("?")).accepted is None


def test_unprivileged_start_may_not_pass_the_range() -> None:
    start = KernelWrite("port_start", low=0, high=65535)
    assert run(start, b"32768", (1024,), peer=(32768, 60999)) == Written(True, (32768,))
    assert run(start, b"32769", (1024,), peer=(32768, 60999)).accepted is False


def test_congestion_control_needs_the_allowed_names() -> None:
    congestion = KernelWrite("congestion")
    allowed = KernelFacts(congestion_allowed=frozenset({"reno", "bbr"}))
    assert run(congestion, b"bbr", "reno", facts=allowed) == Written(True, "bbr")  # type: ignore[arg-type]
    assert run(congestion, b"cubic", "reno", facts=allowed).accepted is False  # type: ignore[arg-type]
    assert run(congestion, b"bbr # fast", "reno", facts=allowed).accepted is False  # type: ignore[arg-type]
    assert run(congestion, b"bbr", "reno", facts=KernelFacts()).accepted is None  # type: ignore[arg-type]


def test_a_value_longer_than_a_page_is_unknown() -> None:
    assert run(INT, b"1" + b" " * 5000).accepted is None


def test_show_and_parse_shown_round_trip() -> None:
    assert show((4096, 131072, 6291456)) == "4096\t131072\t6291456"
    assert parse_shown(TRIPLE, "4096\t131072\t6291456") == (4096, 131072, 6291456)
    assert isinstance(parse_shown(TRIPLE, "4096"), Unknown)


def test_catalog_rules_are_found_by_slash_path() -> None:
    assert kernel_write("net/ipv4/tcp_rmem") == KernelWrite("int", arity=3, low=1)
    assert kernel_write("net/ipv4/conf/eth0/rp_filter") == KernelWrite("devinet")
    assert kernel_write("net/ipv4/conf/eth0/forwarding") is None
    assert kernel_write("net/core/netdev_max_backlog") is None
