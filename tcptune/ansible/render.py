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
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import catalog, keycheck
from ..errors import FleetError
from ..output import one_line
from ..target import Target

if TYPE_CHECKING:
    from ..validate import Verdict

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates" / "role"
PARTIALS = HERE / "templates" / "partials"
MODULE_SOURCE = HERE / "module" / "tcptune_sysctl.py"
NSHOSTS_SOURCE = HERE / "nshosts.py"
PACKAGE = HERE.parent
SHIPPED_CORE = (
    "records",
    "failures",
    "values",
    "live",
    "persist",
    "plan",
    "state",
    "target",
    "engine",
    "keycheck",
    "owners",
    "catalog",
    "kernel_write",
    "kernelfacts",
    "boot",
    "preflight",
)
"""tcptune's modules that run on hosts (standard library only, relative imports among themselves), copied
byte-identically into one package with ``keyfacts.py`` (the catalog's facts, generated) beside them."""
CORE_IMPORT = "ansible.module_utils.tcptune_core"
"""How the module's source imports the core; rendering points it at the shipped package."""
MODULE_NAME = "tcptune_sysctl"
"""The module's name in a standalone role (``library/``); in the collection it is ``tcptune.tuning.sysctl_profile``."""

GENERIC_ROLE = "tcptune"
MIN_ANSIBLE_VERSION = "2.15"
MIN_HOST_PYTHON = (3, 8)
"""The oldest Python the shipped code runs on (tests/unit/test_role_module.py runs it there when it can);
``meta/main.yml`` lists only platforms whose system Python is at least this."""
DEFAULT_SYSCTL_FILE = Target().own_file
"""The file tcptune persists to on a host: the same as the CLI's on the machine it runs on."""
DEFAULT_STATE_DIR = Target().state_dir
MOLECULE_HOSTS = ("tt4-h1", "tt4-h2", "tt4-h3")
_TEMPLATE_MARKERS = ("{", "}", "%")  # anything Jinja could read as {{ }}, {% %} or {# #}
_MARKER_FILE = ".tcptune-role"
_NOT_ON_NAMESPACE_HOSTS = {
    "net.ipv4.tcp_congestion_control": "a child network namespace accepts only tcp_allowed_congestion_control",
}
"""Per-namespace keys a generated Molecule scenario leaves out anyway, and why."""
PLATFORMS = (
    ("Debian", ("bullseye", "bookworm")),
    ("Ubuntu", ("focal", "jammy", "noble")),
    ("EL", ("9",)),
)
"""Platforms whose system Python runs the shipped code (>= MIN_HOST_PYTHON): Debian 11 has 3.9, Ubuntu 20.04 3.8,
EL 9 3.9. EL 8's platform-python is 3.6, which cannot run it (``from __future__ import annotations``)."""


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
    """Keys of the profile's raw: mapping: accepted by the module, unchecked by the catalog."""
    skip_missing: bool = False
    skip_readonly: bool = False
    owner: str | None = None
    """The role's default owner name on a host (None: the role name); "" makes the role own the whole host's tcptune
    settings, as ``tcptune push`` and ``tcptune apply`` do (see ``tcptune.owners``)."""

    @property
    def prefix(self) -> str:
        """Variable prefix: the role name, as ansible-lint's var-naming rule wants."""
        return self.role_name

    @property
    def default_owner(self) -> str:
        return self.role_name if self.owner is None else self.owner


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


def render_role(spec: RoleSpec, out_dir: str | Path, *, molecule: bool = True, module: str | None = None) -> Path:
    """Write ``out_dir/<role_name>/`` and return it. Replaces a role tcptune wrote before, never anything else."""
    _check_role_name(spec.role_name)
    role_dir = Path(out_dir) / spec.role_name
    if role_dir.exists():
        if not (role_dir / _MARKER_FILE).is_file():
            raise FleetError(f"{role_dir} exists and was not written by tcptune; choose another --out")
        shutil.rmtree(role_dir)
    files = role_files(spec, molecule=molecule, module=module)
    for rel, content in files.items():
        path = role_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (role_dir / _MARKER_FILE).write_text("written by 'tcptune role'; safe to delete and regenerate\n")
    return role_dir


def role_files(spec: RoleSpec, *, molecule: bool = True, module: str | None = None) -> dict[str, str | bytes]:
    """Relative path -> content of every file of the role (pure: nothing written).

    ``module``: the name tasks call the module by. None: a standalone role, which carries the module (``library/``)
    and the core package (``module_utils/tcptune_core_<h>/``); otherwise a role inside a collection that has both.
    """
    _check_role_name(spec.role_name)
    env = _environment()
    context = _context(spec, module or MODULE_NAME)
    files: dict[str, str | bytes] = {}
    for template in sorted(TEMPLATES.rglob("*.j2")):
        rel = template.relative_to(TEMPLATES).as_posix()[: -len(".j2")]
        if rel.startswith("molecule/") and (spec.generic or not molecule or module is not None):
            continue
        files[rel] = env.get_template(template.relative_to(TEMPLATES).as_posix()).render(context)
    files["meta/argument_specs.yml"] = argument_specs_yaml(spec)
    if module is None:
        core = core_files()
        package = core_package(core)
        files[f"library/{MODULE_NAME}.py"] = module_text(MODULE_NAME, f"ansible.module_utils.{package}")
        for name, content in core.items():
            files[f"module_utils/{package}/{name}"] = content
    if molecule and not spec.generic and module is None:
        files["molecule/default/nshosts.py"] = NSHOSTS_SOURCE.read_bytes()
    return files


# ---- the shipped core: one package per tcptune version -------------------------------------------------------------


def catalog_facts_source() -> str:
    """keyfacts.py: the catalog's facts as hosts need them (ranges, choices, shapes, scopes), as Python data."""
    lines = [
        '"""The facts of every key in tcptune\'s catalog, for checking values on hosts. Generated by tcptune from',
        'tcptune/catalog.py (the one source of truth); do not edit."""',
        "",
        "from .keycheck import KeyFacts",
        "",
        "KEYS = {",
    ]
    for key in sorted(catalog.all_keys(), key=lambda k: k.name):
        facts = keycheck.KeyFacts(
            key.name,
            key.shape,
            key.unit,
            key.scope,
            key.units_accepted,
            key.minimum,
            key.maximum,
            key.choices,
            key.choice_meanings,
            key.open_choices,
            key.elements,
            key.removed,
        )
        lines.append(f"    {key.name!r}: {facts!r},")
    lines += [
        "}",
        "",
        "",
        "def known_key(key):",
        '    """Keys state files may name: the catalog\'s (as on the machine that runs the CLI)."""',
        "    return key in KEYS",
        "",
        "",
        "def key_scope(key):",
        "    facts = KEYS.get(key)",
        "    return facts.scope if facts is not None else None",
        "",
    ]
    return "\n".join(lines)


_CORE_INIT = (
    '"""tcptune\'s engine, state and value handling, shipped by tcptune for its Ansible module. The package name\n'
    "carries a hash of these files, so roles made by different tcptune versions never share one copy. Generated;\n"
    'do not edit."""\n'
)


def core_files() -> dict[str, bytes]:
    """File name -> content of the shipped core package: byte-identical copies, the generated facts, __init__."""
    files = {"__init__.py": _CORE_INIT.encode()}
    for name in SHIPPED_CORE:
        files[f"{name}.py"] = (PACKAGE / f"{name}.py").read_bytes()
    files["keyfacts.py"] = catalog_facts_source().encode()
    return files


def core_package(files: Mapping[str, bytes] | None = None) -> str:
    """``tcptune_core_<first 10 hex of sha256 over the shipped files>``."""
    digest = hashlib.sha256()
    for name, content in sorted((files if files is not None else core_files()).items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return f"tcptune_core_{digest.hexdigest()[:10]}"


_GENERATED = re.compile(r"^# <generated>\n.*?^# </generated>\n", re.MULTILINE | re.DOTALL)


def module_text(name: str, core_import: str) -> str:
    """The module as shipped: its source, the core imported from ``core_import``, and DOCUMENTATION and
    ARGUMENT_SPEC generated from MODULE_OPTIONS (and the catalog)."""
    source = MODULE_SOURCE.read_text(encoding="utf-8")
    block = (
        "# Generated by tcptune (tcptune/ansible/render.py) from its option table and key catalog; do not edit.\n"
        f'DOCUMENTATION = r"""\n---\n{_dump(module_documentation(name))}"""\n\n'
        "ARGUMENT_SPEC = {\n"
        + "".join(f"    {_literal(name)}: {_literal(option)},\n" for name, option in argument_spec().items())
        + "}\n"
    )
    text, count = _GENERATED.subn(lambda _m: block, source)
    if count != 1 or CORE_IMPORT not in text:
        raise FleetError(f"{MODULE_SOURCE}: expected one generated block and imports from {CORE_IMPORT}")
    return text.replace(CORE_IMPORT + ".", core_import + ".")


def _literal(value: Any) -> str:
    """A Python literal as ruff format writes it (double quotes), for the generated ARGUMENT_SPEC."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise FleetError(f"cannot write {value!r} as a literal")


# ---- the module's options: one table for DOCUMENTATION, ARGUMENT_SPEC and the roles' argument specs ---------------

MODULE_OPTIONS: dict[str, dict[str, Any]] = {
    "settings": {
        "type": "dict",
        "default": {},
        "description": [
            "Full dotted sysctl names mapped to values (a number, the kernel's text such as C(4096 131072 6291456), "
            "or a list of numbers; units such as C(16MiB) or C(30s) where the key takes them).",
            "Every value is checked against tcptune's key catalog before anything is read or written (the same "
            "ranges and choices as a profile): a bad value fails the host with one line per key, and nothing changes.",
            "Keys outside the catalog are refused unless listed in O(raw).",
        ],
    },
    "raw": {
        "type": "list",
        "elements": "str",
        "default": [],
        "description": [
            "Keys of O(settings) outside tcptune's catalog that a profile allowed (its raw mapping); "
            "they must be under C(net.)."
        ],
    },
    "action": {
        "type": "str",
        "default": "apply",
        "choices": ["apply", "rollback", "reset", "recover"],
        "description": [
            "C(apply) converges the host to O(settings) as one transaction and records a new generation.",
            "C(rollback) converges to generation O(to) (default: the one before the current one).",
            "C(reset) puts every managed key back to its value from before tcptune and ends management.",
            "C(recover) finishes a transaction that was interrupted (killed, power lost).",
        ],
    },
    "to": {
        "type": "int",
        "description": ["For O(action=rollback): the generation to return to (0: nothing managed)."],
    },
    "owner": {
        "type": "str",
        "description": [
            "The name this run's settings are recorded under in the host's one generation, so that several roles "
            "share a host without undoing each other: keys of other owners stay managed and persisted, and a key "
            "two owners want at different values fails the second, naming the first.",
            "Omitted: these settings are everything tcptune manages on the host (as C(tcptune push) and "
            "C(tcptune apply) do): keys managed before and absent now go back to their value from before tcptune.",
        ],
    },
    "persist": {
        "type": "bool",
        "default": True,
        "description": ["Write O(sysctl_file) so that the values survive a reboot."],
    },
    "sysctl_file": {
        "type": "path",
        "default": DEFAULT_SYSCTL_FILE,
        "description": [
            "The one file tcptune writes on the host (atomically, never through a link). Every owner on a host must "
            "use the same file: one host state, one file."
        ],
    },
    "profile_name": {
        "type": "str",
        "default": "ansible",
        "description": ["Name recorded in the generation and in the header of the persisted file."],
    },
    "fingerprint": {
        "type": "str",
        "description": [
            "Hash recorded with the profile name. Roles made from a profile pass the profile's fingerprint (as the "
            "CLI records it); by default a hash of the settings themselves."
        ],
    },
    "keep_unmanaged": {
        "type": "bool",
        "default": False,
        "description": [
            "Keys managed before and absent now keep their live value and leave management, instead "
            "of going back to their value from before tcptune."
        ],
    },
    "skip_missing": {
        "type": "bool",
        "default": False,
        "description": ["Skip keys this kernel lacks instead of failing the host (nothing is written then)."],
    },
    "skip_readonly": {
        "type": "bool",
        "default": False,
        "description": [
            "Skip keys that are read-only here (host-wide keys in a container or network namespace) "
            "instead of failing the host."
        ],
    },
    "state_dir": {
        "type": "path",
        "default": DEFAULT_STATE_DIR,
        "description": [
            "tcptune's state directory on the host (generations, baseline, lock): the same as the CLI's, "
            "so C(tcptune history) there lists what Ansible did."
        ],
    },
    "proc_root": {
        "type": "path",
        "default": "/proc/sys",
        "description": ["Where /proc/sys is (tests use a temporary tree)."],
    },
    "sysctl_root": {
        "type": "path",
        "default": "/",
        "description": ["Root of the tree whose sysctl.d directories predict boot-time values (tests)."],
    },
}


def argument_spec() -> dict[str, dict[str, Any]]:
    """The module's argument_spec: MODULE_OPTIONS without the descriptions."""
    return {name: {k: v for k, v in option.items() if k != "description"} for name, option in MODULE_OPTIONS.items()}


def _catalog_lines() -> list[str]:
    """One line per catalog key for the module's documentation: shape, range or choices, unit, scope."""
    lines = []
    for key in sorted(catalog.all_keys(), key=lambda k: k.name):
        if key.removed:
            continue
        scope = "per network namespace" if key.scope == "netns" else "host-wide"
        lines.append(f"C({key.name}): {keycheck.describe_valid(key)}; {scope}.")
    return lines


def module_documentation(name: str) -> dict[str, Any]:
    options = {option: dict(spec) for option, spec in MODULE_OPTIONS.items()}
    options["settings"]["description"] = options["settings"]["description"] + [
        "The keys tcptune knows, with what each accepts:",
        *_catalog_lines(),
    ]
    return {
        "module": name,
        "short_description": "Converge a host's TCP sysctls with tcptune's engine: one transaction, one generation",
        "description": [
            "Runs tcptune's own engine on the host, as C(tcptune apply) does there: reads every key, writes only "
            "what differs (in an order the kernel accepts), re-reads to verify (a value the kernel clamps undoes "
            "everything), persists the sysctl.d file atomically and records a new generation in the state "
            "directory, so C(tcptune history) on the host lists it and C(tcptune rollback) can undo it.",
            "If any step fails, every change on this host is put back and the module fails naming the key and "
            "the reason. Check mode plans only and reports the per-key drift.",
        ],
        "version_added": "0.1.0",
        "author": ["tcptune contributors (@tcptune)"],
        "requirements": [f"Python {MIN_HOST_PYTHON[0]}.{MIN_HOST_PYTHON[1]} or later on the host"],
        "options": options,
        "attributes": {
            "check_mode": {"support": "full", "description": "Plans and reports; writes nothing."},
            "diff_mode": {"support": "full", "description": "Per-key before/after and the sysctl.d file."},
            "platform": {"support": "full", "platforms": "posix", "description": "Linux hosts."},
        },
        "extends_documentation_fragment": [],
        "notes": [
            "A host holds one tcptune state: several roles share it through O(owner) and must use one O(sysctl_file).",
        ],
    }


def role_options(spec: RoleSpec) -> dict[str, Any]:
    """The role's variables (argument_specs.yml): the module's options, described once in MODULE_OPTIONS.

    ``<role>_settings`` has no per-key suboptions: Ansible would list all of them (80 KB) for one unknown key.
    The module checks every key and value against the catalog and fails with one line per bad key instead.
    """
    p = spec.prefix

    def option(name: str, **extra: Any) -> dict[str, Any]:
        base = {k: v for k, v in MODULE_OPTIONS[name].items() if k in ("type", "description", "elements", "choices")}
        base["description"] = list(base["description"])
        base.update(extra)
        return base

    settings = option("settings")
    options: dict[str, Any] = {}
    if spec.generic:
        options[f"{p}_settings"] = {**settings, "required": True}
    else:
        settings["description"].insert(0, f"The settings of profile {spec.profile_name}.")
        options[f"{p}_settings"] = settings
        options[f"{p}_overrides"] = {
            "type": "dict",
            "default": {},
            "description": [
                "Per host or group: keys to set differently from the profile, merged over the settings "
                "(checked like them)."
            ],
        }
        options[f"{p}_fingerprint"] = option(
            "fingerprint",
            default=spec.fingerprint or "",
            description=["Profile hash recorded with the settings (ignored when overrides are set)."],
        )
    options.update(
        {
            f"{p}_persist": option("persist", default=True),
            f"{p}_sysctl_file": option("sysctl_file", default=DEFAULT_SYSCTL_FILE),
            f"{p}_profile_name": option("profile_name", default=spec.profile_name),
            f"{p}_owner": option(
                "owner",
                default=spec.default_owner,
                description=MODULE_OPTIONS["owner"]["description"]
                + ["Default: the role's name. An empty string makes this role own the whole host."],
            ),
            f"{p}_skip_missing": option("skip_missing", default=spec.skip_missing),
            f"{p}_skip_readonly": option("skip_readonly", default=spec.skip_readonly),
            f"{p}_keep_unmanaged": option("keep_unmanaged", default=False),
            f"{p}_state_dir": option("state_dir", default=DEFAULT_STATE_DIR),
            f"{p}_verify": {
                "type": "bool",
                "default": False,
                "description": [
                    "At the end of the play (after other roles' handlers), re-check the keys in check mode and fail "
                    "the host if anything changed them back. A plain ansible-playbook --check exits 0 on drift; "
                    "-e " + p + "_verify=true makes drift fail the host (the CI gate)."
                ],
            },
        }
    )
    return options


def argument_specs(spec: RoleSpec) -> dict[str, Any]:
    return {
        "argument_specs": {
            "main": {
                "short_description": f"Apply tcptune profile {spec.profile_name}"
                if not spec.generic
                else "Apply TCP sysctl settings given as data",
                "description": [
                    spec.description,
                    "One module run per host on tcptune's own engine: read all keys, write only what differs, roll "
                    "that host back if a write fails, persist the sysctl.d file atomically, record a generation.",
                ],
                "author": ["tcptune"],
                "options": role_options(spec),
            }
        }
    }


def argument_specs_yaml(spec: RoleSpec) -> str:
    """argument_specs.yml: Ansible passes it to a validate_argument_spec task, whose arguments it templates."""
    header = "---\n# Generated by tcptune from its option table; do not edit by hand.\n"
    return header + _dump(as_data(argument_specs(spec)), width=PROSE_WIDTH)


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
PROSE_WIDTH = 120
"""Descriptions only (argument_specs.yml): folded so that ansible-lint's 160-column rule holds; YAML reads a
folded scalar back as the same one-line string."""


def _dump(data: Any, width: int = _WIDTH) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=width,
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


def _context(spec: RoleSpec, module: str = MODULE_NAME) -> dict[str, Any]:
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
        "module": module,
        "standalone": module == MODULE_NAME,
        "owner": spec.default_owner,
        "skip_missing": spec.skip_missing,
        "skip_readonly": spec.skip_readonly,
        "state_dir": DEFAULT_STATE_DIR,
        "platforms": PLATFORMS,
        "min_python": ".".join(map(str, MIN_HOST_PYTHON)),
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
        loader=jinja2.FileSystemLoader([str(TEMPLATES), str(PARTIALS)]),
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


# ---- the collection: Ansible's own distribution format ----------------------------------------------------------

COLLECTION_NAMESPACE, COLLECTION_NAME = "tcptune", "tuning"
COLLECTION_MODULE = "sysctl_profile"
"""The module's name in the collection: ``tcptune.tuning.sysctl_profile``."""
ANSIBLE_TEST_VERSIONS = ("2.15", "2.16", "2.17", "2.18", "2.19", "2.20")


def collection_files(specs: list[RoleSpec]) -> dict[str, str | bytes]:
    """Relative path (under ``ansible_collections/tcptune/tuning``) -> content: the module, its core under the
    collection's namespace, the generic role and a role per spec given (``tcptune role PROFILE --collection``)."""
    from .. import __version__

    fqcn = f"{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.{COLLECTION_MODULE}"
    core_import = f"ansible_collections.{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.plugins.module_utils.core"
    files: dict[str, str | bytes] = {
        "galaxy.yml": "---\n# Generated by tcptune ('tcptune role --collection'); do not edit by hand.\n"
        + yaml_document(
            {
                "namespace": COLLECTION_NAMESPACE,
                "name": COLLECTION_NAME,
                "version": __version__,
                "readme": "README.md",
                "authors": ["tcptune contributors"],
                "description": "Declarative Linux TCP sysctl tuning: tcptune's engine as a module, and roles",
                "license": ["MIT"],
                "tags": ["sysctl", "tcp", "networking", "tuning"],
                "dependencies": {},
                "build_ignore": [".tcptune-role", "roles/*/.tcptune-role", "tests/output"],
            }
        ),
        "meta/runtime.yml": f'---\nrequires_ansible: ">={MIN_ANSIBLE_VERSION}.0"\n',
        "tests/config.yml": "---\n# The shipped code needs Python "
        + ".".join(map(str, MIN_HOST_PYTHON))
        + " or later on hosts (tcptune/ansible/render.py MIN_HOST_PYTHON).\nmodules:\n  python_requires: '>="
        + ".".join(map(str, MIN_HOST_PYTHON))
        + "'\n",
        "README.md": _environment()
        .get_template("collection/README.md.j2")
        .render(
            fqcn=fqcn,
            roles=[GENERIC_ROLE] + [s.role_name for s in specs],
            min_python=".".join(map(str, MIN_HOST_PYTHON)),
            min_ansible_version=MIN_ANSIBLE_VERSION,
            version=__version__,
        ),
        f"plugins/modules/{COLLECTION_MODULE}.py": module_text(COLLECTION_MODULE, core_import),
    }
    for name, core_file in core_files().items():
        files[f"plugins/module_utils/core/{name}"] = core_file
    for version in ANSIBLE_TEST_VERSIONS:  # tcptune is MIT, not GPLv3: the one check that cannot apply
        files[f"tests/sanity/ignore-{version}.txt"] = (
            f"plugins/modules/{COLLECTION_MODULE}.py validate-modules:missing-gplv3-license\n"
        )
    for spec in [generic_spec(), *specs]:
        for rel, content in role_files(spec, molecule=False, module=fqcn).items():
            files[f"roles/{spec.role_name}/{rel}"] = content
    return files


def render_collection(out_dir: str | Path, specs: list[RoleSpec] | None = None) -> Path:
    """Write ``out_dir/ansible_collections/tcptune/tuning/`` (replacing one tcptune wrote, never anything else);
    ``ansible-galaxy collection build`` there makes the tarball."""
    root = Path(out_dir) / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME
    if root.exists():
        if not (root / _MARKER_FILE).is_file():
            raise FleetError(f"{root} exists and was not written by tcptune; choose another --out")
        shutil.rmtree(root)
    for spec in specs or []:
        _check_role_name(spec.role_name)
    for rel, content in collection_files(list(specs or [])).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (root / _MARKER_FILE).write_text("written by 'tcptune role --collection'; safe to delete and regenerate\n")
    return root
