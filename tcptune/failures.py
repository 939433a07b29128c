"""The exceptions of the shipped core (target, state, engine): what went wrong for the user or the machine.

Standard library only and free of other tcptune imports, so that the core can be shipped to hosts. ``errors.
TcptuneError`` subclasses ``CoreError``: the CLI maps both to a message and an exit code in one place, and the
Ansible module turns them into ``fail_json``. Anything else raised is a bug.
"""

from __future__ import annotations


class CoreError(Exception):
    """Root of every error the core reports; ``exit_code`` is what the command line exits with."""

    exit_code = 1


class BadTarget(CoreError):
    """A path to act on is unusable (an empty or missing --proc-root); nothing was read or changed."""


class StateError(CoreError):
    """The state directory, or a file in it, cannot be used; the message names the file to fix."""


class MalformedState(StateError):
    """A state file that is not in the shape tcptune writes (hand-edited, damaged or not ours): never acted on."""

    def __init__(self, path: str, what: str, kind: str = "generation") -> None:
        super().__init__(f"{path}: malformed {kind}: {what} (correct the file or move it away)")
        self.path, self.what = path, what


class LockHeld(StateError):
    """Another tcptune transaction holds the state directory."""

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
