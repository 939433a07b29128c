"""tcptune: declarative Linux TCP sysctl profiles.

The data flow, one line: profile file -> Profile -> validated against the Catalog -> Plan against live state ->
applied -> Journal. Usable as a library::

    from tcptune import load_profile, validate
    from tcptune.plan import plan
    from tcptune.apply import apply

(``plan`` and ``apply`` are not re-exported here: their modules share their names, and importing them eagerly
would put the whole apply machinery on the ``validate`` path.)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .profile import Profile, load_profile
from .validate import Verdict, validate

__all__ = ["Profile", "Verdict", "__version__", "load_profile", "validate"]
