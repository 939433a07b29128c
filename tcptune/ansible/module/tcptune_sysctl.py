#!/usr/bin/python
# Copyright: tcptune contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
#
# The Ansible module of tcptune: a thin adapter over tcptune's engine, shipped with it (the core package in
# module_utils). It checks its input against the catalog, asks the engine for a transition, executes it (or only
# shows it in check mode), and reports per key. Planning, writing, verifying, persisting and recording the generation
# are the engine's, the same code 'tcptune apply' runs. tcptune/ansible/render.py ships it as
# library/tcptune_sysctl.py in standalone roles and as plugins/modules/sysctl_profile.py in the collection.

# <generated>
DOCUMENTATION = ""
ARGUMENT_SPEC: dict = {}
# </generated>

EXAMPLES = r"""
- name: Tune TCP, one transaction and one generation on the host
  tcptune.tuning.sysctl_profile:
    settings:
      net.ipv4.tcp_fin_timeout: 15
      net.ipv4.tcp_rmem: "4096 131072 16MiB"
    profile_name: web-front
    owner: web_front

- name: Roll the host back to its generation 3
  tcptune.tuning.sysctl_profile:
    action: rollback
    to: 3
"""

RETURN = r"""
action:
  description: The action run (apply, rollback, reset, recover).
  returned: always
  type: str
generation:
  description: The host's current generation afterwards (in check mode, the one it would be).
  returned: success
  type: int
from_generation:
  description: The generation the host was at before.
  returned: success
  type: int
sysctls:
  description:
    - Per key, C(before) (live), C(after), C(desired) and C(status) (ok, changed, reverted, released, missing,
      read-only, unreadable); keys that leave management go back to their value from before tcptune (reverted).
  returned: always
  type: dict
changed_keys:
  description: Keys written (in check mode, that would be), in the order the engine writes them.
  returned: always
  type: list
  elements: str
file_changed:
  description: Whether the sysctl.d file was (or would be) written or removed.
  returned: always
  type: bool
sysctl_file:
  description: The file tcptune persists to on this host.
  returned: always
  type: str
owners:
  description: Owners of the host's tcptune settings after this run (several roles sharing the host).
  returned: success
  type: list
  elements: str
reason:
  description: On failure, one word for why (invalid, read-only, missing, not-kept, conflict, file, locked, ...).
  returned: failure
  type: str
failed_keys:
  description: On failure, per key it is about, the reason and the whole message.
  returned: failure
  type: dict
"""

import difflib
import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.tcptune_core.engine import Engine, Options
from ansible.module_utils.tcptune_core.failures import CoreError
from ansible.module_utils.tcptune_core.keycheck import kernel_text
from ansible.module_utils.tcptune_core.keyfacts import KEYS, key_scope, known_key
from ansible.module_utils.tcptune_core.owners import compose
from ansible.module_utils.tcptune_core.plan import DIFFERS, OK, REVERT, Desired
from ansible.module_utils.tcptune_core.target import Target
from ansible.module_utils.tcptune_core.values import canonical, has_unsafe_characters

MAX_VALUE_BYTES = 4096


# ---- input: every key and value checked as a profile's are ---------------------------------------------------------


def check_settings(settings, raw_keys):
    """settings -> ({key: text as tcptune writes it}, {key: one-line problem})."""
    values, problems = {}, {}
    raw = set(raw_keys or ())
    for key in sorted(settings, key=str):
        value = settings[key]
        if not isinstance(key, str) or has_unsafe_characters(key) or len(key) > 256:
            problems[str(key)[:80]] = "not a sysctl key name (use the dotted form, e.g. net.ipv4.tcp_fin_timeout)"
            continue
        if key in raw:
            if not key.startswith("net."):
                problems[key] = "keys outside tcptune's catalog must be under net."
                continue
            text = _raw_text(value)
            if text is None:
                problems[key] = "the value must be one line of text (no control characters) or a list of numbers"
                continue
            values[key] = text
            continue
        facts = KEYS.get(key)
        if facts is None:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            problems[key] = "unknown sysctl key" + (
                f" (did you mean {close[0]}?)" if close else " (keys outside tcptune's catalog need a profile's raw:)"
            )
            continue
        if facts.removed:
            problems[key] = f"removed from the kernel in {facts.removed}"
            continue
        text, problem = kernel_text(facts, value)
        if problem is not None:
            problems[key] = problem
        else:
            values[key] = text
    return values, problems


def _raw_text(value):
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return None
        value = " ".join(str(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value)
    if has_unsafe_characters(text) or len(text.encode("utf-8")) > MAX_VALUE_BYTES:
        return None
    return " ".join(text.split())


def fingerprint_of(values):
    """The recorded hash when the caller gives none: stable for the same settings, different for others."""
    digest = hashlib.sha256()
    for key in sorted(values):
        digest.update((f"{key}={canonical(values[key])}\n").encode())
    return digest.hexdigest()[:12]


# ---- running ------------------------------------------------------------------------------------------------------


def engine_for(params):
    path = params["sysctl_file"]
    target = Target(
        params["proc_root"],
        params["state_dir"],
        os.path.dirname(os.path.abspath(path)),
        params["sysctl_root"],
        os.path.basename(path),
    )
    return Engine(target, known_key, key_scope=key_scope)


def desired_from(params, engine, values):
    owner = params["owner"] or None
    source = f"ansible: {owner}" if owner else "ansible"
    scopes = {key: scope for key in values if (scope := key_scope(key)) is not None}
    desired = Desired(
        params["profile_name"] or "ansible",
        params["fingerprint"] or fingerprint_of(values),
        values,
        source,
        scopes,
        frozenset(k for k in (params["raw"] or ()) if k in values),
    )
    if owner is None:
        return desired
    return compose(engine.state.current(), owner, desired)


def plan(params, engine, values):
    """The transition for this run (the engine's Refused, naming keys, when it must not run)."""
    action = params["action"]
    if action == "rollback":
        return engine.plan_rollback(params["to"])
    if action == "reset":
        return engine.plan_reset()
    options = Options(
        skip_missing=params["skip_missing"],
        skip_readonly=params["skip_readonly"],
        persist=params["persist"],
        keep_unmanaged=params["keep_unmanaged"],
    )
    return engine.plan_apply(desired_from(params, engine, values), options)


def key_results(transition, executed):
    """Per key: before (live), after, desired, status."""
    written = {change.key for change in transition.writes}
    results = {}
    for state in list(transition.plan.keys) + list(transition.skipped):
        before = _shown(state.live)
        status = {OK: "ok", DIFFERS: "changed"}.get(state.status, state.status)
        if state.status == REVERT:
            status = "reverted" if state.key in written else "released"
        after = canonical(state.desired) if executed and state.key in written else before
        results[state.key] = {"before": before, "after": after, "desired": state.desired, "status": status}
    for key in transition.released:
        results.setdefault(key, {"before": None, "after": None, "desired": None, "status": "released"})
    return results


def _shown(text):
    return None if text is None else canonical(text)


def run(params, check_mode):
    """The whole module without AnsibleModule: -> (result dict, failure message or None, warnings)."""
    action = params["action"]
    result = {
        "changed": False,
        "action": action,
        "sysctls": {},
        "changed_keys": [],
        "file_changed": False,
        "sysctl_file": params["sysctl_file"],
    }
    values = {}
    if action == "apply":
        values, problems = check_settings(params["settings"] or {}, params["raw"])
        if problems:
            result["reason"] = "invalid"
            result["failed_keys"] = {k: {"reason": "invalid", "message": m} for k, m in problems.items()}
            lines = "; ".join(f"{key}: {problem}" for key, problem in sorted(problems.items()))
            return result, f"invalid settings, nothing was changed: {lines}", []
    engine = engine_for(params)
    try:
        if action == "recover":
            return recover(engine, result, check_mode)
        transition = plan(params, engine, values)
        result.update(_transition_fields(transition, executed=False))
        if check_mode:
            result["changed"] = not transition.noop
            result["generation"] = transition.from_ if transition.noop else transition.to
            return result, None, list(transition.warnings)
        done = engine.execute(transition)
    except CoreError as exc:
        return failed(result, exc, params, engine, values)
    result.update(_transition_fields(done.transition, executed=done.generation is not None))
    result["changed"] = done.generation is not None
    result["generation"] = done.generation if done.generation is not None else done.transition.from_
    if done.generation is None:
        result["changed_keys"], result["file_changed"] = [], False
    return result, None, list(done.warnings)


def _transition_fields(transition, executed):
    generation = transition.generation
    return {
        "from_generation": transition.from_,
        "sysctls": key_results(transition, executed),
        "changed_keys": [change.key for change in transition.writes],
        "file_changed": transition.file is not None,
        "owners": sorted(generation.owners) if generation.owners is not None else [],
        "diff": _diff(transition),
    }


def recover(engine, result, check_mode):
    pending = engine.pending()
    if check_mode or pending is None:
        result["changed"] = pending is not None
        result["generation"] = engine.state.current_number()
        return result, None, []
    recovery = engine.recover()
    result["changed"] = recovery.action != "nothing"
    result["changed_keys"] = list(recovery.restored)
    result["file_changed"] = recovery.file_action is not None
    result["generation"] = engine.state.current_number()
    return result, None, list(recovery.warnings)


def failed(result, exc, params, engine, values):
    """A CoreError: the host is as it was (or, exit code 3, 'tcptune recover' is needed). Per-key detail from a
    plan that skips nothing, so that check mode and fleet tables still show every key's live value."""
    reason = exc.reason or "error"
    result["reason"] = reason
    result["failed_keys"] = {key: {"reason": reason, "message": str(exc)} for key in exc.keys}
    result["restore_incomplete"] = exc.exit_code == 3
    result["changed"] = exc.exit_code == 3
    if params["action"] == "apply" and not result["sysctls"]:
        try:
            preview = engine.plan_apply(
                desired_from(params, engine, values), Options(skip_missing=True, skip_readonly=True)
            )
        except CoreError:
            preview = None
        if preview is not None:
            result["sysctls"] = key_results(preview, executed=False)
            for key in result["failed_keys"]:
                if key in result["sysctls"] and result["sysctls"][key]["status"] == "changed":
                    result["sysctls"][key]["status"] = reason
    if result["sysctls"] and reason not in ("read-only", "missing", "unreadable", "invalid", "conflict"):
        try:
            live = engine.target.proc.read_many(sorted(result["sysctls"]))
            for key, entry in result["sysctls"].items():
                entry["after"] = _shown(live[key].text) if key in live else entry["after"]
        except (CoreError, OSError, ValueError):
            pass
    result["file_changed"] = False
    return result, str(exc), []


def _diff(transition):
    before = "".join(f"{c.key} = {' '.join(c.old.split())}\n" for c in transition.writes)
    after = "".join(f"{c.key} = {c.new}\n" for c in transition.writes)
    diffs = [{"before_header": "live sysctl values", "after_header": "desired", "before": before, "after": after}]
    step = transition.file
    if step is not None:
        diffs.append(
            {"before_header": step.path, "after_header": step.path, "before": step.old or "", "after": step.new or ""}
        )
    return diffs


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    result, failure, warnings = run(module.params, module.check_mode)
    for warning in warnings:
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    if failure:
        module.fail_json(msg=failure, **result)
    counts: dict = {}
    for entry in result["sysctls"].values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    verb = "would change" if module.check_mode else "changed"
    result["msg"] = (
        f"{len(result['changed_keys'])} key(s) {verb}, {counts.get('ok', 0)} up to date; "
        f"generation {result.get('generation', 0)}"
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
