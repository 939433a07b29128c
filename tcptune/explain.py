"""One catalog entry in words, for ``tcptune explain``."""

from __future__ import annotations

from typing import Any

from .catalog import Key, ValueHistory
from .keycheck import describe_valid


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
        "obsolete": key.obsolete,
        "obsolete_reason": key.obsolete_reason,
        "netns_since": key.netns_since,
        "module": key.module,
        "value_history": [
            {
                "values": f"{v.low}-{v.high}" if v.low != v.high else str(v.low),
                "what": v.what,
                "older_through": v.older_through,
                "since": v.since,
                "older_effect": v.older_effect or "refused",
            }
            for v in key.value_history
        ],
        "choices": dict(zip(key.choices, key.choice_meanings)) if key.choice_meanings else list(key.choices),
        "advice": list(key.advice),
    }


def describe_value_history(value: ValueHistory) -> str:
    """One ValueHistory in words: which values, which kernels, what older ones do."""
    values = f"{value.low}-{value.high}" if value.low != value.high else str(value.low)
    label = f"{values} ({value.what})" if value.what else values
    older = value.older_effect or "refused"
    if value.since:
        return f"{label} since Linux {value.since}; Linux {value.older_through} and older: {older}"
    return f"{label}: Linux {value.older_through} and older: {older}; not in a released kernel known to tcptune"


def describe_key(key: Key) -> str:
    scope = (
        "per network namespace: each container or netns has its own value"
        if key.scope == "netns"
        else "global: one value for the whole machine; read-only or absent inside a container's netns"
    )
    if key.netns_since:
        scope += f" (since Linux {key.netns_since}; global before)"
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
    if key.obsolete:
        history.append(
            f"does nothing since Linux {key.obsolete}" + (f": {key.obsolete_reason}" if key.obsolete_reason else "")
        )
    for value in key.value_history:
        history.append(describe_value_history(value))
    if history:
        lines.append(f"  history:  {'; '.join(history)}")
    if key.module:
        lines.append(f"  module:   exists only while the {key.module} kernel module is loaded")
    if key.units_accepted:
        lines.append(
            f"  units:    profiles may write {key.unit} with units (e.g. "
            + {"bytes": "16MiB", "seconds": "30s", "milliseconds": "200ms"}.get(key.unit, "")
            + ")"
        )
    if key.advice:
        lines += ["", "  advice:"] + [f"  - {line}" for line in key.advice]
    return "\n".join(lines)
