"""One transaction, for the CLI and for every host (the Ansible module): plan a transition, execute it, recover.

A transition converges the machine to a state: a profile (``apply``), an earlier generation (``rollback``) or
nothing managed (``reset``). Planning is pure over facts read beforehand (``transition``); ``Engine.execute`` takes
the lock, re-reads and re-plans, refuses if anything moved since the plan was shown, records the pending transaction
(fsync'd), writes in order, verifies by re-reading, persists the sysctl.d file, and commits generation N+1; on any
failure it puts everything back, or keeps the pending record for ``Engine.recover`` when it cannot. The core never
prints: results carry plain words for the CLI or the module to render.

Every plan is judged by kernel preflight (``preflight``, over facts ``kernelfacts`` reads under the target's
/proc/sys): a write this kernel would refuse refuses the whole transition up front, nothing written, whatever the
recipe (an apply, a rollback to a generation whose value the kernel no longer takes, a reset).

Standard library only (with the shipped ``live``, ``values``, ``persist``, ``plan``, ``state``, ``target``,
``failures``, ``preflight``, ``kernelfacts``, ``catalog``, ``kernel_write`` and ``boot``): shipped to hosts.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn

from . import boot, kernelfacts, persist, preflight
from .failures import Refused, RestoreIncomplete, StateError, Undone
from .live import LiveValue, ProcSys, WriteFailed, WriteOutcome, put_back, write_all
from .plan import (
    AT_BASELINE,
    MISSING,
    OK,
    READ_ONLY,
    REFUSED,
    REVERT,
    STATUS_TEXT,
    Change,
    Desired,
    KeyState,
    Plan,
    plan,
    split_blocked,
)
from .records import Record
from .state import (
    Baseline,
    FileRecord,
    FileStep,
    Generation,
    KeyPolicy,
    Pending,
    ProfileRecord,
    StateDir,
    made_by,
    now_text,
)
from .target import Target
from .values import canonical, same

APPLY, ROLLBACK, RESET = "apply", "rollback", "reset"


class Options(Record):
    """How ``apply`` converges."""

    skip_missing: bool = False
    """Keys this kernel lacks are skipped (recorded as skipped) instead of refusing the whole apply."""
    skip_readonly: bool = False
    """Keys read-only here are skipped instead of refusing."""
    persist: bool = True
    """Write tcptune's sysctl.d file. Without: the file is left exactly as it is."""
    keep_unmanaged: bool = False
    """Keys of the current generation that the profile drops keep their live value (instead of going back to
    their baseline) and leave management; they are no longer persisted."""


class Recipe(Record):
    """What a transition converges to: re-planned from it under the lock."""

    kind: str
    desired: Desired | None = None
    options: Options = Options()
    to: int | None = None
    """For a rollback: the generation to return to (0: nothing managed)."""


class Transition(Record):
    """A planned transaction: from generation ``from_`` to ``to``, the writes, the file, the new generation."""

    recipe: Recipe
    kind: str
    from_: int
    to: int
    plan: Plan
    """Every key's state; ``plan.changes`` are the writes in order (reverts included)."""
    skipped: tuple[KeyState, ...]
    released: tuple[str, ...]
    """Keys leaving management that keep their live value (--keep-unmanaged)."""
    file: FileStep | None
    """The change to tcptune's sysctl.d file; None: it is not touched."""
    generation: Generation
    """Generation ``to`` as it will be committed (``created`` and ``by`` are filled in when it is)."""
    target: Generation | None
    """For a rollback: the generation returned to (None for 0)."""
    noop: bool
    """The machine and the state already are what this converges to: nothing is done, no generation is made."""
    warnings: tuple[str, ...]

    @property
    def writes(self) -> tuple[Change, ...]:
        return self.plan.changes

    @property
    def changes_something(self) -> bool:
        """Whether executing it changes the machine (as opposed to recording a generation only)."""
        return bool(self.plan.changes) or self.file is not None


class Result(Record):
    """What an executed transition did."""

    transition: Transition
    generation: int | None
    """The generation committed; None when nothing needed doing."""
    written: tuple[str, ...]
    file_action: str | None
    """"written", "removed" or None (untouched)."""
    warnings: tuple[str, ...]


class Recovery(Record):
    """What ``recover`` did: ``action`` is "nothing" (no pending transaction), "completed" (its generation had been
    committed: only the record was removed) or "restored" (the machine is back at generation ``pending.from_``)."""

    action: str
    pending: Pending | None
    restored: tuple[str, ...] = ()
    file_action: str | None = None
    warnings: tuple[str, ...] = ()


def require_root(target: Target, action: str) -> None:
    """Writing the real /proc/sys needs root: say so before anything else (a --proc-root tree does not)."""
    if target.is_real_kernel and os.geteuid() != 0:
        raise Refused(
            f"'tcptune {action}' changes kernel settings and must run as root (try sudo); "
            "'tcptune diff' and 'tcptune history' work without root"
        )


def interrupted_text(pending: Pending, path: str) -> str:
    """One line naming an interrupted transaction and the remedy."""
    return (
        f"an interrupted {pending.kind} (generation {pending.from_} -> {pending.to}, started {pending.started}) "
        f"is recorded in {path} and may have left the machine half-changed; run 'tcptune recover' to return to "
        f"generation {pending.from_}"
    )


# ---- planning: pure, from facts read beforehand ----------------------------------------------------------------------


class Facts(Record):
    """What a plan is made from: read without the lock to show a plan, and again under it to execute."""

    current: int
    generation: Generation | None
    """The current generation (None: 0, nothing managed)."""
    target: Generation | None
    """For a rollback: the generation to return to."""
    live: Mapping[str, LiveValue]
    file_text: str | None
    """tcptune's sysctl.d file now (None: there is none, or it was not needed)."""
    boot: Mapping[str, str | None]
    """What the sysctl.d files, tcptune's own excluded, set at boot for keys that become managed."""
    own_file: str
    kernel: kernelfacts.Facts | None = None
    """What kernel preflight judges the writes by (None: not judged)."""


def transition(recipe: Recipe, facts: Facts, key_scope: Callable[[str], str | None] | None = None) -> Transition:
    """The transaction that converges the machine to ``recipe``; Refused (nothing changed) if it must not run."""
    current = facts.generation
    managed = dict(current.values) if current else {}
    _check_file_path(current, facts.own_file, "the current generation")
    if recipe.kind == APPLY:
        assert recipe.desired is not None
        desired = recipe.desired
        values, raw = dict(desired.values), tuple(sorted(desired.raw))
        profile: ProfileRecord | None = ProfileRecord(desired.name, desired.fingerprint, desired.source)
        scopes = dict(desired.scopes or {})
        options = recipe.options
        owners = dict(desired.owners) if desired.owners is not None else None
    else:
        target = facts.target if recipe.kind == ROLLBACK else None
        if target is not None:
            _check_file_path(target, facts.own_file, f"generation {target.number}")
        values = dict(target.values) if target else {}
        raw = tuple(target.raw) if target else ()
        profile = target.profile if target else None
        owners = dict(target.owners) if target and target.owners is not None else None
        scopes = {}
        options = Options(skip_missing=True, skip_readonly=True, keep_unmanaged=False)
    if key_scope is not None:
        for key in {*values, *managed}:
            scope = scopes.get(key) or key_scope(key)
            if scope:
                scopes[key] = scope

    leaving = sorted(set(managed) - set(values))
    released = tuple(leaving) if options.keep_unmanaged else ()
    reverts = {} if options.keep_unmanaged else {key: current.baseline[key].live for key in leaving if current}
    full = plan(
        values,
        facts.live,
        profile=profile.name if profile else "",
        fingerprint=profile.fingerprint if profile else "",
        scopes=scopes,
        revert=reverts,
    )
    if facts.kernel is not None:
        full = preflighted(full, values, facts.kernel, raw)
    runnable, skipped, refuse = split_blocked(
        full, skip_missing=options.skip_missing, skip_readonly=options.skip_readonly
    )
    if refuse:
        raise Refused(_blocked_refusal(refuse, recipe.kind)).about(
            ", ".join(sorted({k.status for k in refuse})), tuple(k.key for k in refuse)
        )
    skipped_keys = {k.key for k in skipped}
    if recipe.kind == ROLLBACK and facts.target is not None:
        skipped_keys |= set(facts.target.skipped) & set(values)

    baseline = {}
    for key in values:
        if current and key in current.baseline:
            baseline[key] = current.baseline[key]
        else:
            live = facts.live.get(key)
            text = " ".join(live.text.split()) if live is not None and live.status == OK and live.text else None
            baseline[key] = Baseline(text, facts.boot.get(key))

    warnings = [f"skipping {k.key}: {STATUS_TEXT[k.status]}" + (f" ({k.note})" if k.note else "") for k in skipped]
    written = {c.key for c in runnable.changes}
    warnings += [f"{k.key}: {'; '.join(k.reasons)}" for k in runnable.keys if k.key in written and k.reasons]
    warnings += [f"{k.key} leaves management; {k.note}" for k in runnable.reverts if k.note not in (None, AT_BASELINE)]
    if released:
        warnings.append(
            f"{len(released)} key(s) leave management and keep their live values ({', '.join(released)}); "
            "they are no longer persisted: a reboot resets them to their boot values"
        )

    file_record, file_step, file_warning = _plan_file(recipe, current, facts, values, skipped_keys, profile)
    if file_warning:
        warnings.append(file_warning)

    kind = recipe.kind
    generation = Generation(
        number=facts.current + 1,
        kind=kind,
        from_=facts.current,
        created="",
        profile=profile,
        values=values,
        skipped=tuple(sorted(skipped_keys)),
        raw=raw,
        baseline=baseline,
        file=file_record,
        target=(recipe.to or 0) if kind == ROLLBACK else None,
        counters=None,
        by=None,
        owners=owners if values else None,
    )
    noop = not runnable.changes and file_step is None and _same_state(current, generation)
    return Transition(
        recipe,
        kind,
        facts.current,
        facts.current + 1,
        runnable,
        tuple(skipped),
        released,
        file_step,
        generation,
        facts.target,
        noop,
        tuple(warnings),
    )


def _same_state(current: Generation | None, new: Generation) -> bool:
    """Whether committing ``new`` would record nothing new: same profile, values, skipped keys and file."""
    if current is None:
        return not new.values and new.file is None
    return (
        current.profile == new.profile
        and current.values == new.values
        and set(current.skipped) == set(new.skipped)
        and current.owners == new.owners
        and (current.file is None) == (new.file is None)
        and (current.file is None or new.file is None or current.file.content == new.file.content)
    )


def _plan_file(
    recipe: Recipe,
    current: Generation | None,
    facts: Facts,
    values: Mapping[str, str],
    skipped: set[str],
    profile: ProfileRecord | None,
) -> tuple[FileRecord | None, FileStep | None, str | None]:
    """(the file as the new generation records it, the change to make, a warning)."""
    own = facts.own_file
    now = facts.file_text
    managed = current.file if current else None
    if recipe.kind == APPLY and not recipe.options.persist:
        return managed, None, None  # --no-persist: the file is left exactly as it is
    wanted: str | None
    if recipe.kind == APPLY:
        assert profile is not None
        wanted = persist.render_sysctl_conf(profile.name, profile.fingerprint, values, ignore_errors=skipped)
    elif recipe.kind == ROLLBACK and facts.target is not None and facts.target.file is not None:
        wanted = facts.target.file.content
    else:  # reset, or a rollback to a state without a managed file: the file goes back to its baseline
        if managed is None:
            return None, None, None
        if now == managed.baseline:
            return None, None, None
        if now != managed.content:
            return None, None, _changed_since(own, "left as it is (tcptune no longer manages it)")
        return None, FileStep(own, now, managed.baseline), None
    baseline = managed.baseline if managed else now
    record = FileRecord(own, wanted, baseline)
    if now == wanted:
        return record, None, None
    if recipe.kind != APPLY and managed is not None and now != managed.content:
        return record, None, _changed_since(own, "left as it is")
    return record, FileStep(own, now, wanted), None


def _changed_since(path: str, what: str) -> str:
    return f"{path} was changed by someone else since tcptune last wrote it; {what}"


def _check_file_path(generation: Generation | None, own_file: str, which: str) -> None:
    """Paths are never taken from state: a generation that persisted elsewhere is refused, naming the option."""
    if generation is not None and generation.file is not None:
        _check_path(generation.file.path, own_file, f"{which} persisted")


def _check_path(recorded: str, own_file: str, which: str) -> None:
    if os.path.basename(recorded) == os.path.basename(own_file) and os.path.realpath(
        os.path.dirname(recorded)
    ) == os.path.realpath(os.path.dirname(own_file)):
        return
    raise Refused(
        f"{which} {recorded}, but this run's sysctl.d file is {own_file}; nothing was changed "
        f"(pass --sysctl-dir {os.path.dirname(recorded)}; tcptune never touches a file just because its state names it)"
    )


def _blocked_refusal(refuse: list[KeyState], kind: str) -> str:
    lines = [f"{k.key}: {_BLOCKED_TEXT.get(k.status, k.status)}" + (f": {k.note}" if k.note else "") for k in refuse]
    hints = []
    if any(k.status == MISSING for k in refuse):
        hints.append("--skip-missing applies the rest and skips keys this kernel lacks")
    if any(k.status == READ_ONLY for k in refuse):
        hints.append("--skip-readonly applies the rest and leaves host-wide keys to the host")
    text = f"nothing was changed; these keys cannot be set here: {'; '.join(lines)}"
    if hints and kind == APPLY:
        text += " (" + "; ".join(hints) + ")"
    return text


_BLOCKED_TEXT = {**STATUS_TEXT, REFUSED: "refused by this kernel"}


def read_kernel(target: Target, keys: Iterable[str]) -> kernelfacts.Facts:
    """Kernel preflight's facts for ``keys`` (their live values included), read under the target's /proc/sys."""
    return kernelfacts.read_facts(target.proc, preflight.keys_to_read(keys), real_kernel=target.is_real_kernel)


def preflighted(current: Plan, values: Mapping[str, str], kernel: kernelfacts.Facts, raw: Iterable[str] = ()) -> Plan:
    """``current`` with kernel preflight's verdict on every key: a wanted key whose write this kernel refuses becomes
    ``refused`` (and blocks the plan); a revert the kernel would refuse is left as it is, with the reason.

    The writes are judged together, in apply's order (a port range against the start written before it), reverts
    to their baseline included.
    """
    wanted = dict(values)
    wanted.update({c.key: c.new for c in current.changes if c.key not in values})
    verdicts = preflight.check(wanted, kernel, frozenset(raw))
    folded = preflight.fold(current, verdicts)
    refused = {k.key for k in folded.keys if k.status == REVERT and k.preflight == preflight.REFUSED}
    if not refused:
        return folded
    keys = tuple(
        k._replace(note=f"this kernel would refuse {k.desired!r} ({'; '.join(k.reasons)}): left as it is")
        if k.key in refused
        else k
        for k in folded.keys
    )
    return Plan(folded.profile, folded.fingerprint, keys, tuple(c for c in folded.changes if c.key not in refused))


# ---- the engine: reading facts, executing, recovering ----------------------------------------------------------------


def image_path(target: Target, path: str) -> str | None:
    """``path`` (a file of this machine) as the boot applier names it inside the target's sysctl root; None when it
    is outside that tree (a --sysctl-dir elsewhere: never read at boot)."""
    root = os.path.abspath(target.sysctl_root)
    absolute = os.path.abspath(path)
    if root == "/":
        return absolute
    if os.path.commonpath([root, absolute]) != root:
        return None
    return "/" + os.path.relpath(absolute, root)


def boot_from_sysctl_d(
    target: Target, applier: boot.Applier | boot.ApplierName | None = None
) -> Callable[[Iterable[str]], dict[str, str | None]]:
    """What the boot applier (``applier``, default: the one detected under the sysctl root) sets per key from the
    sysctl.d files, tcptune's own file excluded (a baseline's boot value); None where no file sets a key, or the
    value cannot be told."""
    chosen: list[boot.Applier | boot.ApplierName] = [applier] if applier is not None else []

    def read(keys: Iterable[str]) -> dict[str, str | None]:
        if not chosen:
            chosen.append(boot.detect_applier(target.sysctl_root))
        own = image_path(target, target.own_file)
        found = boot.predict(
            target.sysctl_root,
            list(keys),
            chosen[0],
            boot.kernel_view(target.proc_root),
            exclude=[own] if own else [],
        )
        return {
            key: " ".join(p.value.split()) if p.status in ("ok", "partial") and p.value is not None else None
            for key, p in found.items()
        }

    return read


class Engine:
    """Transactions on one machine (``target``): the CLI's and the Ansible module's only way to change it.

    ``known_key`` decides which keys state files may name (the catalog). ``before_write(key)`` runs before each
    write to /proc/sys (unit tests inject delays and failures there); ``boot_reader`` predicts boot values
    (default: ``boot_from_sysctl_d``, by the detected boot applier); ``key_scope`` gives a key's scope for notes
    ("netns"/"global").
    """

    def __init__(
        self,
        target: Target,
        known_key: KeyPolicy,
        *,
        before_write: Callable[[str], None] | None = None,
        boot_reader: Callable[[Iterable[str]], Mapping[str, str | None]] | None = None,
        key_scope: Callable[[str], str | None] | None = None,
    ) -> None:
        self.target = target
        self.state = StateDir(target.state_dir, known_key)
        self.before_write = before_write
        self.boot_reader = boot_reader or boot_from_sysctl_d(target)
        self.key_scope = key_scope

    # ---- planning ----------------------------------------------------------------------------------------------------

    def plan_apply(self, desired: Desired, options: Options | None = None) -> Transition:
        return self.plan(Recipe(APPLY, desired, options or Options()))

    def plan_rollback(self, to: int | None = None) -> Transition:
        """To generation ``to`` (default: the one before the current one; 0: nothing managed)."""
        current = self.state.current_number()
        if current == 0:
            raise Refused(f"nothing to roll back: no generation is recorded in {self.state.path}")
        if to is None:
            to = current - 1
        if not 0 <= to <= current:
            raise Refused(f"no generation {to}: the generations here are 1 to {current} ('tcptune history')")
        return self.plan(Recipe(ROLLBACK, to=to))

    def plan_reset(self) -> Transition:
        return self.plan(Recipe(RESET))

    def plan(self, recipe: Recipe) -> Transition:
        """Read the facts and plan ``recipe`` (without the lock: ``execute`` plans again under it)."""
        return transition(recipe, self.facts(recipe), self.key_scope)

    def facts(self, recipe: Recipe) -> Facts:
        current_number = self.state.current_number()
        current = self.state.read_generation(current_number) if current_number else None
        target = None
        if recipe.kind == ROLLBACK and recipe.to:
            target = current if recipe.to == current_number else self.state.read_generation(recipe.to)
        keys = set(current.values) if current else set()
        if recipe.desired is not None:
            keys |= set(recipe.desired.values)
        if target is not None:
            keys |= set(target.values)
        kernel = read_kernel(self.target, keys)
        live = {key: kernel.live[key] for key in keys}
        new_keys = keys - (set(current.values) if current else set())
        boot = dict(self.boot_reader(sorted(new_keys))) if new_keys else {}
        # the file is read (and a FIFO or link there refused) only when this transition may touch it
        if recipe.kind == APPLY:
            needs_file = recipe.options.persist
        else:
            needs_file = bool((current and current.file) or (target and target.file))
        file_text = self._read_own_file() if needs_file else None
        return Facts(current_number, current, target, live, file_text, boot, self.target.own_file, kernel)

    def _read_own_file(self) -> str | None:
        path = self.target.own_file
        try:
            return persist.read_own_file(path)
        except persist.UnsafeFile as exc:
            raise Refused(f"{path}: {exc.strerror}; nothing was changed (move it away)").about("file") from None
        except OSError as exc:
            raise Refused(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}; nothing was changed").about(
                "file"
            ) from None

    def pending(self) -> Pending | None:
        """The pending transaction, checked (MalformedState naming the file if it is damaged)."""
        return self.state.read_pending()

    # ---- executing ---------------------------------------------------------------------------------------------------

    def execute(
        self, confirmed: Transition, counters: Mapping[str, int] | None = None, counters_netns: str | None = None
    ) -> Result:
        """Run ``confirmed`` (the transition the user saw). Raises Refused when nothing was changed, Undone when a
        step failed and everything was put back, RestoreIncomplete (pending kept) when that failed too.

        ``counters`` (read in network namespace ``counters_netns``) are recorded in the new generation: the start
        of the window ``recommend`` judges counters over."""
        require_root(self.target, confirmed.kind)
        with self.state.lock():
            if self.state.has_pending():
                pending = self.state.read_pending()
                assert pending is not None
                raise Refused(interrupted_text(pending, self.state.pending_path) + "; nothing was changed").about(
                    "interrupted"
                )
            self.state.sweep_temp_files()
            self._sweep_sysctl_dir()
            current = self.plan(confirmed.recipe)
            if _fingerprint(current) != _fingerprint(confirmed):
                raise Refused(
                    "the live values, the sysctl.d file or the generations changed since the plan was shown (another "
                    "tool or person?); nothing was changed: run the command again to see the new plan"
                ).about("changed-meanwhile")
            if current.noop:
                return Result(current, None, (), None, current.warnings)
            if current.file is not None:
                self._check_file_target()
            generation = current.generation._replace(
                created=now_text(),
                by=made_by(),
                counters=dict(counters) if counters is not None else None,
                counters_netns=counters_netns if counters is not None else None,
            )
            writes = [c._replace(old=" ".join(c.old.split())) for c in current.writes]  # the kernel prints tabs
            record = Pending(
                current.from_,
                current.to,
                current.kind,
                generation.created,
                os.getpid(),
                tuple(writes),
                current.file,
                generation,
            )
            try:
                self.state.write_pending(record)
            except StateError as exc:
                raise Refused(f"{exc}; nothing was changed") from None
            return self._run(current, writes, generation)

    def _run(self, current: Transition, writes: list[Change], generation: Generation) -> Result:
        proc = self.target.proc
        triples = [(c.key, c.new, c.old) for c in writes]
        outcome = write_all(proc, triples, self.before_write, same=same)
        if not outcome.ok:
            self._after_failed_writes(current.kind, outcome)
        for change in writes:  # verify: the kernel may clamp or ignore a value without failing the write
            now = proc.read(change.key)
            if now.text is None or not same(now.text, change.new):
                kept = "nothing readable" if now.text is None else " ".join(now.text.split())
                self._undo(
                    writes,
                    f"{change.key}: the kernel keeps {kept}, expected {change.new}",
                    undone="every change was undone",
                    about=("not-kept", (change.key,)),
                )
        file_action = None
        if current.file is not None:
            try:
                self._put_file(current.file.new)
            except OSError as exc:
                self._undo(
                    writes,
                    f"could not write {current.file.path}: {(exc.strerror or str(exc)).lower()}",
                    undone=f"the {len(writes)} changed key(s) were restored",
                    file=current.file,
                    about=("file", ()),
                )
            file_action = "written" if current.file.new is not None else "removed"
        try:
            self.state.commit(generation)
        except StateError as exc:
            if not self._committed(generation.number):
                self._undo(
                    writes,
                    f"could not record generation {generation.number}: {exc}",
                    file=current.file,
                    about=("state", ()),
                )
        warnings = list(current.warnings)
        try:
            self.state.drop_pending()
        except StateError as exc:
            warnings.append(f"{exc}; generation {generation.number} is committed ('tcptune recover' clears the record)")
        return Result(current, generation.number, tuple(c.key for c in writes), file_action, tuple(warnings))

    def _after_failed_writes(self, kind: str, outcome: WriteOutcome) -> NoReturn:
        """``write_all`` stopped at a failure and put back what it had written (newest first)."""
        assert outcome.failed is not None
        key, reason, message = outcome.failed
        failure = f"{kind} failed at {key}: {message}"
        if outcome.restore_failed:
            raise RestoreIncomplete(f"{failure}; " + self._left_changed(outcome, None)).about(reason, (key,))
        restored = (
            f"the {len(outcome.restored)} key(s) already changed were restored ({', '.join(outcome.restored)}); "
            if outcome.restored
            else ""
        )
        self._drop_pending_after_undo(f"{failure}; {restored}nothing is changed", (reason, (key,)))

    def _undo(
        self,
        writes: list[Change],
        failure: str,
        *,
        undone: str = "",
        file: FileStep | None = None,
        about: tuple[str, tuple[str, ...]] = ("error", ()),
    ) -> NoReturn:
        """Put back every write (newest first, each key on its own) and the file; raise Undone, or
        RestoreIncomplete (keeping the pending record) when something could not be put back."""
        outcome = put_back(self.target.proc, [(c.key, c.new, c.old) for c in writes])
        file_problem = None
        if file is not None:
            try:
                if persist.read_own_file(file.path) != file.old:
                    persist.restore_file(file.path, file.old)
            except OSError as exc:
                file_problem = f"{file.path} could not be put back: {(exc.strerror or str(exc)).lower()}"
        if outcome.restore_failed or file_problem:
            raise RestoreIncomplete(f"{failure}; " + self._left_changed(outcome, file_problem)).about(*about)
        self._drop_pending_after_undo(f"{failure}; {undone or 'every change was undone'}", about)

    def _left_changed(self, outcome: WriteOutcome, file_problem: str | None) -> str:
        parts = []
        if outcome.restored:
            parts.append("restored: " + ", ".join(outcome.restored))
        if outcome.restore_failed:
            parts.append(
                "NOT restored, still at the new value: "
                + "; ".join(f"{k} ({why})" for k, why in outcome.restore_failed)
            )
        if file_problem:
            parts.append(file_problem)
        parts.append(f"the transaction stays recorded in {self.state.pending_path}: 'tcptune recover' retries")
        return "; ".join(parts)

    def _drop_pending_after_undo(self, message: str, about: tuple[str, tuple[str, ...]]) -> NoReturn:
        try:
            self.state.drop_pending()
        except StateError as exc:
            raise Undone(f"{message}; but {exc} ('tcptune recover' clears it)").about(*about) from None
        raise Undone(message).about(*about)

    def _committed(self, number: int) -> bool:
        """After a failed commit: whether the generation file made it anyway (then the commit happened)."""
        try:
            self.state.read_generation(number)
        except StateError:
            return False
        return True

    def _check_file_target(self) -> None:
        """Refuse up front (nothing written) a sysctl.d file that must not be replaced or cannot be written."""
        path = self.target.own_file
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise Refused(f"cannot use {path}: {(exc.strerror or str(exc)).lower()}; nothing was changed").about(
                "file"
            ) from None
        if mode is not None and not stat.S_ISREG(mode):
            raise Refused(
                f"{path}: it is a {persist.file_kind(mode)}, not a regular file; refusing to write through or replace "
                "it, nothing was changed (move it away)"
            ).about("file")
        directory = os.path.dirname(os.path.abspath(path))
        existing = directory
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
            raise Refused(f"cannot write {path}: {existing} is not writable; nothing was changed").about("file")

    def _put_file(self, text: str | None) -> None:
        path = self.target.own_file
        if text is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
        persist.restore_file(path, text, 0o644)

    def _sweep_sysctl_dir(self) -> list[str]:
        """Temporary files of a write to tcptune's sysctl.d file that was killed (only under the lock)."""
        directory = os.path.dirname(os.path.abspath(self.target.own_file))
        removed: list[str] = []
        try:
            names = os.listdir(directory)
        except OSError:
            return removed
        for name in names:
            if name.startswith(".tcptune-") and name.endswith(".tmp"):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        os.unlink(path)
                        removed.append(path)
        return removed

    # ---- recovering --------------------------------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Finish an interrupted transaction: if its generation was committed, drop the record; otherwise return to
        the from-generation exactly (each write put back where the live value differs, newest first, and the file).

        Idempotent and safe to kill at any point: the pending record is removed last.
        """
        require_root(self.target, "recover")
        with self.state.lock():
            self.state.sweep_temp_files()
            self._sweep_sysctl_dir()
            pending = self.state.read_pending()
            if pending is None:
                return Recovery("nothing", None)
            if self._committed(pending.to):
                self.state.drop_pending()
                return Recovery("completed", pending)
            if pending.file is not None:
                _check_path(pending.file.path, self.target.own_file, f"the interrupted {pending.kind} changed")
            proc = self.target.proc
            restored: list[str] = []
            failed: list[tuple[str, str]] = []
            warnings: list[str] = []
            for change in reversed(pending.writes):
                self._recover_key(proc, change, restored, failed, warnings)
            file_action = None
            if pending.file is not None:
                file_action = self._recover_file(pending.file, failed, warnings)
            if failed:
                raise RestoreIncomplete(
                    f"could not return to generation {pending.from_}: "
                    + "; ".join(f"{key} ({why})" for key, why in failed)
                    + (f"; restored: {', '.join(restored)}" if restored else "")
                    + f"; {self.state.pending_path} is kept: run 'tcptune recover' again"
                )
            self.state.drop_pending()
            return Recovery("restored", pending, tuple(restored), file_action, tuple(warnings))

    def _recover_key(
        self, proc: ProcSys, change: Change, restored: list[str], failed: list[tuple[str, str]], warnings: list[str]
    ) -> None:
        now = proc.read(change.key)
        if now.status == MISSING:
            warnings.append(f"{change.key} is missing on this kernel now: nothing to put back")
            return
        if now.text is not None and canonical(now.text) == canonical(change.old):
            return
        try:
            if self.before_write is not None:
                self.before_write(change.key)
            proc.write(change.key, change.old)
        except WriteFailed as exc:
            failed.append((change.key, exc.message))
            return
        except Exception as exc:  # a test's hook, or a key that escapes the root: reported, never a traceback
            failed.append((change.key, str(exc)))
            return
        restored.append(change.key)

    def _recover_file(self, step: FileStep, failed: list[tuple[str, str]], warnings: list[str]) -> str | None:
        path = self.target.own_file
        try:
            now = persist.read_own_file(path)
        except OSError as exc:
            failed.append((path, (exc.strerror or str(exc)).lower()))
            return None
        if now == step.old:
            return None
        if now != step.new:
            warnings.append(_changed_since(path, "left as it is"))
            return None
        try:
            persist.restore_file(path, step.old)
        except OSError as exc:
            failed.append((path, (exc.strerror or str(exc)).lower()))
            return None
        return "restored" if step.old is not None else "removed"


def _fingerprint(t: Transition) -> tuple[object, ...]:
    """What must not have moved between showing a plan and executing it."""
    return (t.from_, t.writes, t.file, tuple(k.key for k in t.skipped), t.released, t.noop)
