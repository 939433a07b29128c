"""The rooms of ARCHITECTURE.md, checked on the source: who may import whom, where third-party libraries may be
imported, and the invariants (one writer of /proc/sys, one normaliser, one planner).

Read statically (ast), so a lazy import inside a function counts like one at the top: the rule is about
dependencies, not start-up time (test_cli_imports.py measures that)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tcptune"

CORE = {
    "records",
    "catalog",
    "values",
    "keycheck",
    "profile",
    "validate",
    "schema",
    "explain",
    "plan",
    "advise",
    "failures",
    "errors",
    "sockets.states",
    "sockets.tally",
}
EDGES = {
    "live",
    "persist",
    "userfiles",
    "kernel_write",
    "kernelfacts",
    "boot",
    "preflight",
    "audit",
    "target",
    "sockets",
    "sockets.counters",
    "sockets.evidence",
    "sockets.netlink",
    "sockets.owners",
    "sockets.proc_tcp",
    "sockets.wire",
}
ENGINE = {"engine", "state", "owners", "drift", "desired", "recommend", "importer", "load", "release"}
ROOT = {"", "__version__"}  # the lazy package __init__ (re-exports) and its version string


def room(module: str) -> str:
    if module in ROOT:
        return "root"
    if module in CORE:
        return "core"
    if module in EDGES:
        return "edges"
    if module in ENGINE:
        return "engine"
    if module == "output" or module == "__main__" or module.startswith("cli"):
        return "presentation"
    if module.startswith("ansible"):
        return "ansible"
    raise AssertionError(f"tcptune.{module} is in no room: add it to ARCHITECTURE.md and to this test")


ALLOWED = {
    "core": {"core", "root"},
    "edges": {"core", "edges", "root"},
    "engine": {"core", "edges", "engine", "root"},
    "ansible": {"core", "edges", "engine", "ansible", "root", "output"},
    "presentation": {"core", "edges", "engine", "ansible", "presentation", "root"},
    "root": {"core", "presentation", "root"},
}
EXCEPTIONS = {
    ("plan", "live"): "LiveValue (a reading's value) and order_writes (the kernel's write-order rule): both pure, kept "
    "in live.py because the shipped core's module imports them from there",
    ("profile", "persist"): "read_bounded, the one non-blocking, bounded reader of regular files (a FIFO or a device "
    "named as a profile is refused, never waited on)",
}
THIRD_PARTY = {
    "yaml": {"profile", "ansible.render"},
    "jinja2": {"ansible.render"},
    "ansible": {"ansible.fleet", "ansible.module.tcptune_sysctl"},
    "ansible_runner": {"ansible.fleet"},
    "typer": {"cli.*"},
    "click": {"cli.*"},
    "rich": {"output"},
}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "templates" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), ast.parse(path.read_text(encoding="utf-8"))


def _under_type_checking(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(module: str, tree: ast.Module) -> Iterator[tuple[str, bool, int]]:
    """(imported name, is ours, line) for every import, relative ones resolved; TYPE_CHECKING imports left out."""
    package = module.split(".") if _is_package(module) else module.split(".")[:-1]
    typing_only = _under_type_checking(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                ours = alias.name == "tcptune" or alias.name.startswith("tcptune.")
                yield (alias.name.removeprefix("tcptune").lstrip(".") if ours else alias.name), ours, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
                if node.module:
                    yield target, True, node.lineno
                else:  # from . import boot
                    for alias in node.names:
                        yield ".".join(filter(None, [target, alias.name])), True, node.lineno
            elif node.module and (node.module == "tcptune" or node.module.startswith("tcptune.")):
                yield node.module.removeprefix("tcptune").lstrip("."), True, node.lineno
            elif node.module:
                yield node.module, False, node.lineno


def _is_package(module: str) -> bool:
    return (PACKAGE / module.replace(".", "/") / "__init__.py").exists() if module else True


def test_every_import_between_rooms_is_allowed() -> None:
    wrong = []
    for module, tree in modules():
        if module.startswith("ansible.module"):
            continue  # runs on managed hosts: imports only the shipped core, checked by test_role_module
        for name, ours, line in imports(module, tree):
            allowed = ALLOWED[room(module)]
            if not ours or name == module or room(name) in allowed or name in allowed:
                continue
            if (module, name) not in EXCEPTIONS:
                wrong.append(f"tcptune/{module}:{line} ({room(module)}) imports {name} ({room(name)})")
    assert wrong == []


@pytest.mark.parametrize("library", sorted(THIRD_PARTY))
def test_third_party_libraries_are_imported_only_in_their_room(library: str) -> None:
    allowed = THIRD_PARTY[library]
    wrong = []
    for module, tree in modules():
        for name, ours, line in imports(module, tree):
            if ours or name.split(".")[0] != library:
                continue
            if module not in allowed and not any(a.endswith("*") and module.startswith(a[:-1]) for a in allowed):
                wrong.append(f"tcptune/{module}:{line} imports {name}")
    assert wrong == []


def _opens_for_writing(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            text = ast.unparse(node)
            if "O_WRONLY" in text or "O_RDWR" in text or "write_text(" in text:
                return True
            if isinstance(node.func, (ast.Name, ast.Attribute)) and ast.unparse(node.func) in ("open", "os.fdopen"):
                modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
                if any(isinstance(m, ast.Constant) and any(c in str(m.value) for c in "wax+") for m in modes):
                    return True
    return False


def test_only_the_named_writers_open_files_for_writing() -> None:
    """live.py is the one writer of /proc/sys; persist.py writes every file atomically (state, sysctl.d, the
    files a user names through userfiles.py); state.py only creates its lock file; recommend.py creates a new
    profile exclusively (O_EXCL, never over an existing one). The Ansible renderer and the namespace-host harness
    write their own trees; cli/app.py opens /dev/null; cli/manpage.py is the maintainers' generator."""
    writers = {module for module, tree in modules() if _opens_for_writing(tree)}
    assert writers == {
        "live",
        "persist",
        "state",
        "recommend",
        "cli.app",
        "cli.manpage",
        "ansible.render",
        "ansible.fleet",
        "ansible.nshosts",
    }


@pytest.mark.parametrize(("function", "home"), [("canonical", "values"), ("plan", "plan"), ("atomic_write", "persist")])
def test_one_normaliser_one_planner_one_file_writer(function: str, home: str) -> None:
    defined = {
        module
        for module, tree in modules()
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == function and not module.startswith("ansible.module")
    }
    assert defined == {home}
