#!/usr/bin/python
# Shipped by tcptune in every generated role as library/tcptune_sysctl.py; its source lives in tcptune/ansible/module/.
# MIT licence, as tcptune.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tcptune_sysctl
short_description: Set many sysctl keys in one pass, with per-key drift, rollback and an atomic sysctl.d file
description:
  - Reads every key, compares it with the desired value using tcptune's normalisation (tabs, spaces, leading zeros
    and port lists do not count as drift), writes only what differs, re-reads to verify, and persists the full set
    to one sysctl.d file atomically.
  - If any write fails (or the kernel does not keep a value), every key already written on this host is put back,
    the file is not touched, and the module fails naming the key and the reason.
  - Supports check mode and diff mode (per-key before/after).
options:
  settings:
    description: Full dotted sysctl names mapped to the value as the kernel prints it (or a list of numbers).
    type: dict
    required: true
  persist:
    description: Also write O(sysctl_file) so that the values survive a reboot.
    type: bool
    default: true
  sysctl_file:
    description: The file tcptune owns under /etc/sysctl.d.
    type: path
    default: /etc/sysctl.d/90-tcptune.conf
  profile_name:
    description: Name recorded in the header of the persisted file.
    type: str
    default: ansible
  fingerprint:
    description:
      - Hash recorded in the header. Roles made from a profile pass the profile's fingerprint (as the CLI writes it).
      - By default (the generic role, or overrides set) a hash of the canonical settings themselves.
    type: str
  proc_root:
    description: Where /proc/sys is (tests use a temporary tree).
    type: path
    default: /proc/sys
author: tcptune
"""

EXAMPLES = r"""
- name: Tune TCP
  tcptune_sysctl:
    settings:
      net.ipv4.tcp_fin_timeout: "15"
      net.ipv4.tcp_rmem: "4096 131072 16777216"
"""

RETURN = r"""
sysctls:
  description: Per key, the value before, after, the desired value and a status (ok, changed, missing, read-only,
    unreadable, failed, restored, restore-failed, not-written).
  returned: always
  type: dict
changed_keys:
  description: Keys that were (or in check mode would be) written.
  returned: always
  type: list
failed_keys:
  description: Per key that stopped the run, its reason (missing, read-only, invalid, permission, ...) and message.
  returned: on failure
  type: dict
file_changed:
  description: Whether the persisted file was (or would be) rewritten.
  returned: always
  type: bool
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.tcptune_live import ProcSys, order_writes, write_all
from ansible.module_utils.tcptune_live import put_back as put_back_live
from ansible.module_utils.tcptune_persist import atomic_write, render_sysctl_conf
from ansible.module_utils.tcptune_values import canonical, has_unsafe_characters, same

# Reading, writing, ordering, restoring, comparing and persisting are tcptune's own shipped code (module_utils):
# live.ProcSys reads and checks key names, live.order_writes orders, live.write_all writes and restores,
# values.canonical compares, persist renders and writes the file, as the CLI does. What this module still does on
# its own (until one engine serves both) is turn the reads into per-key results and changes (``plan``) and verify
# and put back after writing (``apply_changes``, ``put_back``); tests/unit/test_role_module.py checks both against
# tcptune.plan and tcptune.apply on generated inputs.


def desired_text(value):
    """A setting as the text to write (``values.canonical``); None if it is not a plain one-line value.

    Empty text is a value (``ip_local_reserved_ports: ""`` clears the list, as the CLI does); the kernel judges it.
    """
    if isinstance(value, (list, tuple)):
        if not all(_is_number(v) for v in value):
            return None
        value = " ".join(str(v).strip() for v in value)
    elif not isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, str) and has_unsafe_characters(value):
        return None
    return canonical(value)


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if not isinstance(value, str) or has_unsafe_characters(value):
        return False
    digits = value.strip().lstrip("+-")
    return digits.isascii() and digits.isdigit()


def check_input(proc, settings):
    """Settings -> ({key: text}, {key: problem}); key names are checked by ProcSys.path, as the CLI checks them."""
    wanted, problems = {}, {}
    for key, value in settings.items():
        if not isinstance(key, str) or "/" in key:  # one spelling per key: results and the file use dotted names
            problems[str(key)] = (
                f"{str(key)!r} is not a sysctl key name (use the dotted form, e.g. net.ipv4.tcp_fin_timeout)"
            )
            continue
        try:
            proc.path(key)
        except ValueError as exc:
            problems[key] = str(exc)
            continue
        text = desired_text(value)
        if text is None:
            problems[key] = "the value must be one line of text (no control characters) or a list of numbers"
            continue
        wanted[key] = text
    return wanted, problems


def plan(proc, wanted):
    """Read every key once; -> (per-key results, changes in the order to write them, keys that cannot be changed).

    A change is ``(key, desired, live text)``, compared with ``values.canonical`` and ordered by
    ``live.order_writes`` (the kernel's cross-key rules, e.g. ip_unprivileged_port_start vs ip_local_port_range).
    """
    results, changes, blocked = {}, [], {}
    for key in sorted(wanted):
        desired = wanted[key]
        live = proc.read(key)
        before = _shown(live.text)
        entry = {"before": before, "after": before, "desired": desired, "status": "ok"}
        results[key] = entry
        if live.status != "ok" or live.text is None:
            entry["status"] = live.status if live.status != "ok" else "unreadable"
            blocked[key] = {"reason": entry["status"], "message": live.error or entry["status"]}
        elif canonical(live.text) != desired:
            if live.writable:
                entry["status"] = "changed"
                changes.append((key, desired, live.text))
            else:
                entry["status"] = "read-only"
                blocked[key] = {
                    "reason": "read-only",
                    "message": (
                        "read-only here (a host-wide key inside a network namespace or container, or /proc/sys "
                        f"mounted read-only): live {before}, wanted {desired}"
                    ),
                }
    by_key = {key: (key, new, old) for key, new, old in changes}
    ordered = order_writes([(key, new, canonical(old)) for key, new, old in changes])
    return results, [by_key[key] for key, _new, _old in ordered], blocked


def apply_changes(proc, results, changes):
    """Write in order, then re-read; on any failure put this host back. -> failed_keys dict (empty on success)."""
    outcome = write_all(proc, changes, same=same)
    if outcome.failed is not None:
        key, reason, message = outcome.failed
        broken = dict(outcome.restore_failed)
        for change_key, _new, _old in changes:
            entry = results[change_key]
            if change_key in broken:
                entry["status"] = "restore-failed"
            elif change_key == key:
                entry["status"] = "failed"
            elif change_key in outcome.restored:
                entry["status"] = "restored"
            else:
                entry["status"] = "not-written"
            entry["after"] = _read_shown(proc, change_key)
        return {key: {"reason": reason, "message": message}}
    failed = {}
    for key, desired, _old in changes:  # the kernel may clamp or ignore a value without failing the write
        now = proc.read(key)
        results[key]["after"] = _shown(now.text)
        if now.text is None or canonical(now.text) != desired:
            failed[key] = {
                "reason": "not-kept",
                "message": f"the kernel accepted {desired} but shows {results[key]['after']}",
            }
    if failed:
        put_back(proc, results, changes, failed)
    return failed


def put_back(proc, results, changes, failed=()):
    """Undo a complete write pass (``live.put_back``, newest first, as the CLI does when the file cannot be
    written); every key's status then says what the host holds now. -> True if all are back."""
    put_back_live(proc, changes)
    back = True
    for key, _new, old in changes:
        now = proc.read(key)
        results[key]["after"] = _shown(now.text)
        if now.text is None or canonical(now.text) != canonical(old):
            results[key]["status"] = "restore-failed"
            back = False
        else:
            results[key]["status"] = "failed" if key in failed else "restored"
    return back


def _shown(text):
    return canonical(text) if text is not None else None


def _read_shown(proc, key):
    return _shown(proc.read(key).text)


def fingerprint_of(wanted):
    """The header hash when the caller gives none (the generic role, or a profile role with overrides).

    Not ``Profile.fingerprint`` (that hashes the profile's parsed values and needs tcptune itself): a role made from
    a profile passes that fingerprint, so its file header matches the CLI's; this one only has to be stable for the
    same settings and differ for different ones.
    """
    digest = hashlib.sha256()
    for key in sorted(wanted):
        digest.update((f"{key}={canonical(wanted[key])}\n").encode())
    return digest.hexdigest()[:12]


def read_file(path):
    """The persisted file's text; None if there is none. OSError (a directory, permission denied) propagates."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def run(params, check_mode):
    """The whole module without AnsibleModule: -> (result dict, failed message or None)."""
    proc = ProcSys(params["proc_root"])
    wanted, problems = check_input(proc, params["settings"])
    if problems:
        return (
            {
                "changed": False,
                "sysctls": {},
                "changed_keys": [],
                "file_changed": False,
                "failed_keys": {k: {"reason": "invalid", "message": m} for k, m in problems.items()},
            },
            "invalid settings: " + "; ".join(f"{k}: {m}" for k, m in sorted(problems.items())),
        )
    results, changes, blocked = plan(proc, wanted)
    result = {
        "changed": False,
        "sysctls": results,
        "changed_keys": [k for k, _n, _o in changes],
        "file_changed": False,
        "sysctl_file": params["sysctl_file"] if params["persist"] else None,
    }
    if blocked:
        for key in result["changed_keys"]:
            results[key]["status"] = "not-written"
        result["failed_keys"] = blocked
        return result, "nothing written: " + "; ".join(f"{k}: {v['message']}" for k, v in sorted(blocked.items()))

    new_file = old_file = None
    if params["persist"]:
        path = params["sysctl_file"]
        name = params["profile_name"] or "ansible"
        new_file = render_sysctl_conf(name, params["fingerprint"] or fingerprint_of(wanted), wanted)
        try:
            old_file = read_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            for key in result["changed_keys"]:
                results[key]["status"] = "not-written"
            result["failed_keys"] = {path: {"reason": "error", "message": _file_problem(path, exc)}}
            return result, f"nothing written: cannot read {path}: {_file_problem(path, exc)}"
        result["file_changed"] = new_file != old_file
    result["changed"] = bool(changes) or result["file_changed"]
    result["diff"] = _diff(results, params["sysctl_file"], old_file, new_file)
    if check_mode or not result["changed"]:
        return result, None

    failed = apply_changes(proc, results, changes)
    if failed:
        result["failed_keys"] = failed
        result["changed"] = any(results[k]["status"] == "restore-failed" for k in result["changed_keys"])
        result["file_changed"] = False
        return result, "; ".join(f"{k}: {v['message']}" for k, v in sorted(failed.items())) + (
            "; every key written was put back" if not result["changed"] else "; some keys could not be put back"
        )
    if result["file_changed"]:
        try:
            os.makedirs(os.path.dirname(params["sysctl_file"]) or ".", exist_ok=True)
            atomic_write(params["sysctl_file"], new_file)
        except OSError as exc:
            back = put_back(proc, results, changes)
            result["file_changed"] = False
            result["changed"] = not back
            result["failed_keys"] = {params["sysctl_file"]: {"reason": "error", "message": str(exc)}}
            return result, f"could not write {params['sysctl_file']}: {exc}; " + (
                "live values put back" if back else "some live values could not be put back"
            )
    return result, None


def _file_problem(path, exc):
    if isinstance(exc, IsADirectoryError):
        return "it is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return os.strerror(exc.errno).lower() if getattr(exc, "errno", None) else str(exc)


def _diff(results, path, old_file, new_file):
    before = "".join(f"{k} = {v['before']}\n" for k, v in sorted(results.items()) if v["status"] != "ok")
    after = "".join(f"{k} = {v['desired']}\n" for k, v in sorted(results.items()) if v["status"] != "ok")
    diffs = [{"before_header": "live sysctl values", "after_header": "desired", "before": before, "after": after}]
    if new_file is not None and new_file != old_file:
        diffs.append({"before_header": path, "after_header": path, "before": old_file or "", "after": new_file})
    return diffs


def main():
    module = AnsibleModule(
        argument_spec={
            "settings": {"type": "dict", "required": True},
            "persist": {"type": "bool", "default": True},
            "sysctl_file": {"type": "path", "default": "/etc/sysctl.d/90-tcptune.conf"},
            "profile_name": {"type": "str", "default": "ansible"},
            "fingerprint": {"type": "str"},
            "proc_root": {"type": "path", "default": "/proc/sys"},
        },
        supports_check_mode=True,
    )
    result, failure = run(module.params, module.check_mode)
    if not module._diff:
        result.pop("diff", None)
    if failure:
        module.fail_json(msg=failure, **result)
    up_to_date = sum(1 for v in result["sysctls"].values() if v["status"] == "ok")
    result["msg"] = (
        f"{len(result['changed_keys'])} key(s) "
        f"{'would change' if module.check_mode else 'changed'}, {up_to_date} up to date"
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
