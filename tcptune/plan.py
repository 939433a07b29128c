"""Desired values x live values -> Plan: what differs, what cannot be done here, and the writes, in a safe order.

Pure: no filesystem, no kernel. ``diff``, ``apply --dry-run``, the journal and verification are all views of the
same Plan, and it serialises to JSON as it is. Values are compared only through ``values.canonical``, the one
normalisation shared with the Ansible module (the kernel prints ``tcp_rmem`` with tabs; users write spaces).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .live import LiveValue, order_writes
from .persist import BootValue, SysctlEntry
from .values import canonical

OK, DIFFERS, MISSING, READ_ONLY, UNREADABLE = "ok", "differs", "missing", "read-only", "unreadable"
REFUSED = "refused"
"""Differs, and kernel preflight says this kernel will not take the write (``preflight.fold``)."""
STATUS_TEXT = {
    OK: "ok",
    DIFFERS: "differs",
    MISSING: "missing on this kernel",
    READ_ONLY: "read-only here",
    UNREADABLE: "unreadable",
    REFUSED: "refused",
}


class KeyState(NamedTuple):
    """One key of the profile as found on this machine."""

    key: str
    desired: str
    live: str | None
    status: str
    """ok | differs | missing | read-only | unreadable | refused."""
    scope: str | None = None
    """"netns" or "global" from the catalog; None for keys it does not know."""
    note: str | None = None
    """Plain words for anything that is not ok (why it cannot be written, what to do)."""
    preflight: str | None = None
    """The kernel preflight verdict (ok | warning | refused); None when preflight did not run."""
    reasons: tuple[str, ...] = ()
    """Preflight's reasons (refusals first, then warnings)."""
    raw: bool = False
    """A key of the profile's raw: mapping, unchecked by the catalog."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "live": self.live,
            "desired": self.desired,
            "status": self.status,
            "scope": self.scope,
            "note": self.note,
            "raw": self.raw,
            "preflight": None if self.preflight is None else {"outcome": self.preflight, "reasons": list(self.reasons)},
        }


class Change(NamedTuple):
    """One write: ``key`` from ``old`` (as the kernel printed it) to ``new`` (as tcptune writes it)."""

    key: str
    old: str
    new: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "old": self.old, "new": self.new}


class Plan(NamedTuple):
    """Every key's state and the ordered changes that would bring the live system to the desired values."""

    profile: str
    fingerprint: str
    keys: tuple[KeyState, ...]
    changes: tuple[Change, ...]

    def with_status(self, *statuses: str) -> list[KeyState]:
        return [k for k in self.keys if k.status in statuses]

    @property
    def up_to_date(self) -> bool:
        return all(k.status == OK for k in self.keys)

    @property
    def blocked(self) -> list[KeyState]:
        """Keys that differ but cannot be written here: missing, read-only, unreadable, or refused by preflight."""
        return self.with_status(MISSING, READ_ONLY, UNREADABLE, REFUSED)

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUS_TEXT}
        for k in self.keys:
            counts[k.status] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "fingerprint": self.fingerprint,
            "keys": [k.as_dict() for k in self.keys],
            "changes": [c.as_dict() for c in self.changes],
            "summary": self.counts(),
        }


def plan(
    desired: Mapping[str, str],
    live: Mapping[str, LiveValue],
    *,
    profile: str = "",
    fingerprint: str = "",
    scopes: Mapping[str, str] | None = None,
) -> Plan:
    """Compare each desired key with its live value; unchanged keys yield no Change (no-ops are first-class)."""
    scopes = scopes or {}
    states: list[KeyState] = []
    changes: list[Change] = []
    for key in sorted(desired):
        want = desired[key]
        value = live.get(key)
        scope = scopes.get(key)
        if value is None or value.status == MISSING:
            note = "the running kernel has no such key (too old or too new, or its module is not loaded)"
            if scope == "global":
                note = "a host-wide key absent from this network namespace; set it on the host"
            states.append(KeyState(key, want, None, MISSING, scope, note))
        elif value.status != OK or value.text is None:
            states.append(KeyState(key, want, None, UNREADABLE, scope, value.error or "could not be read"))
        elif canonical(value.text) == canonical(want):
            states.append(KeyState(key, want, value.text, OK, scope))
        elif not value.writable:
            note = (
                "a host-wide key that a network namespace or container cannot change; set it on the host"
                if scope != "netns"
                else "not writable here: /proc/sys is read-only, or not running as root"
            )
            states.append(KeyState(key, want, value.text, READ_ONLY, scope, note))
        else:
            states.append(KeyState(key, want, value.text, DIFFERS, scope))
            changes.append(Change(key, value.text, want))
    return Plan(profile, fingerprint, tuple(states), tuple(order_changes(changes)))


def order_changes(changes: list[Change]) -> list[Change]:
    """Order writes so the kernel's cross-key checks hold at every step: ``live.order_writes`` (shared with the
    Ansible module) on the canonical texts."""
    by_key = {c.key: c for c in changes}
    ordered = order_writes([(c.key, canonical(c.new), canonical(c.old)) for c in changes])
    return [by_key[key] for key, _new, _old in ordered]


def without(plan_: Plan, keys: set[str]) -> Plan:
    """The plan minus some keys (those skipped under --skip-missing / --skip-readonly)."""
    return Plan(
        plan_.profile,
        plan_.fingerprint,
        tuple(k for k in plan_.keys if k.key not in keys),
        tuple(c for c in plan_.changes if c.key not in keys),
    )


# ---- persistence drift: what would be in force after a reboot -------------------------------------------------

BOOT_OK, BOOT_DIFFERS, BOOT_NOT_PERSISTED, BOOT_DEFAULT = "ok", "differs", "not persisted", "kernel default"


class BootState(NamedTuple):
    """One key as systemd-sysctl / ``sysctl --system`` would set it at boot."""

    key: str
    desired: str
    value: str | None
    source: SysctlEntry | None
    """The assignment that wins at boot (the last one read)."""
    status: str
    """ok | differs | not persisted | kernel default (no file sets it; the default is the desired value)."""
    shadowed: tuple[SysctlEntry, ...] = ()
    """tcptune's own assignment(s) that a later file overrides: the complaint tuned and Ansible users have."""

    @property
    def overridden(self) -> bool:
        return bool(self.shadowed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "desired": self.desired,
            "value": self.value,
            "file": self.source.file if self.source else None,
            "line": self.source.line if self.source else None,
            "status": self.status,
            "overrides": [{"file": e.file, "line": e.line, "value": e.value} for e in self.shadowed],
        }


def boot_states(
    desired: Mapping[str, str],
    boot: Mapping[str, BootValue],
    own_file: str | None,
    defaults: Mapping[str, str] | None = None,
) -> list[BootState]:
    """Per desired key: the boot-time value and, when tcptune's own file is overridden, by which file and line.

    A key no file sets gets the kernel's default at boot: not drift when that default (from the catalog, where it
    does not depend on the machine) is the desired value.
    """
    defaults = defaults or {}
    states = []
    for key in sorted(desired):
        want = desired[key]
        found = boot.get(key)
        if found is None:
            default = defaults.get(key)
            if default is not None and canonical(default) == canonical(want):
                states.append(BootState(key, want, default, None, BOOT_DEFAULT))
            else:
                states.append(BootState(key, want, None, None, BOOT_NOT_PERSISTED))
            continue
        shadowed: tuple[SysctlEntry, ...] = ()
        if own_file is not None and found.effective.file != own_file:
            shadowed = tuple(e for e in found.overridden if e.file == own_file)
        status = BOOT_OK if canonical(found.effective.value) == canonical(want) else BOOT_DIFFERS
        states.append(BootState(key, want, found.effective.value, found.effective, status, shadowed))
    return states


class Drift(NamedTuple):
    """A diff's answer: the live plan and the boot view; ``drift`` decides the exit code."""

    plan: Plan
    boot: Sequence[BootState] = ()
    check_boot: bool = True

    @property
    def live_drift(self) -> bool:
        return not self.plan.up_to_date

    @property
    def boot_drift(self) -> bool:
        return self.check_boot and any(b.status not in (BOOT_OK, BOOT_DEFAULT) for b in self.boot)

    @property
    def drift(self) -> bool:
        return self.live_drift or self.boot_drift

    def as_dict(self) -> dict[str, Any]:
        boot = {b.key: b for b in self.boot}
        keys = []
        for state in self.plan.keys:
            row = state.as_dict()
            row["boot"] = boot[state.key].as_dict() if state.key in boot else None
            keys.append(row)
        counts = self.plan.counts()
        return {
            "profile": self.plan.profile,
            "fingerprint": self.plan.fingerprint,
            "keys": keys,
            "summary": {
                "keys": len(self.plan.keys),
                "ok": counts[OK],
                "differs": counts[DIFFERS],
                "missing": counts[MISSING],
                "read_only": counts[READ_ONLY],
                "unreadable": counts[UNREADABLE],
                "refused": counts[REFUSED],
                "boot_differs": sum(b.status == BOOT_DIFFERS for b in self.boot),
                "boot_not_persisted": sum(b.status == BOOT_NOT_PERSISTED for b in self.boot),
                "boot_kernel_default": sum(b.status == BOOT_DEFAULT for b in self.boot),
                "boot_overridden": sum(b.overridden for b in self.boot),
                "live_drift": self.live_drift,
                "boot_drift": self.boot_drift,
                "drift": self.drift,
            },
        }
