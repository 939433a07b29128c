"""The exceptions of the shipped core (target, state, engine): what went wrong for the user or the machine.

Standard library only and free of other tcptune imports, so that the core can be shipped to hosts. ``errors.
TcptuneError`` subclasses ``CoreError``: the CLI maps both to a message and an exit code in one place, and the
Ansible module turns them into ``fail_json``. Anything else raised is a bug.
"""

from __future__ import annotations


class CoreError(Exception):
    """Root of every error the core reports; ``exit_code`` is what the command line exits with.

    ``reason`` (one word: read-only, missing, invalid, not-kept, file, ...) and ``keys`` (the keys it is about) are
    for callers that show one short line per host (the Ansible module, fleet tables); the message says it all.
    """

    exit_code = 1
    reason: str | None = None
    keys: tuple[str, ...] = ()

    def about(self, reason: str | None, keys: tuple[str, ...] = ()) -> CoreError:
        """The same error, tagged with a short ``reason`` and the ``keys`` it is about (returns itself)."""
        self.reason, self.keys = reason, keys
        return self


class BadTarget(CoreError):
    """A path to act on is unusable (an empty or missing --proc-root); nothing was read or changed."""

    reason = "target"


class StateError(CoreError):
    """The state directory, or a file in it, cannot be used; the message names the file to fix."""

    reason = "state"


class MalformedState(StateError):
    """A state file that is not in the shape tcptune writes (hand-edited, damaged or not ours): never acted on."""

    def __init__(self, path: str, what: str, kind: str = "generation") -> None:
        super().__init__(f"{path}: malformed {kind}: {what} (correct the file or move it away)")
        self.path, self.what = path, what


class LockHeld(StateError):
    """Another tcptune transaction holds the state directory."""

    reason = "locked"

    def __init__(self, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another tcptune apply, rollback, reset or recover is running{who}; wait for it to finish")
        self.pid = pid


class Refused(CoreError):
    """Refused up front: nothing was changed (a blocked key, a stale plan, an interrupted transaction, a file that
    must not be written through)."""


class Undone(CoreError):
    """A step failed after the machine changed, and every change was undone: the machine is as it was."""


class RestoreIncomplete(CoreError):
    """A step failed and not everything could be put back; the pending record is kept for 'tcptune recover'."""

    exit_code = 3
