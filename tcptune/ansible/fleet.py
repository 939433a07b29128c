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
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
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
    """Host names the run will cover, for progress and an early, clear error when nothing matches.

    Ansible explains a broken inventory in a dozen lines of warnings, one block per plugin that tried it; they are
    held back here and the first plugin's reason becomes part of one error line (a readable inventory's warnings
    are passed on as they were)."""
    import io

    path = Path(inventory)
    if not path.exists():
        raise FleetError(f"{inventory}: no such inventory file or directory")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            manager = InventoryManager(loader=DataLoader(), sources=[str(path.resolve())])
            if limit:
                manager.subset(limit)
            hosts = [h.name for h in manager.get_hosts("all")]
    except Exception as exc:  # ansible raises many kinds for a broken inventory
        raise FleetError(f"{inventory}: cannot read the inventory: {one_line(exc)}") from None
    if not hosts:
        problem = _inventory_problem(said.getvalue())
        if problem:
            raise FleetError(f"{inventory}: cannot read the inventory: {problem}")
        raise FleetError(f"{inventory}: no hosts" + (f" match --limit {limit}" if limit else ""))
    if said.getvalue():
        import sys

        sys.stderr.write(said.getvalue())
    return hosts


def _inventory_problem(warnings: str) -> str | None:
    """'[WARNING]: Failed to parse inventory with 'yaml' plugin: WHY' -> "yaml plugin: WHY" (the first plugin's)."""
    match = re.search(r"Failed to parse inventory with '([^']+)' plugin: ([^\n]+)", warnings)
    if match:
        return _cut(f"{match.group(1)} plugin: {match.group(2)}", 200)
    if "Unable to parse" in warnings:
        return "no inventory plugin could parse it"
    return None


# ---- how hosts are reached ---------------------------------------------------------------------------------------

FORKS_PER_CPU = 10
"""Hosts in parallel per controller CPU. A host costs the controller an Ansible worker process and an SSH client;
beyond a few per CPU they only queue for it (bench/fleet_push: on 2 CPUs, ping of 100 hosts took 35 s with 25
forks and 51 s with 100)."""
MAX_FORKS = 100
"""Whatever the CPU count: each fork is a Python process of its own (tens of MB)."""


@dataclass(frozen=True)
class RunSettings:
    """How a fleet run reaches its hosts, chosen for this controller; ``push --verbose`` and bench/fleet_push print it.

    Ansible itself never runs more forks than there are hosts, so ``forks`` is a ceiling: min(hosts, forks) run.
    """

    forks: int
    forks_origin: str
    pipelining: bool
    """True: tcptune turns SSH pipelining on (one SSH round trip per module run instead of four or five: measured
    2.7x faster for 20 hosts). False: left to the user's configuration (``pipelining_origin`` names it)."""
    pipelining_origin: str
    host_key_checking: str
    """"True"/"False" for Ansible: ansible-runner would otherwise turn checking *off* unless the environment sets it,
    over the user's ansible.cfg; we pass on the user's choice, else Ansible's default (on)."""
    host_key_checking_origin: str

    def envvars(self) -> dict[str, str]:
        env = {"ANSIBLE_HOST_KEY_CHECKING": self.host_key_checking}
        if self.pipelining:
            env["ANSIBLE_PIPELINING"] = "True"
        return env

    def describe(self, hosts: int | None = None) -> str:
        parallel = f"{min(hosts, self.forks)} of {hosts} hosts at a time" if hosts else f"up to {self.forks} hosts"
        piped = "on (tcptune's default)" if self.pipelining else f"as configured ({self.pipelining_origin})"
        checking = "on" if self.host_key_checking == "True" else "off"
        return (
            f"forks {self.forks} ({self.forks_origin}): {parallel}; SSH pipelining {piped}; host key checking "
            f"{checking} ({self.host_key_checking_origin}); SSH connections shared per host (ControlPersist) in a "
            "private ControlPath directory, closed when the run ends"
        )


def run_settings(forks: int | None = None, environ: Mapping[str, str] | None = None) -> RunSettings:
    """Forks: ``--forks`` if given, else FORKS_PER_CPU per CPU this process may use (at least Ansible's 5, at most
    MAX_FORKS). Pipelining: on, unless the environment or the ansible.cfg Ansible will read sets it either way.
    Host key checking: as the environment or that ansible.cfg says, else on (Ansible's default). Inventory variables
    (``ansible_pipelining``, ``ansible_host_key_checking``) win over all of these, as always in Ansible."""
    environ = os.environ if environ is None else environ
    if forks is not None:
        chosen, origin = forks, "--forks"
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        chosen = min(MAX_FORKS, max(5, FORKS_PER_CPU * cpus))
        origin = f"{FORKS_PER_CPU} per CPU, {cpus} CPU{'s' if cpus != 1 else ''}"
    config = _user_ansible_config(environ)
    piped = _configured(
        "pipelining", ("ANSIBLE_PIPELINING", "ANSIBLE_SSH_PIPELINING"), ("defaults", "connection", "ssh_connection"),
        environ, config,
    )  # fmt: skip
    checking = _configured(
        "host_key_checking", ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING"),
        ("defaults", "ssh_connection"), environ, config,
    )  # fmt: skip
    check_value = "True" if checking is None or _true(checking[1]) else "False"
    return RunSettings(
        chosen,
        origin,
        piped is None,
        piped[0] if piped else "",
        check_value,
        checking[0] if checking else "Ansible's default",
    )


def _true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on", "y", "t")


def _configured(
    option: str,
    env_names: tuple[str, ...],
    sections: tuple[str, ...],
    environ: Mapping[str, str],
    config: tuple[str, Any] | None,
) -> tuple[str, str] | None:
    """(where, value) of a setting the user chose, as Ansible's ssh connection plugin resolves it: any of its
    environment variables over the ansible.cfg Ansible will read, and within each, the one listed last wins
    (ANSIBLE_SSH_PIPELINING over ANSIBLE_PIPELINING, [ssh_connection] over [defaults]); None if nobody did."""
    for name in reversed(env_names):
        if environ.get(name, "").strip():
            return f"${name}", environ[name]
    if config is not None:
        path, parser = config
        for section in reversed(sections):
            if parser.has_option(section, option):
                return f"{path} [{section}]", parser.get(section, option)
    return None


def _user_ansible_config(environ: Mapping[str, str]) -> tuple[str, Any] | None:
    path = ansible_config_file(environ)
    if path is None:
        return None
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None  # Ansible will say what is wrong with it
    return path, parser


SYSTEM_ANSIBLE_CFG = "/etc/ansible/ansible.cfg"


def ansible_config_file(environ: Mapping[str, str] | None = None) -> str | None:
    """The ansible.cfg Ansible reads for our runs, the first that exists of: $ANSIBLE_CONFIG (a directory: the
    ansible.cfg in it), ./ansible.cfg, ~/.ansible.cfg, the system's. One answer for the settings tcptune computes
    (``run_settings``) and for ansible-playbook, which ansible-runner starts elsewhere (``_run`` names the file)."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    configured = environ.get("ANSIBLE_CONFIG") or ""
    if configured and os.path.isdir(configured):
        configured = os.path.join(configured, "ansible.cfg")
    candidates = [configured, "ansible.cfg", os.path.join(home, ".ansible.cfg")]
    for candidate in [*candidates, SYSTEM_ANSIBLE_CFG]:
        if candidate and os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


# ---- running -----------------------------------------------------------------------------------------------------


def run_spec(
    spec: RoleSpec,
    inventory: str,
    *,
    limit: str | None = None,
    forks: int | None = None,
    check: bool = False,
    settings: RunSettings | None = None,
    on_start: Callable[[list[str]], None] | None = None,
    on_host: Callable[[HostResult], None] | None = None,
) -> FleetResult:
    """Render ``spec`` into a private data dir and run it on the inventory; per-host results, never raises for a host.

    ``settings`` (default: ``run_settings(forks)``) says how hosts are reached. ``on_start(hosts)`` is called once
    with the hosts that run, ``on_host(result)`` as each host finishes (from the thread that follows the run).
    Raises FleetError if the run could not start at all (bad inventory, Ansible not runnable).
    """

    def prepare(project: Path) -> tuple[str, dict[str, str]]:
        role_dir = render_role(spec, project / "roles", molecule=False)
        _trim_for_one_run(role_dir)
        return _playbook(role_dir.name, spec.profile_name), {}

    return _execute(
        inventory, prepare, limit, settings or run_settings(forks), check, on_start, on_host, spec.profile_name, "apply"
    )


def run_action(
    inventory: str,
    action: str,
    *,
    to: int | None = None,
    limit: str | None = None,
    forks: int | None = None,
    check: bool = False,
    settings: RunSettings | None = None,
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

    return _execute(inventory, prepare, limit, settings or run_settings(forks), check, on_start, on_host, "", action)


def _execute(
    inventory: str,
    prepare: Callable[[Path], tuple[str, dict[str, str]]],
    limit: str | None,
    settings: RunSettings,
    check: bool,
    on_start: Callable[[list[str]], None] | None,
    on_host: Callable[[HostResult], None] | None,
    profile: str,
    action: str,
) -> FleetResult:
    if not Path(inventory).exists():
        raise FleetError(f"{inventory}: no such inventory file or directory")
    started = time.monotonic()
    playbook = ansible_playbook()
    private = Path(tempfile.mkdtemp(prefix="tcptune-run-"))
    try:
        site, env = prepare(private / "project")
        (private / "project" / "site.yml").write_text(site, encoding="utf-8")
        results, hosts, rc = _run(
            private,
            os.path.abspath(inventory),
            playbook,
            env,
            limit=limit,
            settings=settings,
            check=check,
            on_start=on_start,
            on_host=on_host,
        )
    finally:
        _close_ssh_masters(private / "cp")
        shutil.rmtree(private, ignore_errors=True)
    ordered = [results.get(h) or _no_result(h, rc) for h in hosts] + [r for h, r in results.items() if h not in hosts]
    return FleetResult(ordered, check, time.monotonic() - started, profile, action, playbook)


def _no_result(host: str, rc: int | None) -> HostResult:
    """A host of the inventory that never reported (a worker killed, any_errors_fatal in the user's ansible.cfg, a
    run stopped early): failed, never left out, so that push cannot exit 0 and a drift gate cannot pass without it."""
    return HostResult(host, "failed", message=f"no result from ansible-playbook for this host (it exited {rc})")


def _trim_for_one_run(role_dir: Path) -> None:
    """This private copy runs once, alone in its play, on settings tcptune has just validated. Two parts of the role
    only cost time there (bench/fleet_push, 20 hosts, every host changed):

    - meta/argument_specs.yml: Ansible prepends a validate_argument_spec task that templates the spec
      once per host and carries it in every host's event (about 2 s of 10). The module still refuses malformed keys
      and values, and the kernel's verdict on each write decides, with rollback, as always.
    - the verify handler's notify: at the end of a play the handler checks that no later role put a key back; this
      play has no other role, and the module has re-read every key it wrote. Flushing it still forks one more worker
      per changed host (1.2 s of 12.6 s).
    """
    (role_dir / "meta" / "argument_specs.yml").unlink(missing_ok=True)
    tasks = role_dir / "tasks" / "main.yml"
    tasks.write_text(re.sub(r"^  notify: .*\n", "", tasks.read_text(encoding="utf-8"), flags=re.M), encoding="utf-8")


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
    import sys

    if os.path.dirname(playbook) == os.path.dirname(os.path.abspath(sys.executable)):
        from ansible.release import __version__  # our own environment's: no second interpreter start

        return str(__version__)
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
    settings: RunSettings,
    check: bool,
    on_start: Callable[[list[str]], None] | None,
    on_host: Callable[[HostResult], None] | None,
) -> tuple[dict[str, HostResult], list[str], int | None]:
    """Start ansible-playbook, then read the inventory while it starts up (its imports take most of a second, and so
    do ours: this way they overlap); a broken inventory cancels the run unless hosts have started already.
    SIGTERM and SIGHUP (a cancelled CI job, systemd, timeout) stop ansible-playbook too: it runs in a session of its
    own and would go on changing hosts after we are gone. -> (results by host, inventory's hosts, its exit code)."""
    import signal
    import threading

    from ansible_runner.interface import init_runner

    results: dict[str, HostResult] = {}
    announced: set[str] = set()
    hosts_started = threading.Event()
    closing: list[subprocess.Popen[bytes]] = []

    def handle(event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        if name.startswith("runner_on_"):
            hosts_started.set()
        if name == "playbook_on_stats":  # every host is done: close SSH masters while ansible-playbook exits
            closing.extend(_start_closing_ssh_masters(private / "cp"))
            return True
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
        **settings.envvars(),
    }
    config = ansible_config_file()
    if config:  # ansible-runner runs in its own directory: name the file Ansible would read from here
        envvars["ANSIBLE_CONFIG"] = config
    envvars.update(env)
    envvars["PATH"] = os.path.dirname(playbook) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    cancel = threading.Event()
    try:
        runner = init_runner(
            private_data_dir=str(private),
            playbook="site.yml",
            inventory=inventory,
            limit=limit,
            forks=settings.forks,
            cmdline="--check" if check else None,
            envvars=envvars,
            event_handler=handle,
            cancel_callback=cancel.is_set,
            quiet=True,
            suppress_env_files=True,
        )
    except Exception as exc:  # ansible-runner reports configuration problems as assorted exceptions
        raise FleetError(f"could not start ansible-playbook: {exc}") from None
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            runner.run()
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    signalled: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        signalled.append(signum)
        cancel.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, stop)
    thread = threading.Thread(target=follow, name="ansible-runner", daemon=True)
    thread.start()
    hosts: list[str] | None = None
    try:
        try:
            hosts = inventory_hosts(inventory, limit)
        except FleetError:
            if not hosts_started.is_set():
                raise
            # a flaky dynamic inventory: hosts are being changed already, so let the run finish and report them
        if on_start:
            on_start(hosts if hosts is not None else [])
        thread.join()
    except BaseException:  # a broken inventory, Ctrl-C: stop ansible-playbook before the private dir goes
        cancel.set()
        thread.join(timeout=60)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _wait_closed(closing)
    if signalled:
        name = signal.Signals(signalled[0]).name
        raise FleetError(f"stopped by {name}: ansible-playbook was stopped too; hosts it reached may have changed")
    if failure:
        raise FleetError(f"could not run ansible-playbook: {one_line(failure[0])}")
    if not results and runner.rc != 0:
        tail = ""
        with contextlib.suppress(Exception):
            tail = " ".join(runner.stdout.read().split()[-60:])
        raise FleetError(f"{playbook} failed before any host ran (rc {runner.rc}): {tail}")
    return results, hosts if hosts is not None else list(results), runner.rc


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
    sockets = _sockets(control_dir)
    for first in range(0, len(sockets), CLOSING_AT_ONCE):
        _wait_closed(_start_closing(sockets[first : first + CLOSING_AT_ONCE]))


CLOSING_AT_ONCE = 256
"""``ssh -O exit`` processes at a time (a fleet of thousands must not exhaust the process table)."""


def _start_closing_ssh_masters(control_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Ask the first CLOSING_AT_ONCE masters to exit, all at once, and return at once: one ``ssh -O exit`` after
    another took 1.5 s of a 100-host push. ``_close_ssh_masters`` afterwards ends any that are left."""
    return _start_closing(_sockets(control_dir)[:CLOSING_AT_ONCE])


def _sockets(control_dir: Path) -> list[Path]:
    try:
        return sorted(control_dir / name for name in os.listdir(control_dir))
    except OSError:
        return []


def _start_closing(sockets: list[Path]) -> list[subprocess.Popen[bytes]]:
    closing = []
    for socket in sockets:
        with contextlib.suppress(OSError):
            closing.append(
                subprocess.Popen(
                    ["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "tcptune"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return closing


def _wait_closed(closing: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 5
    for process in closing:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
