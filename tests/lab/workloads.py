"""The outcome lab's workloads: small programs run *inside* the lab's network namespaces. Standard library only.

Each prints one JSON line when it is ready or done; long-running ones hold until their stdin closes (or answer a
line on stdin). Every loop is bounded in count and time.

    python3 workloads.py sink 10.77.0.2 8080                         # accept, close on EOF (server for churn)
    python3 workloads.py churn 10.77.0.2 8080 --rate 150 --seconds 4  # connect, close first, paced; counts failures
    python3 workloads.py closer 127.0.0.1 8081                        # accept and close at once (FIN_WAIT2 here)
    python3 workloads.py hold 10.77.0.1 8081 --count 200              # connect and never close (a peer that hangs)
    python3 workloads.py leaky 127.0.0.1 8083                         # accept, never close (CLOSE_WAIT leak)
    python3 workloads.py connect-close 127.0.0.1 8083 --count 150     # connect and close at once
    python3 workloads.py acceptor 127.0.0.1 8084 --backlog 4096 --per-second 100   # a slow acceptor
    python3 workloads.py burst 127.0.0.1 8084 --count 600 --bursts 3 --gap 1.0      # bounded SYN bursts
    python3 workloads.py bulk-recv 5001 / bulk-send 10.99.0.2 5001 --seconds 4      # throughput
    python3 workloads.py delayline PID_A PID_B --delay 0.05           # a TUN delay line between two namespaces
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

LIMIT_SECONDS = 120.0
"""No workload runs longer than this, whatever it is asked."""


def _name(name: bytes) -> None:
    """A recognisable process name (comm), for owner lookups."""
    with contextlib.suppress(OSError):
        ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME


def _say(data: dict) -> None:
    print(json.dumps(data), flush=True)


def _listen(host: str, port: int, backlog: int = 4096) -> socket.socket:
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(backlog)
    return server


def _until_stdin_closes(stop: threading.Event) -> None:
    def wait() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait, daemon=True).start()


# ---- servers --------------------------------------------------------------------------------------------------------


def sink(args: argparse.Namespace) -> None:
    """Accept everything; close each connection when the client has closed (so the client keeps TIME_WAIT)."""
    server = _listen(args.host, args.port)
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    stop = threading.Event()
    _until_stdin_closes(stop)
    _say({"ready": True, "pid": os.getpid()})
    deadline = time.monotonic() + LIMIT_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        for key, _mask in selector.select(0.2):
            if key.fileobj is server:
                for _ in range(256):
                    try:
                        conn, _addr = server.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
            else:
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(conn)
                    conn.close()


def closer(args: argparse.Namespace) -> None:
    """Accept and close at once: with peers that never close, this side's sockets wait in FIN_WAIT2 as orphans."""
    _name(b"tt11-closer")
    server = _listen(args.host, args.port)
    server.settimeout(0.2)
    stop = threading.Event()
    _until_stdin_closes(stop)
    _say({"ready": True, "pid": os.getpid()})
    deadline = time.monotonic() + LIMIT_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            conn, _addr = server.accept()
        except TimeoutError:
            continue
        conn.close()


def leaky(args: argparse.Namespace) -> None:
    """Accept and never close: every connection its peers close stays here in CLOSE_WAIT. A line on stdin asks
    what the held sockets see now: how many report ECONNABORTED (destroyed under us) and how many are still fine."""
    _name(b"tt11-leaky")
    server = _listen(args.host, args.port)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    lines: collections.deque[str] = collections.deque()
    done = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.append(line)
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    _say({"ready": True, "pid": os.getpid(), "name": "tt11-leaky"})
    deadline = time.monotonic() + LIMIT_SECONDS
    while not done.is_set() and time.monotonic() < deadline:
        try:
            conn, _addr = server.accept()
            held.append(conn)
            continue
        except TimeoutError:
            pass
        while lines:
            lines.popleft()
            seen: dict[str, int] = {}
            for conn in held:
                code = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                name = errno.errorcode.get(code, str(code)) if code else "none"
                seen[name] = seen.get(name, 0) + 1
            _say({"held": len(held), "so_error": seen})


def acceptor(args: argparse.Namespace) -> None:
    """A slow application: listen(backlog), accept() at most ``per_second`` connections a second."""
    _name(b"tt11-acceptor")
    server = _listen(args.host, args.port, args.backlog)
    server.settimeout(0.05)
    stop = threading.Event()
    _until_stdin_closes(stop)
    _say({"ready": True, "pid": os.getpid(), "backlog": args.backlog})
    interval = 1.0 / args.per_second
    deadline = time.monotonic() + LIMIT_SECONDS
    accepted = 0
    while not stop.is_set() and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            conn, _addr = server.accept()
            conn.close()
            accepted += 1
        except TimeoutError:
            continue
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


# ---- clients --------------------------------------------------------------------------------------------------------


def churn(args: argparse.Namespace) -> None:
    """``rate`` connections a second for ``seconds``: connect, close first (the closing side keeps TIME_WAIT).
    Counts what connect() said: ok, EADDRNOTAVAIL (no local port left), anything else."""
    seconds = min(args.seconds, LIMIT_SECONDS)
    counts = {"ok": 0, "eaddrnotavail": 0, "other": 0}
    interval = 1.0 / args.rate
    start = time.perf_counter()
    end = start + seconds
    due = start
    attempts = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if due > now:
            time.sleep(due - now)
        due += interval
        attempts += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.connect((args.host, args.port))
            counts["ok"] += 1
        except OSError as exc:
            counts["eaddrnotavail" if exc.errno == errno.EADDRNOTAVAIL else "other"] += 1
        finally:
            sock.close()
    elapsed = time.perf_counter() - start
    _say({"attempts": attempts, **counts, "seconds": round(elapsed, 3), "rate": round(attempts / elapsed, 1)})


def hold(args: argparse.Namespace) -> None:
    """Open ``count`` connections and never close or read them: a peer that hangs."""
    _name(b"tt11-peer")
    held = [socket.create_connection((args.host, args.port), timeout=10) for _ in range(args.count)]
    _say({"ready": True, "pid": os.getpid(), "held": len(held)})
    sys.stdin.read()


def connect_close(args: argparse.Namespace) -> None:
    """``count`` connections, each closed at once after it is established (at most ``rate`` a second)."""
    interval = 1.0 / args.rate if args.rate else 0.0
    ok = 0
    for _ in range(args.count):
        started = time.perf_counter()
        sock = socket.create_connection((args.host, args.port), timeout=10)
        sock.close()
        ok += 1
        if interval:
            time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    _say({"connected": ok})


def burst(args: argparse.Namespace) -> None:
    """``bursts`` bursts of ``count`` non-blocking connects, ``gap`` seconds apart; each burst's sockets are closed
    once connected or after ``wait`` seconds. A SYN burst bounded in count and time."""
    totals = {"attempted": 0, "connected": 0, "pending": 0}
    for index in range(args.bursts):
        started = time.monotonic()
        socks = []
        for _ in range(args.count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((args.host, args.port))
            socks.append(sock)
        totals["attempted"] += len(socks)
        selector = selectors.DefaultSelector()
        for sock in socks:
            selector.register(sock, selectors.EVENT_WRITE)
        waiting = len(socks)
        deadline = time.monotonic() + args.wait
        while waiting and time.monotonic() < deadline:
            for key, _mask in selector.select(max(0.0, deadline - time.monotonic())):
                selector.unregister(key.fileobj)
                waiting -= 1
                if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:  # type: ignore[union-attr]
                    totals["connected"] += 1
        totals["pending"] += waiting
        for sock in socks:
            sock.close()
        if index + 1 < args.bursts:
            time.sleep(max(0.0, args.gap - (time.monotonic() - started)))
    _say(totals)


def bulk_recv(args: argparse.Namespace) -> None:
    server = _listen("0.0.0.0", args.port)
    _say({"ready": True})
    server.settimeout(30)
    conn, _addr = server.accept()
    total = 0
    started = time.monotonic()
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        total += len(data)
    _say({"bytes": total, "seconds": round(time.monotonic() - started, 3)})


def bulk_send(args: argparse.Namespace) -> None:
    """Send as fast as the connection takes it for ``seconds``; the rate counts from the first byte sent."""
    conn = socket.create_connection((args.host, args.port), timeout=30)
    chunk = b"\0" * (1 << 20)
    total = 0
    started = time.monotonic()
    end = started + min(args.seconds, LIMIT_SECONDS)
    while time.monotonic() < end:
        total += conn.send(chunk)
    elapsed = time.monotonic() - started
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    rtt_us = struct.unpack_from("=I", info, 68)[0]  # tcpi_rtt
    conn.close()
    _say(
        {
            "bytes": total,
            "seconds": round(elapsed, 3),
            "mb_per_s": round(total / elapsed / 1e6, 1),
            "rtt_ms": rtt_us / 1000,
        }
    )


# ---- a delay line without netem -------------------------------------------------------------------------------------

TUNSETIFF, IFF_TUN, IFF_NO_PI, CLONE_NEWNET = 0x400454CA, 0x0001, 0x1000, 0x40000000


def _open_tun(netns_pid: int, name: str) -> int:
    """Attach to the TUN device ``name`` inside the network namespace of ``netns_pid`` (the fd stays bound to it
    whichever namespace this process moves to next)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ns = os.open(f"/proc/{netns_pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(ns, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def delayline(args: argparse.Namespace) -> None:
    """Forward packets between two TUN devices (one per namespace), each held ``delay`` seconds: a long path.
    No loss, no rate limit; at most ``max_bytes`` in flight (beyond that packets are dropped, as a router would)."""
    a = _open_tun(args.pid_a, args.device)
    b = _open_tun(args.pid_b, args.device)
    queue: collections.deque[tuple[float, int, bytes]] = collections.deque()
    selector = selectors.DefaultSelector()
    selector.register(a, selectors.EVENT_READ, b)
    selector.register(b, selectors.EVENT_READ, a)
    stop = threading.Event()
    _until_stdin_closes(stop)
    _say({"ready": True, "pid": os.getpid()})
    queued = forwarded = dropped = 0
    deadline = time.monotonic() + LIMIT_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _due, fd, packet = queue.popleft()
            queued -= len(packet)
            try:
                os.write(fd, packet)
                forwarded += 1
            except OSError:
                dropped += 1
        timeout = max(0.0, queue[0][0] - now) if queue else 0.2
        for key, _mask in selector.select(min(timeout, 0.2)):
            for _ in range(64):
                try:
                    packet = os.read(key.fd, 65536)
                except BlockingIOError:
                    break
                if queued + len(packet) > args.max_bytes:
                    dropped += 1
                    continue
                queue.append((time.monotonic() + args.delay, key.data, packet))
                queued += len(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("sink", "closer", "leaky"):
        command = commands.add_parser(name)
        command.add_argument("host")
        command.add_argument("port", type=int)
    command = commands.add_parser("acceptor")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--backlog", type=int, required=True)
    command.add_argument("--per-second", type=float, default=100.0)
    command = commands.add_parser("churn")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--rate", type=float, required=True)
    command.add_argument("--seconds", type=float, required=True)
    command = commands.add_parser("hold")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--count", type=int, required=True)
    command = commands.add_parser("connect-close")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--count", type=int, required=True)
    command.add_argument("--rate", type=float, default=0.0)
    command = commands.add_parser("burst")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--count", type=int, required=True)
    command.add_argument("--bursts", type=int, default=1)
    command.add_argument("--gap", type=float, default=1.0)
    command.add_argument("--wait", type=float, default=0.8)
    command = commands.add_parser("bulk-recv")
    command.add_argument("port", type=int)
    command = commands.add_parser("bulk-send")
    command.add_argument("host")
    command.add_argument("port", type=int)
    command.add_argument("--seconds", type=float, required=True)
    command = commands.add_parser("delayline")
    command.add_argument("pid_a", type=int)
    command.add_argument("pid_b", type=int)
    command.add_argument("--delay", type=float, required=True)
    command.add_argument("--device", default="tt11tun")
    command.add_argument("--max-bytes", type=int, default=256 << 20)
    args = parser.parse_args(argv)
    {
        "sink": sink,
        "closer": closer,
        "leaky": leaky,
        "acceptor": acceptor,
        "churn": churn,
        "hold": hold,
        "connect-close": connect_close,
        "burst": burst,
        "bulk-recv": bulk_recv,
        "bulk-send": bulk_send,
        "delayline": delayline,
    }[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
