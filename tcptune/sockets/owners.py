"""Which processes hold given sockets (like ``ss -p``): socket inode -> /proc/<pid>/fd links."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..persist import open_regular
from .netlink import netlink_inodes
from .proc_tcp import proc_inodes
from .tally import SocketCounts
from .wire import SourceUnavailable


@dataclass(frozen=True)
class Owner:
    """A process holding some of the sockets in question."""

    pid: int
    name: str
    sockets: int


def find_owners(inodes: Iterable[int], proc: str) -> dict[int, tuple[int, str]]:
    """Socket inode -> (pid, command name) for the inodes asked about, by reading /proc/<pid>/fd links.

    Costs one readlink per open fd of every process, so it is only used for a handful of sockets; stops as
    soon as all are found. Processes we may not inspect (not root) are skipped: their sockets stay unknown.
    """
    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    owners: dict[int, tuple[int, str]] = {}
    if not wanted:
        return owners
    try:
        entries = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return owners
    for pid_text in entries:
        fd_dir = os.path.join(proc, pid_text, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        hits = []
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                hits.append(inode)
        if hits:
            try:
                with open_regular(os.path.join(proc, pid_text, "comm"), follow=True) as handle:
                    name = handle.read(256).decode("utf-8", errors="replace").strip()  # TASK_COMM_LEN is 16
            except OSError:
                name = "?"
            for inode in hits:
                owners[inode] = (int(pid_text), name)
            if len(owners) == len(wanted):
                break
    return owners


def lookup_owners(
    counts: SocketCounts,
    state: int,
    minimum: int,
    top: int,
    *,
    ephemeral: tuple[int, int],
    source: str,
    proc_net: str,
    proc: str,
    per_port: int = 256,
) -> dict[int, list[Owner]]:
    """Processes holding ``state`` sockets on the ``top`` port keys of ``counts`` having at least ``minimum`` of
    them, most sockets first; ``source`` ("netlink" or "proc") is where the counts came from.

    Bounded on purpose: one extra dump of that state only, at most ``per_port`` inodes per port, then one pass
    over /proc/*/fd that stops when every inode is found.
    """
    rows = sorted(((row[state], key) for key, row in counts.ports.items() if row[state] >= minimum), reverse=True)
    keys = {key for _count, key in rows[:top]}
    if not keys:
        return {}
    listen_ports = {listener.port for listener in counts.listeners}
    inodes = None
    if source == "netlink":
        try:
            inodes = netlink_inodes(state, keys, ephemeral, listen_ports, per_port)
        except (SourceUnavailable, OSError):
            inodes = None
    if inodes is None:
        inodes = proc_inodes(proc_net, state, keys, ephemeral, listen_ports, per_port)
    found = find_owners((inode for group in inodes.values() for inode in group), proc)
    result: dict[int, list[Owner]] = {}
    for key, group in inodes.items():
        tally: dict[tuple[int, str], int] = {}
        for inode in group:
            owner = found.get(inode)
            if owner is not None:
                tally[owner] = tally.get(owner, 0) + 1
        result[key] = [Owner(pid, name, n) for (pid, name), n in sorted(tally.items(), key=lambda i: -i[1])]
    return result
