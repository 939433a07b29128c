"""The /proc/net/tcp{,6} fallback: the same counts from the kernel's text tables, where netlink is unavailable."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

from ..errors import LiveStateError
from ..persist import UnsafeFile, open_regular
from .states import LISTEN, N_STATES
from .tally import Address, SocketCounts, Tally, service_key

FILES = ("tcp", "tcp6")


def proc_address(text: bytes) -> Address:
    """Hex as /proc/net/tcp prints it (each 32-bit word in host order) -> the tally's key form; ValueError for
    anything else."""
    if len(text) == 8:
        return struct.unpack(">I", struct.pack("=I", int(text, 16)))[0]
    if len(text) != 32:
        raise ValueError(f"not an address: {text!r}")
    return struct.pack("=4I", *struct.unpack(">4I", bytes.fromhex(text.decode())))


def parse_proc_net_tcp(lines: Iterable[bytes], tally: Tally, chunk: int = 4096) -> None:
    """Fold /proc/net/tcp or tcp6 lines (header included) into a tally made with ``address=proc_address``.

    Relies on the kernel listing a file's listening sockets before the others, as it does (listening hash first).
    Addresses stay hex text while counting and are converted once per distinct value. ValueError on a line that
    is not in the kernel's format.
    """
    rows: list[tuple[Any, ...]] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 10 or parts[0] == b"sl":
            continue
        state = int(parts[3], 16)
        local_addr, _, local_port = parts[1].partition(b":")
        if state == LISTEN:
            queue = int(parts[4].partition(b":")[2], 16)
            tally.listener(int(local_port, 16), local_addr, queue, None)
            continue
        if not 0 < state < N_STATES:
            continue
        remote_addr, _, remote_port = parts[2].partition(b":")
        rows.append((state, int(local_port, 16), int(remote_port, 16), local_addr, remote_addr, parts[9] != b"0"))
        if len(rows) >= chunk:
            tally.fold(rows)
            rows = []
    tally.fold(rows)


def read_proc(proc_net: str, ephemeral: tuple[int, int]) -> SocketCounts:
    """Count sockets from ``proc_net``/tcp and tcp6 (either may be missing: IPv6 disabled)."""
    tally = Tally(ephemeral, address=proc_address)
    found = []
    for name in FILES:
        path = os.path.join(proc_net, name)
        try:
            with open_regular(path, follow=True) as handle:  # never waits on a FIFO under --proc-net
                found.append(path)
                parse_proc_net_tcp(handle, tally)
        except FileNotFoundError:
            continue
        except UnsafeFile:
            raise LiveStateError(f"cannot read {path}: not a regular file") from None
        except OSError as exc:
            raise LiveStateError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise LiveStateError(f"cannot read {path}: not in the format of /proc/net/tcp") from None
    if not found:
        raise LiveStateError(f"neither {proc_net}/tcp nor {proc_net}/tcp6 exists (is /proc mounted?)")
    try:
        return tally.counts()  # converts the addresses
    except ValueError:
        raise LiveStateError(f"cannot read {' or '.join(found)}: an address not in /proc/net/tcp's format") from None


def proc_inodes(
    proc_net: str, state: int, keys: set[int], ephemeral: tuple[int, int], listen_ports: set[int], limit: int
) -> dict[int, list[int]]:
    """Inodes of sockets in ``state`` whose port key is in ``keys`` (at most ``limit`` per key); lines that do
    not parse are skipped (the counts were read from the same files a moment ago)."""
    found: dict[int, list[int]] = {key: [] for key in keys}
    for name in FILES:
        try:
            handle = open_regular(os.path.join(proc_net, name), follow=True)
        except OSError:
            continue
        with handle:
            for line in handle:
                parts = line.split()
                try:
                    if len(parts) < 10 or parts[0] == b"sl" or int(parts[3], 16) != state:
                        continue
                    sport = int(parts[1].rpartition(b":")[2], 16)
                    dport = int(parts[2].rpartition(b":")[2], 16)
                    inode = int(parts[9])
                except ValueError:
                    continue
                inodes = found.get(service_key(sport, dport, ephemeral, listen_ports))
                if inodes is not None and inode and len(inodes) < limit:
                    inodes.append(inode)
    return found


def proc_listeners(proc_net: str) -> list[tuple[Address, int, int]]:
    """(address, port, accept queue) of every listening socket in ``proc_net``/tcp and tcp6; reads only as far as
    the listeners go (the kernel lists them first). Lines that do not parse are skipped."""
    found: list[tuple[Address, int, int]] = []
    for name in FILES:
        try:
            handle = open_regular(os.path.join(proc_net, name), follow=True)
        except OSError:
            continue
        with handle:
            for line in handle:
                parts = line.split()
                if len(parts) < 10 or parts[0] == b"sl":
                    continue
                if parts[3] != b"0A":
                    break
                try:
                    address, _, port = parts[1].partition(b":")
                    found.append((proc_address(address), int(port, 16), int(parts[4].partition(b":")[2], 16)))
                except ValueError:
                    continue
    return found
