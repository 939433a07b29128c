"""tcptune: declarative Linux TCP sysctl profiles.

The data flow, one line: profile file -> Profile -> validated against the Catalog -> Plan against live state ->
one transaction (engine) -> Generation N+1. Usable as a library::

    from tcptune import load_profile, validate
    from tcptune.plan import plan
    from tcptune.engine import Engine

The names below load on first use (PEP 562), so that commands that read no profile (``status``, ``history``,
``rollback``, ``reset``, ``recover``) do not import PyYAML. (``plan`` is not re-exported: its module shares its
name.)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {"Profile": "profile", "load_profile": "profile", "Verdict": "validate", "validate": "validate"}
"""Public name -> the module that defines it."""

__all__ = ["Profile", "Verdict", "__version__", "load_profile", "validate"]

if TYPE_CHECKING:
    from .profile import Profile, load_profile
    from .validate import Verdict, validate


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """Importing the submodule ``tcptune.validate`` sets the package attribute ``validate`` to that module; the
    public name is the function, so the function is kept."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
