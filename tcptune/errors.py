"""The errors of the command-line side, and the Diagnostic value type.

``TcptuneError`` subclasses ``failures.CoreError``, the root of the shipped core's errors (engine, state): the
CLI maps that one root to messages and exit codes in exactly one place; anything else is an internal error.
"""

from __future__ import annotations

from typing import Literal

from .failures import CoreError
from .records import Record

Severity = Literal["error", "warning"]


class Location(Record):
    """A place in a file, 1-based, as editors and compilers print it."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


class Diagnostic(Record):
    """A problem found in user input: data first, rendered once at the edge."""

    severity: Severity
    location: Location
    message: str
    key: str | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        text = f"{self.location}: "
        if self.severity == "warning":
            text += "warning: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }


class TcptuneError(CoreError):
    """An error that is the user's or the machine's, not tcptune's (outside the shipped core)."""


class ProfileError(TcptuneError):
    """A profile could not be loaded at all; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__()
        self.diagnostics: list[Diagnostic] = list(diagnostics or [])

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


class UsageError(TcptuneError):
    """A command was asked for something it cannot do (bad option combination, missing state)."""


class LiveStateError(TcptuneError):
    """Reading or writing /proc/sys or sysctl.d failed in a way the user must act on."""


class ConfirmationNeeded(UsageError):
    """A change needs confirmation and there is no terminal to ask on (scripts pass --yes)."""

    exit_code = 64


class FleetError(TcptuneError):
    """A fleet run could not start or its inventory is unusable."""
