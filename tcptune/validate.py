"""Profile x Catalog -> Diagnostics, plus the desired values in the kernel's own text form.

Pure: no filesystem, no kernel. Every problem is collected; nothing stops at the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import catalog, keycheck
from .errors import Diagnostic, Location
from .keycheck import KERNEL_CHECKS_ORDER
from .profile import Profile, Setting
from .values import format_kernel

UNPRIVILEGED_PORT_DEFAULT = 1024


class Verdict:
    """What validation found, and the values that passed, ready to compare with /proc/sys.

    ``values`` maps each full key name that passed to its value as tcptune writes it (single spaces), the keys
    of the profile's ``raw:`` mapping included; ``raw`` names those, which the catalog did not check (downstream
    code marks them, preflight checks them against the running kernel, the engine records them).
    """

    def __init__(self, profile: Profile, diagnostics: list[Diagnostic] | None = None) -> None:
        self.profile = profile
        self.diagnostics: list[Diagnostic] = diagnostics if diagnostics is not None else []
        self.values: dict[str, str] = {}
        self.parsed: dict[str, tuple[int, ...] | str] = {}
        self.raw: frozenset[str] = frozenset()

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(profile: Profile, *, container: bool = False) -> Verdict:
    """Check every setting of a resolved profile against the catalog.

    ``container`` (or a profile whose chain names a container profile) turns global keys into warnings:
    they are read-only or absent inside a container's network namespace.
    """
    verdict = Verdict(profile, diagnostics=list(profile.problems))
    add = verdict.diagnostics.append
    for key_name, setting in profile.settings.items():
        key = catalog.get(key_name)
        if key is None:
            add(_unknown_key(setting))
            continue
        if key.removed:
            add(
                Diagnostic(
                    "error",
                    setting.location,
                    f"removed from the kernel in {key.removed}",
                    key=key.name,
                    hint=key.removed_reason,
                )
            )
            continue
        parsed, problems = keycheck.check(key, setting.value)
        for message, hint in problems:
            add(Diagnostic("error", setting.location, message, key=key.name, hint=hint))
        if parsed is None:
            continue
        verdict.parsed[key.name] = parsed
        verdict.values[key.name] = format_kernel(parsed)
        if key.obsolete:
            add(
                Diagnostic(
                    "warning",
                    setting.location,
                    f"does nothing since Linux {key.obsolete}",
                    key=key.name,
                    hint=key.obsolete_reason,
                )
            )
        if key.shape == "string" and key.choices and key.open_choices and parsed not in key.choices:
            add(
                Diagnostic(
                    "warning",
                    setting.location,
                    f"{parsed!r} is not one of the usual values",
                    key=key.name,
                    hint="usual: " + ", ".join(key.choices) + "; it must be available on the target kernel",
                )
            )

    for key_name, setting in profile.raw.items():  # checked when loaded: net.*, unknown to the catalog, one line
        verdict.values[key_name] = str(setting.value)
    verdict.raw = frozenset(profile.raw)

    for rule in RULES:
        verdict.diagnostics.extend(rule(verdict))
    in_container = container or any("container" in name for name in profile.chain)
    if in_container:
        for key_name in verdict.values:
            key = catalog.get(key_name)
            if key and key.scope == "global":
                add(
                    Diagnostic(
                        "warning",
                        profile.settings[key_name].location,
                        "global key in a profile meant for containers",
                        key=key_name,
                        hint="it is read-only or absent inside a container's network namespace; set it on the host",
                    )
                )
    verdict.diagnostics.sort(key=lambda d: (d.location.file, d.location.line, d.location.column))
    return verdict


def _unknown_key(setting: Setting) -> Diagnostic:
    written = setting.written_as or setting.key
    options = catalog.ambiguous(written)
    if options:
        return Diagnostic(
            "error",
            setting.location,
            "ambiguous bare key name",
            key=written,
            hint="write the full name: " + " or ".join(options),
        )
    close = catalog.suggest(setting.key)
    hint = f"did you mean {' or '.join(close)}?" if close else "run 'tcptune explain --list' for the known keys"
    return Diagnostic("error", setting.location, "unknown sysctl key", key=written, hint=hint)


# ---- cross-key rules: each takes the verdict so far and yields diagnostics --------------------------------------

Rule = Callable[[Verdict], Iterable[Diagnostic]]


def _value(verdict: Verdict, name: str) -> tuple[int, ...] | None:
    parsed = verdict.parsed.get(name)
    return parsed if isinstance(parsed, tuple) else None


def _at(verdict: Verdict, name: str) -> Location:
    return verdict.profile.settings[name].location


def _port_range_vs_unprivileged(verdict: Verdict) -> Iterable[Diagnostic]:
    ports = _value(verdict, "net.ipv4.ip_local_port_range")
    if not ports:
        return
    start = _value(verdict, "net.ipv4.ip_unprivileged_port_start")
    floor = start[0] if start else UNPRIVILEGED_PORT_DEFAULT
    if ports[0] < floor:
        source = "as this profile sets it" if start else "the kernel default; set it lower in this profile if meant"
        yield Diagnostic(
            "error",
            _at(verdict, "net.ipv4.ip_local_port_range"),
            f"low port {ports[0]} is below net.ipv4.ip_unprivileged_port_start ({floor}, {source})",
            key="net.ipv4.ip_local_port_range",
            hint="the kernel rejects a range that overlaps privileged ports",
        )
    elif ports[0] % 2 == ports[1] % 2:
        yield Diagnostic(
            "warning",
            _at(verdict, "net.ipv4.ip_local_port_range"),
            "low and high have the same parity",
            key="net.ipv4.ip_local_port_range",
            hint="the kernel's connect() port search works best with one even and one odd bound",
        )


def _vector_order(verdict: Verdict) -> Iterable[Diagnostic]:
    """Buffer and memory triples out of order: the kernel stores them as given, which is almost always a typo."""
    for name, parsed in verdict.parsed.items():
        key = catalog.get(name)
        if key is None or key.shape != "triple" or name in KERNEL_CHECKS_ORDER or not isinstance(parsed, tuple):
            continue
        if list(parsed) != sorted(parsed):
            order = " <= ".join(key.elements)
            yield Diagnostic(
                "warning",
                _at(verdict, name),
                f"values {' '.join(map(str, parsed))} are out of order ({order})",
                key=name,
                hint="the kernel does not check the order and stores them as given; "
                + _ORDER_CONSEQUENCE.get(name, "the limits then contradict each other"),
            )


_ORDER_CONSEQUENCE = {
    "net.ipv4.tcp_rmem": "a default above the max starts every socket above the autotuning ceiling",
    "net.ipv4.tcp_wmem": "a default above the max starts every socket above the autotuning ceiling",
}


def _buffer_min_below_page(verdict: Verdict) -> Iterable[Diagnostic]:
    for name in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
        triple = _value(verdict, name)
        if triple and triple[0] < MIN_BUFFER_FLOOR:
            yield Diagnostic(
                "warning",
                _at(verdict, name),
                f"min {triple[0]} is below {MIN_BUFFER_FLOOR} bytes",
                key=name,
                hint="the min is what each socket is guaranteed under memory pressure; the kernel's own default"
                " is one page (4096 bytes)",
            )


MIN_BUFFER_FLOOR = 4096


def _reordering_vs_max(verdict: Verdict) -> Iterable[Diagnostic]:
    reordering = _value(verdict, "net.ipv4.tcp_reordering")
    if not reordering:
        return
    cap = _value(verdict, "net.ipv4.tcp_max_reordering")
    entry = catalog.get("net.ipv4.tcp_max_reordering")
    ceiling = cap[0] if cap else int(entry.default) if entry and entry.default else None
    if ceiling is not None and reordering[0] > ceiling:
        origin = "set in this profile" if cap else "kernel default"
        yield Diagnostic(
            "warning",
            _at(verdict, "net.ipv4.tcp_reordering"),
            f"{reordering[0]} is above net.ipv4.tcp_max_reordering ({ceiling}, {origin})",
            key="net.ipv4.tcp_reordering",
            hint="Linux 6.18 refuses such a write, and older kernels never use more than the max",
        )


def _tw_reuse_needs_timestamps(verdict: Verdict) -> Iterable[Diagnostic]:
    reuse = _value(verdict, "net.ipv4.tcp_tw_reuse")
    stamps = _value(verdict, "net.ipv4.tcp_timestamps")
    if reuse and reuse[0] in (1, 2) and stamps and stamps[0] == 0:
        yield Diagnostic(
            "warning",
            _at(verdict, "net.ipv4.tcp_tw_reuse"),
            "has no effect with net.ipv4.tcp_timestamps = 0",
            key="net.ipv4.tcp_tw_reuse",
            hint="TIME_WAIT reuse is judged by TCP timestamps; enable them or drop tcp_tw_reuse",
        )


def _low_fin_timeout(verdict: Verdict) -> Iterable[Diagnostic]:
    fin = _value(verdict, "net.ipv4.tcp_fin_timeout")
    if fin and fin[0] < 10:
        yield Diagnostic(
            "warning",
            _at(verdict, "net.ipv4.tcp_fin_timeout"),
            f"{fin[0]} s is very low",
            key="net.ipv4.tcp_fin_timeout",
            hint="slow peers may be cut off while closing; it does not shorten TIME_WAIT (fixed 60 s)",
        )


def _buffer_max_vs_core(tcp_key: str, core_key: str) -> Rule:
    def rule(verdict: Verdict) -> Iterable[Diagnostic]:
        triple = _value(verdict, tcp_key)
        if not triple:
            return
        core = _value(verdict, core_key)
        entry = catalog.get(core_key)
        ceiling = core[0] if core else int(entry.default) if entry and entry.default else None
        if ceiling is not None and triple[2] > ceiling:
            origin = "set in this profile" if core else "kernel default"
            yield Diagnostic(
                "warning",
                _at(verdict, tcp_key),
                f"max {triple[2]} is above {core_key} ({ceiling}, {origin})",
                key=tcp_key,
                hint=f"autotuning may grow to it, but applications that set buffer sizes are capped "
                f"at {core_key}; raise both if that was meant",
            )

    return rule


_RISKY_OFF = {
    "net.ipv4.tcp_timestamps": "disables PAWS, RTT measurement and TIME_WAIT reuse",
    "net.ipv4.tcp_window_scaling": "caps the receive window at 64 KiB, crippling long fat networks",
    "net.ipv4.tcp_sack": "makes loss recovery much slower",
    "net.ipv4.tcp_syncookies": "removes protection against SYN floods",
}


def _risky_disables(verdict: Verdict) -> Iterable[Diagnostic]:
    for name, why in _RISKY_OFF.items():
        value = _value(verdict, name)
        if value and value[0] == 0:
            yield Diagnostic(
                "warning",
                _at(verdict, name),
                f"turning this off {why}",
                key=name,
                hint="keep the kernel default unless you have measured a reason",
            )


RULES: tuple[Rule, ...] = (
    _port_range_vs_unprivileged,
    _vector_order,
    _buffer_min_below_page,
    _reordering_vs_max,
    _tw_reuse_needs_timestamps,
    _low_fin_timeout,
    _buffer_max_vs_core("net.ipv4.tcp_rmem", "net.core.rmem_max"),
    _buffer_max_vs_core("net.ipv4.tcp_wmem", "net.core.wmem_max"),
    _risky_disables,
)
