"""What preflight needs to know about the running kernel, read once: version, namespace, congestion control, modules,
and the live value of every key involved.

The only I/O behind ``preflight``: it reads through ``live.ProcSys`` (root injectable, so unit tests pass a
temporary ``/proc/sys``-shaped tree) and, for congestion-control modules, ``<modules_root>/<release>/modules.dep``.
Anything it cannot read stays None ("not known"), never a guess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from .live import LiveValue, ProcSys
from .persist import read_bounded
from .records import Record

HOST_ONLY_PROBE = "net.ipv4.tcp_mem"
"""Registered only in the initial network namespace: its absence means a child namespace (a container)."""
MODULES_ROOT = "/lib/modules"
_MAX_MODULES_DEP = 8 * 1024 * 1024
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


class Facts(Record):
    """The running kernel as preflight sees it; None where it could not be read."""

    release: str | None = None
    """``uname -r``, e.g. ``6.18.44-fc-v669``."""
    child_netns: bool | None = None
    """True inside a child network namespace, where host-wide keys are absent or read-only."""
    available_cc: frozenset[str] | None = None
    """net.ipv4.tcp_available_congestion_control: algorithms loaded or built in."""
    allowed_cc: frozenset[str] | None = None
    """net.ipv4.tcp_allowed_congestion_control: what a child namespace may choose."""
    can_load_modules: bool | None = None
    """False without module support (no kernel.modprobe) or with kernel.modules_disabled = 1."""
    modules: frozenset[str] | None = None
    """Module names found in modules.dep / modules.builtin for this release; None if not readable (or not needed:
    only a tcp_congestion_control write asks)."""
    live: Mapping[str, LiveValue] = {}
    """Every key the check needs, as /proc/sys shows it now."""

    @property
    def version(self) -> tuple[int, ...] | None:
        return parse_version(self.release) if self.release else None


def parse_version(text: str) -> tuple[int, ...] | None:
    """``6.18.44-fc`` -> (6, 18, 44); ``6.8`` -> (6, 8); None if it does not start with a version."""
    found = _VERSION.match(text.strip())
    if not found:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


def read_facts(
    proc: ProcSys, keys: Iterable[str], *, modules_root: str = MODULES_ROOT, real_kernel: bool | None = None
) -> Facts:
    """Read the facts for ``keys`` (see ``preflight.keys_to_read``) from ``proc``.

    ``real_kernel``: whether ``proc`` is this machine's own /proc/sys (default: judged from its path); only then may
    the release fall back to ``uname -r`` and modules be looked up under ``modules_root``.
    """
    if real_kernel is None:
        real_kernel = os.path.realpath(proc.root) == "/proc/sys"
    wanted = set(keys) | {HOST_ONLY_PROBE, "kernel.osrelease", "kernel.modprobe", "kernel.modules_disabled"}
    wanted |= {"net.ipv4.tcp_available_congestion_control", "net.ipv4.tcp_allowed_congestion_control"}
    live = proc.read_many(sorted(wanted))
    release = _text(live["kernel.osrelease"]) or (os.uname().release if real_kernel else None)
    congestion = "net.ipv4.tcp_congestion_control" in wanted  # modules.dep (a megabyte) is read only for it
    return Facts(
        release=release,
        child_netns=_child_netns(proc, live[HOST_ONLY_PROBE]),
        available_cc=_names(live["net.ipv4.tcp_available_congestion_control"]),
        allowed_cc=_names(live["net.ipv4.tcp_allowed_congestion_control"]),
        can_load_modules=_can_load_modules(live["kernel.modprobe"], live["kernel.modules_disabled"]),
        modules=_modules(modules_root, release) if real_kernel and release and congestion else None,
        live=live,
    )


def _text(value: LiveValue) -> str | None:
    return value.text.strip() if value.status == "ok" and value.text is not None else None


def _names(value: LiveValue) -> frozenset[str] | None:
    text = _text(value)
    return frozenset(text.split()) if text is not None else None


def _child_netns(proc: ProcSys, probe: LiveValue) -> bool | None:
    if probe.status == "ok":
        return False
    if probe.status == "missing" and os.path.isdir(os.path.join(proc.root, "net", "ipv4")):
        return True
    return None


def _can_load_modules(modprobe: LiveValue, disabled: LiveValue) -> bool | None:
    if modprobe.status == "missing":
        return False  # CONFIG_MODULES=n: kernel.modprobe exists only with module support
    if _text(disabled) == "1":
        return False
    return True if modprobe.status == "ok" else None


def _modules(root: str, release: str) -> frozenset[str] | None:
    """Module names (``tcp_htcp``) listed in modules.dep and modules.builtin; None if neither can be read."""
    names: set[str] = set()
    found = False
    for listing in ("modules.dep", "modules.builtin"):
        path = os.path.join(root, release, listing)
        try:  # never blocks on a FIFO in an image tree; a non-regular or oversized file raises UnsafeFile
            data = read_bounded(path, follow=True, limit=_MAX_MODULES_DEP)
        except OSError:
            continue
        if data is None:
            continue
        found = True
        for line in data.decode("utf-8", "replace").splitlines():
            module = line.split(":", 1)[0].rsplit("/", 1)[-1]
            names.add(module.split(".ko", 1)[0].replace("-", "_"))
    return frozenset(names) if found else None
