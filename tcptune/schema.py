"""JSON Schema for profile files, generated from the catalog so editors complete and check keys."""

from __future__ import annotations

from typing import Any

from . import catalog

UNIT_PATTERNS = {
    "bytes": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]|[bB])?\s*$",
    "seconds": r"^\s*\d+(\.\d+)?\s*(ms|s|sec|m|min|h)?\s*$",
    "milliseconds": r"^\s*\d+(\.\d+)?\s*(ms|s|sec|m|min)?\s*$",
}


def _number(key: catalog.Key) -> dict[str, Any]:
    integer: dict[str, Any] = {"type": "integer"}
    if key.minimum is not None:
        integer["minimum"] = key.minimum
    if key.maximum is not None:
        integer["maximum"] = key.maximum
    options: list[dict[str, Any]] = [integer, {"type": "string", "pattern": r"^\s*\d+\s*$"}]
    if key.units_accepted and key.unit in UNIT_PATTERNS:
        options[1] = {"type": "string", "pattern": UNIT_PATTERNS[key.unit]}
    return {"anyOf": options}


def key_schema(key: catalog.Key) -> dict[str, Any]:
    """Schema for one key's value, with its summary as the editor's hover text."""
    description = key.summary
    if key.default is not None:
        description += f" Kernel default: {key.default}."
    schema: dict[str, Any]
    if key.shape in ("enum", "bool"):
        choices = key.choices or ("0", "1")
        schema = {"enum": [int(c) for c in choices] + list(choices)}
        if key.shape == "bool":
            schema["enum"] += [True, False]
    elif key.shape in ("triple", "pair"):
        element = _number(key)
        schema = {
            "anyOf": [
                {"type": "array", "items": element, "minItems": key.arity, "maxItems": key.arity},
                {"type": "string", "pattern": r"^\s*" + r"\s+".join([r"\S+"] * key.arity) + r"\s*$"},
            ]
        }
    elif key.shape == "string":
        schema = {"type": "string", "pattern": r"^[A-Za-z0-9_.+-]+$"}
        if key.choices:
            schema = (
                {"enum": list(key.choices)}
                if not key.open_choices
                else {"anyOf": [{"enum": list(key.choices)}, schema]}
            )
    elif key.shape == "names":
        name = {"type": "string", "pattern": r"^[A-Za-z0-9_.+-]+$"}
        schema = {
            "anyOf": [
                {"type": "array", "items": name, "minItems": 1},
                {"type": "string", "pattern": r"^\s*[A-Za-z0-9_.+-]+(\s+[A-Za-z0-9_.+-]+)*\s*$"},
            ]
        }
    elif key.shape == "portlist":
        schema = {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(-\d+)?(,\d+(-\d+)?)*)?$"},
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "array", "items": {"type": ["integer", "string"]}},
            ]
        }
    else:
        schema = _number(key)
    schema["description"] = description
    return schema


def profile_schema() -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key in catalog.all_keys():
        if key.removed:
            continue
        settings[key.name] = key_schema(key)
    for key in catalog.all_keys():
        if not key.removed and catalog.canonical_name(key.short_name) == key.name:
            alias = dict(settings[key.name])
            alias["description"] = f"Short for {key.name}. " + alias["description"]
            settings.setdefault(key.short_name, alias)
    ref = {
        "anyOf": [
            {"type": "string", "pattern": r"^\S+$"},
            {"type": "array", "items": {"type": "string", "pattern": r"^\S+$"}},
        ]
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tcptune.invalid/profile.schema.json",
        "title": "tcptune profile",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                "description": "Profile name; defaults to the file name without .yaml.",
            },
            "description": {"type": "string", "description": "What the profile is for."},
            "extends": {**ref, "description": "Parent profile name(s) or path(s); later entries and the child win."},
            "settings": {
                "type": "object",
                "additionalProperties": False,
                "properties": settings,
                "description": "sysctl keys (full dotted names) and their values.",
            },
            "raw": {
                "type": "object",
                "propertyNames": {"pattern": r"^net[./][A-Za-z0-9_./-]+$"},
                "additionalProperties": {
                    "anyOf": [
                        {"type": "integer"},
                        {"type": "string", "pattern": r"^[^\x00-\x08\x0a-\x1f\x7f]*$"},
                        {"type": "array", "items": {"type": ["integer", "string"]}},
                    ]
                },
                "description": "net.* keys tcptune's catalog does not know, with values as the kernel shows "
                "them; checked against the running kernel by diff and apply, never by the catalog.",
            },
        },
        "required": [],
    }
