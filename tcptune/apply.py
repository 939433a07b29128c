"""Execute a Plan against /proc/sys: lock, journal first, write in order, restore on failure, verify, persist.

Also ``rollback`` (itself journaled) and the drift view used by ``diff``. The core never prints: results and
errors carry plain words and the CLI renders them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import persist
from .errors import ApplyFailed, LiveStateError, PermissionProblem, TcptuneError, UsageError
from .journal import COMPLETE, FAILED, INCOMPLETE, ROLLED_BACK, UNDOABLE, Journal, StateDir, StateWriteError
from .live import ProcSys, WriteOutcome, put_back, write_all
from .plan import MISSING, READ_ONLY, UNREADABLE, BootState, Change, Drift, KeyState, Plan, boot_states, plan
from .target import Target
from .values import same

WRITE_DELAY_ENV = "TCPTUNE_TEST_WRITE_DELAY"
"""Seconds to sleep before each write: lets real-kernel tests kill an apply between two writes."""


class Desired(NamedTuple):
    """What should be in force: a validated profile reduced to what apply needs (also what the journal keeps)."""

    name: str
    fingerprint: str
    values: dict[str, str]
    source: str | None = None
    scopes: Mapping[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "values": self.values,
            "scopes": dict(self.scopes or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Desired:
        return cls(
            str(data.get("name", "?")),
            str(data.get("fingerprint", "")),
            {str(k): str(v) for k, v in dict(data.get("values", {})).items()},
            data.get("source"),
            {str(k): str(v) for k, v in dict(data.get("scopes", {})).items()},
        )


def require_root(target: Target, action: str) -> None:
    """Writing the real /proc/sys needs root: say so before anything else (a --proc-root tree does not)."""
    if target.is_real_kernel and os.geteuid() != 0:
        raise PermissionProblem(
            f"'tcptune {action}' changes kernel settings and must run as root (try sudo); "
            "'tcptune diff' works without root"
        )


def make_plan(desired: Desired, target: Target) -> Plan:
    """Read the live value of every desired key and compare."""
    live = target.proc.read_many(desired.values)
    return plan(desired.values, live, profile=desired.name, fingerprint=desired.fingerprint, scopes=desired.scopes)


def drift(
    desired: Desired, target: Target, *, check_boot: bool = True, defaults: Mapping[str, str] | None = None
) -> Drift:
    """``diff``: the live plan plus what systemd-sysctl / ``sysctl --system`` would set at the next boot.

    ``defaults`` are the kernel's defaults of keys (from the catalog): what a key no file sets returns to.
    """
    current = make_plan(desired, target)
    boot: list[BootState] = []
    if check_boot:
        found = persist.boot_values(target.sysctl_root, desired.values)
        boot = boot_states(desired.values, found, os.path.abspath(target.own_file), defaults)
    return Drift(current, boot, check_boot)


# ---- apply ----------------------------------------------------------------------------------------------------


class ApplyResult:
    """What an apply did; the CLI renders it. (A plain class: dataclasses cost import time on every command.)"""

    def __init__(self, plan: Plan, skipped: list[KeyState]) -> None:
        self.plan, self.skipped = plan, skipped
        self.journal_id: str | None = None
        self.outcome: WriteOutcome | None = None
        self.mismatches: list[tuple[str, str | None, str]] = []
        """(key, live after the write, expected): the kernel clamped or ignored a value."""
        self.persisted: str | None = None
        self.persist_changed = False
        self.overridden: list[BootState] = []
        """Keys of tcptune's file that a later sysctl.d file overrides at boot."""
        self.persist_outside_boot_path = False
        self.warnings: list[str] = []
        """Problems after a successful apply that did not undo it (the last-applied record could not be saved)."""

    @property
    def written(self) -> list[str]:
        return list(self.outcome.applied) if self.outcome else []


def split_blocked(current: Plan, *, skip_missing: bool, skip_readonly: bool) -> tuple[Plan, list[KeyState]]:
    """Refuse up front (nothing written) for keys that cannot be set here, unless told to skip them."""
    blocked = current.blocked
    refuse = [
        k
        for k in blocked
        if k.status == UNREADABLE
        or (k.status == MISSING and not skip_missing)
        or (k.status == READ_ONLY and not skip_readonly)
    ]
    if refuse:
        lines = [f"  {k.key}: {_blocked_text(k)}" for k in refuse]
        hints = []
        if any(k.status == MISSING for k in refuse):
            hints.append("--skip-missing applies the rest and skips keys this kernel lacks")
        if any(k.status == READ_ONLY for k in refuse):
            hints.append("--skip-readonly applies the rest and leaves host-wide keys to the host")
        raise LiveStateError(
            "nothing was changed; these keys cannot be set here:\n"
            + "\n".join(lines)
            + ("\n" + "; ".join(hints) if hints else "")
        )
    skipped = [k for k in blocked if k not in refuse]
    from .plan import without

    return without(current, {k.key for k in skipped}), skipped


def _blocked_text(state: KeyState) -> str:
    if state.status == MISSING:
        return "missing on this kernel" + (f": {state.note}" if state.note else "")
    if state.status == READ_ONLY:
        return "read-only here" + (f": {state.note}" if state.note else "")
    return state.note or "unreadable"


def persist_preview(desired: Desired, target: Target, skipped: list[KeyState]) -> str | None:
    """The new content of tcptune's sysctl.d file if applying would change it, else None."""
    content = persist.render_sysctl_conf(
        desired.name, desired.fingerprint, desired.values, ignore_errors={k.key for k in skipped}
    )
    return None if _read_own(target.own_file) == content else content


def apply(
    desired: Desired,
    target: Target,
    confirmed: Plan,
    *,
    skip_missing: bool = False,
    skip_readonly: bool = False,
    write_persist: bool = True,
) -> ApplyResult:
    """Apply ``desired`` to ``target``. ``confirmed`` is the plan the user saw; a different live state aborts.

    Order: lock, refuse if an interrupted apply is waiting for rollback, re-plan, journal (fsync'd), write each
    change (restoring all on the first failure), verify by re-reading, persist atomically, finish the journal.
    A state directory that fails after the kernel changed raises LiveStateError saying exactly what changed.
    """
    require_root(target, "apply")
    proc = target.proc
    state = StateDir(target.state_dir)
    with state.lock():
        _refuse_if_interrupted(state)
        current, skipped = split_blocked(
            make_plan(desired, target), skip_missing=skip_missing, skip_readonly=skip_readonly
        )
        skipped_keys = {k.key for k in skipped}
        if list(current.changes) != [c for c in confirmed.changes if c.key not in skipped_keys]:
            raise LiveStateError(
                "live values changed since the plan was shown (another tool or person?); "
                "nothing was changed: run the command again to see the new plan"
            )
        result = ApplyResult(current, skipped)
        content = (
            persist.render_sysctl_conf(desired.name, desired.fingerprint, desired.values, ignore_errors=skipped_keys)
            if write_persist
            else None
        )
        previous = _read_own(target.own_file) if write_persist else None
        persist_needed = write_persist and previous != content
        if not current.changes and not persist_needed:
            _save_last_applied(state, desired, target, result)
            result.persisted = target.own_file if write_persist else None
            _check_overrides(result, desired, target, write_persist)
            return result

        try:
            journal = state.begin(
                "apply",
                profile={"name": desired.name, "fingerprint": desired.fingerprint, "source": desired.source},
                desired=desired.as_dict(),
                proc_root=target.proc_root,
                changes=[c.as_dict() for c in current.changes],
                skipped=[k.key for k in skipped],
                persist={
                    "path": target.own_file,
                    "planned": persist_needed,
                    "previous": previous,
                    "new": content if persist_needed else None,
                    "written": False,
                },
            )
        except LiveStateError as exc:
            raise LiveStateError(f"{exc}; nothing was changed") from None
        result.journal_id = journal.id
        outcome = write_all(proc, [(c.key, c.new, c.old) for c in current.changes], _before_each(), same=same)
        result.outcome = outcome
        if not outcome.ok:
            _fail(journal, outcome)
        result.mismatches = _verify(proc, current.changes)
        if persist_needed:
            assert content is not None
            try:
                os.makedirs(target.sysctl_dir, mode=0o755, exist_ok=True)
                persist.atomic_write(target.own_file, content, 0o644)
            except OSError as exc:
                undo = put_back(proc, [(c.key, c.new, c.old) for c in current.changes])
                problem = f"could not write {target.own_file}: {exc.strerror or exc}"
                if not undo.restore_failed:
                    done = f"{problem}; the {len(undo.restored)} changed key(s) were restored, nothing is changed"
                    _record(journal, done, lambda: journal.finish(FAILED, error=problem, restored=undo.restored))
                    raise LiveStateError(done) from None
                done = f"{problem}; restoring the live values failed too: " + _describe_failure(undo)
                _record(journal, done, lambda: journal.finish(INCOMPLETE, error=problem))
                raise ApplyFailed(done) from None
            result.persist_changed = True
        done = _applied_text(outcome.applied, target.own_file if result.persist_changed else None)
        if result.persist_changed:
            _record(journal, done, lambda: journal.update(persist=dict(journal.data["persist"], written=True)))
        result.persisted = target.own_file if write_persist else None
        _record(
            journal,
            done,
            lambda: journal.finish(
                COMPLETE,
                written=outcome.applied,
                mismatches=[{"key": k, "live": lv, "expected": e} for k, lv, e in result.mismatches],
            ),
        )
        _save_last_applied(state, desired, target, result)
        _check_overrides(result, desired, target, write_persist)
        return result


def _applied_text(keys: list[str], file: str | None) -> str:
    text = f"{len(keys)} key(s) were changed on the live kernel" + (f" ({', '.join(keys)})" if keys else "")
    return text + (f" and {file} was written" if file else "")


def _record(journal: Journal, done: str, step: Any) -> None:
    """A journal step after the machine changed: a failing state directory must say what is already done."""
    try:
        step()
    except StateWriteError as exc:
        raise LiveStateError(
            f"{done}, but the journal could not be updated: {exc}. The machine keeps those "
            f"changes; {journal.path} holds what is needed to undo them ('tcptune rollback' "
            "once the state directory is writable again)"
        ) from None


def _save_last_applied(state: StateDir, desired: Desired, target: Target, result: ApplyResult) -> None:
    """After a successful apply, failing to save what ``diff`` compares against is a warning, not a failure."""
    try:
        state.write_last_applied(_last_record(desired, target))
    except StateWriteError as exc:
        result.warnings.append(
            f"{exc}; the apply itself succeeded, but a bare 'tcptune diff' will not know this "
            "profile (name it: 'tcptune diff PROFILE')"
        )


def _before_each() -> Any:
    delay = float(os.environ.get(WRITE_DELAY_ENV, "0") or 0)
    if delay <= 0:
        return None

    def pause(_key: str) -> None:
        time.sleep(delay)

    return pause


def _read_own(path: str) -> str | None:
    try:
        return persist.read_text(path)
    except OSError as exc:
        raise LiveStateError(f"cannot read {path}: {exc.strerror or exc}") from None


def _refuse_if_interrupted(state: StateDir) -> None:
    stuck = state.interrupted()
    if stuck:
        journal = stuck[-1]
        raise UsageError(
            f"an earlier {journal.kind} ({journal.id}) was interrupted and may have left the machine "
            "half-changed; run 'tcptune rollback' first (or 'tcptune rollback --abandon' to accept "
            "the current values)"
        )


def _fail(journal: Journal, outcome: WriteOutcome) -> None:
    assert outcome.failed is not None
    key, reason, message = outcome.failed
    record = {
        "failed": {"key": key, "reason": reason, "message": message},
        "written": outcome.applied,
        "restored": outcome.restored,
        "restore_failed": [list(x) for x in outcome.restore_failed],
    }
    if outcome.restore_failed:
        done = _describe_failure(outcome)
        _record(journal, done, lambda: journal.finish(INCOMPLETE, **record))
        raise ApplyFailed(done)
    restored = (
        f"the {len(outcome.restored)} key(s) already changed were restored ({', '.join(outcome.restored)}), "
        if outcome.restored
        else ""
    )
    done = f"{journal.kind} failed at {key}: {message}\n{restored}the machine is as it was before"
    _record(journal, done, lambda: journal.finish(FAILED, **record))
    raise LiveStateError(done)


def _describe_failure(outcome: WriteOutcome) -> str:
    """Exactly what state the machine is in after a failed restore."""
    parts = []
    if outcome.failed:
        key, _reason, message = outcome.failed
        parts.append(f"writing {key} failed: {message}")
    if outcome.restored:
        parts.append("restored to their previous values: " + ", ".join(outcome.restored))
    if outcome.restore_failed:
        parts.append(
            "NOT restored, still at the new value: " + "; ".join(f"{k} ({why})" for k, why in outcome.restore_failed)
        )
    parts.append("'tcptune history' shows the journal; 'tcptune rollback' retries the restore")
    return ". ".join(parts)


def _verify(proc: ProcSys, changes: tuple[Change, ...]) -> list[tuple[str, str | None, str]]:
    """Re-read what was written: the kernel may clamp or ignore a value without failing the write."""
    mismatches = []
    for change in changes:
        now = proc.read(change.key)
        if now.text is None or not same(now.text, change.new):
            mismatches.append((change.key, now.text, change.new))
    return mismatches


def _check_overrides(result: ApplyResult, desired: Desired, target: Target, wrote: bool) -> None:
    if not wrote:
        return
    own = os.path.abspath(target.own_file)
    if own not in [os.path.abspath(f) for f in persist.config_files(target.sysctl_root)]:
        result.persist_outside_boot_path = True
        return
    found = persist.boot_values(target.sysctl_root, desired.values)
    result.overridden = [b for b in boot_states(desired.values, found, own) if b.overridden]


def _last_record(desired: Desired, target: Target) -> dict[str, Any]:
    return {
        "profile": desired.as_dict(),
        "applied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "proc_root": target.proc_root,
        "sysctl_file": target.own_file,
    }


# ---- rollback -------------------------------------------------------------------------------------------------


class RollbackResult:
    """What a rollback did."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.journal_id: str | None = None
        self.plan: Plan | None = None
        self.outcome: WriteOutcome | None = None
        self.file_action: str | None = None
        """"restored", "removed", "left" (changed since by someone else), or None (nothing to do)."""
        self.file_note: str | None = None
        self.skipped: list[KeyState] = []
        self.warnings: list[str] = []
        """Problems after a successful rollback that did not undo it (the last-applied record)."""


def rollback_candidate(state: StateDir, ref: str | None) -> Journal:
    if ref is not None:
        journal = state.find(ref)
        if journal.kind != "apply":
            raise UsageError(f"{journal.id} is a {journal.kind}, not an apply; pick an apply from 'tcptune history'")
        if journal.status not in UNDOABLE:
            raise UsageError(f"apply {journal.id} is {journal.status}: nothing of it is left to undo")
        return journal
    for journal in reversed(state.journals()):
        if journal.kind == "apply" and journal.status in UNDOABLE:
            return journal
    raise UsageError("nothing to roll back: no apply in the journal is still in effect (see 'tcptune history')")


def _own_file_of(journal: Journal, path: str, target: Target) -> str:
    """The journal's persisted file, if it is this run's own sysctl file; anything else is refused untouched.

    A journal is data: rollback never restores or deletes a file just because a journal names it.
    """
    own = target.own_file
    if os.path.basename(path) == os.path.basename(own) and os.path.realpath(os.path.dirname(path)) == os.path.realpath(
        os.path.dirname(own)
    ):
        return path
    raise TcptuneError(
        f"{journal.path}: the journal names {path} as tcptune's sysctl file, but this run's is {own}; "
        "refusing to restore or delete any other file, nothing was changed (pass --sysctl-dir with "
        "the directory the apply used, or correct the journal)"
    )


def rollback(target: Target, ref: str | None = None, *, abandon: bool = False) -> RollbackResult:
    """Put back the values (and the persisted file) recorded before an apply; journaled like an apply."""
    require_root(target, "rollback")
    proc = target.proc
    state = StateDir(target.state_dir)
    with state.lock():
        # an interrupted rollback is finished by rolling back its apply again: it only writes what still differs
        for stale in state.interrupted():
            if stale.kind == "rollback":
                stale.finish("abandoned", note="interrupted; superseded by a new rollback")
        journal = rollback_candidate(state, ref)
        result = RollbackResult(journal.summary())
        recorded_root = journal.data.get("proc_root")
        if recorded_root and os.path.realpath(recorded_root) != os.path.realpath(target.proc_root):
            raise UsageError(
                f"apply {journal.id} was made against {recorded_root}, not {target.proc_root}; "
                f"run rollback with --proc-root {recorded_root}"
            )
        record = dict(journal.data.get("persist") or {})
        path = record.get("path") if record.get("planned") else None
        if path:
            path = _own_file_of(journal, path, target)
        if abandon:
            journal.finish("abandoned", note="abandoned by the user: current values accepted")
            return result
        changes = [Change(c["key"], c["old"], c["new"]) for c in journal.changes]
        live = proc.read_many(c.key for c in changes)
        back = plan({c.key: c.old for c in changes}, live, profile=f"rollback of {journal.id}")  # only keys that moved
        writable_back, skipped = split_blocked(back, skip_missing=True, skip_readonly=True)
        result.plan, result.skipped = writable_back, skipped
        file_current = _read_own(path) if path else None
        file_restore = bool(path) and file_current != record.get("previous")
        if file_restore and file_current != record.get("new"):
            file_restore = False
            result.file_action = "left"
            result.file_note = (
                f"{path} was changed after apply {journal.id}; left as it is (its previous content is in the journal)"
            )
        try:
            rb = state.begin(
                "rollback",
                rolls_back=journal.id,
                profile=journal.data.get("profile"),
                proc_root=target.proc_root,
                changes=[c.as_dict() for c in writable_back.changes],
                persist={
                    "path": path,
                    "planned": file_restore,
                    "previous": file_current,
                    "new": record.get("previous") if file_restore else None,
                    "written": False,
                },
            )
        except LiveStateError as exc:
            raise LiveStateError(f"{exc}; nothing was changed") from None
        result.journal_id = rb.id
        outcome = write_all(proc, [(c.key, c.new, c.old) for c in writable_back.changes], _before_each(), same=same)
        result.outcome = outcome
        if not outcome.ok:
            _fail(rb, outcome)
        restored = f"{len(outcome.applied)} key(s) were restored on the live kernel" + (
            f" ({', '.join(outcome.applied)})" if outcome.applied else ""
        )
        if file_restore:
            assert path is not None
            previous = record.get("previous")
            try:
                persist.restore_file(path, previous)
            except OSError as exc:
                problem = f"could not restore {path}: {exc.strerror or exc}"
                done = (
                    f"the live values were restored, but {path} could not be restored: "
                    f"{exc.strerror or exc}; its previous content is in journal {journal.id}"
                )
                _record(rb, done, lambda: rb.finish(INCOMPLETE, error=problem, written=outcome.applied))
                raise ApplyFailed(done) from None
            result.file_action = "restored" if previous is not None else "removed"
            restored += f" and {path} was {result.file_action}"
        _record(rb, restored, lambda: rb.finish(COMPLETE, written=outcome.applied, skipped=[k.key for k in skipped]))
        _record(journal, restored, lambda: journal.finish(ROLLED_BACK, rolled_back_by=rb.id))
        try:
            _reset_last_applied(state)
        except StateWriteError as exc:
            result.warnings.append(
                f"{exc}; the rollback itself succeeded, but a bare 'tcptune diff' may compare "
                "against the profile rolled back (name one: 'tcptune diff PROFILE')"
            )
        return result


def _reset_last_applied(state: StateDir) -> None:
    """After a rollback, ``diff`` without a profile compares against the apply that is in force again, if any."""
    for journal in reversed(state.journals()):
        if journal.kind == "apply" and journal.status == COMPLETE and journal.data.get("desired"):
            state.write_last_applied(
                {
                    "profile": journal.data["desired"],
                    "applied": journal.data.get("finished"),
                    "proc_root": journal.data.get("proc_root"),
                    "sysctl_file": (journal.data.get("persist") or {}).get("path"),
                }
            )
            return
    state.clear_last_applied()
