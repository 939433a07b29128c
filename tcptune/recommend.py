"""Evidence -> findings -> optionally a profile file: what 'tcptune recommend' does, minus the rendering.

The judging is pure and lives in advise.py; this module takes the readings, picks the profile a written suggestion
extends (the one last applied here, else ``base``), and writes the file only after loading it back, from where it
will live, as a valid profile.

Counters are judged over a window, never since boot: ``sample`` seconds between two readings (with the listeners'
accept queues polled in between), or else the time since a ``CounterBaseline`` (the counters recorded when the
last apply committed). Without either, the since-boot totals are shown as history only.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .advise import Finding, Thresholds, advise, profile_name_for, profile_text, suggested_values
from .errors import ProfileError, TcptuneError
from .failures import CoreError
from .profile import find_profile, is_path_ref, load_profile
from .records import Record
from .sockets import DEFAULT_PROC_NET, Evidence, listener_queues, take_evidence, watch_listeners
from .target import DEFAULT_STATE_DIR, REAL_PROC_SYS
from .userfiles import cannot_write, write_file
from .validate import validate


class WrittenProfile(Record):
    path: str
    extends: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "extends": self.extends, "name": self.name}


class Recommendation(Record):
    evidence: Evidence
    findings: list[Finding]
    suggested: dict[str, str]
    """Every suggested value merged (advise.suggested_values)."""
    current: dict[str, str | None]
    """The live value of each suggested key (None where unreadable)."""
    written: WrittenProfile | None
    notes: tuple[str, ...] = ()
    """Why a window could not be used, in words (a baseline from before a reboot, another namespace)."""


@dataclass(frozen=True)
class CounterBaseline:
    """Kernel counters read earlier in this network namespace (when the last apply committed): the start of the
    window over which ``recommend`` judges counters when it is not given ``sample``."""

    counters: dict[str, int]
    taken_at: float
    """When they were read, seconds since the epoch."""
    label: str
    """What happened then, for "the 2 h 5 min since <label>": "generation 4 was applied"."""
    netns: str | None = None
    """The network namespace they were read in (``/proc/self/ns/net``'s link), where recorded."""


def counter_baseline(generation: Mapping[str, Any]) -> CounterBaseline | None:
    """The baseline in a generation record (its ``counters`` {name: int}, read at commit time, ``created`` ISO-8601
    UTC and ``generation`` number; optionally ``counters_netns``), or None when it has none or it is not usable
    data (state read back from disk is validated like any input)."""
    counters = generation.get("counters")
    created = generation.get("created")
    number = generation.get("generation")
    netns = generation.get("counters_netns")
    if not isinstance(counters, dict) or not isinstance(created, str) or not counters:
        return None
    if not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in counters.items()):
        return None
    try:
        stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    made = {"rollback": "(a rollback) was made", "reset": "(a reset) was made"}.get(str(generation.get("kind")))
    label = f"generation {number} {made or 'was applied'}" if type(number) is int else "the last apply"
    return CounterBaseline(dict(counters), stamp.timestamp(), label, netns if isinstance(netns, str) else None)


def boot_time(proc: str = "/proc") -> float | None:
    """When the machine booted (``btime`` in /proc/stat), seconds since the epoch."""
    try:
        with open(os.path.join(proc, "stat"), encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def duration_text(seconds: float) -> str:
    """``125`` -> "2 min 5 s", ``7500`` -> "2 h 5 min", ``200000`` -> "2 d 7 h"."""
    seconds = max(0, math.floor(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def apply_baseline(evidence: Evidence, baseline: CounterBaseline, booted: float | None) -> str | None:
    """Judge ``evidence``'s counters over the time since ``baseline`` (fills deltas, window and its label); returns
    why not, in words, when the baseline cannot be compared with these counters."""
    where = f"the counters recorded when {baseline.label}"
    if baseline.netns and evidence.netns and baseline.netns != evidence.netns:
        return f"{where} are from another network namespace"
    if booted is not None and booted > baseline.taken_at:
        return f"{where} are from before the last boot"
    window = evidence.taken_at - baseline.taken_at
    if window <= 0:
        return f"{where} are dated in the future"
    if any(evidence.counters.get(name, value) < value for name, value in baseline.counters.items()):
        return f"{where} are higher than today's (the counters were reset since)"
    evidence.deltas = {name: value - baseline.counters.get(name, value) for name, value in evidence.counters.items()}
    evidence.window = window
    evidence.window_label = f"the {duration_text(window)} since {baseline.label}"
    return None


def recommend(
    *,
    thresholds: Thresholds,
    proc_root: str = REAL_PROC_SYS,
    proc_net: str = DEFAULT_PROC_NET,
    source: str = "auto",
    sample: float | None = None,
    owners: bool = True,
    write: str | None = None,
    base: str | None = None,
    force: bool = False,
    state_dir: str = DEFAULT_STATE_DIR,
    baseline: CounterBaseline | None = None,
    proc: str = "/proc",
    sleep: Callable[[float], None] = time.sleep,
) -> Recommendation:
    """Read the evidence, judge it, and write the suggestions to ``write`` when there are any.

    ``sample``: read the counters twice, that many seconds apart, polling the listeners' accept queues in between,
    and judge what happened in that window. Else ``baseline``: judge the counters' changes since it was read.
    ``owners``: look up the processes holding CLOSE_WAIT pile-ups. A file at ``write`` is replaced only with
    ``force``.
    """
    if write and os.path.exists(write) and not force:
        raise TcptuneError(f"{write} exists; use --force to replace it")
    previous = None
    peaks: dict[tuple[str, int], int] = {}
    if sample is not None:
        previous = take_evidence(proc_root=proc_root, proc_net=proc_net, source=source)
        used = previous.source
        peaks = watch_listeners(sample, lambda: listener_queues(used, proc_net), sleep)
    evidence = take_evidence(
        proc_root=proc_root,
        proc_net=proc_net,
        source=source,
        previous=previous,
        owners_min_close_wait=thresholds.min_sockets if owners else None,
    )
    notes: list[str] = []
    if previous is not None:
        evidence.listener_peaks = peaks
        evidence.window_label = f"the last {evidence.window or sample:.1f} s (--sample)"
    elif baseline is not None:
        problem = apply_baseline(evidence, baseline, boot_time(proc))
        if problem:
            notes.append(f"{problem}: counters judged without a window (--sample SECONDS gives one)")
    findings = advise(evidence, thresholds)
    suggested = suggested_values(findings)
    written = None
    if write and suggested:
        written = write_profile(write, findings, base or last_applied_base(state_dir), evidence.netns)
    current = {key: evidence.sysctls.get(key) for key in suggested}
    return Recommendation(evidence, findings, suggested, current, written, tuple(notes))


def last_applied_base(state_dir: str) -> str:
    """The profile of the current generation here (a file that still exists, or a built-in name), else 'base'."""
    from .desired import state_dir as open_state

    try:
        generation = open_state(state_dir).current()
    except CoreError:
        return "base"
    if generation is None or generation.profile is None:
        return "base"
    source, name = generation.profile.source, generation.profile.name
    if isinstance(source, str) and os.path.isfile(source):
        return os.path.abspath(source)
    if isinstance(name, str) and find_profile(name) is not None:
        return name
    return "base"


def write_profile(path: str, findings: list[Finding], base: str, netns: str | None = None) -> WrittenProfile:
    """The suggestions as a profile extending ``base``, proved valid (as the file it will be), written atomically.

    The check loads a temporary copy in the same directory, so that a relative ``extends`` resolves as it will
    from ``path``; its errors are reported against ``path``. Raises TcptuneError if no finding suggests a value.
    """
    directory = os.path.dirname(os.path.abspath(path))
    extends = base
    if is_path_ref(base):  # a file: refer to it from where the new profile lives
        extends = os.path.relpath(os.path.abspath(base), directory)
        if not extends.startswith("."):
            extends = "./" + extends
    name = profile_name_for(os.path.splitext(os.path.basename(path))[0])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = profile_text(findings, name=name, extends=extends, context=f"{netns or 'this host'}, {when}")
    if text is None:
        raise TcptuneError(f"no finding suggests a sysctl value; {path} not written")
    if os.path.isdir(path):
        raise TcptuneError(f"cannot write {path}: it is a directory (name a file in it)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tcptune-recommend-", suffix=".yaml", dir=directory)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise cannot_write(path, exc) from None
        verdict = validate(load_profile(probe))
    finally:
        os.unlink(probe)
    if verdict.errors:
        raise ProfileError(
            [
                d._replace(location=d.location._replace(file=path)) if d.location.file == probe else d
                for d in verdict.errors
            ]
        )
    write_file(path, text)
    return WrittenProfile(path, extends, name)
