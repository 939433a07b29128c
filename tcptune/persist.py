"""sysctl.d files: render tcptune's own file and write it atomically.

Standard library only and free of tcptune imports: shipped verbatim into generated Ansible roles
(as ``module_utils/tcptune_persist.py``) so hosts persist exactly what the CLI persists.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

DEFAULT_FILE_NAME = "90-tcptune.conf"


def render_sysctl_conf(profile_name: str, fingerprint: str, values: Mapping[str, str]) -> str:
    """The persisted file: a header naming the profile and its hash, then ``key = value`` lines, sorted."""
    lines = [
        "# Managed by tcptune; changes here are overwritten by the next 'tcptune apply'.",
        f"# profile: {profile_name}",
        f"# fingerprint: {fingerprint}",
    ]
    lines += [f"{key} = {values[key]}" for key in sorted(values)]
    return "\n".join(lines) + "\n"


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix.

    Temp file in the same directory, fsync, chmod, rename over the target, fsync the directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tcptune-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
