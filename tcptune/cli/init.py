"""``tcptune init NAME``: a profile of one's own to start from, extending a built-in one, every key it sets listed
(commented out, with its value and what it does), so that the first edit needs no documentation.

Works offline from an empty directory: it reads only the profile library and the catalog.
"""

import json
import os
import sys
import textwrap
from typing import Annotated, Any

import typer

from .. import __version__, catalog
from ..errors import TcptuneError
from ..importer import profile_name_for
from ..load import load_valid
from ..output import emit, emit_diagnostics, one_line
from ..profile import Profile, Setting, is_path_ref
from ..userfiles import write_file
from .complete import complete_profile_name
from .options import EXIT_OK


def init(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            autocompletion=complete_profile_name,
            help="The built-in profile to start from (see 'tcptune profiles').",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Where to write it ('-': standard output) [default: ./NAME.yaml]."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Write a profile of your own that extends a built-in one: ./NAME.yaml, every key of NAME listed, commented
    out, with its value and a one-line summary; uncomment and edit what you want to change.

    Never replaces an existing file without --force (and never a symbolic link or device, even with it).
    """
    if is_path_ref(name):
        raise typer.BadParameter(
            f"{name!r} is a file; give the name of a built-in profile (see 'tcptune profiles')", param_hint="NAME"
        )
    path = output if output is not None else f"{name}.yaml"
    if path != "-" and os.path.lexists(path) and not force:
        raise TcptuneError(f"{path} exists; use --force to replace it (or -o to write another file)")
    verdict = load_valid(name)
    emit_diagnostics(verdict.warnings)
    own_name = profile_name_for(os.path.basename(path)) if path != "-" else name
    if own_name == name:  # one name for two profiles would make the chain, 'from' and history ambiguous
        own_name = f"my-{name}"
    text = profile_text(verdict.profile, own_name, os.path.basename(path) if path != "-" else f"{name}.yaml")
    if path == "-":
        sys.stdout.write(text)
        raise typer.Exit(EXIT_OK)
    write_file(path, text)
    keys = len(verdict.profile.settings) + len(verdict.profile.raw)
    emit(f"wrote {path}: extends {name}, its {keys} keys listed and commented out")
    emit(f"next: edit it, then 'tcptune diff {path}' and 'tcptune apply {path}'")
    raise typer.Exit(EXIT_OK)


def profile_text(parent: Profile, name: str, file: str) -> str:
    """The profile file: a header saying how to use it, ``extends`` the parent, and the parent's resolved keys,
    grouped by the profile in its chain that set them (the parent's own first), each commented out."""
    out = [
        f"# {file}: your profile, extending the built-in profile '{parent.name}'.",
        f"# Written by 'tcptune init {parent.name}' (tcptune {__version__}).",
        "#",
        f"# Below, commented out, is every key '{parent.name}' sets and its value there. To change a value, remove",
        "# the '# ' in front of the key and edit it; keys left commented keep the built-in value. Any other key",
        "# tcptune knows can be added too ('tcptune explain --list'; 'tcptune explain KEY' says more about one).",
        "#",
        f"#   tcptune validate {file}    check it",
        f"#   tcptune diff {file}        compare it with this machine (exit 2: something differs)",
        f"#   tcptune apply {file}       apply it (asks first; 'tcptune rollback' undoes it)",
        "# The name history, diff and the persisted sysctl.d file show for it; change it as you like.",
        f"name: {name}",
        f"description: {json.dumps(_description(parent), ensure_ascii=False)}",
        f"extends: {parent.name}",
        "settings:",
    ]
    out += _grouped(parent, parent.settings, _summary)
    if parent.raw:
        out.append("raw:  # keys tcptune's catalog does not check (diff and apply check them against the kernel)")
        out += _grouped(parent, parent.raw, lambda _key: "unchecked by the catalog")
    return "\n".join(out) + "\n"


def _description(parent: Profile) -> str:
    words = one_line(parent.description)
    return f"Based on {parent.name}" + (f": {words}" if words else "")


def _grouped(parent: Profile, settings: dict[str, Setting], summary: Any) -> list[str]:
    out: list[str] = []
    chain = list(reversed(parent.chain)) or [parent.name]
    for origin in chain:
        keys = sorted(key for key, setting in settings.items() if setting.origin == origin)
        if not keys:
            continue
        out.append(f"  # ---- set by {origin}" + ("" if origin == parent.name else f", inherited by {parent.name}"))
        for key in keys:
            out += textwrap.wrap(summary(key), 114, initial_indent="  # ", subsequent_indent="  #   ")
            out.append(f"  # {key}: {_yaml_value(settings[key].value)}")
    return out


def _summary(key: str) -> str:
    entry = catalog.get(key)
    return one_line(entry.summary) if entry is not None else ""


def _yaml_value(value: object) -> str:
    """A value as YAML that reads back as the same value: integers plain, text double-quoted, lists in flow style."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
