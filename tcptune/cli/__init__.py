"""The command line (``tcptune = "tcptune.cli:main"``, ``python -m tcptune``).

app.py builds the typer app and turns errors into messages and exit codes; one module per family of commands
(profiles, live, fleet, evidence) parses, calls one core function and renders; options.py holds what they share.

Importing this package imports nothing else, so that ``main`` decides how start-up runs.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import run

__all__ = ["main", "run"]


def main() -> None:
    """The console entry point.

    Start-up (typer and the command's family) creates some 100,000 objects that all live until the process exits.
    The cyclic garbage collector would walk them again and again while they are created, and once more at exit:
    about a tenth of a short command's CPU time (bench/diff_latency). So collection waits until they exist, and
    ``gc.freeze`` then sets them aside for good; what the command creates afterwards is collected as usual.
    """
    gc.disable()
    try:
        from .app import run
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(run())


def __getattr__(name: str) -> Any:
    if name == "run":
        from .app import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
