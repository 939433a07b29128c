"""The known sysctl keys: shape, unit, range, default, netns scope and kernel history.

Pure data plus lookups. It is the single source of truth for validation, `explain`, the JSON Schema, the Ansible
argument spec and the docs; nothing else restates these facts.

Ranges are what a user should be held to, which is often narrower than what the kernel's handler accepts
(the kernel takes a negative ``tcp_fin_timeout``; tcptune does not).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

Shape = Literal["int", "bool", "enum", "triple", "pair", "string", "portlist"]
Unit = Literal["seconds", "milliseconds", "bytes", "pages", "count", "packets", "port", "none"]
Scope = Literal["netns", "global"]

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class Key:
    """One sysctl key as tcptune understands it."""

    name: str
    shape: Shape
    unit: Unit
    summary: str
    scope: Scope
    default: str | None = None
    """Kernel default as the kernel prints it (normalised); None where it depends on the machine."""
    minimum: int | None = None
    """Lower bound for the value (for triples/pairs: each element)."""
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    """Allowed values for enums (as strings, e.g. "0", "1", "2"); known names for strings."""
    choice_meanings: tuple[str, ...] = ()
    """What each choice means, parallel to ``choices``."""
    open_choices: bool = False
    """For strings: ``choices`` are the usual names but others may exist (e.g. congestion-control modules)."""
    elements: tuple[str, ...] = ()
    """Names of the elements of a triple or pair, e.g. ("min", "default", "max")."""
    added: str | None = None
    """Kernel version that introduced the key, where it is newer than what any supported distro runs."""
    removed: str | None = None
    removed_reason: str | None = None
    advice: tuple[str, ...] = field(default=())
    """Common advice and pitfalls, in plain words."""
    units_accepted: bool = False
    """Whether human units (``16MiB``, ``30s``) are accepted for this key."""

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def arity(self) -> int:
        return {"triple": 3, "pair": 2}.get(self.shape, 1)

    @property
    def proc_path(self) -> str:
        """Path relative to /proc/sys."""
        return self.name.replace(".", "/")


def _k(name: str, shape: Shape, unit: Unit, scope: Scope, summary: str, **kw: object) -> Key:
    if unit in ("bytes", "seconds", "milliseconds") and "units_accepted" not in kw:
        kw["units_accepted"] = True
    return Key(name=name, shape=shape, unit=unit, scope=scope, summary=summary, **kw)  # type: ignore[arg-type]


BOOL = ("0", "1")
OFF_ON = ("disabled", "enabled")

# The entries, grouped as a tuning guide groups them. Defaults are those of current mainline kernels.
KEYS: tuple[Key, ...] = (
    # ---- FIN / TIME_WAIT handling -------------------------------------------------------------------------------
    _k("net.ipv4.tcp_fin_timeout", "int", "seconds", "netns",
       "How long an orphaned connection stays in FIN_WAIT2 waiting for the peer's FIN.",
       default="60", minimum=1, maximum=600,
       advice=(
           "Governs FIN_WAIT2 orphans only. TIME_WAIT lasts a fixed 60 s (TCP_TIMEWAIT_LEN) and no sysctl changes it.",
           "Values below about 10 s can cut off slow peers that are still sending their last data.",
       )),
    _k("net.ipv4.tcp_tw_reuse", "enum", "none", "netns",
       "Whether new outgoing connections may reuse a socket in TIME_WAIT when it is safe by timestamps.",
       default="2", choices=("0", "1", "2"),
       choice_meanings=("never", "always for outgoing connections", "only for loopback traffic"),
       advice=(
           "Helps only outgoing connections (clients, proxies to upstreams); it does nothing for a server's"
           " accepted connections.",
           "Needs net.ipv4.tcp_timestamps enabled on both ends, because reuse is judged by timestamps.",
       )),
)

_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
_BY_SHORT: dict[str, list[Key]] = {}
for _key in KEYS:
    _BY_SHORT.setdefault(_key.short_name, []).append(_key)


def get(name: str) -> Key | None:
    """The entry for a full dotted name (or a slash path, as sysctl accepts), if tcptune knows it."""
    return _BY_NAME.get(name.replace("/", "."))


def canonical_name(name: str) -> str | None:
    """Full dotted name for a full name, a slash path or a bare name unique in the catalog; None if unknown."""
    dotted = name.replace("/", ".")
    if dotted in _BY_NAME:
        return dotted
    matches = _BY_SHORT.get(dotted, [])
    if len(matches) == 1:
        return matches[0].name
    return None


def ambiguous(name: str) -> list[str]:
    """Full names a bare name could mean, when it is not unique."""
    matches = _BY_SHORT.get(name, [])
    return [k.name for k in matches] if len(matches) > 1 else []


def suggest(name: str, limit: int = 3) -> list[str]:
    """Known names close to an unknown one, for "did you mean"."""
    full = difflib.get_close_matches(name, list(_BY_NAME), n=limit, cutoff=0.75)
    if full:
        return full
    short = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(_BY_SHORT), n=limit, cutoff=0.7)
    return [k.name for s in short for k in _BY_SHORT[s]][:limit]


def all_keys() -> tuple[Key, ...]:
    return KEYS
