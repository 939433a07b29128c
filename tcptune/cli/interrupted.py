"""The warning every command gives when an apply or rollback was killed part-way and awaits 'tcptune rollback'.

A command with a ``--state-dir`` option checks that directory itself (rollback, the remedy, does not warn); the root
callback checks ``$TCPTUNE_STATE_DIR`` (or the default) for every other command.
"""

import sys

from ..errors import TcptuneError
from ..journal import StateDir
from ..output import emit, paint


def warn_interrupted(state_dir: str) -> None:
    """One listdir (``StateDir.has_pending_files``); journals are parsed only when something is pending.

    Whether an apply is still running is decided by its lock, not its pid. A malformed journal gets a one-line
    warning here (the command itself still runs); apply and rollback refuse to act on it.
    """
    state = StateDir(state_dir)
    if not state.has_pending_files():
        return

    def warn(text: str) -> None:
        emit(f"tcptune: {paint('warning:', 'warning', sys.stderr)} {text}", err=True)

    try:
        stuck = state.interrupted(on_malformed=lambda exc: warn(f"skipping {exc}"))
    except TcptuneError as exc:
        warn(f"cannot check for interrupted applies: {exc}")
        return
    for journal in stuck:
        profile = (journal.data.get("profile") or {}).get("name") or "?"
        warn(
            f"{journal.kind} {journal.id} of profile {profile} (started {journal.data.get('started')}) was "
            "interrupted and may have left the machine half-changed; run 'tcptune rollback' to restore the previous "
            "values ('tcptune history' for details)"
        )
