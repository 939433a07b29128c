"""tuned's profiles, read for comparison: the ``[sysctl]`` section of a profile with its ``include=`` chain resolved.

Debian's ``tuned`` package ships them under /usr/lib/tuned/<profile>/tuned.conf; the bench downloads the package
(``apt-get download tuned``) and unpacks it into a cache directory instead of installing it. Only ``[sysctl]`` is
read (conditional sections such as ``[sysctl.thunderx]``, for other machines, are not); values keep tuned's
``>``/``<`` modifiers ("at least" / "at most" the current value), resolved when they are applied.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

PROFILES = ("network-latency", "network-throughput")


def read_profile(root: Path, name: str, _seen: tuple[str, ...] = ()) -> dict[str, str]:
    """{key: value} of ``name``'s [sysctl] section, parents first (``include=``), the profile's own last."""
    if name in _seen:
        raise ValueError(f"tuned profile include cycle: {' -> '.join((*_seen, name))}")
    path = root / name / "tuned.conf"
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive sysctl names
    parser.read_string(path.read_text())
    values: dict[str, str] = {}
    for parent in parser.get("main", "include", fallback="").split(","):
        if parent.strip():
            values.update(read_profile(root, parent.strip(), (*_seen, name)))
    if parser.has_section("sysctl"):
        for key, value in parser.items("sysctl"):
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def resolve(values: dict[str, str], current: Callable[[str], str | None]) -> dict[str, str]:
    """Values to write: ``>N`` means at least N (kept if the current value is larger), ``<N`` at most N."""
    resolved: dict[str, str] = {}
    for key, value in values.items():
        if value[:1] in "<>" and value[1:].strip().isdigit():
            wanted = int(value[1:].strip())
            now = current(key)
            if now is not None and now.strip().isdigit():
                keep = int(now) >= wanted if value[0] == ">" else int(now) <= wanted
                resolved[key] = now.strip() if keep else str(wanted)
            else:
                resolved[key] = str(wanted)
        else:
            resolved[key] = value
    return resolved


def find_profiles(cache: Path) -> Path:
    """A directory holding tuned's profiles: the installed ones, else Debian's package unpacked into ``cache``
    (downloaded once with ``apt-get download tuned``; needs apt's package lists)."""
    installed = Path("/usr/lib/tuned")
    if all((installed / name / "tuned.conf").is_file() for name in PROFILES):
        return installed
    unpacked = cache / "usr" / "lib" / "tuned"
    if all((unpacked / name / "tuned.conf").is_file() for name in PROFILES):
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tt11-tuned-") as work:
        os.chmod(work, 0o755)  # apt's sandbox user must be able to write the download
        subprocess.run(["apt-get", "download", "-q", "tuned"], cwd=work, check=True, capture_output=True, timeout=300)
        (package,) = Path(work).glob("tuned_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(package), str(cache)], check=True, timeout=120)
        shutil.copy(package, cache / package.name)
    return unpacked
