"""The command line (``tcptune = "tcptune.cli:main"``, ``python -m tcptune``).

app.py builds the typer app and turns errors into messages and exit codes; one module per family of commands
(profiles, live, fleet, evidence) parses, calls one core function and renders; options.py holds what they share.
"""

from .app import main, run

__all__ = ["main", "run"]
