"""Profile -> a complete, self-contained Ansible role directory (jinja2 templates + the role's own module).

The role carries its logic as ``library/tcptune_sysctl.py`` plus verbatim copies of tcptune's ``values``,
``persist`` and ``live`` modules in ``module_utils/``, so hosts compare, write, roll back and persist exactly as the
CLI does, and nothing beyond ansible-core is needed anywhere (no Galaxy collections).

Values reach Ansible as data: every string that could look like a template (a value, a key, the profile's name or
description) is written with YAML's ``!unsafe`` tag, always as one YAML scalar on one line, and nothing from a profile
is ever put where Ansible templates text (task names, conditionals). In comments and the README, profile text is
folded to one line so that it cannot start a YAML line of its own.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import catalog
from ..errors import FleetError
from ..output import one_line
from ..target import Target

if TYPE_CHECKING:
    from ..validate import Verdict

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates" / "role"
MODULE_SOURCE = HERE / "module" / "tcptune_sysctl.py"
NSHOSTS_SOURCE = HERE / "nshosts.py"
PACKAGE = HERE.parent
SHIPPED_MODULE_UTILS = {
    "tcptune_values.py": PACKAGE / "values.py",
    "tcptune_persist.py": PACKAGE / "persist.py",
    "tcptune_live.py": PACKAGE / "live.py",
}
"""Role file name -> tcptune source it must be a byte-identical copy of (one normalisation, one writer)."""

GENERIC_ROLE = "tcptune"
MIN_ANSIBLE_VERSION = "2.15"
DEFAULT_SYSCTL_FILE = Target().own_file
"""The file tcptune persists to on a host: the same as the CLI's on the machine it runs on."""
MOLECULE_HOSTS = ("tt4-h1", "tt4-h2", "tt4-h3")
_TEMPLATE_MARKERS = ("{", "}", "%")  # anything Jinja could read as {{ }}, {% %} or {# #}
_MARKER_FILE = ".tcptune-role"
_NOT_ON_NAMESPACE_HOSTS = {
    "net.ipv4.tcp_congestion_control": "a child network namespace accepts only tcp_allowed_congestion_control",
}
"""Per-namespace keys a generated Molecule scenario leaves out anyway, and why."""


@dataclass
class RoleSpec:
    """Everything a role template needs; built from a validated profile or for the generic role."""

    role_name: str
    profile_name: str
    description: str
    settings: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    generic: bool = False
    raw: tuple[str, ...] = ()
    """Keys of the profile's raw: mapping: accepted by the argument spec, unchecked by the catalog."""

    @property
    def prefix(self) -> str:
        """Variable prefix: the role name, as ansible-lint's var-naming rule wants."""
        return self.role_name


def role_name_for(profile_name: str) -> str:
    """``web-server`` -> ``tcptune_web_server`` (role names: lower case, digits and underscores)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", profile_name.lower()).strip("_")
    return f"tcptune_{slug}" if slug else GENERIC_ROLE


_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_role_name(name: str) -> None:
    """The role name is a directory name and the prefix of every variable in the templates: plain identifiers only."""
    if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
        raise FleetError(f"{name!r} is not a role name (lower case letters, digits and underscores)")


def spec_from_verdict(verdict: Verdict) -> RoleSpec:
    """A validated profile (a Verdict without errors) -> the spec of its role."""
    profile = verdict.profile
    return RoleSpec(
        role_name=role_name_for(profile.name),
        profile_name=profile.name,
        description=profile.description or f"tcptune profile {profile.name}",
        settings=dict(verdict.values),
        fingerprint=profile.fingerprint(),
        raw=tuple(sorted(verdict.raw)),
    )


def generic_spec() -> RoleSpec:
    return RoleSpec(
        role_name=GENERIC_ROLE,
        profile_name="ansible",
        description="Apply TCP sysctl settings given as data (tcptune_settings), in one pass per host",
        generic=True,
    )


def render_role(spec: RoleSpec, out_dir: str | Path, *, molecule: bool = True) -> Path:
    """Write ``out_dir/<role_name>/`` and return it. Replaces a role tcptune wrote before, never anything else."""
    _check_role_name(spec.role_name)
    role_dir = Path(out_dir) / spec.role_name
    if role_dir.exists():
        if not (role_dir / _MARKER_FILE).is_file():
            raise FleetError(f"{role_dir} exists and was not written by tcptune; choose another --out")
        shutil.rmtree(role_dir)
    files = role_files(spec, molecule=molecule)
    for rel, content in files.items():
        path = role_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (role_dir / _MARKER_FILE).write_text("written by 'tcptune role'; safe to delete and regenerate\n")
    return role_dir


def role_files(spec: RoleSpec, *, molecule: bool = True) -> dict[str, str | bytes]:
    """Relative path -> content of every file of the role (pure: nothing written)."""
    _check_role_name(spec.role_name)
    env = _environment()
    context = _context(spec)
    files: dict[str, str | bytes] = {}
    for template in sorted(TEMPLATES.rglob("*.j2")):
        rel = template.relative_to(TEMPLATES).as_posix()[: -len(".j2")]
        if rel.startswith("molecule/") and (spec.generic or not molecule):
            continue
        files[rel] = env.get_template(template.relative_to(TEMPLATES).as_posix()).render(context)
    files["meta/argument_specs.yml"] = argument_specs_yaml(spec)
    files["library/tcptune_sysctl.py"] = MODULE_SOURCE.read_bytes()
    for name, source in SHIPPED_MODULE_UTILS.items():
        files[f"module_utils/{name}"] = source.read_bytes()
    if molecule and not spec.generic:
        files["molecule/default/nshosts.py"] = NSHOSTS_SOURCE.read_bytes()
    return files


# ---- the argument spec: derived from the catalog, the one source of truth ----------------------------------------


def key_option(key: catalog.Key) -> dict[str, Any]:
    """One catalog key as an argument_specs suboption."""
    description = [key.summary]
    if key.shape in ("int", "bool", "enum"):
        option: dict[str, Any] = {"type": "int"}
        if key.choices and all(c.lstrip("-").isdigit() for c in key.choices):
            option["choices"] = [int(c) for c in key.choices]
    else:
        option = {"type": "str"}
        if key.shape in ("triple", "pair"):
            names = " ".join(key.elements) if key.elements else " ".join(["N"] * key.arity)
            description.append(f'{key.arity} numbers as the kernel prints them: "{names}".')
        elif key.shape == "portlist":
            description.append('Ports and ranges, e.g. "8080,9000-9100".')
        elif key.shape == "names":
            description.append('Names separated by spaces, e.g. "reno cubic bbr".')
        elif key.choices:
            description.append("Usually one of: " + ", ".join(key.choices) + ".")
    if key.minimum is not None or key.maximum is not None:
        low = "" if key.minimum is None else str(key.minimum)
        high = "" if key.maximum is None else str(key.maximum)
        description.append(f"Range {low}..{high}" + (f" ({key.unit})." if key.unit != "none" else "."))
    description.append(f"Scope: {'per network namespace' if key.scope == 'netns' else 'host-wide (global)'}.")
    option["description"] = description
    return option


def settings_options(raw: tuple[str, ...] = ()) -> dict[str, Any]:
    options = {key.name: key_option(key) for key in catalog.all_keys() if not key.removed}
    for name in raw:
        options[name] = {"type": "str", "description": ["From the profile's raw: mapping; unchecked by the catalog."]}
    return options


def argument_specs(spec: RoleSpec) -> dict[str, Any]:
    p = spec.prefix
    settings_doc = (
        "Sysctl keys (full dotted names) mapped to values in the kernel's text form; only keys tcptune's "
        "catalog knows are accepted."
    )
    options: dict[str, Any] = {
        f"{p}_settings": {"type": "dict", "description": [settings_doc], "options": settings_options(spec.raw)},
    }
    if spec.generic:
        options[f"{p}_settings"]["required"] = True
    else:
        options[f"{p}_settings"]["description"].insert(0, f"The settings of profile {spec.profile_name}.")
        options[f"{p}_overrides"] = {
            "type": "dict",
            "default": {},
            "options": settings_options(spec.raw),
            "description": ["Per host or group: keys to set differently from the profile, merged over the settings."],
        }
        options[f"{p}_fingerprint"] = {
            "type": "str",
            "default": spec.fingerprint or "",
            "description": ["Profile hash written into the persisted file's header (ignored when overrides are set)."],
        }
    options.update(
        {
            f"{p}_persist": {
                "type": "bool",
                "default": True,
                "description": ["Write the sysctl.d file so the values survive a reboot."],
            },
            f"{p}_sysctl_file": {
                "type": "path",
                "default": DEFAULT_SYSCTL_FILE,
                "description": ["The file tcptune owns; written atomically."],
            },
            f"{p}_profile_name": {
                "type": "str",
                "default": spec.profile_name,
                "description": ["Name recorded in the persisted file's header."],
            },
            f"{p}_verify": {
                "type": "bool",
                "default": False,
                "description": [
                    "At the end of the play (after other roles' handlers), re-read the keys "
                    "in check mode and fail if anything changed them back."
                ],
            },
        }
    )
    return {
        "argument_specs": {
            "main": {
                "short_description": f"Apply tcptune profile {spec.profile_name}"
                if not spec.generic
                else "Apply TCP sysctl settings given as data",
                "description": [
                    spec.description,
                    "One module run per host: read all keys, write only what differs, roll back that host if a "
                    "write fails, persist the sysctl.d file atomically.",
                ],
                "author": ["tcptune"],
                "options": options,
            }
        }
    }


def argument_specs_yaml(spec: RoleSpec) -> str:
    """argument_specs.yml: Ansible passes it to a validate_argument_spec task, whose arguments it templates."""
    header = "---\n# Generated by tcptune from its key catalog; do not edit by hand.\n"
    return header + yaml_document(argument_specs(spec))


# ---- templates and YAML ------------------------------------------------------------------------------------------


class _Unsafe(str):
    """A string written as ``!unsafe '...'``: Ansible treats it as data, never as a template."""


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as yamllint (and so ansible-lint) wants."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def _represent_unsafe(dumper: yaml.SafeDumper, data: _Unsafe) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", str(data), style='"' if _needs_escapes(data) else "'")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if _needs_escapes(data):  # one line, escaped: never a scalar spread over lines of the template around it
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_str(data)


def _needs_escapes(text: str) -> bool:
    return any(not ch.isprintable() for ch in text)


_Dumper.add_representer(_Unsafe, _represent_unsafe)
_Dumper.add_representer(str, _represent_str)


def unsafe(value: str) -> str:
    """``value`` always written as ``!unsafe``: for text from a profile in a place Ansible templates (a play name)."""
    return _Unsafe(value)


def _unsafe_text(value: str) -> str:
    return _Unsafe(value) if any(m in value for m in _TEMPLATE_MARKERS) else value


def as_data(value: Any) -> Any:
    """Every string (mapping keys too) that Jinja could read as a template marked ``!unsafe``, recursively."""
    if isinstance(value, _Unsafe):
        return value
    if isinstance(value, str):
        return _unsafe_text(value)
    if isinstance(value, Mapping):
        return {as_data(k): as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    return value


def yaml_document(data: Any) -> str:
    """YAML for Ansible to read: ``as_data`` applied to everything, block style."""
    return _dump(as_data(data))


def markdown_text(text: object) -> str:
    """``one_line`` with Markdown's table and code-span delimiters escaped (README cells and prose)."""
    return one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


_WIDTH = 1 << 30
"""No folding: every scalar stays on one line."""


def _dump(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=_WIDTH,
        allow_unicode=True,
        explicit_start=False,
    )


def yaml_scalar(value: Any) -> str:
    """One value as inline YAML on one line: quoted as needed, ``!unsafe`` when it could be read as a template."""
    text = yaml.dump(as_data(value), Dumper=_Dumper, default_flow_style=True, width=_WIDTH, allow_unicode=True)
    text = text.removesuffix("\n...\n").strip()
    if "\n" in text:  # cannot happen with the representers above; never emit a scalar that spans template lines
        raise FleetError(f"cannot write {value!r} as one line of YAML")
    return text


def _typed_settings(settings: Mapping[str, str]) -> dict[str, Any]:
    """Kernel text -> ints where the catalog says the key is one number (so argument_specs' types hold)."""
    typed: dict[str, Any] = {}
    for name, text in sorted(settings.items()):
        key = catalog.get(name)
        if key is not None and key.shape in ("int", "bool", "enum") and re.fullmatch(r"-?\d+", str(text).strip()):
            typed[name] = int(str(text).strip())
        else:
            typed[name] = _unsafe_text(str(text))
    return typed


def _summary(name: str) -> str:
    key = catalog.get(name)
    return " ".join(key.summary.split()) if key else ""


def _context(spec: RoleSpec) -> dict[str, Any]:
    typed = _typed_settings(spec.settings)
    netns = {
        k: v
        for k, v in typed.items()
        if (key := catalog.get(k)) is not None and key.scope == "netns" and k not in _NOT_ON_NAMESPACE_HOSTS
    }
    drift_key, drift_value = _drift_case(netns)
    return {
        "spec": spec,
        "p": spec.prefix,
        "role": spec.role_name,
        "settings": typed,
        "netns_settings": netns,
        "left_out": sorted(set(typed) - set(netns)),
        "min_ansible_version": MIN_ANSIBLE_VERSION,
        "sysctl_file": DEFAULT_SYSCTL_FILE,
        "molecule_hosts": MOLECULE_HOSTS,
        "drift_key": drift_key,
        "drift_value": drift_value,
        "fingerprint": spec.fingerprint or hashlib.sha256(b"").hexdigest()[:12],
    }


def _drift_case(netns: Mapping[str, Any]) -> tuple[str | None, Any]:
    """A key (and a different valid value) the Molecule scenario changes behind the role's back."""
    for name, value in netns.items():
        key = catalog.get(name)
        if key is None or not isinstance(value, int):
            continue
        for candidate in (value + 1, value - 1):
            if key.choices and str(candidate) not in key.choices:
                continue
            if (key.minimum is None or candidate >= key.minimum) and (key.maximum is None or candidate <= key.maximum):
                return name, candidate
    return None, None


def _environment() -> Any:
    import jinja2

    # [[ ]] and [% %] for our templates, so that Ansible's own {{ }} in tasks pass through untouched.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_scalar
    env.filters["yaml_block"] = lambda data, indent=0: _indent(yaml_document(data) if data else "{}\n", indent)
    env.filters["comment"] = one_line
    env.filters["md"] = markdown_text
    env.filters["summary"] = _summary
    return env


def _indent(text: str, indent: int) -> str:
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True)).rstrip("\n")
