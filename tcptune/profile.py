"""Load profile YAML: safe, duplicate-rejecting, with line/column marks, and resolve ``extends``.

PyYAML silently keeps the last of two equal keys and happily expands aliases and tags; a profile that ends up in
``/etc/sysctl.d`` on a fleet deserves stricter reading, so this module composes the node tree itself and rejects
duplicates, anchors/aliases and explicit tags with the exact position.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from . import catalog
from .errors import Diagnostic, Location, ProfileError
from .persist import UnsafeFile, read_bounded
from .records import Record
from .values import has_unsafe_characters

# PyYAML compiles a dozen regular expressions when it is imported: its YAML 1.1 resolvers and timestamp constructor
# (which profiles replace with _CoreSchema below) and the pure-Python reader's large Unicode class (profiles are
# parsed by libyaml wherever PyYAML has it). That was a tenth of the CPU time of a whole `tcptune diff`
# (bench/diff_latency), so each pattern PyYAML compiles while it is imported is compiled when first used instead.


_compile_now = re.compile


class _CompiledOnFirstUse:
    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._source = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = _compile_now(*self._source)
        return getattr(self._compiled, name)


@contextmanager
def _patterns_compiled_on_first_use() -> Iterator[None]:
    re.compile = _CompiledOnFirstUse  # type: ignore[assignment]  # single-threaded: imported before any thread starts
    try:
        yield
    finally:
        re.compile = _compile_now


with _patterns_compiled_on_first_use():
    import yaml


FIELDS = ("name", "description", "extends", "settings", "raw")
RAW_PREFIX = "net."
"""Only network keys may be set under ``raw:``: elsewhere a sysctl can run programs as root (kernel.core_pattern,
kernel.modprobe) or weaken the whole machine, and tcptune could not tell which."""
MAX_RAW_VALUE_BYTES = 4095
"""The kernel reads at most one page, less its terminating NUL, from one write to /proc/sys."""
MAX_PROFILE_BYTES = 1024 * 1024
KEY_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_-]*([./][A-Za-z0-9_][A-Za-z0-9_-]*)*\Z")
PROFILE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
"""A profile name becomes a file header, a role name and an Ansible play name: plain characters only."""


class Setting(Record):
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
    loading found without having to stop; validation reports them with its own. ``raw`` holds the keys of the
    ``raw:`` mapping (keys the catalog does not know), their values already one line of kernel text.
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
        raw: dict[str, Setting] | None = None,
    ) -> None:
        self.name, self.description, self.path, self.extends = name, description, path, extends
        self.settings, self.chain = settings, chain
        self.problems: list[Diagnostic] = problems if problems is not None else []
        self.raw: dict[str, Setting] = raw if raw is not None else {}

    def fingerprint(self) -> str:
        """Short stable hash of the resolved key/value content (what gets applied)."""
        digest = _sha256()
        for key in sorted(self.settings):
            digest.update(f"{key}={self.settings[key].value!r}\n".encode())
        for key in sorted(self.raw):  # after the settings, so a profile without raw: keeps its fingerprint
            digest.update(f"raw:{key}={self.raw[key].value!r}\n".encode())
        return digest.hexdigest()[:12]


class _Reject(Exception):
    def __init__(self, message: str, mark: _Position | None, hint: str | None = None) -> None:
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


class _Position(Protocol):
    """Where in the file: a PyYAML or a libyaml mark (0-based line and column)."""

    line: int
    column: int


class _StrictComposer(yaml.composer.Composer):
    """Composer that refuses aliases, anchors and explicit tags (no code, no billion laughs).

    Mixed in before a parser, the pure-Python one or libyaml's, which provides ``peek_event``.
    """

    peek_event: Callable[[], yaml.Event | None]

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        mark = event.start_mark if event is not None else None
        if isinstance(event, yaml.AliasEvent):
            raise _Reject("YAML aliases (*name) are not allowed in profiles", mark, "write the value out in full")
        if getattr(event, "anchor", None):
            raise _Reject(
                "YAML anchors (&name) are not allowed in profiles",
                mark,
                "use 'extends' to share settings between profiles",
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Reject(f"YAML tags ({tag}) are not allowed in profiles", mark, "write plain values")
        return super().compose_node(parent, index)


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
    from yaml._yaml import CParser

    class _StrictCLoader(
        _StrictComposer,
        CParser,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml scans and parses (ten times faster); composition stays in Python so the checks above apply."""

        yaml_implicit_resolvers = _CoreSchema.yaml_implicit_resolvers
        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _StrictCLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    _Loader: type[_StrictLoader | _StrictCLoader] = _StrictCLoader
else:
    _Loader = _StrictLoader


def _loc(file: str, mark: _Position | None) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


def library_dir() -> Path | None:
    """The built-in library: in the installed package, or ``profiles/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    return None


def builtin_dirs() -> list[Path]:
    """Where profile names are looked up: $TCPTUNE_PROFILE_PATH entries, then the built-in library."""
    dirs = [Path(p) for p in os.environ.get("TCPTUNE_PROFILE_PATH", "").split(os.pathsep) if p]
    library = library_dir()
    return [*dirs, library] if library is not None else dirs


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
        # anything that exists: reading it says what is wrong with a FIFO, device or directory named as a profile
        return path if path.is_file() or os.path.lexists(path) else None
    if relative_to is None and Path(ref).is_file():
        return Path(ref)
    for d in builtin_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    return None


class _Document:
    """One file as read, before inheritance; ``problems`` collects what reading found without having to stop."""

    def __init__(self, path: Path) -> None:
        self.path, self.file, self.name, self.description = path, str(path), path.stem, ""
        self.extends: list[tuple[str, Location]] = []
        self.settings: list[Setting] = []
        self.raw: list[Setting] = []
        self.problems: list[Diagnostic] = []

    def error(self, message: str, mark: _Position | None, key: str | None = None, hint: str | None = None) -> None:
        self.problems.append(Diagnostic("error", _loc(self.file, mark), message, key=key, hint=hint))


def _unreadable(file: str, message: str, mark: _Position | None = None, hint: str | None = None) -> ProfileError:
    """The file cannot be read at all: one diagnostic, and loading stops."""
    return ProfileError([Diagnostic("error", _loc(file, mark), message, hint=hint)])


def _read_document(path: Path) -> _Document:
    """Parse one file; raise ProfileError when nothing usable can be read from it."""
    doc = _Document(path)
    root, loader = _compose(_read_text(path), doc.file)
    read_field = {"name": _read_name, "description": _read_description, "extends": _read_extends}
    settings_node: yaml.Node | None = None
    raw_node: yaml.Node | None = None
    seen: set[str] = set()
    for key_node, value_node in root.value:
        field = _field_name(key_node, seen, doc)
        if field == "settings":
            settings_node = value_node
        elif field == "raw":
            raw_node = value_node
        elif field is not None:
            read_field[field](value_node, doc)
    if "name" not in seen and not PROFILE_NAME.match(doc.name):
        doc.error(
            f"the file name gives the profile name {doc.name!r}, which is not a plain name",
            root.start_mark,
            hint="add a 'name:' field (letters, digits, '-', '_', '.'), or rename the file",
        )
        doc.name = "unnamed"
    if settings_node is not None:  # after the fields, so that origins carry the final profile name
        _read_settings(settings_node, doc, loader)
    if raw_node is not None:
        _read_raw(raw_node, doc, loader)
    if "settings" not in seen and "raw" not in seen and not doc.extends:
        doc.error("profile has no 'settings'", root.start_mark, hint="add 'settings:' with at least one sysctl key")
    return doc


def _read_text(path: Path) -> str:
    """The file's text: a regular file (a link to one is fine), at most MAX_PROFILE_BYTES, UTF-8. Read without
    blocking (persist.read_bounded), so that a FIFO or a device named as a profile is refused at once."""
    file = str(path)
    try:
        data = read_bounded(file, follow=True, limit=MAX_PROFILE_BYTES)
    except UnsafeFile as exc:
        if exc.mode is None:
            raise _unreadable(
                file, f"file is larger than {MAX_PROFILE_BYTES} bytes; profiles are limited to that"
            ) from None
        kind = "a directory" if stat.S_ISDIR(exc.mode) else "a FIFO" if stat.S_ISFIFO(exc.mode) else None
        raise _unreadable(file, f"not a regular file ({kind or 'a device or socket'}): profiles are files") from None
    except OSError as exc:
        raise _unreadable(file, f"cannot read profile: {exc.strerror or exc}") from None
    if data is None:
        raise _unreadable(file, "cannot read profile: No such file or directory")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(file, f"not UTF-8 text (byte {exc.start})") from None


def _compose(text: str, file: str) -> tuple[yaml.MappingNode, _StrictLoader | _StrictCLoader]:
    """The document's node tree (one mapping), and the loader that later constructs its values."""
    loader = None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        root = loader.get_single_node()
    except _Reject as exc:
        raise _unreadable(file, exc.message, exc.mark, exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        raise _unreadable(file, f"YAML syntax error: {problem}", exc.problem_mark or exc.context_mark) from None
    except yaml.YAMLError as exc:
        raise _unreadable(file, f"YAML error: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise _unreadable(file, "YAML is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise _unreadable(
            file, "profile is empty", hint="a mapping with 'settings:' and optional name, description, extends"
        )
    if not isinstance(root, yaml.MappingNode):
        raise _unreadable(
            file, "a profile must be a mapping", root.start_mark, "top-level fields: " + ", ".join(FIELDS)
        )
    return root, loader


def _field_name(node: yaml.Node, seen: set[str], doc: _Document) -> str | None:
    """A top-level field's name, or None (reported) for one that is not plain text, repeated or unknown."""
    if not isinstance(node, yaml.ScalarNode):
        doc.error("field names must be plain text", node.start_mark)
        return None
    field = str(node.value)
    if field in seen:
        doc.error(f"duplicate field '{field}'", node.start_mark, hint="each field may appear once")
        return None
    seen.add(field)
    if field not in FIELDS:
        close = _close_matches(field, FIELDS)
        hint = f"did you mean '{close[0]}'?" if close else "valid fields: " + ", ".join(FIELDS)
        if catalog.canonical_name(field):
            hint = "sysctl keys go under 'settings:'"
        doc.error(f"unknown field '{field}'", node.start_mark, hint=hint)
        return None
    return field


def _text_field(field: str, node: yaml.Node, doc: _Document, multiline: bool) -> str | None:
    """A ``name`` or ``description`` value: YAML text without control characters (newlines only if ``multiline``)."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        doc.error(f"'{field}' must be text", node.start_mark)
        return None
    value = str(node.value)
    if ("\n" in value.strip() and not multiline) or any(ord(c) < 32 and c not in "\n\t" for c in value):
        doc.error(f"'{field}' contains control characters", node.start_mark)
        return None
    return value


def _read_name(node: yaml.Node, doc: _Document) -> None:
    """``name``: plain characters only, as it becomes a file header, a role name and a play name."""
    value = _text_field("name", node, doc, multiline=False)
    if value is None:
        return
    if not PROFILE_NAME.match(value):
        doc.error(
            f"profile name {value!r} is not a plain name",
            node.start_mark,
            hint="letters, digits, '-', '_', '.'; it becomes a file and role name",
        )
        return
    doc.name = value


def _read_description(node: yaml.Node, doc: _Document) -> None:
    """``description``: any text without control characters, its whitespace folded to single spaces."""
    value = _text_field("description", node, doc, multiline=True)
    if value is not None:
        doc.description = " ".join(value.split())


def _read_extends(node: yaml.Node, doc: _Document) -> None:
    """``extends``: one profile name or path, or a list of them, each with where it was written."""
    refs = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for ref in refs:
        if not isinstance(ref, yaml.ScalarNode) or not ref.value or ref.tag != "tag:yaml.org,2002:str":
            doc.error("'extends' takes a profile name or path, or a list of them", ref.start_mark)
            continue
        doc.extends.append((ref.value, _loc(doc.file, ref.start_mark)))


def _read_settings(node: yaml.Node, doc: _Document, loader: _StrictLoader | _StrictCLoader) -> None:
    """The ``settings`` mapping (empty or null: none): each key once, each value plain."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return
    if not isinstance(node, yaml.MappingNode):
        doc.error("'settings' must be a mapping of sysctl keys to values", node.start_mark)
        return
    seen: dict[str, _Position] = {}
    for key_node, value_node in node.value:
        key = _setting_key(key_node, seen, doc)
        if key is None:
            continue
        setting = _setting(key, key_node.value, value_node, doc, loader)
        if setting is not None:
            doc.settings.append(setting)


def _setting_key(node: yaml.Node, seen: dict[str, _Position], doc: _Document) -> str | None:
    """A sysctl key's full name (catalog name, or as written with '/' as '.'); None (reported) if it is not one."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        doc.error("sysctl key names must be plain text", node.start_mark)
        return None
    written = str(node.value)
    if not KEY_NAME.match(written):
        doc.error(
            f"{written!r} is not a sysctl key name",
            node.start_mark,
            hint="dotted identifiers such as net.ipv4.tcp_fin_timeout",
        )
        return None
    key = catalog.canonical_name(written) or written.replace("/", ".")
    if key in seen:
        first = seen[key]
        doc.error(
            "duplicate key",
            node.start_mark,
            key=key,
            hint=f"first set at line {first.line + 1}; YAML would silently keep only the last",
        )
        return None
    seen[key] = node.start_mark
    return key


def _setting(
    key: str, written: str, node: yaml.Node, doc: _Document, loader: _StrictLoader | _StrictCLoader
) -> Setting | None:
    """The key's value: one plain value or a list of them, as YAML (1.2 core schema) reads them; None (reported)
    for anything else."""
    if isinstance(node, yaml.MappingNode):
        doc.error("expected a value, got a mapping", node.start_mark, key=key)
        return None
    scalars = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if any(not isinstance(item, yaml.ScalarNode) for item in scalars):
        doc.error("list items must be plain values", node.start_mark, key=key)
        return None
    try:
        values = [loader.construct_object(item, deep=True) for item in scalars]
    except (ValueError, yaml.YAMLError) as exc:
        doc.error(f"unreadable value: {exc}", node.start_mark, key=key)
        return None
    value = values if isinstance(node, yaml.SequenceNode) else values[0]
    return Setting(key, value, _loc(doc.file, node.start_mark), doc.name, written)


def _read_raw(node: yaml.Node, doc: _Document, loader: _StrictLoader | _StrictCLoader) -> None:
    """The ``raw`` mapping: network keys the catalog does not know, each with one line of kernel text."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return
    if not isinstance(node, yaml.MappingNode):
        doc.error("'raw' must be a mapping of sysctl keys to values", node.start_mark)
        return
    seen: dict[str, _Position] = {}
    for key_node, value_node in node.value:
        key = _raw_key(key_node, seen, doc)
        if key is None:
            continue
        text = _raw_value(key, value_node, doc, loader)
        if text is not None:
            doc.raw.append(Setting(key, text, _loc(doc.file, value_node.start_mark), doc.name, str(key_node.value)))


def raw_key_name(written: str) -> str:
    """A raw key's name as tcptune keeps it: dotted, unless a component holds a dot (a VLAN interface such as
    ``eth0.100``), which only the slash form can say."""
    if "/" in written:
        parts = written.strip("/").split("/")
        return written.strip("/") if any("." in part for part in parts) else ".".join(parts)
    return written


def _raw_key(node: yaml.Node, seen: dict[str, _Position], doc: _Document) -> str | None:
    """A raw key: a plain sysctl name under net., unknown to the catalog, given once."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        doc.error("sysctl key names must be plain text", node.start_mark)
        return None
    written = str(node.value)
    if not KEY_NAME.match(written.strip("/")):
        doc.error(f"{written!r} is not a sysctl key name", node.start_mark, hint="dotted identifiers, e.g. net.ipv4.x")
        return None
    key = raw_key_name(written)
    if not key.replace("/", ".").startswith(RAW_PREFIX):
        doc.error(
            "only net.* keys may be set under 'raw:'",
            node.start_mark,
            key=key,
            hint="other sysctls can run programs as root (kernel.core_pattern, kernel.modprobe) or weaken the "
            "whole machine; set them with your own configuration management",
        )
        return None
    known = catalog.canonical_name(key) if "/" not in key else catalog.canonical_name(key.replace("/", "."))
    if known is not None:
        doc.error(
            "tcptune's catalog knows this key",
            node.start_mark,
            key=known,
            hint="put it under 'settings:', where its value is checked",
        )
        return None
    if key in seen:
        doc.error("duplicate key", node.start_mark, key=key, hint=f"first set at line {seen[key].line + 1} of 'raw:'")
        return None
    seen[key] = node.start_mark
    return key


def _raw_value(key: str, node: yaml.Node, doc: _Document, loader: _StrictLoader | _StrictCLoader) -> str | None:
    """One line of kernel text from a number, a string, or a list of them (joined by spaces)."""
    if isinstance(node, yaml.MappingNode):
        doc.error("expected a value, got a mapping", node.start_mark, key=key)
        return None
    scalars = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if any(not isinstance(item, yaml.ScalarNode) for item in scalars):
        doc.error("list items must be plain values", node.start_mark, key=key)
        return None
    try:
        values = [loader.construct_object(item, deep=True) for item in scalars]
    except (ValueError, yaml.YAMLError) as exc:
        doc.error(f"unreadable value: {exc}", node.start_mark, key=key)
        return None
    parts = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            kind = "true/false" if isinstance(value, bool) else "nothing" if value is None else type(value).__name__
            doc.error(
                f"expected a number or text, got {kind}",
                node.start_mark,
                key=key,
                hint='write the value as the kernel shows it, e.g. 1 or "4096 87380 6291456"',
            )
            return None
        parts.append(str(value).strip())
    text = " ".join(parts)
    if has_unsafe_characters(text):
        doc.error("value contains a newline or control character", node.start_mark, key=key)
        return None
    if len(text.encode()) > MAX_RAW_VALUE_BYTES:
        doc.error(
            f"value is {len(text.encode())} bytes; the kernel takes at most {MAX_RAW_VALUE_BYTES} in one write",
            node.start_mark,
            key=key,
        )
        return None
    return text


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
    raw: dict[str, Setting] = {}
    settings = _merge(doc, [path.resolve()], cache, problems, chain, raw)
    return Profile(
        name=doc.name,
        description=doc.description,
        path=path,
        extends=tuple(ref for ref, _ in doc.extends),
        settings=settings,
        chain=tuple(chain),
        problems=problems,
        raw=raw,
    )


def _cached(path: Path, cache: dict[Path, _Document]) -> _Document:
    key = path.resolve()
    if key not in cache:
        cache[key] = _read_document(path)
    return cache[key]


def _merge(
    doc: _Document,
    stack: list[Path],
    cache: dict[Path, _Document],
    problems: list[Diagnostic],
    chain: list[str],
    raw: dict[str, Setting],
) -> dict[str, Setting]:
    """The settings of ``doc`` over those of its parents; ``raw`` collects the raw: keys the same way."""
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
        merged.update(_merge(parent, [*stack, resolved], cache, problems, chain, raw))
    merged.update({s.key: s for s in doc.settings})
    raw.update({s.key: s for s in doc.raw})
    if doc.name not in chain:
        chain.append(doc.name)
    return merged
