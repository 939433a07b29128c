"""Load profile YAML: safe, duplicate-rejecting, with line/column marks, and resolve ``extends``.

PyYAML silently keeps the last of two equal keys and happily expands aliases and tags; a profile that ends up in
``/etc/sysctl.d`` on a fleet deserves stricter reading, so this module composes the node tree itself and rejects
duplicates, anchors/aliases and explicit tags with the exact position.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from . import catalog
from .errors import Diagnostic, Location, ProfileError

FIELDS = ("name", "description", "extends", "settings")
MAX_PROFILE_BYTES = 1024 * 1024
KEY_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_-]*([./][A-Za-z0-9_][A-Za-z0-9_-]*)*\Z")
PROFILE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
"""A profile name becomes a file header, a role name and an Ansible play name: plain characters only."""


class Setting(NamedTuple):
    """One key's value as written, and where: the unit of "where did this come from"."""

    key: str
    """Full dotted name when the catalog knows it, else the name as written."""
    value: Any
    location: Location
    origin: str
    """Name of the profile (in an ``extends`` chain) that set it."""
    written_as: str = ""


class Profile:
    """A fully resolved profile: inheritance applied, values still as the user wrote them.

    ``chain`` lists every profile that contributed, parents first, ending with this one. ``problems`` holds what
    loading found without having to stop; validation reports them with its own.
    """

    def __init__(
        self,
        name: str,
        description: str,
        path: Path | None,
        extends: tuple[str, ...],
        settings: dict[str, Setting],
        chain: tuple[str, ...] = (),
        problems: list[Diagnostic] | None = None,
    ) -> None:
        self.name, self.description, self.path, self.extends = name, description, path, extends
        self.settings, self.chain = settings, chain
        self.problems: list[Diagnostic] = problems if problems is not None else []

    def fingerprint(self) -> str:
        """Short stable hash of the resolved key/value content (what gets applied)."""
        digest = _sha256()
        for key in sorted(self.settings):
            digest.update(f"{key}={self.settings[key].value!r}\n".encode())
        return digest.hexdigest()[:12]


class _Reject(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.mark, self.hint = message, mark, hint


def _sha256() -> Any:
    """sha256 without loading OpenSSL's bindings (4 ms) when the built-in implementation is there."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256()


def _close_matches(word: str, options: list[str] | tuple[str, ...]) -> list[str]:
    import difflib  # only on the error path

    return difflib.get_close_matches(word, list(options), n=1)


class _StrictComposer:
    """Composer mixin that refuses aliases, anchors and explicit tags (no code, no billion laughs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Reject(
                "YAML aliases (*name) are not allowed in profiles", event.start_mark, "write the value out in full"
            )
        if getattr(event, "anchor", None):
            raise _Reject(
                "YAML anchors (&name) are not allowed in profiles",
                event.start_mark,
                "use 'extends' to share settings between profiles",
            )
        if getattr(event, "tag", None) is not None:
            raise _Reject(
                f"YAML tags ({event.tag}) are not allowed in profiles",
                event.start_mark,  # type: ignore[attr-defined]
                "write plain values",
            )
        return super().compose_node(parent, index)  # type: ignore[misc]


class _CoreSchema(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema for plain scalars, instead of PyYAML's YAML 1.1.

    Under 1.1 ``030`` is octal 24, ``1:00`` is 60, ``yes`` is true and ``2024-01-01`` a date: all surprising in a
    file of kernel numbers. Here decimal integers keep leading zeros' meaning (``030`` is 30), ``0x``/``0o`` are
    explicit, and anything else that is not a number, true/false or null stays text for validation to judge.
    """


_CoreSchema.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",
        "-+.0123456789",
    ),
    ("null", r"~|null|Null|NULL|", "~nN"),
):
    _CoreSchema.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}",
        re.compile(rf"\A(?:{_pattern})\Z"),
        [*_first, ""] if _tag == "null" else list(_first),
    )


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = str(node.value)
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith(("0x", "0o")):
        return sign * int(body[2:], 16 if body[1] == "x" else 8)
    return sign * int(body, 10)


class _StrictLoader(_StrictComposer, yaml.SafeLoader):
    """Pure-Python strict loader, used when PyYAML was built without libyaml."""

    yaml_implicit_resolvers = _CoreSchema.yaml_implicit_resolvers


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


if yaml.__with_libyaml__:

    class _StrictCLoader(
        _StrictComposer,
        yaml.composer.Composer,
        yaml.cyaml.CParser,  # type: ignore[misc]
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml scans and parses (ten times faster); composition stays in Python so the checks above apply."""

        yaml_implicit_resolvers = _CoreSchema.yaml_implicit_resolvers
        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _StrictCLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    _Loader: type = _StrictCLoader
else:
    _Loader = _StrictLoader


def _loc(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


def builtin_dirs() -> list[Path]:
    """Where profile names are looked up: $TCPTUNE_PROFILE_PATH entries, then the built-in library."""
    dirs = [Path(p) for p in os.environ.get("TCPTUNE_PROFILE_PATH", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "profiles", here.parent / "profiles"):
        if candidate.is_dir():
            dirs.append(candidate)
            break
    return dirs


def builtin_names() -> list[str]:
    names: set[str] = set()
    for d in builtin_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def is_path_ref(ref: str) -> bool:
    """Whether a profile reference names a file (resolved relative to its profile) rather than a library name."""
    return "/" in ref or ref.endswith((".yaml", ".yml")) or ref.startswith(".")


def find_profile(ref: str, relative_to: Path | None = None) -> Path | None:
    """A profile reference (path, or a name from the library) -> file, or None."""
    if is_path_ref(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        return path if path.is_file() else None
    if relative_to is None and Path(ref).is_file():
        return Path(ref)
    for d in builtin_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    return None


class _Document:
    """One file as read, before inheritance."""

    def __init__(self, path: Path, name: str, problems: list[Diagnostic]) -> None:
        self.path, self.name, self.description = path, name, ""
        self.extends: list[tuple[str, Location]] = []
        self.settings: list[Setting] = []
        self.problems = problems


def _read_document(path: Path) -> _Document:
    """Parse one file; raise ProfileError when nothing usable can be read from it."""
    file = str(path)

    def fail(message: str, mark: yaml.Mark | None = None, hint: str | None = None) -> ProfileError:
        return ProfileError([Diagnostic("error", _loc(file, mark), message, hint=hint)])

    try:
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            raise fail(f"file is {size} bytes; profiles are limited to {MAX_PROFILE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read profile: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start})") from None

    loader: Any = None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        root = loader.get_single_node()
    except _Reject as exc:
        raise fail(exc.message, exc.mark, exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise fail(f"YAML syntax error: {problem}", mark) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML error: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise fail("YAML is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()

    if root is None:
        raise fail("profile is empty", hint="a mapping with 'settings:' and optional name, description, extends")
    if not isinstance(root, yaml.MappingNode):
        raise fail("a profile must be a mapping", root.start_mark, "top-level fields: " + ", ".join(FIELDS))

    problems: list[Diagnostic] = []
    doc = _Document(path, path.stem, problems)

    def err(message: str, mark: yaml.Mark | None, key: str | None = None, hint: str | None = None) -> None:
        problems.append(Diagnostic("error", _loc(file, mark), message, key=key, hint=hint))

    seen_fields: set[str] = set()
    settings_node: yaml.Node | None = None
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            err("field names must be plain text", key_node.start_mark)
            continue
        field_name = key_node.value
        if field_name in seen_fields:
            err(f"duplicate field '{field_name}'", key_node.start_mark, hint="each field may appear once")
            continue
        seen_fields.add(field_name)
        if field_name not in FIELDS:
            close = _close_matches(field_name, FIELDS)
            hint = f"did you mean '{close[0]}'?" if close else "valid fields: " + ", ".join(FIELDS)
            if catalog.canonical_name(field_name):
                hint = "sysctl keys go under 'settings:'"
            err(f"unknown field '{field_name}'", key_node.start_mark, hint=hint)
            continue
        if field_name in ("name", "description"):
            if not isinstance(value_node, yaml.ScalarNode) or value_node.tag != "tag:yaml.org,2002:str":
                err(f"'{field_name}' must be text", value_node.start_mark)
                continue
            value = value_node.value
            if ("\n" in value.strip() and field_name == "name") or any(ord(c) < 32 and c not in "\n\t" for c in value):
                err(f"'{field_name}' contains control characters", value_node.start_mark)
                continue
            if field_name == "name":
                if not PROFILE_NAME.match(value):
                    err(
                        f"profile name {value!r} is not a plain name",
                        value_node.start_mark,
                        hint="letters, digits, '-', '_', '.'; it becomes a file and role name",
                    )
                    continue
                doc.name = value
            else:
                doc.description = " ".join(value.split())
        elif field_name == "extends":
            refs = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for ref in refs:
                if not isinstance(ref, yaml.ScalarNode) or not ref.value or ref.tag != "tag:yaml.org,2002:str":
                    err("'extends' takes a profile name or path, or a list of them", ref.start_mark)
                    continue
                doc.extends.append((ref.value, _loc(file, ref.start_mark)))
        else:
            settings_node = value_node
    if "name" not in seen_fields and not PROFILE_NAME.match(doc.name):
        err(
            f"the file name gives the profile name {doc.name!r}, which is not a plain name",
            root.start_mark,
            hint="add a 'name:' field (letters, digits, '-', '_', '.'), or rename the file",
        )
        doc.name = "unnamed"
    if settings_node is not None:  # after the loop, so that origins carry the final profile name
        _read_settings(settings_node, doc, loader, err)
    if "settings" not in seen_fields and not doc.extends:
        err("profile has no 'settings'", root.start_mark, hint="add 'settings:' with at least one sysctl key")
    return doc


def _read_settings(node: yaml.Node, doc: _Document, loader: Any, err: Any) -> None:
    file = str(doc.path)
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return
    if not isinstance(node, yaml.MappingNode):
        err("'settings' must be a mapping of sysctl keys to values", node.start_mark)
        return
    seen: dict[str, yaml.Mark] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            err("sysctl key names must be plain text", key_node.start_mark)
            continue
        written = key_node.value
        if not KEY_NAME.match(written):
            err(
                f"{written!r} is not a sysctl key name",
                key_node.start_mark,
                hint="dotted identifiers such as net.ipv4.tcp_fin_timeout",
            )
            continue
        key = catalog.canonical_name(written) or written.replace("/", ".")
        if key in seen:
            first = seen[key]
            err(
                "duplicate key",
                key_node.start_mark,
                key=key,
                hint=f"first set at line {first.line + 1}; YAML would silently keep only the last",
            )
            continue
        seen[key] = key_node.start_mark
        if isinstance(value_node, yaml.MappingNode):
            err("expected a value, got a mapping", value_node.start_mark, key=key)
            continue
        scalars = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if any(not isinstance(item, yaml.ScalarNode) for item in scalars):
            err("list items must be plain values", value_node.start_mark, key=key)
            continue
        try:
            values = [loader.construct_object(item, deep=True) for item in scalars]
        except (ValueError, yaml.YAMLError) as exc:
            err(f"unreadable value: {exc}", value_node.start_mark, key=key)
            continue
        value = values if isinstance(value_node, yaml.SequenceNode) else values[0]
        doc.settings.append(Setting(key, value, _loc(file, value_node.start_mark), doc.name, written))


def load_profile(ref: str | Path) -> Profile:
    """Load and resolve a profile by path or library name. Raises ProfileError if it cannot be read at all."""
    path = find_profile(str(ref))
    if path is None:
        names = builtin_names()
        hint = "built-in profiles: " + ", ".join(names) if names else None
        close = _close_matches(str(ref), names)
        if close:
            hint = f"did you mean '{close[0]}'? ({hint})"
        raise ProfileError(
            [Diagnostic("error", Location(str(ref)), "no such profile file or built-in profile", hint=hint)]
        )
    cache: dict[Path, _Document] = {}
    doc = _cached(path, cache)
    problems = list(doc.problems)
    chain: list[str] = []
    settings = _merge(doc, [path.resolve()], cache, problems, chain)
    return Profile(
        name=doc.name,
        description=doc.description,
        path=path,
        extends=tuple(ref for ref, _ in doc.extends),
        settings=settings,
        chain=tuple(chain),
        problems=problems,
    )


def _cached(path: Path, cache: dict[Path, _Document]) -> _Document:
    key = path.resolve()
    if key not in cache:
        cache[key] = _read_document(path)
    return cache[key]


def _merge(
    doc: _Document, stack: list[Path], cache: dict[Path, _Document], problems: list[Diagnostic], chain: list[str]
) -> dict[str, Setting]:
    merged: dict[str, Setting] = {}
    for ref, where in doc.extends:
        names = " -> ".join(cache[p].name if p in cache else p.stem for p in stack)
        parent_path = find_profile(ref, relative_to=doc.path.parent)
        if parent_path is None:
            problems.append(
                Diagnostic(
                    "error",
                    where,
                    f"extends '{ref}', which does not exist",
                    key="extends",
                    hint=f"chain: {names} -> {ref}",
                )
            )
            continue
        resolved = parent_path.resolve()
        if resolved in stack:
            again = cache[resolved].name if resolved in cache else ref
            problems.append(
                Diagnostic("error", where, "extends cycle", key="extends", hint=f"chain: {names} -> {again}")
            )
            continue
        try:
            parent = _cached(parent_path, cache)
        except ProfileError as exc:
            problems.extend(exc.diagnostics)
            continue
        problems.extend(p for p in parent.problems if p not in problems)
        merged.update(_merge(parent, [*stack, resolved], cache, problems, chain))
    merged.update({s.key: s for s in doc.settings})
    if doc.name not in chain:
        chain.append(doc.name)
    return merged
