"""The JSON Schema is generated from the catalog and agrees with the validator on the built-in library."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tcptune import catalog
from tcptune.profile import FIELDS
from tcptune.schema import profile_schema

PROFILES = sorted((Path(__file__).resolve().parents[2] / "profiles").glob("*.yaml"))


def test_schema_fields_match_loader_fields() -> None:
    assert set(profile_schema()["properties"]) == set(FIELDS)


def test_every_current_catalog_key_is_in_schema() -> None:
    keys = profile_schema()["properties"]["settings"]["properties"]
    assert all(k.name in keys for k in catalog.all_keys() if not k.removed)


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(json.dumps(profile_schema())))


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_builtin_profiles_satisfy_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), profile_schema())


def test_schema_rejects_unknown_key() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"settings": {"net.ipv4.tcp_nope": 1}}, profile_schema())
