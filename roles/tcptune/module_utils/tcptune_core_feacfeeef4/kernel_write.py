"""What the kernel does with the bytes a boot applier writes to one /proc/sys file: a pure model of its proc handlers.

Ported from Linux 6.18 kernel/sysctl.c (proc_get_long, __do_proc_dointvec, do_proc_douintvec_w,
__do_proc_doulongvec_minmax, proc_dostring) and the handlers in net/ipv4/sysctl_net_ipv4.c; which handler and bounds
a key has is catalog data (``catalog.KernelWrite``). Numbers are read the kernel's way: base 0 (``017`` is 15,
``0x11`` is 17), no ``+``, one of space/tab/newline (or the end) right after each number, at most 20 characters.
Vectors are stored element by element, so a bad third element leaves the first two written.

Values are kept as the kernel shows them when read back: a tuple of ints (seconds for jiffies keys) or a string.
Whatever cannot be told exactly is an ``Unknown`` with its reason, never a guess.
"""

from __future__ import annotations

from typing import Tuple, Union  # noqa: UP035

from .catalog import KernelWrite
from .records import Record

Value = Union[Tuple[int, ...], str]  # noqa: UP006, UP007 - evaluated at run time on hosts (Python >= 3.8)

INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
ULONG_MAX = 2**64 - 1
PAGE_SIZE = 4096
_TMPBUFLEN = 22  # proc_get_long copies at most TMPBUFLEN - 1 bytes
_CONFIG_HZ_CHOICES = (100, 250, 300, 1000)
_TCP_CA_NAME_MAX = 16

_KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")  # lib/ctype.c: _S, including Latin-1 NBSP (0xA0)
_AFTER_NUMBER = frozenset(b" \t\n")  # proc_wspace_sep
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Unknown:
    """A value (or outcome) the model cannot tell, and why. (Not a tuple, so it never equals a value.)

    A plain class, not a frozen dataclass: dataclasses generate and compile code at import, half a millisecond per
    class on the start-up path of ``diff`` (bench/diff_latency).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Unknown and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(self.reason)

    def __repr__(self) -> str:
        return f"Unknown(reason={self.reason!r})"


State = Union[Value, Unknown]  # noqa: UP007 - evaluated at run time on hosts (Python >= 3.8)


class KernelFacts(Record):
    """Facts about the target kernel that some writes depend on; None where not known."""

    hz: int | None = None
    """CONFIG_HZ: a jiffies key accepts a value only up to INT_MAX / HZ seconds."""
    congestion_allowed: frozenset[str] | None = None
    """Congestion-control names a write to tcp_congestion_control may set (in a child namespace: the allowed list)."""


class Written(Record):
    """What one write did: accepted (None if it cannot be told), the key's value afterwards, and why."""

    accepted: bool | None
    value: State
    partial: bool = False
    """Refused, but only after storing the leading elements of a vector."""
    reason: str = ""


class _Refused(Exception):
    pass


class _Unsure(Exception):
    pass


def show(value: Value) -> str:
    """The value as the kernel prints it (without the trailing newline): vector elements are tab-separated."""
    return value if isinstance(value, str) else "\t".join(str(v) for v in value)


def parse_shown(rule: KernelWrite, text: str) -> State:
    """A value as read back from /proc/sys (what ``show`` produces), in the model's terms."""
    if rule.handler == "congestion":
        return text.strip()
    try:
        numbers = tuple(int(part) for part in text.split())
    except ValueError:
        return Unknown(f"unexpected value {text!r} read back")
    if len(numbers) != rule.arity:
        return Unknown(f"unexpected value {text!r} read back")
    return numbers


def write(rule: KernelWrite, current: State, data: bytes, facts: KernelFacts, peer: State | None = None) -> Written:
    """The effect of writing ``data`` (what the applier sends, newline included) in one write(2) at offset 0.

    ``peer`` is the current value of the key ``rule.peer`` names: the other half of the port checks
    (ip_unprivileged_port_start for ip_local_port_range and the reverse), the cap of a ``capped`` key.
    """
    if len(data) > PAGE_SIZE - 1:
        return Written(None, Unknown("value longer than the kernel reads in one write"), reason="value too long")
    try:
        if rule.handler in ("int", "jiffies"):
            return _int_vector(rule, current, data, facts)
        if rule.handler == "devinet":
            return _int_vector(KernelWrite("int"), current, data, facts)
        if rule.handler in ("uint", "u8"):
            return _unsigned(rule, current, data)
        if rule.handler == "ulong":
            return _ulong_vector(rule, current, data)
        if rule.handler == "port_range":
            return _port_range(rule, current, data, peer)
        if rule.handler == "port_start":
            return _port_start(rule, current, data, peer)
        if rule.handler == "capped":
            return _capped(rule, current, data, facts, peer)
        if rule.handler == "congestion":
            return _congestion(current, data, facts)
    except _Unsure as unsure:
        return Written(None, Unknown(str(unsure)), reason=str(unsure))
    raise AssertionError(f"unhandled kernel handler {rule.handler}")


# ---- proc_get_long and the element loops ---------------------------------------------------------------------------


def _skip_spaces(buf: bytes, pos: int) -> int:
    while pos < len(buf) and buf[pos] in _KERNEL_SPACE:
        pos += 1
    return pos


def _get_long(buf: bytes, pos: int) -> tuple[bool, int, int]:
    """(negative, magnitude, position after the number); _Refused where the kernel returns -EINVAL."""
    size = len(buf) - pos
    tmp = buf[pos : pos + min(size, _TMPBUFLEN - 1)]
    i = 0
    negative = False
    if tmp[:1] == b"-" and size > 1:
        negative = True
        i = 1
    if i >= len(tmp) or not 0x30 <= tmp[i] <= 0x39:
        raise _Refused(f"{_show_bytes(tmp[i : i + 1]) or 'nothing'} where a number should start")
    base = 10
    if tmp[i] == 0x30:
        if i + 2 < len(tmp) and tmp[i + 1] | 0x20 == 0x78 and tmp[i + 2] in _HEX:
            base = 16
            i += 2
        else:
            base = 8
    magnitude = 0
    while i < len(tmp):
        char = tmp[i]
        if 0x30 <= char <= 0x39:
            digit = char - 0x30
        elif 0x61 <= char | 0x20 <= 0x66:
            digit = (char | 0x20) - 0x61 + 10
        else:
            break
        if digit >= base:
            break
        magnitude = magnitude * base + digit
        i += 1
    if magnitude > ULONG_MAX:
        raise _Refused("number too large")
    if i == _TMPBUFLEN - 1:
        raise _Refused("number longer than 20 characters")
    if i < size and tmp[i] not in _AFTER_NUMBER:
        raise _Refused(f"{_show_bytes(tmp[i : i + 1])} right after the number")
    return negative, magnitude, pos + i


def _elements(data: bytes, count: int, convert: object) -> tuple[list[int], str | None]:
    """The element loop of __do_proc_dointvec / __do_proc_doulongvec_minmax: values stored, and the refusal if any."""
    stored: list[int] = []
    pos = 0
    for _ in range(count):
        if pos >= len(data):
            break
        pos = _skip_spaces(data, pos)
        if pos >= len(data):
            break
        try:
            negative, magnitude, pos = _get_long(data, pos)
            stored.append(convert(negative, magnitude))  # type: ignore[operator]
        except _Refused as refused:
            return stored, str(refused)
    if not stored:
        return stored, "no number"
    return stored, None


def _int_converter(rule: KernelWrite, facts: KernelFacts) -> object:
    def convert(negative: bool, magnitude: int) -> int:
        if rule.handler == "jiffies":
            _check_jiffies(magnitude, facts.hz)
            value = -magnitude if negative else magnitude
        else:
            if magnitude > (INT_MAX + 1 if negative else INT_MAX):
                raise _Refused("outside the range of an int")
            value = -magnitude if negative else magnitude
        _check_bounds(value, rule.low, rule.high)
        return value

    return convert


def _check_jiffies(seconds: int, hz: int | None) -> None:
    if hz is not None:
        if seconds > INT_MAX // hz:
            raise _Refused(f"more than {INT_MAX // hz} seconds (INT_MAX jiffies at HZ={hz})")
        return
    if seconds > INT_MAX // min(_CONFIG_HZ_CHOICES):
        raise _Refused(f"more than {INT_MAX // min(_CONFIG_HZ_CHOICES)} seconds (INT_MAX jiffies at any HZ)")
    if seconds > INT_MAX // max(_CONFIG_HZ_CHOICES):
        raise _Unsure("accepted only if value * CONFIG_HZ fits an int, and HZ is not known")


def _check_bounds(value: int, low: int | None, high: int | None) -> None:
    if low is not None and value < low:
        raise _Refused(f"below the kernel's minimum {low}")
    if high is not None and value > high:
        raise _Refused(f"above the kernel's maximum {high}")


def _merge(current: State, stored: list[int], count: int) -> State:
    """The key's value after ``stored`` replaced its leading elements."""
    if len(stored) == count:
        return tuple(stored)
    if isinstance(current, Unknown):
        return Unknown(f"only {len(stored)} of {count} elements written, and the others were not known")
    assert not isinstance(current, str)
    return tuple(stored) + current[len(stored) :]


def _int_vector(rule: KernelWrite, current: State, data: bytes, facts: KernelFacts) -> Written:
    stored, refusal = _elements(data, rule.arity, _int_converter(rule, facts))
    value = _merge(current, stored, rule.arity) if stored else current
    if refusal is None:
        return Written(True, value)
    return Written(False, value, partial=bool(stored), reason=refusal)


def _ulong_vector(rule: KernelWrite, current: State, data: bytes) -> Written:
    def convert(negative: bool, magnitude: int) -> int:
        if negative:
            raise _Refused("negative")
        _check_bounds(magnitude, rule.low, rule.high)
        return magnitude

    stored, refusal = _elements(data, rule.arity, convert)
    value = _merge(current, stored, rule.arity) if stored else current
    if refusal is None:
        return Written(True, value)
    return Written(False, value, partial=bool(stored), reason=refusal)


def _unsigned(rule: KernelWrite, current: State, data: bytes) -> Written:
    """do_proc_douintvec_w (proc_douintvec, proc_dou8vec_minmax): one value, no sign, stored only if all is well."""
    pos = _skip_spaces(data, 0)
    try:
        if pos >= len(data):
            raise _Refused("no number")
        negative, magnitude, _ = _get_long(data, pos)
        if negative:
            raise _Refused("negative (this key is unsigned)")
        if magnitude > UINT_MAX:
            raise _Refused("outside the range of an unsigned int")
        low = rule.low if rule.low is not None else 0
        high = rule.high if rule.high is not None else (255 if rule.handler == "u8" else None)
        _check_bounds(magnitude, low, high)
    except _Refused as refused:
        return Written(False, current, reason=str(refused))
    return Written(True, (magnitude,))


def _port_range(rule: KernelWrite, current: State, data: bytes, unprivileged_start: State | None) -> Written:
    """ipv4_local_port_range: parsed into a copy, stored only if low <= high and low >= ip_unprivileged_port_start."""
    stored, refusal = _elements(data, rule.arity, _int_converter(KernelWrite("int", low=rule.low, high=rule.high), _NO))
    if refusal is not None:
        return Written(False, current, reason=refusal)
    candidate = _merge(current, stored, rule.arity)
    if isinstance(candidate, Unknown):
        raise _Unsure(candidate.reason)
    assert not isinstance(candidate, str)
    low, high = candidate
    if high < low:
        return Written(False, current, reason="upper bound below lower bound")
    start = _single(unprivileged_start, "ip_unprivileged_port_start")
    if low < start:
        return Written(False, current, reason=f"starts below ip_unprivileged_port_start ({start})")
    return Written(True, candidate)


def _port_start(rule: KernelWrite, current: State, data: bytes, local_port_range: State | None) -> Written:
    """ipv4_privileged_ports: stored only if the live ip_local_port_range starts at or above it."""
    stored, refusal = _elements(data, 1, _int_converter(KernelWrite("int", low=rule.low, high=rule.high), _NO))
    if refusal is not None:
        return Written(False, current, reason=refusal)
    if isinstance(local_port_range, Unknown) or local_port_range is None:
        raise _Unsure("depends on ip_local_port_range, which is not known")
    assert not isinstance(local_port_range, str)
    if local_port_range[0] < stored[0]:
        return Written(False, current, reason=f"above the start of ip_local_port_range ({local_port_range[0]})")
    return Written(True, (stored[0],))


def _capped(rule: KernelWrite, current: State, data: bytes, facts: KernelFacts, cap_state: State | None) -> Written:
    """proc_dointvec_minmax whose extra2 points at another key (tcp_reordering <= tcp_max_reordering)."""
    cap = _single(cap_state, rule.peer or "its cap")
    outcome = _int_vector(KernelWrite("int", low=rule.low), current, data, facts)
    if outcome.accepted and not isinstance(outcome.value, (Unknown, str)) and outcome.value[0] > cap:
        return Written(False, current, reason=f"above {rule.peer} ({cap})")
    return outcome


def _single(state: State | None, name: str) -> int:
    if state is None or isinstance(state, (Unknown, str)):
        raise _Unsure(f"depends on {name}, which is not known")
    return state[0]


def _congestion(current: State, data: bytes, facts: KernelFacts) -> Written:
    """proc_dostring into a TCP_CA_NAME_MAX buffer (up to 15 bytes, ends at newline or NUL), then a lookup."""
    name_bytes = data[: _TCP_CA_NAME_MAX - 1].split(b"\n", 1)[0].split(b"\0", 1)[0]
    name = name_bytes.decode("latin-1")
    if facts.congestion_allowed is None:
        raise _Unsure("which congestion-control names this kernel allows is not known")
    if name not in facts.congestion_allowed:
        return Written(False, current, reason=f"congestion control {name!r} not allowed here")
    return Written(True, name)


def _show_bytes(raw: bytes) -> str:
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii")


_NO = KernelFacts()
