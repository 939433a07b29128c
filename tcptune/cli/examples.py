"""Examples for every command: the "Examples:" part of each ``--help`` and the EXAMPLES of the man page.

One table, so that a test can check every example against the command line it shows (each option exists).
"""

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        ("tcptune init web-server", "write ./web-server.yaml to edit"),
        ("tcptune diff web-server.yaml", "compare it with this machine"),
        ("tcptune apply web-server.yaml", "apply it (asks first)"),
        ("tcptune rollback", "undo the last apply"),
    ],
    "init": [
        ("tcptune init web-server", "./web-server.yaml, keys commented out"),
        ("tcptune init database -o db.yaml", "another file name"),
        ("tcptune init web-server -o -", "print it instead"),
    ],
    "validate": [
        ("tcptune validate web-server.yaml", "every problem, as file:line:col"),
        ("tcptune validate --strict profiles/*.yaml", "warnings fail too (CI)"),
        ("tcptune validate --format json mine.yaml", "for scripts"),
    ],
    "show": [
        ("tcptune show web-server", "every key, its value and origin"),
        ("tcptune show mine.yaml --format sysctl", "as a sysctl.d file"),
        ("tcptune show database -f json", "for scripts"),
    ],
    "explain": [
        ("tcptune explain tcp_fin_timeout", "a bare name unique in the catalog"),
        ("tcptune explain net.core.somaxconn -f json", "for scripts"),
        ("tcptune explain --list", "every key tcptune knows"),
    ],
    "schema": [
        ("tcptune schema > tcptune-profile.schema.json", "for the YAML language server"),
    ],
    "import": [
        ("tcptune import /etc/sysctl.d/99-net.conf", "print it as a profile"),
        ("tcptune import /etc/sysctl.conf -o mine.yaml --name mine", "write it to mine.yaml"),
    ],
    "profiles": [
        ("tcptune profiles", "names, what they extend, where"),
        ("TCPTUNE_PROFILE_PATH=/etc/tcptune tcptune profiles", "yours first"),
    ],
    "diff": [
        ("tcptune diff web-server.yaml", "compare with this machine: exit 0 same, 2 drift, 1 error"),
        ("tcptune diff", "what the current generation manages"),
        ("tcptune diff web-server --live-only -f json", "live values only, as JSON"),
        ("tcptune diff web-server.yaml -i inventory.ini", "across a fleet"),
    ],
    "apply": [
        ("tcptune apply web-server.yaml --dry-run", "the plan; nothing changes"),
        ("tcptune apply web-server.yaml", "asks, then applies"),
        ("tcptune apply web-server.yaml -y --skip-readonly", "in a container"),
    ],
    "history": [
        ("tcptune history", "the generations, newest first"),
        ("tcptune history --baseline", "values before tcptune"),
    ],
    "rollback": [
        ("tcptune rollback", "back to the generation before"),
        ("tcptune rollback --to 3", "back to generation 3"),
        ("tcptune rollback --to 0 -y", "nothing managed, without asking"),
    ],
    "reset": [
        ("tcptune reset", "every key back to its baseline"),
        ("tcptune reset -y --format json", "without asking, for scripts"),
    ],
    "recover": [
        ("tcptune recover", "after an apply was killed"),
    ],
    "role": [
        ("tcptune role web-server --out roles/", "roles/tcptune_web_server/"),
        ("tcptune role --generic --out roles/", "values from the inventory"),
    ],
    "push": [
        ("tcptune push web-server.yaml -i inventory.ini --check", "what would change"),
        ("tcptune push web-server.yaml -i inventory.ini -l web", "only the web group"),
    ],
    "status": [
        ("tcptune status", "sockets by state, port, remote"),
        ("tcptune status --port 443 --top 20", "one port, more rows"),
        ("tcptune status --watch 2", "redraw every 2 s; Ctrl-C ends"),
        ("tcptune status -f prometheus -o textfile/tcptune.prom", "for node_exporter, written atomically"),
    ],
    "recommend": [
        ("tcptune recommend", "findings from socket states"),
        ("tcptune recommend --sample 10", "judge what happens in 10 s"),
        ("tcptune recommend --sample 10 --write tuned.yaml", "as a profile"),
    ],
    "release": [
        ("tcptune release --state close-wait --sport 8080", "dry run: list them"),
        ("tcptune release --state close-wait --sport 8080 --yes", "destroy"),
        ("tcptune release --state time-wait --older-than 30s --yes", "TIME_WAIT older than 30 s"),
    ],
    "completion": [
        ("source <(tcptune completion bash)", "this shell only"),
        ("tcptune completion fish > ~/.config/fish/completions/tcptune.fish", "for fish, for good"),
    ],
}
"""Command name ('' for tcptune itself) -> (command line, what it does)."""

WIDTH = 76
"""Longest example line: click indents an epilog by two, and help must fit 80 columns."""


def example_lines(command: str) -> list[str]:
    """The examples as aligned lines (``  command   # what``) when they all fit, else each comment above its line."""
    examples = EXAMPLES.get(command, [])
    column = max((len(line) for line, _what in examples), default=0)
    if all(2 + column + 4 + len(what) <= WIDTH for _line, what in examples):
        return [f"  {line:<{column}}  # {what}" if what else f"  {line}" for line, what in examples]
    out = []
    for line, what in examples:
        out += [f"  # {what}", f"  {line}"] if what else [f"  {line}"]
    return out


def epilog(command: str) -> str | None:
    """The "Examples:" part of ``--help``, kept as written (click's ``\\b``: no re-wrapping)."""
    lines = example_lines(command)
    return "\b\nExamples:\n" + "\n".join(lines) if lines else None
