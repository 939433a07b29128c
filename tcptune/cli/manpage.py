"""The man page, generated from the command line itself: every command's usage, help, options (with their defaults
and environment variables, as ``--help`` shows them) and examples, in one page, tcptune(1).

    python -m tcptune.cli.manpage            # rewrite tcptune/_data/man/tcptune.1
    python -m tcptune.cli.manpage --check    # exit 1 if the shipped page is not what the CLI says now

The page is shipped in the wheel (tcptune/_data/man, and share/man/man1 for ``man tcptune``); a test keeps the
shipped copy identical to a fresh rendering, as for the generic Ansible role.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import typer.main

from .. import __version__
from .app import COMMANDS, build_app
from .examples import example_lines
from .options import EXIT_DRIFT, EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

PAGE = Path(__file__).resolve().parent.parent / "_data" / "man" / "tcptune.1"

SUMMARY = "declarative Linux TCP tuning: validate, diff, apply with rollback, push to fleets"

EXIT_STATUS = [
    (EXIT_OK, "Success; for diff, no drift."),
    (EXIT_ERROR, "An error: an invalid profile, a write the kernel refused (every change undone), a failed host."),
    (EXIT_DRIFT, "diff found drift: a key differs, is missing or read-only here, or would differ after a reboot."),
    (3, "A transaction failed and not everything could be put back; 'tcptune recover' retries."),
    (EXIT_USAGE, "A bad command line (an unknown option, a missing argument), so that scripts can tell it from drift."),
    (EXIT_INTERNAL, "An internal error: a bug in tcptune; please report it with the command that was run."),
]

ENVIRONMENT = [
    (
        "TCPTUNE_PROFILE_PATH",
        "Directories (separated by ':') where profile names are looked up before the built-in library.",
    ),
    ("TCPTUNE_PROC_ROOT", "As --proc-root."),
    ("TCPTUNE_STATE_DIR", "As --state-dir."),
    ("TCPTUNE_SYSCTL_DIR", "As --sysctl-dir."),
    ("TCPTUNE_SYSCTL_ROOT", "As --sysctl-root."),
    ("TCPTUNE_PROC_NET", "As --proc-net (status, recommend)."),
    ("NO_COLOR", "No colour on a terminal (tables are still wrapped to its width)."),
    ("COLUMNS, LINES", "The terminal's size, where it cannot be asked (tables, status --watch)."),
]

FILES = [
    ("/var/lib/tcptune/", "The state directory: generations/N.json, pending.json, lock."),
    ("/etc/sysctl.d/90-tcptune.conf", "The persisted profile, read by systemd-sysctl and 'sysctl --system' at boot."),
]

SEE_ALSO = "sysctl(8), sysctl.d(5), systemd-sysctl(8), ss(8), ansible-playbook(1)"


def render() -> str:
    """The page as roff (man(7) macros), from the commands as the CLI defines them."""
    root = typer.main.get_command(build_app([]))
    root_context = typer.Context(root, info_name="tcptune")
    out = [
        f'.TH TCPTUNE 1 "" "tcptune {__version__}" "User Commands"',
        ".SH NAME",
        f"tcptune \\- {_text(SUMMARY)}",
        ".SH SYNOPSIS",
        ".B tcptune",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_paragraphs(root.help or ""),
        ".PP",
        "Every command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR; \\fBtcptune \\-\\-version\\fR prints the version.",
        ".SH COMMANDS",
    ]
    for name in COMMANDS:
        command = root.get_command(root_context, name) if hasattr(root, "get_command") else None
        if command is None:
            continue
        context = typer.Context(command, info_name=name, parent=root_context)
        usage = " ".join(command.collect_usage_pieces(context))
        out.append(f'.SS "tcptune {name} {_text(usage)}"')
        out += _paragraphs(command.help or "")
        records = [record for param in command.params if (record := param.get_help_record(context))]
        for opts, help_text in records:
            out += [".TP", f"\\fB{_text(opts)}\\fR", _text(help_text)]
        out += _examples(name)
    out += [".SH EXIT STATUS"]
    for code, words in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", _text(words)]
    out += [".SH ENVIRONMENT"]
    for variable, words in ENVIRONMENT:
        out += [".TP", f"\\fB{_text(variable)}\\fR", _text(words)]
    out += [".SH FILES"]
    for path, words in FILES:
        out += [".TP", f"\\fI{_text(path)}\\fR", _text(words)]
    out += [".SH EXAMPLES", *_examples("", heading=False)]
    out += [".SH SEE ALSO", _text(SEE_ALSO)]
    return "\n".join(out) + "\n"


def _paragraphs(help_text: str) -> list[str]:
    """Click's help text: paragraphs separated by blank lines; one starting with ``\\b`` keeps its lines."""
    out: list[str] = []
    for paragraph in help_text.strip().split("\n\n"):
        if paragraph.startswith("\b"):
            out += [".PP", ".nf", *(_text(line, fill=False) for line in paragraph[1:].strip("\n").splitlines()), ".fi"]
        elif paragraph.strip():
            out += [".PP", _text(" ".join(paragraph.split()))]
    return out


def _examples(name: str, *, heading: bool = True) -> list[str]:
    """The examples as ``--help`` shows them, unfilled."""
    lines = example_lines(name)
    if not lines:
        return []
    return [
        *([".PP", "Examples:"] if heading else []),
        ".PP",
        ".nf",
        *(_text(line, fill=False) for line in lines),
        ".fi",
    ]


def _text(text: Any, *, fill: bool = True) -> str:
    """Text for one roff line: backslashes and minus signs escaped, a leading '.' or "'" kept from being a macro;
    whitespace folded unless ``fill`` is off (preformatted lines)."""
    line = " ".join(str(text).split()) if fill else str(text)
    line = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line.lstrip().startswith((".", "'")) else line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped page is stale")
    parser.add_argument("--out", type=Path, default=PAGE, help=f"where to write the page [{PAGE}]")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is stale: run python -m tcptune.cli.manpage", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
