"""Shell completion: the candidates tcptune offers (profile names and files, catalog keys, generation numbers) and
``tcptune completion SHELL``, which prints the script a shell needs to ask for them.

The shells' scripts run ``tcptune`` with ``_TCPTUNE_COMPLETE=complete_bash`` (``complete_zsh``, ``complete_fish``)
and the words typed so far in the environment; typer answers from these callbacks. They are imported with every
command (the option types name them), so they import what they need only when called; and they never raise: a
traceback would land in the middle of the user's command line.
"""

import os
from enum import Enum
from typing import Annotated, Any

import typer

Candidate = tuple[str, str]
"""A value and the few words zsh and fish show beside it."""

COMPLETE_VAR = "_TCPTUNE_COMPLETE"


def complete_profile(incomplete: str) -> list[Candidate]:
    """Profile names the library resolves ($TCPTUNE_PROFILE_PATH, built-in) and profile files (*.yaml, *.yml) in the
    directory being typed. Nothing matching: bash falls back to completing file names."""
    return _profile_names(incomplete) + _profile_files(incomplete)


def complete_profile_name(incomplete: str) -> list[Candidate]:
    """Only names from the library (``init`` extends one; a file is not a starting point)."""
    return _profile_names(incomplete)


def _profile_names(incomplete: str) -> list[Candidate]:
    if "/" in incomplete:
        return []
    try:
        from ..profile import builtin_names

        return [(name, "profile") for name in builtin_names() if name.startswith(incomplete)]
    except Exception:  # never a traceback inside a shell's completion
        return []


def _profile_files(incomplete: str) -> list[Candidate]:
    directory, _, start = incomplete.rpartition("/")
    try:
        names = sorted(os.listdir(directory or "."))
    except OSError:
        return []
    prefix = f"{directory}/" if directory else ""
    return [
        (prefix + name, "profile file")
        for name in names
        if name.startswith(start)
        and name.endswith((".yaml", ".yml"))
        and (start.startswith(".") or not name.startswith("."))
        and os.path.isfile(os.path.join(directory or ".", name))
    ]


def complete_key(incomplete: str) -> list[Candidate]:
    """Catalog keys: full dotted names (or the slash form, if that is what is being typed), and bare names that are
    unique in the catalog (``tcp_fin`` -> ``tcp_fin_timeout``), each with its summary."""
    try:
        from .. import catalog

        slashed = "/" in incomplete
        found: dict[str, str] = {}
        for key in catalog.all_keys():
            full = key.name.replace(".", "/") if slashed else key.name
            if full.startswith(incomplete):
                found[full] = key.summary
            bare = key.name.rsplit(".", 1)[-1]
            if not slashed and bare.startswith(incomplete) and catalog.canonical_name(bare) == key.name:
                found[bare] = key.summary
        return sorted(found.items())
    except Exception:  # never a traceback inside a shell's completion
        return []


def complete_generation(ctx: typer.Context, incomplete: str) -> list[Candidate]:
    """Generation numbers in the state directory (``--state-dir`` if typed before, else $TCPTUNE_STATE_DIR or the
    default), newest first, each with its kind, profile and time; 0 is "nothing managed"."""
    try:
        from ..desired import state_dir as open_state
        from ..state import Generation
        from ..target import DEFAULT_STATE_DIR

        path = ctx.params.get("state_dir") or os.environ.get("TCPTUNE_STATE_DIR") or DEFAULT_STATE_DIR
        found = []
        for number, generation in open_state(str(path)).history():
            if isinstance(generation, Generation):
                what = generation.kind + (f" of {generation.profile.name}" if generation.profile else "")
                found.append((str(number), f"{what}, {generation.created}"))
        found.append(("0", "nothing managed"))
        return [(number, words) for number, words in found if number.startswith(incomplete)]
    except Exception:  # never a traceback inside a shell's completion (an unreadable state dir, say)
        return []


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to print the completion script for.")],
) -> None:
    """Print the completion script for bash, zsh or fish: command and option names, profile names and files,
    catalog keys (explain), generation numbers (rollback --to).

    \b
    Install it once, where the shell looks for completions:
      tcptune completion bash > ~/.local/share/bash-completion/completions/tcptune
      tcptune completion zsh > ~/.zfunc/_tcptune  # fpath+=(~/.zfunc) in .zshrc
      tcptune completion fish > ~/.config/fish/completions/tcptune.fish
    or for this shell only: source <(tcptune completion bash)
    """
    typer.echo(script(shell))


def script(shell: Shell | str) -> str:
    from typer.completion import get_completion_script

    name = shell.value if isinstance(shell, Shell) else shell
    text: Any = get_completion_script(prog_name="tcptune", complete_var=COMPLETE_VAR, shell=name)
    return str(text)
