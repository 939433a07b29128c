"""The warning every command gives when a transaction was killed part-way and awaits 'tcptune recover'.

A command with a ``--state-dir`` option checks that directory itself (rollback and recover, the remedies, do not
warn: they act); the root callback checks ``$TCPTUNE_STATE_DIR`` (or the default) for every other command.
"""

import os
import sys

from ..failures import CoreError
from ..output import emit, paint

PENDING_NAME = "pending.json"


def warn_interrupted(state_dir: str) -> None:
    """One lstat when nothing is pending; the record is read (and the catalog imported) only when something is.

    A transaction still running holds the state directory's lock: then there is nothing to warn about.
    """
    try:
        os.lstat(os.path.join(state_dir, PENDING_NAME))
    except OSError:
        return
    from ..desired import state_dir as open_state
    from ..engine import interrupted_text

    state = open_state(state_dir)

    def warn(text: str) -> None:
        emit(f"tcptune: {paint('warning:', 'warning', sys.stderr)} {text}", err=True)

    if state.is_busy():
        return
    try:
        pending = state.read_pending()
    except CoreError as exc:
        warn(f"{exc}; 'tcptune recover' cannot act on it")
        return
    if pending is None:
        return
    if os.path.lexists(state.generation_path(pending.to)):
        warn(
            f"the {pending.kind} that made generation {pending.to} completed but left {state.pending_path} "
            "behind; 'tcptune recover' removes it"
        )
        return
    warn(interrupted_text(pending, state.pending_path))
