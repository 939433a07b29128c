"""Where tcptune reads, writes and keeps state: the real machine by default, temporary trees in tests.

The one place an injectable root is checked (``Target.proc``), and the one home of the default paths, so that the
CLI, the engine and the evidence readers agree on them. Standard library only: shipped to hosts with the engine.
"""

from __future__ import annotations

import os

from .failures import BadTarget
from .live import ProcSys
from .persist import DEFAULT_FILE_NAME
from .records import Record

REAL_PROC_SYS = "/proc/sys"
REAL_PROC_NET = "/proc/net"
"""The kernel's counters of the calling thread's network namespace (``sockets.DEFAULT_PROC_NET``)."""
DEFAULT_STATE_DIR = "/var/lib/tcptune"
DEFAULT_SYSCTL_DIR = "/etc/sysctl.d"


class Target(Record):
    """A machine to act on: its /proc/sys, tcptune's state directory and the sysctl.d tree."""

    proc_root: str = REAL_PROC_SYS
    state_dir: str = DEFAULT_STATE_DIR
    sysctl_dir: str = DEFAULT_SYSCTL_DIR
    sysctl_root: str = "/"
    """Root of the tree whose sysctl.d directories are read to predict boot-time values."""
    file_name: str = DEFAULT_FILE_NAME
    """tcptune's own file in ``sysctl_dir`` (the Ansible module's ``sysctl_file`` may name another)."""

    @classmethod
    def at(
        cls,
        proc_root: str = REAL_PROC_SYS,
        state_dir: str = DEFAULT_STATE_DIR,
        sysctl_dir: str | None = None,
        sysctl_root: str = "/",
    ) -> Target:
        """The target the command-line paths name: tcptune's file goes to ``<sysctl_root>/etc/sysctl.d`` unless
        ``sysctl_dir`` says otherwise, so that a tree given as a root is self-contained."""
        sysctl_dir = sysctl_dir or os.path.join(sysctl_root, DEFAULT_SYSCTL_DIR.lstrip("/"))
        return cls(proc_root, state_dir, sysctl_dir, sysctl_root)

    @property
    def proc(self) -> ProcSys:
        """The tree to read and write; BadTarget for an empty or missing --proc-root."""
        if not self.proc_root:
            raise BadTarget("--proc-root must not be empty (the default is /proc/sys)")
        if not os.path.isdir(self.proc_root):
            what = "not a directory" if os.path.exists(self.proc_root) else "no such directory"
            raise BadTarget(f"--proc-root {self.proc_root}: {what}")
        return ProcSys(self.proc_root)

    @property
    def own_file(self) -> str:
        return os.path.join(self.sysctl_dir, self.file_name)

    @property
    def is_real_kernel(self) -> bool:
        return os.path.realpath(self.proc_root) == REAL_PROC_SYS
