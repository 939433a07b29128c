"""``diff``'s answer: the live plan, judged by kernel preflight, and what the next boot will set (the boot view).

The boot view comes from ``boot``: the sysctl.d tree read the way the boot applier reads it (detected from PID 1,
the units and the image under the sysctl root, or chosen), each write run through the kernel model. A key whose
boot value cannot be told exactly is ``unknown``: shown and counted, never called drift and never "no drift".

Not shipped to hosts (the Ansible module reports live drift; boot views are the CLI's).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from . import boot
from .engine import image_path, preflighted, read_kernel
from .plan import DIFFERS, MISSING, OK, READ_ONLY, REFUSED, UNREADABLE, Desired, Plan, plan
from .records import Record
from .target import Target
from .values import canonical

BOOT_OK, BOOT_DIFFERS, BOOT_NOT_PERSISTED, BOOT_DEFAULT = "ok", "differs", "not persisted", "kernel default"
BOOT_REJECTED, BOOT_UNKNOWN = "rejected", "unknown"
BOOT_DRIFT = (BOOT_DIFFERS, BOOT_NOT_PERSISTED, BOOT_REJECTED)
"""Boot states that are drift: the key will not have the desired value after a reboot."""
APPLIERS = ("systemd", "procps")
"""What --boot-applier may choose: the appliers ``boot`` models."""


class Where(Record):
    """An assignment of a sysctl.d file, the file named as on this machine (under the sysctl root)."""

    file: str
    line: int
    value: str | None

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "value": self.value}


class BootState(Record):
    """One key as the boot applier will leave it."""

    key: str
    desired: str
    value: str | None
    """The value after boot (kernel tabs folded); None when not known."""
    source: Where | None
    """The assignment that sets it at boot."""
    status: str
    """ok | differs | not persisted | kernel default (no file sets it; the default is the desired value) |
    rejected (the kernel refuses every assignment) | unknown (cannot be told: ``reason``)."""
    shadowed: tuple[Where, ...] = ()
    """tcptune's own assignment(s) that another file overrides: the complaint tuned and Ansible users have."""
    reason: str = ""
    refused: tuple[tuple[Where, str], ...] = ()
    """Assignments the kernel will refuse at boot, and why."""

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
            "reason": self.reason or None,
            "overrides": [e.as_dict() for e in self.shadowed],
            "refused": [dict(e.as_dict(), reason=why) for e, why in self.refused],
        }


def _on_host(root: str, assignment: boot.Assignment) -> Where:
    path = assignment.file
    if os.path.abspath(root) != "/":
        path = os.path.join(root, path.lstrip("/"))
    return Where(path, assignment.line, assignment.value)


def _folded(value: str | None) -> str | None:
    return None if value is None else " ".join(value.split())


def boot_states(
    desired: Mapping[str, str], predictions: Mapping[str, boot.Prediction], own: str | None, root: str = "/"
) -> list[BootState]:
    """Per desired key: its boot state from the applier's prediction. ``own``: tcptune's file as the applier names
    it (None: not under the sysctl root), to name the files that override it; ``root``: the sysctl root, to name
    files as they are on this machine."""
    states = []
    for key in sorted(desired):
        want = desired[key]
        found = predictions.get(key) or boot.Prediction(key, "unknown", None, reason="not predicted")
        value = _folded(found.value)
        source = _on_host(root, found.source) if found.source else None
        ours_won = found.source is not None and found.source.file == own
        shadowed = tuple(_on_host(root, a) for a in found.overridden if own and a.file == own and not ours_won)
        refused = tuple((_on_host(root, a), why) for a, why in found.refused)
        same = value is not None and canonical(value) == canonical(want)
        if found.status == "unknown":
            status = BOOT_UNKNOWN
        elif found.status in ("ok", "partial"):
            status = BOOT_OK if same else BOOT_DIFFERS
        elif found.status == "not-set":
            status = BOOT_DEFAULT if same else BOOT_NOT_PERSISTED
        else:
            status = BOOT_DEFAULT if same else BOOT_REJECTED
        states.append(BootState(key, want, value, source, status, shadowed, found.reason, refused))
    return states


def resolve_applier(target: Target, chosen: str | None = None) -> boot.Applier:
    """The boot applier: detected under the target's sysctl root, or ``chosen`` (systemd | procps)."""
    detected = boot.detect_applier(target.sysctl_root)
    if chosen is None or chosen == "auto":
        return detected
    version = detected.version if detected.name == chosen else None
    return boot.Applier(chosen, version, "chosen with --boot-applier")  # type: ignore[arg-type]


class Drift(Record):
    """A diff's answer: the live plan and the boot view; ``drift`` decides the exit code."""

    plan: Plan
    boot: Sequence[BootState] = ()
    check_boot: bool = True
    applier: boot.Applier | None = None
    reads_own_file: bool | None = None
    """Whether the applier reads tcptune's sysctl.d file at boot, once it exists (None: cannot be told)."""

    @property
    def live_drift(self) -> bool:
        return not self.plan.up_to_date

    @property
    def boot_drift(self) -> bool:
        return self.check_boot and any(b.status in BOOT_DRIFT for b in self.boot)

    @property
    def boot_unknown(self) -> list[BootState]:
        return [b for b in self.boot if b.status == BOOT_UNKNOWN] if self.check_boot else []

    @property
    def drift(self) -> bool:
        return self.live_drift or self.boot_drift

    def applier_dict(self) -> dict[str, Any] | None:
        if self.applier is None:
            return None
        return {
            "name": self.applier.name,
            "version": self.applier.version,
            "how": self.applier.how,
            "reads_own_file": self.reads_own_file,
        }

    def as_dict(self) -> dict[str, Any]:
        boot_by_key = {b.key: b for b in self.boot}
        keys = []
        for state in self.plan.keys:
            row = state.as_dict()
            row["boot"] = boot_by_key[state.key].as_dict() if state.key in boot_by_key else None
            keys.append(row)
        counts = self.plan.counts()

        def boot_count(status: str) -> int:
            return sum(b.status == status for b in self.boot)

        return {
            "profile": self.plan.profile,
            "fingerprint": self.plan.fingerprint,
            "boot_applier": self.applier_dict(),
            "keys": keys,
            "summary": {
                "keys": len(self.plan.keys),
                "ok": counts[OK],
                "differs": counts[DIFFERS],
                "missing": counts[MISSING],
                "read_only": counts[READ_ONLY],
                "unreadable": counts[UNREADABLE],
                "refused": counts[REFUSED],
                "boot_differs": boot_count(BOOT_DIFFERS),
                "boot_not_persisted": boot_count(BOOT_NOT_PERSISTED),
                "boot_rejected": boot_count(BOOT_REJECTED),
                "boot_kernel_default": boot_count(BOOT_DEFAULT),
                "boot_unknown": boot_count(BOOT_UNKNOWN),
                "boot_overridden": sum(b.overridden for b in self.boot),
                "live_drift": self.live_drift,
                "boot_drift": self.boot_drift,
                "drift": self.drift,
            },
        }


def drift(desired: Desired, target: Target, *, check_boot: bool = True, applier: str | None = None) -> Drift:
    """The live plan (kernel preflight included) plus what the boot applier would set at the next boot.

    ``applier``: systemd | procps to choose; None or "auto": the one detected under the target's sysctl root.
    """
    kernel = read_kernel(target, desired.values)
    live = {key: kernel.live[key] for key in desired.values}
    current = plan(desired.values, live, profile=desired.name, fingerprint=desired.fingerprint, scopes=desired.scopes)
    current = preflighted(current, desired.values, kernel, desired.raw)
    if not check_boot:
        return Drift(current, (), False)
    chosen, own, reads_own = _applier_and_own_file(target, applier)
    predictions = boot.predict(target.sysctl_root, desired.values, chosen, boot.kernel_view(target.proc_root))
    states = boot_states(desired.values, predictions, own, target.sysctl_root)
    return Drift(current, states, True, chosen, reads_own)


def _applier_and_own_file(target: Target, applier: str | None) -> tuple[boot.Applier, str | None, bool | None]:
    """The boot applier, tcptune's sysctl.d file as it names the file (None: outside the sysctl root), and whether
    it reads that file at boot once the file exists (None: cannot be told)."""
    chosen = resolve_applier(target, applier)
    own = image_path(target, target.own_file)
    files = boot.files_read(target.sysctl_root, chosen, [own] if own else [])
    return chosen, own, None if files is None else own in files


class Overrides(Record):
    """After tcptune wrote its file: what the boot applier will make of it."""

    applier: boot.Applier
    read: bool | None
    """Whether the applier reads tcptune's file at all (None: cannot be told)."""
    overridden: list[BootState]
    """Keys another file overrides at boot."""


def overrides(values: Mapping[str, str], target: Target, applier: str | None = None) -> Overrides:
    """Keys of ``values`` that another sysctl.d file sets differently at boot, over tcptune's own file."""
    chosen, own, read = _applier_and_own_file(target, applier)
    if not read:
        return Overrides(chosen, read, [])
    predictions = boot.predict(target.sysctl_root, values, chosen, boot.kernel_view(target.proc_root))
    found = [b for b in boot_states(values, predictions, own, target.sysctl_root) if b.overridden]
    return Overrides(chosen, read, found)


# ---- Prometheus: diff --format prometheus, for node_exporter's textfile collector -----------------------------------


def _label(value: object, limit: int = 200) -> str:
    """A label value: escaped as the text format wants, control characters dropped, bounded in length."""
    text = "".join(ch for ch in str(value) if ch.isprintable())[:limit]
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        number = "NaN" if math.isnan(value) else (str(int(value)) if float(value).is_integer() else repr(value))
        lines.append(f"{name}{labels} {number}")


def prometheus_text(result: Drift | None, *, generation: int | None, checked_at: float) -> str:
    """The drift check as gauges: one series per managed key (labels: the key only), the profile and generation
    as an info metric, counts, and when the check ran. ``result`` None: nothing is managed (generation 0);
    ``generation`` None: the state directory could not be read (a PROFILE was checked without it)."""
    lines: list[str] = []
    keys = result.plan.keys if result else ()
    boot_by_key = {b.key: b for b in result.boot} if result else {}
    _metric(
        lines,
        "tcptune_key_drift",
        "gauge",
        "1 if the live value of a managed key differs from the profile (or cannot be set here), else 0.",
        [(f'{{key="{_label(k.key)}"}}', float(k.status != OK)) for k in keys],
    )
    if result is not None and result.check_boot:
        samples = []
        for k in keys:
            state = boot_by_key.get(k.key)
            value = math.nan if state is None or state.status == BOOT_UNKNOWN else float(state.status in BOOT_DRIFT)
            samples.append((f'{{key="{_label(k.key)}"}}', value))
        _metric(
            lines,
            "tcptune_key_boot_drift",
            "gauge",
            "1 if the value after the next boot would differ from the profile, 0 if not, NaN if it cannot be "
            "predicted (see tcptune_boot_unknown_keys).",
            samples,
        )
    profile = result.plan.profile if result else ""
    fingerprint = result.plan.fingerprint if result else ""
    applier = result.applier if result else None
    shown = "" if generation is None else str(generation)
    info = (
        f'{{profile="{_label(profile)}",fingerprint="{_label(fingerprint)}",generation="{shown}",'
        f'boot_applier="{_label(applier.describe() if applier else "")}"}}'
    )
    _metric(lines, "tcptune_info", "gauge", "The profile and generation checked (always 1).", [(info, 1.0)])
    number = math.nan if generation is None else float(generation)
    help_text = "The current generation (0: nothing managed; NaN: the state directory could not be read)."
    _metric(lines, "tcptune_generation", "gauge", help_text, [("", number)])
    _metric(lines, "tcptune_managed_keys", "gauge", "Keys checked.", [("", len(keys))])
    _metric(
        lines,
        "tcptune_live_drift_keys",
        "gauge",
        "Keys whose live value differs (or cannot be set here).",
        [("", sum(k.status != OK for k in keys))],
    )
    _metric(
        lines,
        "tcptune_preflight_refused_keys",
        "gauge",
        "Keys whose desired value this kernel would refuse.",
        [("", result.plan.counts()[REFUSED] if result else 0)],
    )
    if result is not None and result.check_boot:
        _metric(
            lines,
            "tcptune_boot_drift_keys",
            "gauge",
            "Keys that would have another value after the next boot.",
            [("", sum(b.status in BOOT_DRIFT for b in result.boot))],
        )
        _metric(
            lines,
            "tcptune_boot_unknown_keys",
            "gauge",
            "Keys whose value after the next boot cannot be predicted (not counted as drift).",
            [("", len(result.boot_unknown))],
        )
    _metric(
        lines,
        "tcptune_drift",
        "gauge",
        "1 if 'tcptune diff' finds drift (its exit code 2), else 0.",
        [("", float(bool(result and result.drift)))],
    )
    _metric(
        lines,
        "tcptune_last_check_timestamp_seconds",
        "gauge",
        "When this check ran (alert when it is old: the timer stopped).",
        [("", round(checked_at, 3))],
    )
    return "\n".join(lines) + "\n"
