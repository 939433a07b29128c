"""Evidence -> findings -> optionally a profile file: what 'tcptune recommend' does, minus the rendering.

The judging is pure and lives in advise.py; this module takes the readings (twice, ``sample`` seconds apart, when
asked), picks the profile a written suggestion extends (the one last applied here, else ``base``), and writes the
file only after loading it back, from where it will live, as a valid profile.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

from .advise import Finding, Thresholds, advise, profile_name_for, profile_text, suggested_values
from .errors import ProfileError, TcptuneError
from .failures import CoreError
from .output import cannot_write, write_file
from .profile import find_profile, is_path_ref, load_profile
from .sockets import DEFAULT_PROC_NET, Evidence, take_evidence
from .target import DEFAULT_STATE_DIR, REAL_PROC_SYS
from .validate import validate


class WrittenProfile(NamedTuple):
    path: str
    extends: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "extends": self.extends, "name": self.name}


class Recommendation(NamedTuple):
    evidence: Evidence
    findings: list[Finding]
    suggested: dict[str, str]
    """Every suggested value merged (advise.suggested_values)."""
    current: dict[str, str | None]
    """The live value of each suggested key (None where unreadable)."""
    written: WrittenProfile | None


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
    sleep: Callable[[float], None] = time.sleep,
) -> Recommendation:
    """Read the evidence, judge it, and write the suggestions to ``write`` when there are any.

    ``sample``: read the counters twice, that many seconds apart, and judge what happened in between. ``owners``:
    look up the processes holding CLOSE_WAIT pile-ups. A file at ``write`` is replaced only with ``force``.
    """
    if write and os.path.exists(write) and not force:
        raise TcptuneError(f"{write} exists; use --force to replace it")
    previous = None
    if sample is not None:
        previous = take_evidence(proc_root=proc_root, proc_net=proc_net, source=source)
        sleep(sample)
    evidence = take_evidence(
        proc_root=proc_root,
        proc_net=proc_net,
        source=source,
        previous=previous,
        owners_min_close_wait=thresholds.min_sockets if owners else None,
    )
    findings = advise(evidence, thresholds)
    suggested = suggested_values(findings)
    written = None
    if write and suggested:
        written = write_profile(write, findings, base or last_applied_base(state_dir), evidence.netns)
    current = {key: evidence.sysctls.get(key) for key in suggested}
    return Recommendation(evidence, findings, suggested, current, written)


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
