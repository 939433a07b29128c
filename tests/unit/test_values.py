"""The one normalisation and the user-value parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcptune.values import ValueProblem, canonical, format_kernel, parse_value


@pytest.mark.parametrize(
    ("kernel", "user"),
    [
        ("4096\t131072\t6291456", "4096 131072 6291456"),
        ("4096 131072 6291456\n", [4096, 131072, 6291456]),
        ("060", 60),
        ("32768\t60999", "32768 60999"),
        ("8080,9000-9100", "9000-9100, 8080"),
        ("cubic\n", " cubic "),
        ("", ""),
    ],
)
def test_kernel_formatting_is_not_drift(kernel: str, user: object) -> None:
    assert canonical(kernel) == canonical(user)


def test_real_difference_is_drift() -> None:
    assert canonical("4096\t131072\t6291456") != canonical("4096 131072 16777216")


@pytest.mark.parametrize(
    ("raw", "unit", "expected"),
    [
        ("16MiB", "bytes", (16777216,)),
        ("64 KiB", "bytes", (65536,)),
        ("1MB", "bytes", (1000000,)),
        ("30s", "seconds", (30,)),
        ("2m", "seconds", (120,)),
        ("1h", "seconds", (3600,)),
        ("250ms", "milliseconds", (250,)),
        (42, "seconds", (42,)),
        ("42", "count", (42,)),
    ],
)
def test_units(raw: object, unit: str, expected: tuple[int, ...]) -> None:
    assert parse_value(raw, "int", unit, units_accepted=True) == expected


@pytest.mark.parametrize("raw", ["1.5s", "16M", "500ms"])
def test_ambiguous_or_fractional_units_are_rejected(raw: str) -> None:
    with pytest.raises(ValueProblem):
        parse_value(raw, "int", "bytes" if "M" in raw else "seconds", units_accepted=True)


def test_units_are_refused_for_pages() -> None:
    with pytest.raises(ValueProblem):
        parse_value(["1MiB", "2MiB", "3MiB"], "triple", "pages", units_accepted=False)


def test_triple_from_string_and_list_agree() -> None:
    from_list = parse_value([4096, 87380, 6291456], "triple", "bytes")
    assert parse_value("4096  87380 6291456", "triple", "bytes") == from_list


def test_port_list_is_merged_and_sorted() -> None:
    assert parse_value([9001, "8080", "9000-9100"], "portlist") == "8080,9000-9100"
    assert parse_value("", "portlist") == ""


def test_kernel_text_uses_single_spaces() -> None:
    assert format_kernel((4096, 131072, 16777216)) == "4096 131072 16777216"


def test_control_characters_are_rejected() -> None:
    with pytest.raises(ValueProblem):
        parse_value("bbr\nvm.swappiness=0", "string")


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("8080 9000-9100", "80809000-9100", False),
        ("8080, 9000 - 9100", "8080,9000-9100", True),
        ("1,2 3", "1,23", False),
    ],
)
def test_port_lists_never_glue_numbers_together(a: str, b: str, equal: bool) -> None:
    assert (canonical(a) == canonical(b)) is equal


def test_canonical_never_raises_on_backwards_ranges() -> None:
    assert canonical("1 5-3") == "1 5-3"
    assert canonical("5-3") == "5-3"


@pytest.mark.parametrize(
    ("user", "kernel"),
    [
        ("8080,8081", "8080-8081"),  # the kernel prints adjacent reserved ports as one range
        ("8081, 8080", "8080-8081"),
        ([8080, "8081-8082"], "8080-8082"),
        ("8080-8081,8082", "8080-8082"),
    ],
)
def test_adjacent_ports_are_one_range_as_the_kernel_prints_them(user: object, kernel: str) -> None:
    parsed = parse_value(user, "portlist")
    assert parsed == kernel
    assert canonical(parsed) == canonical(kernel) == kernel


def test_ports_one_apart_stay_separate() -> None:
    assert parse_value("8080,8082", "portlist") == "8080,8082"
    assert canonical("8080,8082") != canonical("8080-8082")


@pytest.mark.parametrize(
    ("raw", "shape", "unit"),
    [
        ("1" * 5000, "int", "count"),
        ("-" + "1" * 5000, "int", "count"),
        (["1" * 5000, "1", "2"], "triple", "bytes"),
        ("1" * 5000 + ",8080", "portlist", "port"),
        ("8080-" + "1" * 5000, "portlist", "port"),
        ("1" * 400 + "KiB", "int", "bytes"),  # a float overflows to infinity
    ],
)
def test_numbers_too_long_for_python_are_value_problems(raw: object, shape: str, unit: str) -> None:
    with pytest.raises(ValueProblem, match=r"^a number of \d+ digits is too large$"):
        parse_value(raw, shape, unit, units_accepted=True)


@pytest.mark.parametrize("text", ["1" * 5000, "1" * 5000 + ",1", "1-" + "1" * 5000, "2 " + "1" * 5000])
def test_canonical_compares_numbers_too_long_for_python_as_text(text: str) -> None:
    assert canonical(text + "\n") == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789,- \t+x"), max_size=40) | st.text(max_size=40))
def test_canonical_never_raises_and_is_idempotent(text: str) -> None:
    once = canonical(text)
    assert canonical(once) == once
