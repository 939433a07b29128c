"""One key's value against the catalog's facts: parse, then range, choices and order. One line per problem.

The per-key half of validation, shared by ``validate`` (profiles) and the Ansible module (inventory values), so that
``tcp_fin_timeout: 9999`` is refused the same way whether it comes from a profile or from a host's variables.
Standard library only (with the shipped ``values``): shipped to hosts, with the catalog's facts generated beside it
(``tcptune.ansible.render.catalog_facts_source``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .records import Record
from .values import Parsed, ValueProblem, format_kernel, parse_value


class Facts(Protocol):
    """What a check needs to know about a key: ``catalog.Key`` has it, and so does the shipped ``KeyFacts``."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def units_accepted(self) -> bool: ...
    @property
    def minimum(self) -> int | None: ...
    @property
    def maximum(self) -> int | None: ...
    @property
    def choices(self) -> tuple[str, ...]: ...
    @property
    def choice_meanings(self) -> tuple[str, ...]: ...
    @property
    def open_choices(self) -> bool: ...
    @property
    def elements(self) -> tuple[str, ...]: ...


class KeyFacts(Record):
    """The catalog's facts about one key as shipped to hosts (generated from ``catalog.Key``)."""

    name: str
    shape: str
    unit: str
    scope: str
    units_accepted: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    choice_meanings: tuple[str, ...] = ()
    open_choices: bool = False
    elements: tuple[str, ...] = ()
    removed: str | None = None


KERNEL_CHECKS_ORDER = frozenset({"net.ipv4.ip_local_port_range"})
"""Vectors whose order the kernel itself enforces (EINVAL). For the others (tcp_rmem, tcp_wmem, tcp_mem, udp_mem)
it stores any order, and an out-of-order vector is a warning (``validate._vector_order``)."""


def check(key: Facts, raw: object) -> tuple[Parsed | None, list[tuple[str, str]]]:
    """(the parsed value, []) or (None, [(problem, hint), ...]) for a value of ``key`` as YAML (or Ansible) gives it."""
    try:
        parsed = parse_value(raw, key.shape, key.unit, key.units_accepted)
    except ValueProblem as problem:
        return None, [(problem.message, problem.hint or describe_valid(key))]
    problems = list(range_problems(key, parsed))
    return (None, problems) if problems else (parsed, [])


def kernel_text(key: Facts, raw: object) -> tuple[str | None, str | None]:
    """(the value as tcptune writes it, None) or (None, "problem (hint)"): one line per bad value."""
    parsed, problems = check(key, raw)
    if parsed is None:
        return None, "; ".join(f"{message} ({hint})" if hint else message for message, hint in problems)
    return format_kernel(parsed), None


def describe_valid(key: Facts) -> str:
    """What a valid value for ``key`` looks like, in one phrase."""
    if key.shape in ("enum", "bool"):
        return "one of " + ", ".join(key.choices or ("0", "1"))
    if key.shape == "string":
        return ("e.g. " if key.open_choices else "one of ") + ", ".join(key.choices) if key.choices else "a name"
    if key.shape == "portlist":
        return 'comma-separated ports or ranges, e.g. "8080,9000-9100", or "" for none'
    if key.shape == "names":
        return 'one or more names, as a list or the kernel\'s string, e.g. "reno cubic bbr"'
    bounds = bounds_text(key)
    if key.shape in ("triple", "pair"):
        arity = 3 if key.shape == "triple" else 2
        names = "/".join(key.elements) if key.elements else f"{arity} numbers"
        return f"{names}, each {bounds}" if bounds else names
    return bounds or "an integer"


def bounds_text(key: Facts) -> str:
    unit = "" if key.unit in ("none", "count") else f" {key.unit}"
    if key.minimum is not None and key.maximum is not None:
        return f"{key.minimum}..{key.maximum}{unit}"
    if key.minimum is not None:
        return f">= {key.minimum}{unit}"
    if key.maximum is not None:
        return f"<= {key.maximum}{unit}"
    return ""


def range_problems(key: Facts, parsed: Parsed) -> Iterable[tuple[str, str]]:
    if isinstance(parsed, str):
        if key.shape == "string" and key.choices and not key.open_choices and parsed not in key.choices:
            yield f"{parsed!r} is not valid", describe_valid(key)
        if key.shape == "portlist" and parsed:
            top = max(int(part.split("-")[-1]) for part in parsed.split(","))
            if top > 65535:
                yield f"port {top} is out of range", "ports are 1..65535"
        return
    if key.shape in ("enum", "bool"):
        choices = key.choices or ("0", "1")
        if str(parsed[0]) not in choices:
            meanings = ""
            if key.choice_meanings:
                meanings = " (" + "; ".join(f"{c} = {m}" for c, m in zip(choices, key.choice_meanings)) + ")"
            yield f"{parsed[0]} is not valid", "one of " + ", ".join(choices) + meanings
        return
    for index, number in enumerate(parsed):
        low_ok = key.minimum is None or number >= key.minimum
        high_ok = key.maximum is None or number <= key.maximum
        if not (low_ok and high_ok):
            where = f"{key.elements[index]} " if key.elements and len(parsed) > 1 else ""
            yield f"{where}{number} is out of range", f"valid: {bounds_text(key)}"
    if key.name in KERNEL_CHECKS_ORDER and list(parsed) != sorted(parsed):
        names = " <= ".join(key.elements) if key.elements else " <= ".join(["value"] * len(parsed))
        yield f"values {' '.join(map(str, parsed))} are out of order", f"the kernel refuses it unless {names}"
