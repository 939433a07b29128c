"""One catalog entry in words, for ``tcptune explain``."""

from __future__ import annotations

from typing import Any

from .catalog import Key
from .validate import describe_valid


def key_as_dict(key: Key) -> dict[str, Any]:
    return {
        "name": key.name,
        "summary": key.summary,
        "shape": key.shape,
        "unit": key.unit,
        "valid": describe_valid(key),
        "default": key.default,
        "scope": key.scope,
        "added": key.added,
        "removed": key.removed,
        "removed_reason": key.removed_reason,
        "choices": dict(zip(key.choices, key.choice_meanings)) if key.choice_meanings else list(key.choices),
        "advice": list(key.advice),
    }


def describe_key(key: Key) -> str:
    scope = (
        "per network namespace: each container or netns has its own value"
        if key.scope == "netns"
        else "global: one value for the whole machine; read-only or absent inside a container's netns"
    )
    lines = [
        key.name,
        f"  {key.summary}",
        "",
        f"  value:    {key.shape}" + (f" ({'/'.join(key.elements)})" if key.elements else ""),
        f"  unit:     {key.unit}",
        f"  valid:    {describe_valid(key)}",
    ]
    if key.choice_meanings:
        for choice, meaning in zip(key.choices, key.choice_meanings):
            lines.append(f"            {choice} = {meaning}")
    lines.append(f"  default:  {key.default if key.default is not None else 'depends on the machine'}")
    lines.append(f"  scope:    {scope}")
    history = []
    if key.added:
        history.append(f"added in Linux {key.added}")
    if key.removed:
        history.append(f"removed in Linux {key.removed}" + (f": {key.removed_reason}" if key.removed_reason else ""))
    if history:
        lines.append(f"  history:  {'; '.join(history)}")
    if key.units_accepted:
        lines.append(
            f"  units:    profiles may write {key.unit} with units (e.g. "
            + {"bytes": "16MiB", "seconds": "30s", "milliseconds": "200ms"}.get(key.unit, "")
            + ")"
        )
    if key.advice:
        lines += ["", "  advice:"] + [f"  - {line}" for line in key.advice]
    return "\n".join(lines)
