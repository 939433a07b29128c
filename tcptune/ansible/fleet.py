"""Fleets: run a rendered role across an inventory with ansible-runner and turn its events into per-host results.

Every run gets a fresh private data dir (ansible-runner would otherwise reuse the previous run's extravars) with
its own SSH ControlPath directory (ControlPersist masters would otherwise be reused for a new host at the same
address), both removed afterwards. Settings travel inside the rendered role (``!unsafe`` data), never as extravars
and never through a shell. One host failing or unreachable never stops the others: Ansible runs each host on its own
and the module rolls back the host it runs on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ..output import one_line
from .render import MODULE_NAME, RoleSpec, generic_spec, render_role, unsafe, yaml_document

MODULE = MODULE_NAME
COLLECTION_MODULE = "sysctl_profile"
"""The module's name in the tcptune.tuning collection (tcptune.tuning.sysctl_profile)."""
HOST_STATUSES = ("ok", "changed", "failed", "unreachable")


@dataclass
class HostResult:
    """One host's outcome: status, the keys that changed (or would), per-key detail, and why it failed."""

    host: str
    status: str
    """ok (nothing to do), changed (written; in check mode: would be), failed, unreachable."""
    changed_keys: list[str] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    """key -> {before, after, desired, status} as the module reported it."""
    failed_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    """key -> {reason, message} for the keys that stopped this host."""
    file_changed: bool = False
    message: str = ""
    """The whole message (the module's, or Ansible's); the table shows ``short`` instead."""
    generation: int | None = None
    """The host's current generation after the run (in check mode: the one it would be)."""
    reason: str | None = None
    """One word for a failure (read-only, missing, invalid, not-kept, conflict, file, locked, ...)."""

    @property
    def drift(self) -> list[str]:
        """Keys whose live value differs from the desired one (whatever could be done about it)."""
        return [k for k, v in sorted(self.keys.items()) if v.get("status") != "ok"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "changed_keys": self.changed_keys,
            "file_changed": self.file_changed,
            "failed_keys": self.failed_keys,
            "message": self.message,
            "generation": self.generation,
            "reason": self.reason,
            "keys": self.keys,
        }

    @property
    def why(self) -> str | None:
        """The failure's reason: the module's, else those of the keys that stopped the host."""
        reasons = sorted({str(info.get("reason") or "error") for info in self.failed_keys.values()})
        return self.reason or (", ".join(reasons) if reasons else None)

    @property
    def short(self) -> str:
        """This host's failure in one short line for a table: the reason and the keys, or the message cut short."""
        keys = sorted(self.failed_keys)
        if self.why and keys:
            return f"{self.why}: {_listed(keys, 2)}"
        return _cut(self.message, SHORT)

    def push_row(self, verbose: bool = False) -> tuple[object, ...]:
        """(host, status, keys changed, generation, detail): this host's line in the tables of ``tcptune push`` and
        ``tcptune rollback -i``; one short line unless ``verbose``."""
        generation = "-" if self.generation is None else self.generation
        if self.status in ("changed", "ok"):
            keys = self.changed_keys
            detail = _listed(keys, 3)
            if self.file_changed and not keys:
                detail = "sysctl.d file rewritten"
            return (self.host, self.status, len(keys), generation, detail or "up to date")
        status = "failed" + (f" ({self.why})" if self.why else "") if self.status == "failed" else self.status
        return (self.host, status, "-", generation, self.message if verbose else self.short)

    def drift_rows(self) -> list[tuple[object, ...]]:
        """(host, key, live, desired, status): this host's lines in the table of ``tcptune diff -i``.

        One per drifted key and one for the sysctl.d file if it would change; otherwise one saying why there is
        nothing to compare (unreachable, failed) or that the host is "ok".
        """
        if self.status == "unreachable":
            return [(self.host, "-", "-", "-", f"unreachable: {self.message}")]
        rows: list[tuple[object, ...]] = []
        for key in self.drift:
            entry = self.keys[key]
            status = entry.get("status")
            if status in ("changed", "not-written"):  # the module's check-mode words for "would be written"
                status = "differs"
            before = entry.get("before")
            rows.append((self.host, key, "-" if before is None else one_line(before), entry.get("desired"), status))
        if self.file_changed:
            rows.append((self.host, "(sysctl.d file)", "-", "-", "differs"))
        if self.status == "failed" and not self.keys:
            rows.append((self.host, "-", "-", "-", f"failed: {self.message}"))
        elif not self.drift and not self.file_changed:
            rows.append((self.host, "-", "-", "-", "ok"))
        return rows


@dataclass
class FleetResult:
    """A whole run: one HostResult per host that Ansible reported on."""

    hosts: list[HostResult]
    check: bool
    seconds: float
    profile: str = ""
    action: str = "apply"
    playbook: str = ""
    """The ansible-playbook that ran (tcptune's own environment's first)."""

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts if h.status in ("failed", "unreachable")]

    @property
    def drifted(self) -> list[HostResult]:
        return [h for h in self.hosts if h.drift or h.file_changed]

    def counts(self) -> dict[str, int]:
        return {s: sum(h.status == s for h in self.hosts) for s in HOST_STATUSES}

    def push_rows(self, verbose: bool = False) -> list[tuple[object, ...]]:
        return [host.push_row(verbose) for host in self.hosts]

    def drift_rows(self) -> list[tuple[object, ...]]:
        return [row for host in self.hosts for row in host.drift_rows()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "action": self.action,
            "check": self.check,
            "ansible_playbook": self.playbook,
            "seconds": round(self.seconds, 2),
            "summary": self.counts(),
            "hosts": {h.host: h.as_dict() for h in self.hosts},
        }


SHORT = 60
"""Longest detail in a table cell; the whole message is in --format json and --verbose."""


def _listed(items: list[str], most: int) -> str:
    return ", ".join(items) if len(items) <= most else ", ".join(items[:most]) + f", ... (+{len(items) - most})"


def _cut(text: str, width: int) -> str:
    text = one_line(text)
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


# ---- inventory ---------------------------------------------------------------------------------------------------


def inventory_hosts(inventory: str, limit: str | None = None) -> list[str]:
    """Host names the run will cover, for progress and an early, clear error when nothing matches."""
    path = Path(inventory)
    if not path.exists():
        raise FleetError(f"{inventory}: no such inventory file or directory")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    try:
        manager = InventoryManager(loader=DataLoader(), sources=[str(path.resolve())])
        if limit:
            manager.subset(limit)
        hosts = [h.name for h in manager.get_hosts("all")]
    except Exception as exc:  # ansible raises many kinds for a broken inventory
        raise FleetError(f"{inventory}: cannot read the inventory: {exc}") from None
    if not hosts:
        raise FleetError(f"{inventory}: no hosts" + (f" match --limit {limit}" if limit else ""))
    return hosts


# ---- running -----------------------------------------------------------------------------------------------------


def run_spec(
    spec: RoleSpec,
    inventory: str,
    *,
    limit: str | None = None,
    forks: int | None = None,
    check: bool = False,
    on_start: Callable[[list[str]], None] | None = None,
    on_host: Callable[[HostResult], None] | None = None,
) -> FleetResult:
    """Render ``spec`` into a private data dir and run it on the inventory; per-host results, never raises for a host.

    ``on_start(hosts)`` is called once with the hosts that will run, ``on_host(result)`` as each host finishes.
    Raises FleetError if the run could not start at all (bad inventory, Ansible not runnable).
    """

    def prepare(project: Path) -> tuple[str, dict[str, str]]:
        role_dir = render_role(spec, project / "roles", molecule=False)
        return _playbook(role_dir.name, spec.profile_name), {}

    return _execute(inventory, prepare, limit, forks, check, on_start, on_host, spec.profile_name, "apply")


def run_action(
    inventory: str,
    action: str,
    *,
    to: int | None = None,
    limit: str | None = None,
    forks: int | None = None,
    check: bool = False,
    on_start: Callable[[list[str]], None] | None = None,
    on_host: Callable[[HostResult], None] | None = None,
) -> FleetResult:
    """``rollback`` (to generation ``to``; None: the one before each host's current), ``reset`` or ``recover`` on
    every host: the module (with the core it ships) called directly, as the generic role would call it."""

    def prepare(project: Path) -> tuple[str, dict[str, str]]:
        role_dir = render_role(generic_spec(), project / "roles", molecule=False)
        args: dict[str, Any] = {"action": action}
        if to is not None:
            args["to"] = to
        play = {
            "name": f"tcptune {action}",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"name": f"tcptune {action}", MODULE: args}],
        }
        env = {"ANSIBLE_LIBRARY": str(role_dir / "library"), "ANSIBLE_MODULE_UTILS": str(role_dir / "module_utils")}
        return "---\n" + yaml_document([play]), env

    return _execute(inventory, prepare, limit, forks, check, on_start, on_host, "", action)


def _execute(
    inventory: str,
    prepare: Callable[[Path], tuple[str, dict[str, str]]],
    limit: str | None,
    forks: int | None,
    check: bool,
    on_start: Callable[[list[str]], None] | None,
    on_host: Callable[[HostResult], None] | None,
    profile: str,
    action: str,
) -> FleetResult:
    hosts = inventory_hosts(inventory, limit)
    if on_start:
        on_start(hosts)
    started = time.monotonic()
    private = Path(tempfile.mkdtemp(prefix="tcptune-run-"))
    playbook = ansible_playbook()
    try:
        site, env = prepare(private / "project")
        (private / "project" / "site.yml").write_text(site, encoding="utf-8")
        results = _run(
            private, os.path.abspath(inventory), playbook, env, limit=limit, forks=forks, check=check, on_host=on_host
        )
    finally:
        _close_ssh_masters(private / "cp")
        shutil.rmtree(private, ignore_errors=True)
    ordered = [results[h] for h in hosts if h in results] + [r for h, r in results.items() if h not in hosts]
    return FleetResult(ordered, check, time.monotonic() - started, profile, action, playbook)


def _playbook(role: str, profile: str) -> str:
    """site.yml: the profile name is data in the play name (``!unsafe``: Ansible templates play names). The free
    strategy lets each host finish on its own, so progress advances per host."""
    return "---\n" + yaml_document(
        [
            {
                "name": unsafe(f"tcptune {profile}"),
                "hosts": "all",
                "gather_facts": False,
                "strategy": "free",
                "roles": [{"role": role}],
            }
        ]
    )


def ansible_playbook() -> str:
    """The ansible-playbook of tcptune's own environment, else the first on PATH.

    A pipx install or an unactivated virtualenv has its ansible-core next to its Python, not on PATH; running
    whichever ansible-playbook PATH offers would mix another Ansible (or none: rc 127) with tcptune's module code.
    """
    import sys

    own = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ansible-playbook")
    if os.path.isfile(own) and os.access(own, os.X_OK):
        return own
    found = shutil.which("ansible-playbook")
    if found is None:
        raise FleetError(
            "ansible-playbook not found: install tcptune with its dependencies (ansible-core), e.g. "
            "'pipx install tcptune' or './scripts/bootstrap'"
        )
    return found


def ansible_version(playbook: str) -> str:
    """'ansible-playbook [core 2.19.4]' -> '2.19.4', for --verbose; '?' when it cannot be asked."""
    try:
        out = subprocess.run([playbook, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = out.splitlines()[0] if out else ""
    return first.split("core", 1)[-1].strip(" []") if "core" in first else (first or "?")


def _run(
    private: Path,
    inventory: str,
    playbook: str,
    env: dict[str, str],
    *,
    limit: str | None,
    forks: int | None,
    check: bool,
    on_host: Callable[[HostResult], None] | None,
) -> dict[str, HostResult]:
    import ansible_runner

    results: dict[str, HostResult] = {}
    announced: set[str] = set()

    def handle(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        if not name.startswith("runner_on_") or name in ("runner_on_start", "runner_on_skipped"):
            return True
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host:
            return True
        result = _host_result(name, host, data, results.get(host))
        if result is None:
            return True
        results[host] = result
        if on_host and host not in announced and name in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            announced.add(host)
            on_host(result)
        return True

    envvars = {
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
        "ANSIBLE_ROLES_PATH": str(private / "project" / "roles"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
    }
    config = os.environ.get("ANSIBLE_CONFIG") or ("ansible.cfg" if os.path.isfile("ansible.cfg") else None)
    if config:  # ansible-runner runs in its own directory: keep the user's ansible.cfg from here
        envvars["ANSIBLE_CONFIG"] = os.path.abspath(config)
    envvars.update(env)
    envvars["PATH"] = os.path.dirname(playbook) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    cmdline = "--check" if check else None
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            playbook="site.yml",
            inventory=inventory,
            limit=limit,
            forks=forks,
            cmdline=cmdline,
            envvars=envvars,
            event_handler=handle,
            quiet=True,
            suppress_env_files=True,
        )
    except Exception as exc:  # ansible-runner reports configuration problems as assorted exceptions
        raise FleetError(f"could not start ansible-playbook: {exc}") from None
    if not results and runner.rc != 0:
        tail = ""
        with contextlib.suppress(Exception):
            tail = " ".join(runner.stdout.read().split()[-60:])
        raise FleetError(f"{playbook} failed before any host ran (rc {runner.rc}): {tail}")
    return results


def _host_result(event: str, host: str, data: dict[str, Any], previous: HostResult | None) -> HostResult | None:
    """Fold one runner event into a host's result: the module's result wins; any later failure marks the host."""
    res = data.get("res") or {}
    action = str(data.get("task_action") or data.get("resolved_action") or "")
    ours = action.rsplit(".", 1)[-1] in (MODULE, COLLECTION_MODULE)
    if event == "runner_on_unreachable":
        message = str(res.get("msg") or "unreachable").strip()
        return HostResult(host, "unreachable", message=message.splitlines()[-1] if message else "unreachable")
    if event == "runner_on_failed":
        if data.get("ignore_errors"):
            return None
        message = one_line(res.get("msg") or "failed")
        if previous is None:
            result = _from_module(host, res, "failed") if ours else HostResult(host, "failed")
            result.message = message
            return result
        previous.status = "failed"  # e.g. the verify handler found a key put back after the apply
        previous.message = f"{data.get('task') or 'task'}: {message}"
        return previous
    if event == "runner_on_ok" and ours and previous is None:
        return _from_module(host, res, "changed" if res.get("changed") else "ok")
    return None


def _from_module(host: str, res: dict[str, Any], status: str) -> HostResult:
    generation = res.get("generation")
    return HostResult(
        host,
        status,
        changed_keys=list(res.get("changed_keys") or []),
        keys=dict(res.get("sysctls") or {}),
        failed_keys=dict(res.get("failed_keys") or {}),
        file_changed=bool(res.get("file_changed")),
        message=one_line(res.get("msg") or ""),
        generation=generation if isinstance(generation, int) else None,
        reason=str(res["reason"]) if res.get("reason") else None,
    )


def _close_ssh_masters(control_dir: Path) -> None:
    """ControlPersist masters outlive ansible-playbook: end this run's, so nothing lingers or gets reused."""
    with contextlib.suppress(OSError):
        for name in os.listdir(control_dir):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["ssh", "-O", "exit", "-o", f"ControlPath={control_dir / name}", "tcptune"],
                    capture_output=True,
                    timeout=5,
                    check=False,
                )
