"""Several owners of one host's settings: two Ansible roles (a generated one and the generic one) in one play.

A host has one state directory and one current generation: everything tcptune manages there, persisted to one
sysctl.d file. A role that runs with an owner name converges only its own part of it: the keys other owners set stay
managed (live and persisted), keys it dropped go back to their baseline unless another owner keeps them, and a key two
owners want at different values refuses the second one, naming the first, instead of a tug of war on every run.
Without an owner (``tcptune apply``, ``tcptune push``) a profile owns the whole host, as before.

Pure and standard library only (with the shipped ``state``, ``plan``, ``values`` and ``failures``): shipped to hosts.
"""

from __future__ import annotations

import hashlib

from .failures import Refused
from .plan import Desired
from .state import Generation, Owner, ProfileRecord
from .values import canonical

WHOLE_HOST = ""
"""The owner name of a profile applied without one ('tcptune apply', 'tcptune push')."""


def owner_words(name: str, owner: Owner) -> str:
    """How messages name an owner: ``role tcptune_web_server (profile web-server)``."""
    if name == WHOLE_HOST:
        return f"profile {owner.profile.name} (applied by 'tcptune apply' or 'tcptune push')"
    return f"role {name} (profile {owner.profile.name})"


def parts(current: Generation | None) -> dict[str, Owner]:
    """The owners of the current generation; a generation made without owners is one part, owned by WHOLE_HOST."""
    if current is None or not current.values:
        return {}
    if current.owners is not None:
        return dict(current.owners)
    profile = current.profile or ProfileRecord(f"generation {current.number}", "", None)
    return {WHOLE_HOST: Owner(profile, tuple(sorted(current.values)))}


def compose(current: Generation | None, owner: str, desired: Desired) -> Desired:
    """The host's whole desired state when ``owner`` wants ``desired`` and every other owner keeps its part.

    Refused (nothing changed) when a key of ``desired`` is set to another value by another owner.
    """
    others = {name: part for name, part in parts(current).items() if name != owner}
    values: dict[str, str] = {}
    held_by: dict[str, list[str]] = {}
    for name, part in sorted(others.items()):
        for key in part.keys:
            assert current is not None
            values[key] = current.values[key]
            held_by.setdefault(key, []).append(name)
    clashes = [
        f"{key}: {owner_words(held_by[key][0], others[held_by[key][0]])} sets {values[key]}, this one wants {want}"
        for key, want in sorted(desired.values.items())
        if key in values and canonical(values[key]) != canonical(want)
    ]
    if clashes:
        who = owner or "this profile"
        raise Refused(
            f"{who} and another owner of this host's tcptune settings want different values: {'; '.join(clashes)}; "
            "nothing was changed (set each key in one role only, or give both the same value)"
        ).about("conflict", tuple(sorted(k for k in desired.values if k in values)))
    values.update(desired.values)
    owners = dict(others)
    if desired.values:
        owners[owner] = Owner(
            ProfileRecord(desired.name, desired.fingerprint, desired.source), tuple(sorted(desired.values))
        )
    raw = set(desired.raw)
    if current is not None:
        raw |= {key for key in current.raw if key in values and key not in desired.values}
    if len(owners) == 1:
        (only,) = owners.values()
        name, fingerprint, source = only.profile.name, only.profile.fingerprint, only.profile.source
    else:
        name = " + ".join(owner_name or part.profile.name for owner_name, part in sorted(owners.items()))
        digest = hashlib.sha256()
        for owner_name, part in sorted(owners.items()):
            digest.update(f"{owner_name}={part.profile.fingerprint}\n".encode())
        fingerprint, source = digest.hexdigest()[:12], None
    return Desired(name, fingerprint, values, source, desired.scopes, frozenset(raw), owners)
