"""State files written by hand, in the documented on-disk format (DESIGN-9), never through tcptune's own writer:
tests of reading and acting on state pin the format a user (or an older tcptune) may have left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIN = "net.ipv4.tcp_fin_timeout"
SOMAXCONN = "net.core.somaxconn"


def generation_doc(
    number: int = 1,
    *,
    kind: str = "apply",
    from_: int | None = None,
    values: dict[str, str] | None = None,
    baseline: dict[str, dict[str, str | None]] | None = None,
    file: dict[str, str | None] | None = None,
    profile: dict[str, str | None] | None = None,
    target: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    values = {FIN: "15"} if values is None else values
    doc: dict[str, Any] = {
        "format": 1,
        "generation": number,
        "kind": kind,
        "from": number - 1 if from_ is None else from_,
        "created": "2024-05-01T12:00:00Z",
        "profile": {"name": "tt9-web", "fingerprint": "f1", "source": None} if profile is None else profile,
        "values": values,
        "skipped": [],
        "raw": [],
        "baseline": baseline if baseline is not None else {k: {"live": "60", "boot": None} for k in values},
        "file": file,
        "counters": None,
        "by": {"uid": 0, "pid": 1234, "host": "h"},
    }
    if kind == "rollback":
        doc["target"] = 0 if target is None else target
    doc.update(extra)
    return doc


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_generation(state_dir: Path, doc: Any, number: int | None = None) -> Path:
    directory = private_dir(private_dir(state_dir) / "generations")
    path = directory / f"{doc['generation'] if number is None else number}.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def write_pending(
    state_dir: Path,
    *,
    from_: int = 0,
    writes: list[dict[str, str]] | None = None,
    file: dict[str, str | None] | None = None,
    generation: dict[str, Any] | None = None,
    kind: str = "apply",
) -> Path:
    """A pending record as a transaction killed after writing it leaves it."""
    doc = {
        "format": 1,
        "from": from_,
        "to": from_ + 1,
        "kind": kind,
        "started": "2024-05-01T12:00:00Z",
        "pid": 2**22 + 11,
        "writes": writes or [],
        "file": file,
        "generation": generation or generation_doc(from_ + 1, kind=kind),
    }
    path = private_dir(state_dir) / "pending.json"
    path.write_text(json.dumps(doc))
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())
