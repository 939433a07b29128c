"""The Desired state diff and apply act on: from a valid profile, or the one last applied here.

``Desired`` itself lives in apply.py, next to the engine that consumes it and the journal that records it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import catalog
from .apply import Desired
from .errors import TcptuneError
from .journal import StateDir

if TYPE_CHECKING:
    from .validate import Verdict


def from_verdict(verdict: Verdict, ref: str) -> Desired:
    """A valid profile (``load.load_valid``) reduced to what apply needs: values, fingerprint, where it came from
    (``ref`` for a profile without a file) and each key's scope."""
    profile = verdict.profile
    scopes = {key: entry.scope for key in verdict.values if (entry := catalog.get(key)) is not None}
    source = str(profile.path) if profile.path else ref
    return Desired(profile.name, profile.fingerprint(), dict(verdict.values), source, scopes)


def last_applied(state_dir: str) -> Desired:
    """What the last apply recorded in ``state_dir`` (a bare ``tcptune diff`` compares against it)."""
    record = StateDir(state_dir).read_last_applied()
    if record is None:
        raise TcptuneError(
            f"no applied profile is recorded in {state_dir} (nothing applied yet, or the last apply was rolled "
            "back); name a profile to compare, e.g. 'tcptune diff web-server', or start with "
            "'tcptune apply web-server --dry-run' ('tcptune profiles' lists the built-in ones)"
        )
    return Desired.from_dict(record.get("profile") or {})


def kernel_defaults(keys: Iterable[str]) -> dict[str, str]:
    """The kernel's default of each key the catalog knows one for: what a key no sysctl.d file sets returns to."""
    return {key: entry.default for key in keys if (entry := catalog.get(key)) and entry.default is not None}
