"""Namespace hosts: a fleet of real sshd "machines" on one Linux box, for Molecule, tests and benchmarks.

Each host is a network namespace (its own TCP sysctls and address on a per-run bridge), a private mount namespace
(its own ``/etc/sysctl.d``, tcptune state directory ``/var/lib/tcptune``, ``/etc/hosts`` and ``/run``; ``/proc/sys``
read-only except ``/proc/sys/net``, so nothing run on a host can change this machine's global sysctls) and a UTS
namespace (its own hostname), running Debian's sshd. Ansible reaches it over real SSH. The host's ``/var/lib`` is a
small tmpfs of its own holding the mountpoint of its state directory, so nothing is created on this machine.

Standard library only and free of tcptune imports: generated roles ship a copy as ``molecule/default/nshosts.py``
so that their Molecule scenario runs without tcptune installed. Needs root, ``ip``, ``unshare``, ``mount``,
``ssh-keygen`` and ``/usr/sbin/sshd``.

    python3 nshosts.py up --hosts 3 --state fleet.json [--inventory hosts.yml] [--instance-config FILE]
    python3 nshosts.py stop h2 --state fleet.json      # make one host unreachable
    python3 nshosts.py down --state fleet.json         # everything goes, even after a half-finished 'up'

Every name is random per run (prefix ``tt4``): bridge, subnet, namespaces and veths, so leftovers of an earlier run
never collide. Everything created is recorded in the state file as soon as it exists, so ``down`` can always clean up.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

PREFIX = "tt4"
SSHD = "/usr/sbin/sshd"
STATE_DIR = "/var/lib/tcptune"
"""tcptune's state directory on a host: each host gets its own (``<host dir>/state`` bound over it)."""
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
MAX_HOSTS = 200

# Runs inside the new mount + UTS namespace, already inside the host's network namespace. ``set -e``: if any mount
# fails, sshd never starts, so nothing can run on a host whose /proc/sys is not locked down.
_HOST_SHELL = r"""
set -e
mount --bind /proc/sys /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,ro /proc/sys
mount --bind "$1/sysctl.d" /etc/sysctl.d
mount -t tmpfs -o size=64k,mode=0755 tt4-varlib /var/lib
mkdir "$4"
mount --bind "$1/state" "$4"
mount --bind "$1/hosts" /etc/hosts
mount --bind "$1/run" /run
hostname "$2"
exec "$3" -D -e -f "$1/sshd_config"
"""


@dataclass
class Host:
    name: str
    netns: str
    address: str
    veth: str
    directory: str
    pid: int | None = None


@dataclass
class Fleet:
    """One run's hosts and everything created for them; ``down()`` removes all of it."""

    run_id: str
    workdir: str
    bridge: str
    network: str
    key_file: str
    control_dir: str
    hosts: list[Host] = field(default_factory=list)
    state_file: str | None = None
    owns_workdir: bool = True

    # ---- access ------------------------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def host_vars(self, host: Host) -> dict[str, object]:
        return {
            "ansible_host": host.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key_file,
            "ansible_ssh_common_args": SSH_OPTIONS,
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(self, host_vars: dict[str, dict[str, object]] | None = None, group: str = "fleet") -> dict:
        """An Ansible YAML inventory (as data): every host in ``group``, optional extra per-host variables."""
        hosts = {h.name: {**self.host_vars(h), **(host_vars or {}).get(h.name, {})} for h in self.hosts}
        return {"all": {"children": {group: {"hosts": hosts}}}}

    def write_inventory(self, path: str, host_vars: dict[str, dict[str, object]] | None = None) -> str:
        """JSON is YAML: no YAML library needed to write an inventory Ansible reads."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.inventory(host_vars), handle, indent=2)
        return path

    def instance_config(self) -> list[dict[str, object]]:
        """Molecule's instance config (delegated driver): how to reach each platform."""
        return [
            {"instance": h.name, "address": h.address, "user": "root", "port": 22, "identity_file": self.key_file}
            for h in self.hosts
        ]

    def env(self) -> dict[str, str]:
        """Environment for Ansible against this fleet: its own SSH ControlPath directory (see FLEET-HARNESS)."""
        return {"ANSIBLE_SSH_CONTROL_PATH_DIR": self.control_dir, "ANSIBLE_HOST_KEY_CHECKING": "False"}

    # ---- state -------------------------------------------------------------------------------------------------

    def save(self) -> None:
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, state_file: str) -> Fleet:
        with open(state_file, encoding="utf-8") as handle:
            data = json.load(handle)
        data["hosts"] = [Host(**h) for h in data.get("hosts", [])]
        fleet = cls(**data)
        fleet.state_file = state_file
        return fleet

    # ---- life cycle --------------------------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """Make one host unreachable: kill its sshd (and any session it spawned)."""
        host = self.host(name)
        _kill_netns_processes(host.netns)
        if host.pid:
            _kill(host.pid)
        host.pid = None
        self.save()

    def down(self) -> list[str]:
        """Remove everything this fleet created; returns the problems met (never raises: it must always finish)."""
        problems: list[str] = []
        _close_ssh_masters(self.control_dir)
        for host in self.hosts:
            _kill_netns_processes(host.netns)
            if host.pid:
                _kill(host.pid)
            if _run(["ip", "netns", "del", host.netns], check=False) != 0 and _netns_exists(host.netns):
                problems.append(f"could not delete netns {host.netns}")
            if _link_exists(host.veth):
                _run(["ip", "link", "del", host.veth], check=False)
        if self.bridge and _link_exists(self.bridge):
            _run(["ip", "link", "del", self.bridge], check=False)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for path in [h.directory for h in self.hosts] + [os.path.dirname(self.key_file), self.control_dir]:
                shutil.rmtree(path, ignore_errors=True)
        self.hosts = []
        if self.state_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_file)
        return problems

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def up(
    count: int = 3,
    *,
    names: list[str] | None = None,
    workdir: str | None = None,
    state_file: str | None = None,
    timeout: float = 15.0,
) -> Fleet:
    """Bring up ``count`` hosts (or one per name); on any failure, tear down what was made and raise."""
    if os.geteuid() != 0:
        raise PermissionError("namespace hosts need root (network and mount namespaces)")
    names = list(names) if names else [f"h{i}" for i in range(1, count + 1)]
    if not 1 <= len(names) <= MAX_HOSTS:
        raise ValueError(f"between 1 and {MAX_HOSTS} hosts")
    run_id = secrets.token_hex(3)
    owns = workdir is None or not os.path.exists(workdir)  # only remove a directory we made
    workdir = workdir or tempfile.mkdtemp(prefix=f"{PREFIX}-fleet-")
    os.makedirs(workdir, mode=0o755, exist_ok=True)
    keys = os.path.join(workdir, "keys")
    os.makedirs(keys, mode=0o700, exist_ok=True)
    fleet = Fleet(
        run_id=run_id,
        workdir=workdir,
        bridge=f"{PREFIX}b{run_id}",
        network=str(_free_network()),
        key_file=os.path.join(keys, "id"),
        control_dir=os.path.join(workdir, "cp"),
        state_file=state_file,
        owns_workdir=owns,
    )
    os.makedirs(fleet.control_dir, mode=0o700, exist_ok=True)
    fleet.save()
    try:
        _bring_up(fleet, names, timeout)
    except BaseException:
        fleet.down()
        raise
    return fleet


def _bring_up(fleet: Fleet, names: list[str], timeout: float) -> None:
    keys = os.path.dirname(fleet.key_file)
    for name in ("id", "hostkey"):
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"tcptune-{fleet.run_id}",
                "-f",
                os.path.join(keys, name),
            ]
        )
    shutil.copyfile(fleet.key_file + ".pub", os.path.join(keys, "authorized_keys"))
    os.chmod(os.path.join(keys, "authorized_keys"), 0o600)

    network = ipaddress.ip_network(fleet.network)
    gateway = f"{network[1]}/{network.prefixlen}"
    _run(["ip", "link", "add", fleet.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", gateway, "dev", fleet.bridge])
    _run(["ip", "link", "set", fleet.bridge, "up"])

    for index, name in enumerate(names, start=1):
        host = Host(
            name=name,
            netns=f"{PREFIX}{fleet.run_id}h{index}",
            address=str(network[10 + index]),
            veth=f"{PREFIX}{fleet.run_id}v{index}",
            directory=os.path.join(fleet.workdir, f"host{index}"),
        )
        fleet.hosts.append(host)
        fleet.save()
        _start_host(fleet, host, network.prefixlen)
        fleet.save()
    deadline = time.monotonic() + timeout
    for host in fleet.hosts:
        _wait_for_ssh(host, deadline)


def _start_host(fleet: Fleet, host: Host, prefixlen: int) -> None:
    for sub in ("sysctl.d", "run/sshd"):
        os.makedirs(os.path.join(host.directory, sub), exist_ok=True)
    os.makedirs(os.path.join(host.directory, "state"), mode=0o700, exist_ok=True)
    os.chmod(os.path.join(host.directory, "state"), 0o700)
    os.chmod(os.path.join(host.directory, "run", "sshd"), 0o755)
    with open(os.path.join(host.directory, "hosts"), "w", encoding="utf-8") as handle:
        handle.write(f"127.0.0.1 localhost\n{host.address} {host.name}\n")
    keys = os.path.dirname(fleet.key_file)
    with open(os.path.join(host.directory, "sshd_config"), "w", encoding="utf-8") as handle:
        handle.write(
            f"ListenAddress {host.address}\n"
            f"HostKey {os.path.join(keys, 'hostkey')}\n"
            f"AuthorizedKeysFile {os.path.join(keys, 'authorized_keys')}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nUseDNS no\nPidFile none\nPrintMotd no\nLogLevel ERROR\n"
            "MaxStartups 200\nMaxSessions 100\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
        )

    _run(["ip", "netns", "add", host.netns])
    _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
    _run(["ip", "link", "set", host.veth, "master", fleet.bridge, "up"])
    _run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/{prefixlen}", "dev", "eth0"])
    _run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
    _run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    log = open(os.path.join(host.directory, "sshd.log"), "ab")  # noqa: SIM115 - handed to the child
    try:
        # sshd -D stays in the foreground and every exec keeps the PID: the Popen PID *is* sshd's PID.
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.netns,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "sh",
                "-c",
                _HOST_SHELL,
                "sh",
                host.directory,
                host.name,
                SSHD,
                STATE_DIR,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    host.pid = process.pid


def _wait_for_ssh(host: Host, deadline: float) -> None:
    while True:
        if host.pid and not _alive(host.pid):
            log = os.path.join(host.directory, "sshd.log")
            with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as handle:
                detail = handle.read().strip()[-500:]
            raise RuntimeError(f"sshd for {host.name} exited: {detail or 'no output'}")
        try:
            with socket.create_connection((host.address, 22), timeout=1) as conn:
                conn.settimeout(2)
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd for {host.name} ({host.address}) did not answer")
        time.sleep(0.05)


def _free_network() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps no route or address this machine already has."""
    used: list[ipaddress.IPv4Network] = []
    for args in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            for entry in json.loads(out or "[]"):
                candidates = [entry.get("dst")] + [
                    f"{a['local']}/{a.get('prefixlen', 32)}" for a in entry.get("addr_info", [])
                ]
                for dst in candidates:
                    with contextlib.suppress(ValueError, TypeError):
                        if dst and dst != "default":
                            used.append(ipaddress.IPv4Network(dst, strict=False))
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen >= 8):
            return net
    raise RuntimeError("no free 10.x.y.0/24 network for the fleet")


def _run(args: list[str], check: bool = True) -> int:
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.returncode


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waits for its parent only; it holds no port any more


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.01)


def _kill_netns_processes(netns: str) -> None:
    """sshd's session processes live in the host's netns: end them by PID (they are ours)."""
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for word in result.stdout.split():
        if word.isdigit():
            _kill(int(word))


def _close_ssh_masters(control_dir: str) -> None:
    """SSH ControlPersist masters outlive the run and would be reused for a new host at the same address."""
    with contextlib.suppress(OSError):
        for name in os.listdir(control_dir):
            subprocess.run(
                ["ssh", "-O", "exit", "-o", f"ControlPath={os.path.join(control_dir, name)}", "x"],
                capture_output=True,
                timeout=5,
                check=False,
            )


def _netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


# ---- command line (Molecule's create/destroy playbooks, scripts) ------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nshosts", description="Namespace hosts reached by real SSH.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring hosts up")
    p_up.add_argument("--hosts", type=int, default=3)
    p_up.add_argument("--names", help="comma-separated host names (default h1..hN)")
    p_up.add_argument("--state", required=True, help="state file to write (needed by 'down')")
    p_up.add_argument("--workdir", help="directory for keys, host files and the SSH control path (default: new temp)")
    p_up.add_argument("--inventory", help="also write an Ansible inventory here")
    p_up.add_argument("--instance-config", help="also write Molecule's instance config here")
    p_stop = sub.add_parser("stop", help="stop one host's sshd (make it unreachable)")
    p_stop.add_argument("name")
    p_stop.add_argument("--state", required=True)
    p_down = sub.add_parser("down", help="tear everything down")
    p_down.add_argument("--state", required=True)
    p_down.add_argument("--instance-config", help="empty Molecule's instance config here")
    args = parser.parse_args(argv)

    if args.command == "up":
        names = [n for n in args.names.split(",") if n] if args.names else None
        fleet = up(args.hosts, names=names, workdir=args.workdir, state_file=os.path.abspath(args.state))
        if args.inventory:
            fleet.write_inventory(args.inventory)
        if args.instance_config:
            with open(args.instance_config, "w", encoding="utf-8") as handle:
                json.dump(fleet.instance_config(), handle, indent=2)
        json.dump(asdict(fleet), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not os.path.exists(args.state):
        if args.command == "down":
            _empty_instance_config(getattr(args, "instance_config", None))
            return 0
        parser.error(f"no state file {args.state}")
    fleet = Fleet.load(args.state)
    if args.command == "stop":
        fleet.stop(args.name)
        return 0
    problems = fleet.down()
    _empty_instance_config(args.instance_config)
    for problem in problems:
        print(f"nshosts: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _empty_instance_config(path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[]\n")


if __name__ == "__main__":
    sys.exit(main())
