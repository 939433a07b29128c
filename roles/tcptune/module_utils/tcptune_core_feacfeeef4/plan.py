"""Desired values x live values -> Plan: what differs, what cannot be done here, and the writes, in a safe order.

Pure: no filesystem, no kernel. ``diff``, ``apply --dry-run``, a transaction's writes and verification are all
views of the same Plan, and it serialises to JSON as it is. Values are compared only through ``values.canonical``,
the one normalisation shared with the Ansible module (the kernel prints ``tcp_rmem`` with tabs; users write spaces).
Standard library only (with ``live`` and ``values``): shipped to hosts with the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .live import LiveValue, order_writes
from .records import Record
from .values import canonical

OK, DIFFERS, MISSING, READ_ONLY, UNREADABLE = "ok", "differs", "missing", "read-only", "unreadable"
REFUSED = "refused"
"""Differs, and kernel preflight says this kernel will not take the write (``preflight.fold``)."""
REVERT = "revert"
"""A key that leaves management: it goes back to its baseline (its value before tcptune first managed it)."""
STATUS_TEXT = {
    OK: "ok",
    DIFFERS: "differs",
    MISSING: "missing on this kernel",
    READ_ONLY: "read-only here",
    UNREADABLE: "unreadable",
    REFUSED: "refused",
    REVERT: "revert to baseline",
}


class Desired(Record):
    """What should be in force: a validated profile reduced to what a transaction needs (and a generation keeps)."""

    name: str
    fingerprint: str
    values: dict[str, str]
    source: str | None = None
    scopes: Mapping[str, str] | None = None
    """"netns" or "global" per key, from the catalog (for notes on keys that cannot be written here)."""
    raw: frozenset[str] = frozenset()
    """Keys of ``values`` outside the catalog that the profile allowed explicitly (all under ``net.``)."""
    owners: Mapping[str, Any] | None = None
    """``{owner: state.Owner}`` when roles share the host (``owners.compose``); None: this profile owns every key."""

    def profile_record(self) -> dict[str, str | None]:
        """The profile as a generation records it."""
        return {"name": self.name, "fingerprint": self.fingerprint, "source": self.source}


class KeyState(Record):
    """One key of the profile as found on this machine."""

    key: str
    desired: str
    """The value wanted; for a key being reverted, its baseline (or its live value when none was recorded)."""
    live: str | None
    status: str
    """ok | differs | missing | read-only | unreadable | refused | revert."""
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


class Change(Record):
    """One write: ``key`` from ``old`` (as the kernel printed it) to ``new`` (as tcptune writes it)."""

    key: str
    old: str
    new: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "old": self.old, "new": self.new}


class Plan(Record):
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

    @property
    def reverts(self) -> list[KeyState]:
        """Keys leaving management, back to their baseline (a Change where a write is needed and possible)."""
        return self.with_status(REVERT)

    def state_of(self, key: str) -> KeyState | None:
        return next((k for k in self.keys if k.key == key), None)

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
    revert: Mapping[str, str | None] | None = None,
) -> Plan:
    """Compare each desired key with its live value; unchanged keys yield no Change (no-ops are first-class).

    ``revert`` maps keys leaving management to their baseline live value (None: none was recorded). They are
    planned with status ``revert``: a Change back to the baseline where the key can be written and differs,
    otherwise left as they are with a note. A revert never blocks a plan: the key is no longer wanted.
    """
    scopes = scopes or {}
    revert = revert or {}
    states: list[KeyState] = []
    changes: list[Change] = []
    for key in sorted({*desired, *revert}):
        if key not in desired:
            state, write = _revert_state(key, revert[key], live.get(key), scopes.get(key))
            states.append(state)
            if write and state.live is not None:
                changes.append(Change(key, state.live, state.desired))
            continue
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


AT_BASELINE = "already at its value from before tcptune"


def _revert_state(key: str, baseline: str | None, value: LiveValue | None, scope: str | None) -> tuple[KeyState, bool]:
    """A key leaving management, and whether a write back to ``baseline`` is planned. Every note but AT_BASELINE
    says why the key is left as it is."""
    text = value.text if value is not None and value.status == OK else None
    if baseline is None:
        note = "no value from before tcptune was recorded: left as it is"
        return KeyState(key, text or "", text, REVERT, scope, note), False
    if text is None:
        return KeyState(key, baseline, None, REVERT, scope, "cannot be read here now: left as it is"), False
    if canonical(text) == canonical(baseline):
        return KeyState(key, baseline, text, REVERT, scope, AT_BASELINE), False
    if value is not None and not value.writable:
        return KeyState(key, baseline, text, REVERT, scope, "not writable here now: left as it is"), False
    return KeyState(key, baseline, text, REVERT, scope), True


def split_blocked(
    current: Plan, *, skip_missing: bool, skip_readonly: bool
) -> tuple[Plan, list[KeyState], list[KeyState]]:
    """(the plan without skipped keys, the skipped keys, the keys that must refuse the whole plan).

    Keys that cannot be set here (missing on this kernel, read-only) refuse the plan unless told to skip them;
    an unreadable key, and a write kernel preflight says this kernel refuses, always refuse it.
    """
    blocked = current.blocked
    refuse = [
        k
        for k in blocked
        if k.status in (UNREADABLE, REFUSED)
        or (k.status == MISSING and not skip_missing)
        or (k.status == READ_ONLY and not skip_readonly)
    ]
    skipped = [k for k in blocked if k not in refuse]
    return without(current, {k.key for k in skipped}), skipped, refuse


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
