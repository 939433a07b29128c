"""Host side of the real-applier harness: start ``boot_ns_driver.py`` in throwaway namespaces and collect its results.

Each driver process runs under ``unshare --net --mount`` (its own network and mount namespace, torn down with it),
dies with the test process (PR_SET_PDEATHSIG), and is killed by pid on timeout. Trees are split over ``workers``
drivers running side by side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("boot_ns_driver.py")


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _start(spec: dict[str, Any], scratch: Path) -> subprocess.Popen[bytes]:
    spec_file = scratch / "spec.json"
    spec_file.write_text(json.dumps({**spec, "scratch": str(scratch)}))
    return subprocess.Popen(
        ["unshare", "--net", "--mount", "--", sys.executable, str(DRIVER), str(spec_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def run(
    trees: list[Path],
    keys: list[str],
    extra_keys: list[str],
    appliers: tuple[str, ...] = ("systemd", "procps"),
    workers: int = 2,
    timeout: float = 150,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(kernel facts of a fresh namespace, one record per tree and applier: initial and final values, exit code)."""
    host_netns = os.readlink("/proc/self/ns/net")
    chunks = [list(range(i, len(trees), workers)) for i in range(workers)] if trees else [[]]
    chunks = [chunk for chunk in chunks if chunk] or [[]]
    started: list[tuple[subprocess.Popen[bytes], list[int], tempfile.TemporaryDirectory[str]]] = []
    try:
        for chunk in chunks:
            scratch = tempfile.TemporaryDirectory(prefix="tt4-drv-")
            spec = {
                "host_netns": host_netns,
                "trees": [str(trees[i]) for i in chunk],
                "keys": keys,
                "extra_keys": extra_keys,
                "appliers": list(appliers),
            }
            started.append((_start(spec, Path(scratch.name)), chunk, scratch))
        facts: dict[str, Any] = {}
        runs: list[dict[str, Any]] = []
        for process, chunk, _ in started:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"namespace driver failed ({process.returncode}): {err.decode(errors='replace')}")
            result = json.loads(out)
            facts = result["facts"]
            for record in result["runs"]:
                record["tree"] = chunk[record["tree"]]
                runs.append(record)
        return facts, runs
    finally:
        for process, _, scratch in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate(timeout=30)
            scratch.cleanup()
