"""Every change tcptune makes to a machine, told to the system log: who, what, from which generation to which, and
which profile, so that "who changed somaxconn last Tuesday?" has an answer in the journal (``journalctl -t tcptune``)
or in syslog.

One datagram per event, in the form syslog(3) sends to the local socket ("<PRI>Mmm dd hh:mm:ss tcptune[pid]: text"),
which journald and rsyslog both read from /dev/log. Logging never decides anything: a log that cannot be written (no
/dev/log in a container, a full queue) is skipped silently and the transaction goes on. ``TCPTUNE_LOG_SOCKET``
points it at another socket; empty turns it off. Standard library only.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Recovery, Result, Transition

DEFAULT_ADDRESS = "/dev/log"
ADDRESS_ENV = "TCPTUNE_LOG_SOCKET"
IDENT = "tcptune"
FACILITY_USER = 1
NOTICE, WARNING, ERR = 5, 4, 3
MAX_MESSAGE_BYTES = 2048
"""Far below what journald and rsyslog take in one datagram (and below the 64 KiB socket limit)."""
SEND_TIMEOUT = 0.5
"""Seconds to wait for a busy log daemon before dropping the message."""


def address(environ: Mapping[str, str] | None = None) -> str | None:
    """Where log messages go: $TCPTUNE_LOG_SOCKET if set (empty: nowhere), else /dev/log."""
    environ = os.environ if environ is None else environ
    value = environ.get(ADDRESS_ENV)
    if value is None:
        return DEFAULT_ADDRESS
    return value or None


def who(environ: Mapping[str, str] | None = None) -> str:
    """The person behind the change, as far as the process can tell: its uid, the user sudo ran it for, and the
    audit login uid (the account someone logged in with, kept across su and sudo)."""
    environ = os.environ if environ is None else environ
    parts = [f"uid {os.getuid()}"]
    if os.geteuid() != os.getuid():
        parts.append(f"euid {os.geteuid()}")
    sudo_user = environ.get("SUDO_USER")
    if sudo_user:
        sudo = f"sudo by {_clean(sudo_user)[:64]}"
        sudo_uid = environ.get("SUDO_UID", "")
        if sudo_uid.isdigit():
            sudo += f" (uid {sudo_uid})"
        parts.append(sudo)
    login = _login_uid()
    if login is not None and login != os.getuid():
        parts.append(f"login uid {login}")
    return ", ".join(parts)


def _login_uid() -> int | None:
    try:
        with open("/proc/self/loginuid", "rb") as handle:
            text = handle.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) == 0xFFFFFFFF:  # (uid_t)-1: no login session (a service, early boot)
        return None
    return int(text)


def _clean(text: str) -> str:
    """One line of printable text: control characters (newlines, escapes) become spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def tell(compose: Callable[[], str], severity: int = NOTICE, to: str | None = None) -> bool:
    """Compose a message and log it. The transaction it reports is over (committed or undone): nothing that goes
    wrong here, not even a bug in composing the words, may change its outcome or exit code, so every exception is
    swallowed (the message is lost, and only the message)."""
    try:
        return log(compose(), severity, to)
    except Exception:
        return False


def log(message: str, severity: int = NOTICE, to: str | None = None) -> bool:
    """Send one message; True if a log daemon took it. ``to``: a socket path (default: ``address()``)."""
    target = address() if to is None else to
    if not target:
        return False
    import socket  # only once there is something to send (not on the path of a dry run)

    stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
    text = _clean(message).encode("utf-8", "replace")[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")
    data = f"<{FACILITY_USER * 8 + severity}>{stamp} {IDENT}[{os.getpid()}]: {text}".encode()
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            with socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.connect(target)
                if kind == socket.SOCK_DGRAM:
                    sock.send(data)
                else:
                    sock.sendall(data + b"\0")  # a stream log socket (syslog-ng's): messages end with a NUL, as glibc
            return True
        except OSError as exc:
            if kind == socket.SOCK_DGRAM and exc.errno == errno.EPROTOTYPE:
                continue
            return False
    return False


# ---- the messages: one per transaction that changed (or tried to change) the machine --------------------------------


def _folded(text: str) -> str:
    return " ".join(text.split())


def _what(t: Transition) -> str:
    head = t.kind if t.kind != "rollback" else f"rollback to generation {t.recipe.to or 0}"
    text = f"{head}: generation {t.from_} -> {t.to}"
    profile = t.generation.profile
    if profile is not None:
        text += f", profile {profile.name} (fingerprint {profile.fingerprint})"
    elif t.kind != "apply":
        text += ", nothing managed"
    return text


def committed(result: Result, environ: Mapping[str, str] | None = None) -> str:
    """A committed transaction: what it converged to, each write (old -> new), the file, and who."""
    t = result.transition
    writes = [f"{c.key} {_folded(c.old)} -> {_folded(c.new)}" for c in t.writes if c.key in result.written]
    text = f"{_what(t)}; {len(writes)} key(s) written" + (f": {', '.join(writes)}" if writes else "")
    if result.file_action and t.file is not None:
        text += f"; {result.file_action} {t.file.path}"
    return f"{text}; by {who(environ)}"


def failed(t: Transition, error: Exception, environ: Mapping[str, str] | None = None) -> str:
    """A transaction that changed the machine and failed: put back (Undone) or not entirely (RestoreIncomplete)."""
    return f"{_what(t)} FAILED: {error}; by {who(environ)}"


def recovered(recovery: Recovery, environ: Mapping[str, str] | None = None) -> str:
    pending = recovery.pending
    assert pending is not None
    what = f"recover: the interrupted {pending.kind} (generation {pending.from_} -> {pending.to})"
    if recovery.action == "completed":
        return f"{what} had completed; its record was removed; by {who(environ)}"
    text = f"{what} was undone, back at generation {pending.from_}: {len(recovery.restored)} key(s) restored"
    if recovery.restored:
        text += f" ({', '.join(recovery.restored)})"
    if recovery.file_action and pending.file is not None:
        text += f"; {recovery.file_action} {pending.file.path}"
    return f"{text}; by {who(environ)}"
