"""Make known numbers of TCP sockets in each state on loopback, then hold them until stdin closes.

Run *inside* a throwaway network namespace (``ip netns exec NS python3 socket_states.py ...``). Prints one JSON line
(pid, ports) when everything is in place. Standard library only.

Servers listen on 127.0.0.1; IPv4 clients connect from ``--client`` (127.0.0.2), so that local and remote addresses
differ. Scenarios, each on its own server port (so per-port counts are exact):

- ``--established E`` on port ``base``: E accepted pairs, both ends kept open -> E ESTABLISHED in, E out.
- ``--time-wait N`` on ``base+1``: the client closes first, the server closes on EOF -> N TIME_WAIT (client side).
- ``--close-wait M`` on ``base+2``: the client closes, the server never does -> M CLOSE_WAIT in (held by this
  process), M orphaned FIN_WAIT2 out.
- ``--fin-wait2 K`` on ``base+3``: the server closes, the client never does -> K orphaned FIN_WAIT2 in,
  K CLOSE_WAIT out.
- ``--half-closed H`` on ``base+4``: the client shutdown(SHUT_WR)s but keeps the socket -> H FIN_WAIT2 out that a
  process still holds (not orphans), H CLOSE_WAIT in.
- ``--ipv6 S`` on ``[::1]:base+5``: S ESTABLISHED pairs over IPv6.
- ``--queued Q`` on ``base+6`` (listen backlog ``QUEUED_BACKLOG``): Q connections never accepted -> the listener's
  accept queue holds Q, and Q ESTABLISHED in (no process holds them yet: no inode), Q ESTABLISHED out.
- ``--mapped P`` on ``[::]:base+7`` (dual-stack): P IPv4 clients, accepted and held -> P ESTABLISHED in over IPv6
  with IPv4-mapped addresses (``::ffff:127.0.0.1``), P ESTABLISHED out over IPv4.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import sys
import time

PROCESS_NAME = b"tt5-sockets"
QUEUED_BACKLOG = 8


def _name_process() -> None:
    """Give the process a recognisable comm, so owner lookups can be asserted by name."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(PROCESS_NAME), 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


def _listener(port: int, address: str = "127.0.0.1", backlog: int = 4096) -> socket.socket:
    server = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if address == "::":
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind((address, port))
    server.listen(backlog)
    return server


def _connect(server: socket.socket, client_address: str) -> socket.socket:
    host, port = server.getsockname()[:2]
    if host == "::":
        host = "127.0.0.1"
    source = (client_address, 0) if ":" not in host else None
    return socket.create_connection((host, port), source_address=source)


def _pair(server: socket.socket, client_address: str) -> tuple[socket.socket, socket.socket]:
    client = _connect(server, client_address)
    accepted, _ = server.accept()
    return client, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=7000)
    parser.add_argument("--client", default="127.0.0.2", help="IPv4 address the clients connect from")
    for name in ("established", "time-wait", "close-wait", "fin-wait2", "half-closed", "ipv6", "queued", "mapped"):
        parser.add_argument(f"--{name}", type=int, default=0)
    args = parser.parse_args(argv)
    _name_process()
    held: list[socket.socket] = []
    ports = {
        "established": args.base,
        "time_wait": args.base + 1,
        "close_wait": args.base + 2,
        "fin_wait2": args.base + 3,
        "half_closed": args.base + 4,
    }
    servers = {name: _listener(port) for name, port in ports.items()}
    if args.ipv6:
        ports["ipv6"] = args.base + 5
        servers["ipv6"] = _listener(ports["ipv6"], "::1")
    if args.queued:
        ports["queued"] = args.base + 6
        servers["queued"] = _listener(ports["queued"], backlog=QUEUED_BACKLOG)
    if args.mapped:
        ports["mapped"] = args.base + 7
        servers["mapped"] = _listener(ports["mapped"], "::")
    held.extend(servers.values())

    def pair(name: str) -> tuple[socket.socket, socket.socket]:
        return _pair(servers[name], args.client)

    for _ in range(args.established):
        held.extend(pair("established"))
    for _ in range(args.time_wait):
        client, accepted = pair("time_wait")
        client.close()
        accepted.settimeout(5)
        assert accepted.recv(1) == b""
        accepted.close()
    for _ in range(args.close_wait):
        client, accepted = pair("close_wait")
        client.close()
        held.append(accepted)
    for _ in range(args.fin_wait2):
        client, accepted = pair("fin_wait2")
        accepted.close()
        held.append(client)
    for _ in range(args.half_closed):
        client, accepted = pair("half_closed")
        client.shutdown(socket.SHUT_WR)
        held.extend((client, accepted))
    for _ in range(args.ipv6):
        held.extend(pair("ipv6"))
    for _ in range(args.queued):
        held.append(_connect(servers["queued"], args.client))
    for _ in range(args.mapped):
        held.extend(pair("mapped"))
    time.sleep(0.05)  # let the last FIN/ACKs land (loopback delivers within the syscalls; this is a margin)

    print(json.dumps({"pid": os.getpid(), "name": PROCESS_NAME.decode(), "ports": ports}), flush=True)
    sys.stdin.read()  # hold every socket until the test closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
