"""What diff and apply act on (a Desired from a valid profile, or the current generation's), and the catalog's
answers the shipped engine is given: which keys state files may name, and each key's scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import catalog
from .boot import ApplierName
from .engine import Engine, boot_from_sysctl_d
from .errors import TcptuneError
from .plan import Desired
from .state import StateDir
from .target import Target

if TYPE_CHECKING:
    from .validate import Verdict


def from_verdict(verdict: Verdict, ref: str) -> Desired:
    """A valid profile (``load.load_valid``) reduced to what apply needs: values, fingerprint, where it came from
    (``ref`` for a profile without a file) and each key's scope."""
    profile = verdict.profile
    scopes = {key: entry.scope for key in verdict.values if (entry := catalog.get(key)) is not None}
    source = str(profile.path) if profile.path else ref
    return Desired(profile.name, profile.fingerprint(), dict(verdict.values), source, scopes, frozenset(verdict.raw))


def known_key(key: str) -> bool:
    """Keys state files may name: the catalog's (a generation's ``raw`` keys are checked besides)."""
    return catalog.get(key) is not None


def key_scope(key: str) -> str | None:
    entry = catalog.get(key)
    return entry.scope if entry is not None else None


def state_dir(path: str) -> StateDir:
    return StateDir(path, known_key)


def engine(target: Target, boot_applier: str | None = None) -> Engine:
    """The engine as the CLI uses it: the catalog decides which keys state may name; a baseline's boot value is
    what ``boot_applier`` (systemd | procps; None or "auto": the one detected) would set."""
    chosen: ApplierName | None = "systemd" if boot_applier == "systemd" else None
    if boot_applier == "procps":
        chosen = "procps"
    return Engine(target, known_key, key_scope=key_scope, boot_reader=boot_from_sysctl_d(target, chosen))


def current(path: str) -> Desired:
    """What the current generation in state directory ``path`` manages (a bare ``tcptune diff`` compares it)."""
    generation = state_dir(path).current()
    start = (
        "name a profile to compare, e.g. 'tcptune diff web-server', or start with 'tcptune apply web-server "
        "--dry-run' ('tcptune profiles' lists the built-in ones)"
    )
    if generation is None:
        raise TcptuneError(f"nothing is managed: no generation is recorded in {path}; {start}")
    if not generation.values:
        raise TcptuneError(f"nothing is managed since generation {generation.number} (a {generation.kind}); {start}")
    profile = generation.profile
    return Desired(
        profile.name if profile else f"generation {generation.number}",
        profile.fingerprint if profile else "",
        dict(generation.values),
        profile.source if profile else None,
        {key: scope for key in generation.values if (scope := key_scope(key)) is not None},
        frozenset(generation.raw),
    )
