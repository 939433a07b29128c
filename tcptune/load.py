"""A profile for use: loaded, resolved, validated, and stopped with every error at once if it is invalid.

Light on purpose (no apply machinery): ``validate`` and ``show`` start as fast as the loader allows.
"""

from __future__ import annotations

from .errors import Diagnostic, Location, ProfileError
from .profile import Profile, load_profile
from .validate import Verdict, validate


def read_profile(ref: str) -> Profile:
    """``profile.load_profile``, with a path the system refuses (too long, a loop of links, ...) reported as the
    profile's one error instead of an OSError."""
    try:
        return load_profile(ref)
    except OSError as exc:
        shown = ref if len(ref) <= 200 else f"{ref[:80]}...{ref[-40:]} ({len(ref)} characters)"
        reason = (exc.strerror or str(exc)).lower()
        raise ProfileError([Diagnostic("error", Location(shown), f"cannot read the profile: {reason}")]) from None


def load_valid(ref: str, *, container: bool = False) -> Verdict:
    """Load and validate ``ref`` (a file or a built-in name); ProfileError listing every error if it is invalid.

    Warnings stay on the Verdict for the caller to show.
    """
    verdict = validate(read_profile(ref), container=container)
    if verdict.errors:
        raise ProfileError(verdict.errors)
    return verdict
