"""Kernel preflight: desired values x kernel facts -> per key, what the write would do, before the first write.

Pure: the facts come from ``kernelfacts.read_facts``. A key is ``refused`` when this kernel will not take the write
(a value it does not support, a host-wide key in a container, a congestion-control name the namespace may not use,
a port check that fails given the writes before it), ``warning`` when the write works but not as one might think
(a key that does nothing, a value older kernels read differently, something that cannot be told), else ``ok``.

Writes are judged in the order ``live.order_writes`` gives them (the order apply uses), each against the values
the earlier writes of the same plan leave behind: the kernel checks ``ip_local_port_range`` against the live
``ip_unprivileged_port_start``, and ``tcp_reordering`` against ``tcp_max_reordering``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import catalog, kernel_write
from .kernelfacts import Facts, parse_version
from .live import LiveValue, order_writes
from .records import Record
from .values import canonical

if TYPE_CHECKING:
    from .plan import Plan

OK, WARNING, REFUSED = "ok", "warning", "refused"
_RANK = {OK: 0, WARNING: 1, REFUSED: 2}
CONGESTION = "net.ipv4.tcp_congestion_control"
ALLOWED_CONGESTION = "net.ipv4.tcp_allowed_congestion_control"


class Verdict(Record):
    """What writing one key would do on this kernel. ``raw``: a key of the profile's raw: mapping."""

    key: str
    outcome: str
    """ok | warning | refused."""
    reasons: tuple[str, ...] = ()
    raw: bool = False

    @property
    def refused(self) -> bool:
        return self.outcome == REFUSED

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reasons": list(self.reasons), "raw": self.raw}


def keys_to_read(desired: Iterable[str]) -> set[str]:
    """The keys whose live values the check needs: the desired ones, the keys their kernel checks read, and the
    first key of each kernel module a desired key needs (to tell "module not loaded" from "no such key")."""
    keys = set(desired)
    for key in list(keys):
        rule = catalog.KERNEL_WRITES.get(key)
        if rule is not None and rule.peer:
            keys.add(rule.peer)
        entry = catalog.get(key)
        if entry is not None and entry.module and _MODULE_PROBES.get(entry.module):
            keys.add(_MODULE_PROBES[entry.module])
    return keys


_MODULE_PROBES = {"nf_conntrack": "net.netfilter.nf_conntrack_max"}
"""A key each module always registers in the initial namespace and in every child one."""


def check(desired: Mapping[str, str], facts: Facts, raw: Collection[str] = ()) -> dict[str, Verdict]:
    """Per desired key (full name -> value as tcptune writes it): the preflight verdict on this kernel."""
    found: dict[str, list[tuple[str, str]]] = {key: [] for key in desired}
    writes: list[tuple[str, str, str]] = []
    version = facts.version
    for key in sorted(desired):
        entry = catalog.get(key)
        live = facts.live.get(key)
        notes = found[key]
        if entry is not None and entry.obsolete and _at_least(version, entry.obsolete):
            notes.append((WARNING, f"accepted but does nothing since Linux {entry.obsolete}: {entry.obsolete_reason}"))
        blocked = _cannot_write(key, entry, live, facts)
        if blocked:
            notes.append((REFUSED, blocked))
            continue
        assert live is not None and live.text is not None
        if canonical(live.text) == canonical(desired[key]):
            continue  # already in place: nothing is written
        notes.extend(_value_notes(key, entry, desired[key], live.text, facts, key in raw))
        writes.append((key, canonical(desired[key]), canonical(live.text)))
    for key, note in _sequenced(writes, facts):
        found[key].append(note)
    return {key: _verdict(key, notes, key in raw) for key, notes in found.items()}


def fold(plan_: Plan, verdicts: Mapping[str, Verdict]) -> Plan:
    """The plan with each key's verdict attached: a refused key that differs becomes ``refused`` (its write leaves
    the plan), and a key that cannot be written anyway (missing, read-only) takes preflight's more exact reason."""
    from .plan import DIFFERS, MISSING, READ_ONLY, REFUSED, Plan

    states = []
    for state in plan_.keys:
        verdict = verdicts.get(state.key)
        if verdict is None:
            states.append(state)
            continue
        state = state._replace(preflight=verdict.outcome, reasons=verdict.reasons, raw=verdict.raw)
        if verdict.refused and state.status == DIFFERS:
            state = state._replace(status=REFUSED, note=verdict.reason)
        elif verdict.refused and state.status in (MISSING, READ_ONLY):
            reason = verdict.reason
            note = reason[len("missing: ") :] if reason.startswith("missing: ") else reason  # 3.8: no removeprefix
            state = state._replace(note=note)
        states.append(state)
    refused = {s.key for s in states if s.status == REFUSED}
    changes = tuple(c for c in plan_.changes if c.key not in refused)
    return Plan(plan_.profile, plan_.fingerprint, tuple(states), changes)


def _verdict(key: str, notes: list[tuple[str, str]], raw: bool) -> Verdict:
    outcome = max((level for level, _ in notes), key=_RANK.__getitem__, default=OK)
    ordered = [text for level, text in notes if level == REFUSED] + [text for level, text in notes if level != REFUSED]
    return Verdict(key, outcome, tuple(ordered), raw)


# ---- can the key be written here at all ---------------------------------------------------------------------------


def _cannot_write(key: str, entry: catalog.Key | None, live: LiveValue | None, facts: Facts) -> str | None:
    """Why the key cannot be written here (absent, unreadable, read-only), or None."""
    if live is None or live.status == "missing":
        return _missing(entry, facts)
    if live.status != "ok" or live.text is None:
        return live.error or "could not be read"
    if live.writable:
        return None
    if entry is not None and _scope(entry, facts) == "global" and facts.child_netns:
        return _host_wide(entry, facts)
    if facts.child_netns and key == ALLOWED_CONGESTION:
        return "host-wide: read-only inside a child network namespace; set it on the host"
    return "not writable here: /proc/sys is read-only, or not running as root"


def _missing(entry: catalog.Key | None, facts: Facts) -> str:
    version, release = facts.version, facts.release
    if entry is None:
        return "missing: this kernel has no such key (or the module that provides it is not loaded)"
    if entry.module:
        probe = facts.live.get(_MODULE_PROBES.get(entry.module, ""))
        if probe is None or probe.status == "missing":
            return f"missing: module {entry.module} is not loaded (tcptune does not load modules)"
    if entry.removed and _at_least(version, entry.removed):
        return f"missing: removed in Linux {entry.removed} ({entry.removed_reason})"
    if entry.added and version is not None and not _at_least(version, entry.added):
        return f"missing: added in Linux {entry.added}; this kernel is {release}"
    if _scope(entry, facts) == "global" and facts.child_netns:
        return _host_wide(entry, facts)
    return "missing: this kernel has no such key"


def _host_wide(entry: catalog.Key, facts: Facts) -> str:
    if entry.netns_since:
        return (
            f"host-wide on this kernel ({facts.release}; per network namespace only since Linux"
            f" {entry.netns_since}): a container cannot change it; set it on the host"
        )
    return "host-wide: absent or read-only inside a child network namespace; set it on the host"


def _scope(entry: catalog.Key, facts: Facts) -> str:
    if entry.netns_since and facts.version is not None and not _at_least(facts.version, entry.netns_since):
        return "global"
    return entry.scope


# ---- is the value one this kernel takes --------------------------------------------------------------------------


def _value_notes(
    key: str, entry: catalog.Key | None, value: str, live_text: str, facts: Facts, raw: bool
) -> list[tuple[str, str]]:
    if entry is None:
        return _raw_value_notes(value, live_text) if raw else []
    notes: list[tuple[str, str]] = []
    history = _history_for(entry, value)
    if history is not None:
        notes.extend(_history_notes(history, value, facts))
    if key == CONGESTION:
        notes.extend(_congestion_notes(value, facts))
    if key == ALLOWED_CONGESTION:
        notes.extend(_allowed_notes(value, facts))
    return notes


def _history_for(entry: catalog.Key, value: str) -> catalog.ValueHistory | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return next((h for h in entry.value_history if h.low <= number <= h.high), None)


def _history_notes(history: catalog.ValueHistory, value: str, facts: Facts) -> list[tuple[str, str]]:
    what = f"{value} ({history.what})" if history.what else value
    version = facts.version
    older = history.older_through
    if version is None:
        return [(WARNING, f"{what} is not supported up to Linux {older}; this kernel's version is unknown")]
    if not _at_least(version, _next(older)):
        if history.older_effect is None:
            return [(REFUSED, f"this kernel ({facts.release}) refuses {what}: not supported up to Linux {older}")]
        return [(WARNING, f"this kernel ({facts.release}) predates {what}: {history.older_effect}")]
    if history.since is None or not _at_least(version, history.since):
        return [
            (
                WARNING,
                f"{what} is refused up to Linux {history.older_through}; tcptune cannot tell whether this kernel"
                f" ({facts.release}) takes it",
            )
        ]
    return []


def _congestion_notes(name: str, facts: Facts) -> list[tuple[str, str]]:
    if facts.child_netns:
        if facts.allowed_cc is None:
            return [(WARNING, "inside a network namespace, and tcp_allowed_congestion_control cannot be read")]
        if name not in facts.allowed_cc:
            shown = facts.live.get(ALLOWED_CONGESTION)
            allowed = " ".join(shown.text.split()) if shown and shown.text else " ".join(sorted(facts.allowed_cc))
            return [
                (
                    REFUSED,
                    f"inside a network namespace only names in tcp_allowed_congestion_control ({allowed}) may be"
                    f" chosen; {name!r} fails with EPERM (add it to that list on the host)",
                )
            ]
        return []
    if facts.available_cc is None or name in facts.available_cc:
        return []
    module = f"tcp_{name}"
    if facts.can_load_modules is False:
        return [(REFUSED, f"{name!r} is not available and this kernel cannot load modules (ENOENT)")]
    if facts.modules is not None and module not in facts.modules:
        return [(REFUSED, f"{name!r} is not available and there is no module {module} for this kernel (ENOENT)")]
    if facts.modules is not None:
        return [(WARNING, f"{name!r} is not loaded yet: the write makes the kernel load module {module}")]
    return [(WARNING, f"{name!r} is not available now: the write asks the kernel to load {module} (ENOENT if none)")]


def _allowed_notes(value: str, facts: Facts) -> list[tuple[str, str]]:
    if facts.available_cc is None:
        return []
    unknown = [name for name in value.split() if name not in facts.available_cc]
    if not unknown:
        return []
    return [
        (
            REFUSED,
            f"{', '.join(unknown)} not available (loaded or built in); the kernel loads no modules for this list"
            " and refuses it with ENOENT",
        )
    ]


def _raw_value_notes(value: str, live_text: str) -> list[tuple[str, str]]:
    """What can be told of a raw key's value without writing it: the kernel's own text has a shape."""
    shown, wanted = live_text.split(), value.split()
    if not shown or not all(_is_int(t) for t in shown):
        return []
    if not all(_is_int(t) for t in wanted):
        return [(REFUSED, f"the kernel shows numbers here ({' '.join(shown)}); {value!r} is not numbers")]
    if len(wanted) != len(shown):
        return [
            (
                WARNING,
                f"the kernel shows {len(shown)} number(s) here, the value has {len(wanted)}: a numeric vector takes"
                " what it is given and keeps the rest",
            )
        ]
    return []


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


# ---- the writes in order, against the values the earlier ones leave ----------------------------------------------


def _sequenced(writes: list[tuple[str, str, str]], facts: Facts) -> Iterable[tuple[str, tuple[str, str]]]:
    """Run the plan's writes through the kernel model in apply's order; yield (key, note) for each problem."""
    state: dict[str, kernel_write.State] = {}

    def current(key: str) -> kernel_write.State | None:
        if key in state:
            return state[key]
        rule, live = catalog.KERNEL_WRITES.get(key), facts.live.get(key)
        if rule is None or live is None or live.text is None:
            return None
        return kernel_write.parse_shown(rule, live.text)

    ordered = order_writes(writes)
    earlier: list[str] = []
    for key, new, _old in ordered:
        rule = catalog.KERNEL_WRITES.get(key)
        entry = catalog.get(key)
        if rule is None or rule.handler == "congestion" or not _rule_holds(rule, facts):
            earlier.append(key)
            continue
        if entry is not None and _history_for(entry, new) is not None:
            earlier.append(key)  # judged by the value's kernel history, not by the 6.18 bounds
            continue
        before = current(key)
        if before is None:
            before = kernel_write.Unknown("its value is not known")
        peer = current(rule.peer) if rule.peer else None
        outcome = kernel_write.write(rule, before, (new + "\n").encode(), kernel_write.KernelFacts(), peer)
        if outcome.accepted is False:
            after = ""
            if rule.peer and rule.peer in earlier:
                after = f" (after {rule.peer} is written: tcptune writes it first)"
            yield key, (REFUSED, f"the kernel refuses {new!r}: {outcome.reason}{after}")
        elif outcome.accepted is None:
            yield key, (WARNING, f"cannot tell whether the kernel takes {new!r}: {outcome.reason}")
        else:
            state[key] = outcome.value
        earlier.append(key)


def _rule_holds(rule: catalog.KernelWrite, facts: Facts) -> bool:
    return rule.since is None or _at_least(facts.version, rule.since)


# ---- versions ----------------------------------------------------------------------------------------------------


def _at_least(version: tuple[int, ...] | None, wanted: str) -> bool:
    """Whether ``version`` is ``wanted`` or later (False when the version is not known)."""
    target = parse_version(wanted)
    if version is None or target is None:
        return False
    return version[:2] >= target[:2]


def _next(version: str) -> str:
    """The release after ``version`` (6.19 -> 6.20: only compared against, never shown)."""
    parsed = parse_version(version) or (0, 0)
    return f"{parsed[0]}.{parsed[1] + 1}"
