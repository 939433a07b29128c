"""A sysctl.conf / sysctl.d file -> a profile: catalog keys under settings (validated, problems at file:line), other
net.* keys under raw:, everything else left out with a comment that says why, the file's comments kept.

Lines are read the way systemd-sysctl reads them (``boot.read_conf``): the same stripping, comments, ``-`` prefix
and key normalisation, and the last assignment of a key wins. Pure apart from nothing: bytes in, text out.
"""

from __future__ import annotations

import json
import re

from . import boot, catalog
from .errors import Diagnostic, Location
from .profile import KEY_NAME, PROFILE_NAME, RAW_PREFIX, Profile, Setting, raw_key_name
from .records import Record
from .validate import validate
from .values import has_unsafe_characters

_GLOB = re.compile(r"[*?\[]")
_PLAIN_INT = re.compile(r"^-?\d+$")


class Imported(Record):
    """The profile text and what reading the file found (errors mean the text must not be used)."""

    text: str
    diagnostics: list[Diagnostic]
    settings: int
    raw: int
    left_out: int

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


class _Entry(Record):
    key: str
    value: str
    line: int
    comments: tuple[str, ...]
    ignore_errors: bool


def profile_name_for(file: str) -> str:
    """A plain profile name from a file name: ``/etc/sysctl.d/99-net.conf`` -> ``99-net``."""
    stem = file.rsplit("/", 1)[-1]
    for suffix in (".conf", ".yaml"):
        stem = stem.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "imported"
    if not name[0].isalnum():
        name = "imported-" + name
    return name[:100] if PROFILE_NAME.match(name[:100]) else "imported"


def import_conf(data: bytes, file: str, name: str | None = None) -> Imported:
    """Turn the bytes of sysctl.d file ``file`` into profile text named ``name`` (default: from the file name)."""
    name = name or profile_name_for(file)
    lines, overlong = boot.read_conf(data, file)
    diagnostics: list[Diagnostic] = []
    if overlong:
        diagnostics.append(
            Diagnostic(
                "warning",
                Location(file, len(lines) + 1),
                "a line over 1 MiB: systemd-sysctl stops reading the file there, so the rest is not imported",
            )
        )
    header: list[str] = []
    pending: list[str] = []
    trailing: list[str] = []
    chosen: dict[str, _Entry] = {}
    left_out: list[str] = []
    seen_assignment = False
    for line in lines:
        if line.assignment is None:
            if line.text[:1] in (b"#", b";"):
                pending.append(_shown(line.text[1:].strip()))
            elif not line.text and pending:  # a blank line ends a comment block that belongs to no key
                (trailing if seen_assignment else header).extend([*pending, ""])
                pending = []
            continue
        seen_assignment = True
        entry, why = _entry(line, tuple(pending))
        pending = []
        if entry is None:
            left_out.append(f"line {line.number}: {_assignment_text(line)}: {why}")
            continue
        if entry.key in chosen:
            earlier = chosen[entry.key]
            left_out.append(
                f"line {earlier.line}: {entry.key} = {_shown(earlier.value.encode())}: overridden by line {line.number}"
            )
        chosen[entry.key] = entry
    trailing.extend(pending)

    settings = {k: e for k, e in chosen.items() if catalog.get(k) is not None}
    raw = {k: e for k, e in chosen.items() if k not in settings}
    verdict = validate(_as_profile(name, file, settings, raw))
    diagnostics.extend(_with_comment_hint(d, chosen) for d in verdict.diagnostics)
    bad = {d.key for d in verdict.errors}
    good_settings = {k: e for k, e in settings.items() if k not in bad}
    for key in sorted(settings.keys() & bad):
        left_out.append(f"line {settings[key].line}: {key} = {_shown(settings[key].value.encode())}: invalid")
    text = _render(name, file, header, good_settings, verdict.values, raw, left_out, trailing)
    return Imported(text, diagnostics, len(good_settings), len(raw), len(left_out))


def _entry(line: boot.ConfLine, comments: tuple[str, ...]) -> tuple[_Entry | None, str]:
    """The key and value of one assignment, or None and why it is left out."""
    assignment = line.assignment
    assert assignment is not None and line.path is not None
    path = line.path
    if _GLOB.search(path):
        return None, "glob keys are not supported (name each key)"
    if not KEY_NAME.match(path) or "\ufffd" in path or any("\udc80" <= c <= "\udcff" for c in path):
        return None, "not a plain sysctl key name"
    if line.value is None:
        return None, "no value (a '-key' line without '=')"
    key = raw_key_name(path)
    dotted = key.replace("/", ".") if "/" in key and not any("." in p for p in key.split("/")) else key
    entry = catalog.get(dotted)
    if entry is not None and entry.removed:
        return None, f"removed from the kernel in Linux {entry.removed} ({entry.removed_reason})"
    if entry is None and not dotted.replace("/", ".").startswith(RAW_PREFIX):
        return None, (
            "not a net.* key: tcptune manages network keys only (others can run programs as root or affect the "
            "whole machine); keep it in a sysctl.d file of its own"
        )
    try:
        value = line.value.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the value is not UTF-8 text"
    if has_unsafe_characters(value) or not all(ch.isprintable() or ch == "\t" for ch in value):
        return None, "the value holds control or non-printable characters"
    return _Entry(entry.name if entry else dotted, value, line.number, comments, assignment.ignore_errors), ""


def _with_comment_hint(diagnostic: Diagnostic, chosen: dict[str, _Entry]) -> Diagnostic:
    """sysctl.d has no end-of-line comments: say so where a value failed because of one."""
    entry = chosen.get(diagnostic.key or "")
    if diagnostic.is_error and entry is not None and re.search(r"\s[#;]", entry.value):
        hint = f"sysctl.d has no end-of-line comments: systemd-sysctl hands {entry.value!r} to the kernel as the value"
        return diagnostic._replace(hint=hint)
    return diagnostic


def _as_profile(name: str, file: str, settings: dict[str, _Entry], raw: dict[str, _Entry]) -> Profile:
    """The file's assignments as a resolved profile, each located at its line, for the validator."""

    def setting(entry: _Entry) -> Setting:
        return Setting(entry.key, entry.value, Location(file, entry.line, 1), name, entry.key)

    profile = Profile(name, f"Imported from {file}", None, (), {k: setting(e) for k, e in settings.items()})
    profile.raw = {k: setting(e) for k, e in raw.items()}
    profile.chain = (name,)
    return profile


def _render(
    name: str,
    file: str,
    header: list[str],
    settings: dict[str, _Entry],
    values: dict[str, str],
    raw: dict[str, _Entry],
    left_out: list[str],
    trailing: list[str],
) -> str:
    out = [f"# Imported by tcptune from {_shown(file.encode())}."]
    if raw:
        out.append("# Keys under raw: are not checked by tcptune's catalog; diff and apply check them against the")
        out.append("# running kernel.")
    out += [_comment(c) for c in _trimmed(header)]
    out += [f"name: {name}", f"description: {json.dumps(f'Imported from {file}')}"]
    out.append("settings:" if settings else "settings: {}")
    for key, entry in settings.items():
        out += _keyed(key, values[key], entry)
    if raw:
        out.append("raw:")
        for key, entry in raw.items():
            out += _keyed(key, entry.value, entry)
    if left_out:
        out.append("# Left out of this profile:")
        out += [_comment(f"- {item}") for item in left_out]
    if _trimmed(trailing):
        out.append("# Further comments from the file:")
        out += [_comment(c) for c in _trimmed(trailing)]
    return "\n".join(out) + "\n"


def _keyed(key: str, value: str, entry: _Entry) -> list[str]:
    lines = [_comment(c, indent="  ") for c in entry.comments]
    if entry.ignore_errors:
        lines.append("  # '-' prefix in the file: systemd-sysctl ignores a failure to set this key")
    lines.append(f"  {key}: {_yaml_scalar(value)}")
    return lines


def _yaml_scalar(value: str) -> str:
    return value if _PLAIN_INT.match(value) else json.dumps(value)


def _comment(text: str, indent: str = "") -> str:
    return f"{indent}# {text}".rstrip() if text else f"{indent}#"


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def _shown(raw: bytes) -> str:
    """Bytes of the file for a comment: UTF-8 where valid, anything unprintable escaped (never a line break)."""
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _assignment_text(line: boot.ConfLine) -> str:
    assignment = line.assignment
    assert assignment is not None
    return assignment.key + ("" if assignment.value is None else f" = {assignment.value}")
