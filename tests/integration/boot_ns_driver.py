"""Runs the real boot appliers on many sysctl.d trees, inside the namespace ``real_appliers.run`` starts it in.

Started as ``unshare --net --mount -- python boot_ns_driver.py SPEC``. Standard library only; never imports tcptune
(it is the truth the model is compared with). Set-up, once, in this private mount namespace:

* /proc/sys read-only except /proc/sys/net (FLEET-HARNESS.md), so kernel.*, vm.*, fs.* writes fail;
* tmpfs over /run and /usr/local/lib (neither is needed by the appliers or by this interpreter), so that
  /run/sysctl.d and /usr/local/lib/sysctl.d exist to be bound over without touching the machine.

Then per tree: bind the tree's four sysctl.d directories and its /etc/sysctl.conf over the real paths, and per
applier fork a child that enters a **fresh network namespace**, reads every key of interest, runs the applier,
and reads them again. Nothing written by one run can be seen by the next. Output: one JSON document on stdout.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import subprocess
import sys

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RDONLY = 1
MS_REMOUNT = 32
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1

DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d")
APPLIERS = {
    "systemd": ["/lib/systemd/systemd-sysctl"],
    "procps": ["/usr/sbin/sysctl", "--system"],
}
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    kind = fstype.encode() if fstype else None
    options = data.encode() if data else None
    _check(_libc.mount(source.encode(), target.encode(), kind, flags, options), f"mount {source} {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def set_up(scratch: str) -> None:
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("/proc/sys", "/proc/sys", None, MS_BIND)
    mount("/proc/sys/net", "/proc/sys/net", None, MS_BIND)
    mount("none", "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    mount("tt4-run", "/run", "tmpfs", 0, "size=1m,mode=0755")
    mount("tt4-usrlocal", "/usr/local/lib", "tmpfs", 0, "size=1m,mode=0755")
    os.mkdir("/run/sysctl.d")
    os.mkdir("/usr/local/lib/sysctl.d")
    empty_dir = os.path.join(scratch, "empty.d")
    os.makedirs(empty_dir, exist_ok=True)
    with open(os.path.join(scratch, "empty.conf"), "w"):
        pass
    if os.access("/proc/sys/kernel/pid_max", os.W_OK) or not os.access("/proc/sys/net/ipv4/tcp_fin_timeout", os.W_OK):
        raise RuntimeError("/proc/sys is not read-only outside /proc/sys/net")


def bind_tree(tree: str, scratch: str) -> list[str]:
    """Bind a tree's directories and sysctl.conf (resolved inside the tree by the generator) over the real ones."""
    targets = []
    for rel in DIRS:
        source = os.path.join(tree, rel)
        if not os.path.isdir(source) or os.path.islink(source):
            source = os.path.join(scratch, "empty.d")
        mount(source, "/" + rel, None, MS_BIND)
        targets.append("/" + rel)
    conf = os.path.join(tree, ".sysctl.conf.bind")  # written by the generator: what /etc/sysctl.conf resolves to
    source = os.path.join(scratch, "empty.conf")
    if os.path.lexists(conf):
        source = os.readlink(conf)
    mount(source, "/etc/sysctl.conf", None, MS_BIND)
    targets.append("/etc/sysctl.conf")
    return targets


def read_keys(keys: list[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for key in keys:
        try:
            with open("/proc/sys/" + key, "rb") as handle:
                values[key] = handle.read().decode("latin-1").rstrip("\n")
        except OSError:
            values[key] = None
    return values


def in_fresh_netns(work: object) -> object:
    """Run ``work()`` in a forked child that first enters a new network namespace; return its JSON result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # never outlive the driver
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            payload = json.dumps(work()).encode()  # type: ignore[operator]
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException as exc:  # the parent sees an empty result and reports it
            sys.stderr.write(f"child failed: {exc!r}\n")
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"namespace child failed (status {status})")
    return json.loads(data)


def kernel_facts(extra: list[str], host_netns: str) -> dict[str, object]:
    """Every key of a fresh namespace under net/, plus the given others, and which of them refuse writes."""

    def work() -> dict[str, object]:
        if os.readlink("/proc/self/ns/net") == host_netns:
            raise RuntimeError("still in the machine's network namespace")
        names = []
        for directory, _, files in os.walk("/proc/sys/net"):
            for name in files:
                names.append(os.path.relpath(os.path.join(directory, name), "/proc/sys"))
        names += [key for key in extra if os.path.isfile("/proc/sys/" + key)]
        read_only = [name for name in names if not os.access("/proc/sys/" + name, os.W_OK)]
        return {"names": sorted(set(names)), "read_only": sorted(set(read_only))}

    return in_fresh_netns(work)  # type: ignore[return-value]


def run_one(applier: str, keys: list[str], host_netns: str) -> dict[str, object]:
    def work() -> dict[str, object]:
        if os.readlink("/proc/self/ns/net") == host_netns:
            raise RuntimeError("still in the machine's network namespace")
        before = read_keys(keys)
        done = subprocess.run(APPLIERS[applier], capture_output=True, env=ENV, timeout=30, stdin=subprocess.DEVNULL)
        after = read_keys(keys)
        return {
            "initial": before,
            "final": after,
            "rc": done.returncode,
            "stderr": done.stderr.decode("latin-1")[-4000:],
        }

    return in_fresh_netns(work)  # type: ignore[return-value]


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    host_netns = spec["host_netns"]
    if os.readlink("/proc/self/ns/net") == host_netns:
        raise RuntimeError("the driver must run in its own network namespace")
    scratch = spec["scratch"]
    set_up(scratch)
    result: dict[str, object] = {"facts": kernel_facts(spec["extra_keys"], host_netns), "runs": []}
    runs: list[object] = result["runs"]  # type: ignore[assignment]
    for index, tree in enumerate(spec["trees"]):
        targets = bind_tree(tree, scratch)
        try:
            for applier in spec["appliers"]:
                outcome = run_one(applier, spec["keys"], host_netns)
                runs.append({"tree": index, "applier": applier, **outcome})
        finally:
            for target in reversed(targets):
                umount(target)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    if not stat.S_ISDIR(os.stat("/proc/sys").st_mode):
        raise SystemExit("no /proc/sys")
    main()
