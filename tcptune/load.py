"""A profile for use: loaded, resolved, validated, and stopped with every error at once if it is invalid.

Light on purpose (no apply machinery): ``validate`` and ``show`` start as fast as the loader allows.
"""

from __future__ import annotations

from .errors import ProfileError
from .profile import load_profile
from .validate import Verdict, validate


def load_valid(ref: str, *, container: bool = False) -> Verdict:
    """Load and validate ``ref`` (a file or a built-in name); ProfileError listing every error if it is invalid.

    Warnings stay on the Verdict for the caller to show.
    """
    verdict = validate(load_profile(ref), container=container)
    if verdict.errors:
        raise ProfileError(verdict.errors)
    return verdict
