"""What the command families share: exit codes, output formats, and the option types with their help.

Annotations are evaluated when a command is defined (no postponed annotations: typer would compile and eval each
one on every run), so every option type a command uses is a module-level name, defined once here.
Defaults are given where each command declares its parameters, from the core's constants
(``target.REAL_PROC_SYS``, ``target.DEFAULT_STATE_DIR``, ``sockets.DEFAULT_PROC_NET``).
"""

from enum import Enum
from typing import Annotated

import typer

from .complete import complete_profile

EXIT_OK, EXIT_ERROR, EXIT_DRIFT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 64, 70
"""0 success, 1 error, 2 drift found (diff), 64 bad command line, 70 internal error (a bug). 3 (a transaction failed
and not everything could be restored) is failures.RestoreIncomplete's own exit code."""


class Format(str, Enum):
    text = "text"
    json = "json"


class ShowFormat(str, Enum):
    text = "text"
    json = "json"
    sysctl = "sysctl"


class DiffFormat(str, Enum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


class BootApplier(str, Enum):
    auto = "auto"
    systemd = "systemd"
    procps = "procps"


class StatusFormat(str, Enum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
ProfileArg = Annotated[
    str,
    typer.Argument(
        autocompletion=complete_profile,
        help="Profile file, or the name of a built-in profile (see 'tcptune profiles').",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")]

# ---- the machine: /proc/sys, state, sysctl.d ---------------------------------------------------------------------

ProcRootOpt = Annotated[
    str,
    typer.Option(
        "--proc-root",
        envvar="TCPTUNE_PROC_ROOT",
        show_default=True,
        help="A /proc/sys-shaped tree to read and write instead of the running kernel's (tests, a mounted container "
        "filesystem). apply/rollback need root only for the real /proc/sys.",
    ),
]
StateDirOpt = Annotated[
    str,
    typer.Option(
        "--state-dir",
        envvar="TCPTUNE_STATE_DIR",
        show_default=True,
        help="Where the generations, the pending transaction and the lock live (created 0700).",
    ),
]
SysctlDirOpt = Annotated[
    str | None,
    typer.Option(
        "--sysctl-dir",
        envvar="TCPTUNE_SYSCTL_DIR",
        help="Directory of the persisted file 90-tcptune.conf [default: <sysctl root>/etc/sysctl.d].",
    ),
]
SysctlRootOpt = Annotated[
    str,
    typer.Option(
        "--sysctl-root",
        envvar="TCPTUNE_SYSCTL_ROOT",
        show_default=True,
        help="Root of the tree whose sysctl.d directories (and sysctl.conf) predict boot-time values: a container "
        "image or a mounted system, say.",
    ),
]

BootApplierOpt = Annotated[
    BootApplier,
    typer.Option(
        "--boot-applier",
        envvar="TCPTUNE_BOOT_APPLIER",
        help="Which program applies sysctl.d at boot, for the after-reboot prediction: auto (detected from PID 1, "
        "the installed units and the image under the sysctl root), systemd (systemd-sysctl) or procps "
        "('sysctl --system').",
    ),
]

# ---- fleets --------------------------------------------------------------------------------------------------------

InventoryOpt = Annotated[
    str | None,
    typer.Option(
        "--inventory", "-i", help="Ansible inventory (file or directory): run across the fleet through ansible-runner."
    ),
]
LimitOpt = Annotated[str | None, typer.Option("--limit", "-l", help="Ansible host pattern to restrict the run to.")]
ForksOpt = Annotated[
    int | None,
    typer.Option("--forks", min=1, help="Hosts in parallel (default: 10 per CPU of this machine, at most 100)."),
]

# ---- socket evidence -----------------------------------------------------------------------------------------------

ProcNetOpt = Annotated[
    str,
    typer.Option(
        "--proc-net",
        envvar="TCPTUNE_PROC_NET",
        show_default=True,
        help="Directory holding tcp, tcp6, sockstat, netstat and snmp (/proc/net follows the current network "
        "namespace). Kernel counters come from here, and sockets too when netlink is unavailable.",
    ),
]
SourceOpt = Annotated[str, typer.Option("--source", hidden=True, help="Socket source: auto, netlink or proc.")]
TopOpt = Annotated[
    int,
    typer.Option(
        "--top", min=1, help="Rows per breakdown (ports, remote addresses, endpoints); bounds Prometheus series."
    ),
]
