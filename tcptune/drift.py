"""``diff``'s answer: the live plan, and what sysctl.d would set at the next boot (the boot view).

Not shipped to hosts: the boot view reads sysctl.d trees (``persist.boot_values`` for now; issue 10's boot model
replaces it). ``plan.py`` stays pure and shippable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from . import persist
from .persist import BootValue, SysctlEntry
from .plan import DIFFERS, MISSING, OK, READ_ONLY, UNREADABLE, Desired, Plan, plan
from .target import Target
from .values import canonical

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
    skipped_files: tuple[tuple[str, str], ...] = ()
    """(path, why) of sysctl.d files not read: not regular files (a FIFO would block) or too large."""

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
                "boot_differs": sum(b.status == BOOT_DIFFERS for b in self.boot),
                "boot_not_persisted": sum(b.status == BOOT_NOT_PERSISTED for b in self.boot),
                "boot_kernel_default": sum(b.status == BOOT_DEFAULT for b in self.boot),
                "boot_overridden": sum(b.overridden for b in self.boot),
                "live_drift": self.live_drift,
                "boot_drift": self.boot_drift,
                "drift": self.drift,
            },
        }


def drift(
    desired: Desired, target: Target, *, check_boot: bool = True, defaults: Mapping[str, str] | None = None
) -> Drift:
    """The live plan plus what systemd-sysctl / ``sysctl --system`` would set at the next boot.

    ``defaults`` are the kernel's defaults of keys (from the catalog): what a key no file sets returns to.
    Files of the sysctl.d tree that cannot be read safely (a FIFO, say) are named in ``Drift.skipped_files``.
    """
    live = target.proc.read_many(desired.values)
    current = plan(desired.values, live, profile=desired.name, fingerprint=desired.fingerprint, scopes=desired.scopes)
    boot: list[BootState] = []
    skipped: list[tuple[str, str]] = []
    if check_boot:
        found = persist.boot_values(target.sysctl_root, desired.values, skipped)
        boot = boot_states(desired.values, found, os.path.abspath(target.own_file), defaults)
    return Drift(current, boot, check_boot, tuple(skipped))


def overridden(values: Mapping[str, str], target: Target) -> list[BootState] | None:
    """After tcptune wrote its file: keys another sysctl.d file overrides at boot; None if the file is not in a
    directory read at boot at all."""
    own = os.path.abspath(target.own_file)
    if own not in [os.path.abspath(f) for f in persist.config_files(target.sysctl_root)]:
        return None
    found = persist.boot_values(target.sysctl_root, values)
    return [b for b in boot_states(values, found, own) if b.overridden]
