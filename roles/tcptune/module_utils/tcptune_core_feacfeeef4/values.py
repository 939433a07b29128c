"""Parse, normalise and format sysctl values.

Standard library only and free of tcptune imports: this file is shipped verbatim into generated Ansible roles
(as ``module_utils/tcptune_values.py``) so that the CLI, verification and the Ansible module compare values with
one and the same normalisation. The kernel prints triples with tabs, users write spaces: both mean the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Tuple, Union  # noqa: UP035

_INT = re.compile(r"^[+-]?\d+$")
_PORTLIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_AROUND_SEPARATOR = re.compile(r"\s*([,-])\s*")
_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+-]*$")
_UNIT_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

BYTE_UNITS = {
    "b": 1,
    "": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
SECOND_UNITS = {"ms": 0.001, "s": 1, "": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
MILLISECOND_UNITS = {"ms": 1, "": 1, "s": 1000, "sec": 1000, "m": 60000, "min": 60000}
_UNIT_TABLES: dict[str, Mapping[str, float]] = {
    "bytes": BYTE_UNITS,
    "seconds": SECOND_UNITS,
    "milliseconds": MILLISECOND_UNITS,
}

Parsed = Union[Tuple[int, ...], str]  # noqa: UP006, UP007 - evaluated at run time on hosts (Python >= 3.8)


class ValueProblem(ValueError):
    """A value that cannot be what the key needs; ``hint`` says what would be valid."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def canonical(text: object) -> str:
    """The one normal form used to compare a live value with a desired one.

    Whitespace runs (the kernel's tabs in ``tcp_rmem``) fold to one space, integers lose leading zeros and
    signs of ``+``, port lists are merged and sorted, lists of names (``tcp_allowed_congestion_control``, which
    the kernel prints in its own order) are sorted, other text is stripped.
    """
    if isinstance(text, bool):
        return "1" if text else "0"
    if isinstance(text, int):
        return str(text)
    if isinstance(text, (list, tuple)):
        return " ".join(canonical(part) for part in text)
    s = str(text).strip()
    tokens = s.split()
    if tokens and all(_INT.match(t) for t in tokens):
        try:
            return " ".join(str(_int(t)) for t in tokens)
        except ValueProblem:  # longer than any number a kernel prints: compare as text
            return " ".join(tokens)
    if s and _PORTLIST.match(_tight(s)):
        try:
            return format_portlist(parse_portlist(s))
        except ValueProblem:  # a backwards range: not a port list the kernel would print; compare as text
            pass
    if len(tokens) > 1 and all(_NAME.match(t) for t in tokens):
        return " ".join(sorted(set(tokens)))
    return " ".join(tokens)


def same(a: object, b: object) -> bool:
    return canonical(a) == canonical(b)


def has_unsafe_characters(text: str) -> bool:
    """True for text that could smuggle extra lines or controls into a sysctl.d file or a terminal."""
    return any(ch in "\r\n\x00" or (ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in text)


def parse_portlist(text: str) -> list[tuple[int, int]]:
    """``"8080,9000-9100"`` -> merged, sorted ranges. Raises ValueProblem."""
    s = _tight(text)
    if not s:
        return []
    if not _PORTLIST.match(s):
        raise ValueProblem(f"{text!r} is not a port list", 'comma-separated ports or ranges, e.g. "8080,9000-9100"')
    ranges: list[tuple[int, int]] = []
    for part in s.split(","):
        low, _, high = part.partition("-")
        lo, hi = _int(low), _int(high or low)
        if lo > hi:
            raise ValueProblem(f"range {part} runs backwards", f"write it as {hi}-{lo}")
        ranges.append((lo, hi))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _tight(text: str) -> str:
    """Spaces around ',' and '-' removed (``"8080, 9000 - 9100"``); spaces between numbers are kept, so that
    ``"8080 9000"`` is never read as port 80809000."""
    return _AROUND_SEPARATOR.sub(r"\1", text.strip())


def format_portlist(ranges: list[tuple[int, int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def parse_number(raw: object, unit: str, units_accepted: bool) -> int:
    """One integer from YAML input: an int, a digit string, or (where accepted) a number with a unit."""
    if isinstance(raw, bool):
        raise ValueProblem(f"expected a number, got {str(raw).lower()}", "write 0 or 1 for on/off keys")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if raw.is_integer():
            return int(raw)
        raise ValueProblem(f"expected a whole number, got {raw}")
    if not isinstance(raw, str):
        raise ValueProblem(f"expected a number, got {_kind(raw)}")
    s = raw.strip()
    if _INT.match(s):
        return _int(s)
    return _number_with_unit(raw, unit, units_accepted)


def _int(digits: str) -> int:
    """``int()`` of a digit string, but ValueProblem (not ValueError) past Python's 4300-digit conversion limit."""
    try:
        return int(digits)
    except ValueError:
        raise ValueProblem(f"a number of {len(digits.lstrip('+-'))} digits is too large") from None


def _number_with_unit(raw: str, unit: str, units_accepted: bool) -> int:
    """``16MiB``, ``1.5s``: a whole number of the key's unit once scaled, or ValueProblem."""
    match = _UNIT_NUMBER.match(raw.strip())
    table = _UNIT_TABLES.get(unit)
    if not match or table is None or not units_accepted:
        hint = _unit_hint(unit) if units_accepted else f"a plain integer ({unit})" if unit != "none" else None
        raise ValueProblem(f"expected a number, got {raw!r}", hint)
    number, suffix = match.groups()
    factor = table.get(suffix.lower())
    if factor is None:
        raise ValueProblem(f"unknown unit {suffix!r} in {raw!r}", _unit_hint(unit))
    value = float(number) * factor
    if value == float("inf"):
        raise ValueProblem(f"a number of {len(number)} digits is too large", _unit_hint(unit))
    if abs(value - round(value)) > 1e-9:
        raise ValueProblem(f"{raw!r} is not a whole number of {unit}", _unit_hint(unit))
    return round(value)


def parse_value(raw: object, shape: str, unit: str = "none", units_accepted: bool = False) -> Parsed:
    """A YAML value for a key of ``shape`` -> ints tuple (numeric shapes) or normalised text.

    Raises ValueProblem with a hint. Ranges and choices are checked by the caller, which knows the key.
    """
    if isinstance(raw, str) and has_unsafe_characters(raw):
        raise ValueProblem("value contains a newline or control character", "a sysctl value is one line of text")
    if shape in ("int", "enum", "bool"):
        return _one_number(raw, shape, unit, units_accepted)
    if shape in _ARITY:
        return _numbers(raw, _ARITY[shape], unit, units_accepted)
    if shape == "portlist":
        return _port_list(raw)
    if shape == "string":
        return _name(raw)
    if shape == "names":
        return _names(raw)
    raise ValueProblem(f"unsupported shape {shape}")


_ARITY = {"triple": 3, "pair": 2}


def _one_number(raw: object, shape: str, unit: str, units_accepted: bool) -> tuple[int]:
    """int, enum and bool keys: one number (YAML true/false too, for bool keys)."""
    if shape == "bool" and isinstance(raw, bool):
        return (int(raw),)
    if isinstance(raw, (list, tuple, dict)):
        raise ValueProblem(f"expected one number, got {_kind(raw)}")
    return (parse_number(raw, unit, units_accepted),)


def _numbers(raw: object, arity: int, unit: str, units_accepted: bool) -> tuple[int, ...]:
    """Triples and pairs: a list of numbers, or the kernel's whitespace-separated string."""
    hint = f'a list of {arity} numbers or the kernel\'s string "{" ".join(["N"] * arity)}"'
    if isinstance(raw, str):
        parts: list[object] = list(raw.split())
    elif isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        raise ValueProblem(f"expected {arity} numbers, got {_kind(raw)}", hint)
    if len(parts) != arity:
        raise ValueProblem(f"expected {arity} numbers, got {len(parts)}", hint)
    return tuple(parse_number(p, unit, units_accepted) for p in parts)


def _port_list(raw: object) -> str:
    """``"8080,9000-9100"``, one port, or a list of ports and ranges -> the kernel's merged, sorted form."""
    if isinstance(raw, bool) or raw is None:
        raise ValueProblem(f"expected a port list, got {_kind(raw)}", 'e.g. "8080,9000-9100" or [8080, "9000-9100"]')
    if isinstance(raw, int):
        return format_portlist(parse_portlist(str(raw)))
    if isinstance(raw, (list, tuple)):
        items = []
        for item in raw:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise ValueProblem(f"port list entries are ports or ranges, got {_kind(item)}")
            items.append(str(item).strip())
        return format_portlist(parse_portlist(",".join(items)))
    if isinstance(raw, str):
        return format_portlist(parse_portlist(raw))
    raise ValueProblem(f"expected a port list, got {_kind(raw)}")


def _name(raw: object) -> str:
    """String keys (``tcp_congestion_control``): one plain word."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueProblem(f"expected a name, got {_kind(raw)}")
    s = raw.strip()
    if not _WORD.match(s):
        raise ValueProblem(f"{raw!r} is not a plain name", "letters, digits, '_', '-', '.' only")
    return s


def _names(raw: object) -> str:
    """Name lists (``tcp_allowed_congestion_control``): a YAML list or the kernel's space-separated string."""
    if isinstance(raw, str):
        items: list[object] = list(raw.split())
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise ValueProblem(f"expected names, got {_kind(raw)}", 'a list of names or "reno cubic bbr"')
    if not items:
        raise ValueProblem("expected at least one name", 'a list of names or "reno cubic bbr"')
    return " ".join(_name(item) for item in items)


def format_kernel(parsed: Parsed) -> str:
    """The text tcptune writes to /proc/sys and sysctl.d: single spaces between numbers."""
    if isinstance(parsed, tuple):
        return " ".join(str(n) for n in parsed)
    return parsed


def _unit_hint(unit: str) -> str:
    if unit == "bytes":
        return "a number of bytes, or with a unit: 64KiB, 16MiB, 1GiB (IEC) or kB, MB, GB (SI)"
    if unit == "seconds":
        return "a number of seconds, or with a unit: 30s, 2m, 1h"
    if unit == "milliseconds":
        return "a number of milliseconds, or with a unit: 200ms, 1s"
    return f"a plain integer ({unit})"


def _kind(raw: object) -> str:
    if raw is None:
        return "nothing (null)"
    if isinstance(raw, bool):
        return f"a boolean ({str(raw).lower()})"
    if isinstance(raw, (list, tuple)):
        return f"a list of {len(raw)}"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, str):
        return repr(raw)
    return type(raw).__name__
