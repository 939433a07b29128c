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
    description: Hash recorded in the header; by default a hash of the settings themselves.
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
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.tcptune_live import ProcSys, WriteFailed, write_all
from ansible.module_utils.tcptune_persist import atomic_write, render_sysctl_conf
from ansible.module_utils.tcptune_values import canonical

KEY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)+$")
CANNOT_WRITE = ("missing", "read-only", "unreadable")


def desired_text(value):
    """A setting as the text written to /proc/sys; None if it is not a plain one-line value."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
            return None
        value = " ".join(str(v) for v in value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return None
    if any(ch in "\r\n\x00" or (ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value):
        return None
    text = " ".join(value.split())
    return text or None


def check_input(settings):
    """Settings -> ({key: text}, {key: problem}): names must be plain dotted identifiers, values one line."""
    wanted, problems = {}, {}
    for key, value in settings.items():
        if not isinstance(key, str) or not KEY_NAME.match(key):
            problems[str(key)] = "not a sysctl key name (dotted identifiers such as net.ipv4.tcp_fin_timeout)"
            continue
        text = desired_text(value)
        if text is None:
            problems[key] = "the value must be one line of text or a list of numbers"
            continue
        wanted[key] = text
    return wanted, problems


def plan(proc, wanted):
    """Read every key once; -> (per-key results, changes to make, keys that cannot be changed here)."""
    results, changes, blocked = {}, [], {}
    for key in sorted(wanted):
        desired = wanted[key]
        try:
            live = proc.read(key)
        except ValueError as exc:  # resolves outside the proc root: never touch it
            results[key] = {"before": None, "after": None, "desired": desired, "status": "invalid"}
            blocked[key] = {"reason": "invalid", "message": str(exc)}
            continue
        before = " ".join(live.text.split()) if live.text is not None else None
        entry = {"before": before, "after": before, "desired": desired, "status": "ok"}
        results[key] = entry
        if live.status != "ok":
            entry["status"] = live.status
            blocked[key] = {"reason": live.status, "message": live.error or live.status}
        elif canonical(live.text) != canonical(desired):
            if live.writable:
                entry["status"] = "changed"
                changes.append((key, desired, live.text))
            else:
                entry["status"] = "read-only"
                blocked[key] = {"reason": "read-only", "message": (
                    "read-only here (a host-wide key inside a network namespace or container, or /proc/sys "
                    f"mounted read-only): live {before}, wanted {desired}")}
    return results, changes, blocked


def apply_changes(proc, results, changes):
    """Write, then re-read; on any failure put this host back. -> failed_keys dict (empty on success)."""
    outcome = write_all(proc, changes)
    failed = {}
    if outcome.failed is None:
        for key, desired, _old in changes:
            now = proc.read(key)
            results[key]["after"] = " ".join(now.text.split()) if now.text is not None else None
            if now.text is None or canonical(now.text) != canonical(desired):
                shown = results[key]["after"]
                failed[key] = {"reason": "not-kept", "message": f"the kernel accepted {desired} but shows {shown}"}
        if not failed:
            return failed
        broken = put_back(proc, changes)
        for key, _new, _old in changes:
            results[key]["status"] = "restore-failed" if key in broken else "failed" if key in failed else "restored"
            results[key]["after"] = _read_text(proc, key)
        return failed
    key, reason, message = outcome.failed
    failed[key] = {"reason": reason, "message": message}
    broken = dict(outcome.restore_failed)
    for change_key, _new, _old in changes:
        entry = results[change_key]
        if change_key == key:
            entry["status"] = "failed"
        elif change_key in broken:
            entry["status"] = "restore-failed"
        elif change_key in outcome.restored:
            entry["status"] = "restored"
        else:
            entry["status"] = "not-written"
        entry["after"] = _read_text(proc, change_key)
    return failed


def put_back(proc, changes):
    """Best effort, every key on its own (newest first): -> keys that could not be restored."""
    broken = []
    for key, _new, old in reversed(changes):
        try:
            proc.write(key, old)
        except (WriteFailed, ValueError):
            broken.append(key)
    return broken


def _read_text(proc, key):
    live = proc.read(key)
    return " ".join(live.text.split()) if live.text is not None else None


def fingerprint_of(wanted):
    digest = hashlib.sha256()
    for key in sorted(wanted):
        digest.update((f"{key}={canonical(wanted[key])}\n").encode())
    return digest.hexdigest()[:12]


def read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def run(params, check_mode):
    """The whole module without AnsibleModule: -> (result dict, failed message or None)."""
    wanted, problems = check_input(params["settings"])
    if problems:
        return ({"changed": False, "sysctls": {}, "changed_keys": [], "file_changed": False,
                 "failed_keys": {k: {"reason": "invalid", "message": m} for k, m in problems.items()}},
                "invalid settings: " + "; ".join(f"{k}: {m}" for k, m in sorted(problems.items())))
    proc = ProcSys(params["proc_root"])
    results, changes, blocked = plan(proc, wanted)
    result = {"changed": False, "sysctls": results, "changed_keys": [k for k, _n, _o in changes],
              "file_changed": False, "sysctl_file": params["sysctl_file"] if params["persist"] else None}
    if blocked:
        for key in result["changed_keys"]:
            results[key]["status"] = "not-written"
        result["failed_keys"] = blocked
        return result, "nothing written: " + "; ".join(
            f"{k}: {v['message']}" for k, v in sorted(blocked.items()))

    new_file = old_file = None
    if params["persist"]:
        name = params["profile_name"] or "ansible"
        new_file = render_sysctl_conf(name, params["fingerprint"] or fingerprint_of(wanted), wanted)
        old_file = read_file(params["sysctl_file"])
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
            "; every key written was put back" if not result["changed"] else "; some keys could not be put back")
    if result["file_changed"]:
        try:
            os.makedirs(os.path.dirname(params["sysctl_file"]) or ".", exist_ok=True)
            atomic_write(params["sysctl_file"], new_file)
        except OSError as exc:
            broken = put_back(proc, changes)
            result["file_changed"] = False
            result["changed"] = bool(broken)
            for key in result["changed_keys"]:
                results[key]["status"] = "restore-failed" if key in broken else "restored"
                results[key]["after"] = _read_text(proc, key)
            result["failed_keys"] = {params["sysctl_file"]: {"reason": "error", "message": str(exc)}}
            return result, f"could not write {params['sysctl_file']}: {exc}; live values put back"
    return result, None


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
    result["msg"] = (f"{len(result['changed_keys'])} key(s) "
                     f"{'would change' if module.check_mode else 'changed'}, {up_to_date} up to date")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
