"""Generated Ansible roles: files, values as data, argument specs from the catalog, shipped code as in tcptune."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tcptune import catalog
from tcptune.ansible import render
from tcptune.errors import FleetError
from tcptune.profile import load_profile
from tcptune.validate import validate

REPO = Path(__file__).resolve().parents[2]
SHIPPED_ROLE = REPO / "roles" / "tcptune"

PROFILE = """\
name: web-server
description: "Busy front end {{ lookup('pipe', 'touch /tmp/tcptune-pwned') }}"
settings:
  net.ipv4.tcp_fin_timeout: 15
  net.ipv4.tcp_rmem: [4096, 131072, 4MiB]
  net.core.somaxconn: 4096
  net.core.rmem_max: 4MiB
  net.ipv4.tcp_tw_reuse: 1
  net.ipv4.tcp_congestion_control: cubic
"""


class _AnsibleLoader(yaml.SafeLoader):
    """Reads role YAML the way Ansible does as far as tags go: ``!unsafe`` strings are kept, marked."""


class Unsafe(str):
    pass


_AnsibleLoader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def load(path: Path) -> object:
    return yaml.load(path.read_text(), Loader=_AnsibleLoader)  # a SafeLoader subclass


@pytest.fixture
def spec(tmp_path: Path) -> render.RoleSpec:
    (tmp_path / "web-server.yaml").write_text(PROFILE)
    verdict = validate(load_profile(str(tmp_path / "web-server.yaml")))
    assert not verdict.errors
    return render.spec_from_verdict(verdict)


@pytest.fixture
def role(spec: render.RoleSpec, tmp_path: Path) -> Path:
    return render.render_role(spec, tmp_path / "roles")


def test_role_is_named_after_the_profile(role: Path) -> None:
    assert role.name == "tcptune_web_server"
    assert render.role_name_for("High.Bandwidth-10g") == "tcptune_high_bandwidth_10g"


def test_role_has_every_part_of_a_complete_role(role: Path) -> None:
    for rel in (
        "defaults/main.yml",
        "tasks/main.yml",
        "handlers/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "README.md",
        "library/tcptune_sysctl.py",
        f"module_utils/{render.core_package()}/__init__.py",
        f"module_utils/{render.core_package()}/engine.py",
        f"module_utils/{render.core_package()}/keyfacts.py",
        "molecule/default/molecule.yml",
        "molecule/default/create.yml",
        "molecule/default/destroy.yml",
        "molecule/default/converge.yml",
        "molecule/default/verify.yml",
        "molecule/default/nshosts.py",
    ):
        assert (role / rel).is_file(), rel


def test_defaults_hold_the_resolved_values_in_kernel_form(role: Path) -> None:
    defaults = load(role / "defaults/main.yml")
    assert defaults["tcptune_web_server_settings"] == {
        "net.ipv4.tcp_fin_timeout": 15,
        "net.ipv4.tcp_rmem": "4096 131072 4194304",
        "net.core.somaxconn": 4096,
        "net.core.rmem_max": 4194304,
        "net.ipv4.tcp_tw_reuse": 1,
        "net.ipv4.tcp_congestion_control": "cubic",
    }
    assert defaults["tcptune_web_server_overrides"] == {}
    assert defaults["tcptune_web_server_persist"] is True
    assert defaults["tcptune_web_server_sysctl_file"] == "/etc/sysctl.d/90-tcptune.conf"


def test_template_like_values_are_written_as_unsafe_data(tmp_path: Path) -> None:
    spec = render.RoleSpec(
        "tcptune_x",
        "x",
        "d {{ evil }}",
        settings={"net.ipv4.tcp_congestion_control": "{{ lookup('pipe', 'id') }}", "net.ipv4.tcp_fin_timeout": "15"},
    )
    role = render.render_role(spec, tmp_path)
    settings = load(role / "defaults/main.yml")["tcptune_x_settings"]
    assert isinstance(settings["net.ipv4.tcp_congestion_control"], Unsafe)
    assert settings["net.ipv4.tcp_congestion_control"] == "{{ lookup('pipe', 'id') }}"
    assert not isinstance(settings["net.ipv4.tcp_fin_timeout"], Unsafe)
    specs = load(role / "meta/argument_specs.yml")
    assert isinstance(specs["argument_specs"]["main"]["description"][0], Unsafe)
    assert isinstance(load(role / "meta/main.yml")["galaxy_info"]["description"], Unsafe)


def test_no_profile_text_reaches_a_templated_place(role: Path) -> None:
    for rel in ("tasks/main.yml", "handlers/main.yml"):
        text = (role / rel).read_text()
        assert "lookup" not in text and "Busy" not in text, rel


EVIL = 'x{{ lookup("pipe","id") }}'


def _strings(data: object) -> list[str]:
    """Every string in parsed YAML, mapping keys included."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in _strings(k) + _strings(v)]
    if isinstance(data, list):
        return [s for item in data for s in _strings(item)]
    return []


@pytest.mark.parametrize("name", [EVIL, EVIL + "\nevil: {{ 1 }}", "a{% raw %}b", "c{# x #}"])
def test_profile_name_and_description_are_never_templated(tmp_path: Path, name: str) -> None:
    """Defence in depth (profile.py also restricts names): profile text reaches Ansible only as !unsafe data."""
    spec = render.RoleSpec(
        "tcptune_t",
        name,
        f"about {name}",
        fingerprint="0123456789ab",
        settings={"net.ipv4.tcp_fin_timeout": "15", "net.ipv4.tcp_congestion_control": EVIL, EVIL: "1"},
    )
    role = render.render_role(spec, tmp_path)
    for path in sorted(role.rglob("*.yml")):
        data = load(path)
        for text in _strings(data):
            if any(m in text for m in ("lookup", "raw %", "x #", "evil")):
                assert isinstance(text, Unsafe), f"{path.relative_to(role)}: {text!r} would be templated"
        for line in path.read_text().splitlines():  # one line per scalar: nothing from the profile starts a line
            assert not line.lstrip().startswith(("evil", "{{ 1")), f"{path.relative_to(role)}: {line!r}"
    defaults = load(role / "defaults/main.yml")
    assert set(defaults) == {
        f"tcptune_t_{v}"
        for v in (
            *("settings", "overrides", "fingerprint", "persist", "sysctl_file", "profile_name", "verify", "owner"),
            *("skip_missing", "skip_readonly", "keep_unmanaged", "state_dir"),
        )
    }
    assert defaults["tcptune_t_profile_name"] == name and isinstance(defaults["tcptune_t_profile_name"], Unsafe)
    main = load(role / "meta/argument_specs.yml")["argument_specs"]["main"]
    assert isinstance(main["short_description"], Unsafe) and name in main["short_description"]
    assert isinstance(main["options"]["tcptune_t_profile_name"]["default"], Unsafe)
    readme = (role / "README.md").read_text()
    assert "\nevil:" not in readme and f"**{name.splitlines()[0]}" in readme


def test_fleet_playbook_names_the_play_with_data(tmp_path: Path) -> None:
    from tcptune.ansible.fleet import _playbook

    site = tmp_path / "site.yml"
    site.write_text(_playbook("tcptune_evil", EVIL + "\nevil: 1"))
    (play,) = load(site)
    assert isinstance(play["name"], Unsafe) and play["name"] == f"tcptune {EVIL}\nevil: 1"
    assert set(play) == {"name", "hosts", "gather_facts", "strategy", "roles"}
    assert play["roles"] == [{"role": "tcptune_evil"}] and play["strategy"] == "free"  # progress per host
    assert "{{" not in _playbook("tcptune_evil", "web").replace("!unsafe", "")


@pytest.mark.parametrize("role_name", ["../x", "tcptune_{{ x }}", "Tcptune", ""])
def test_role_names_are_plain_identifiers(tmp_path: Path, role_name: str) -> None:
    with pytest.raises(FleetError):
        render.render_role(render.RoleSpec(role_name, "x", "d"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_role_from_a_profile_records_the_profile_fingerprint(spec: render.RoleSpec, role: Path) -> None:
    """The file header then matches what the CLI writes; the module's own hash is for overrides and the generic
    role only."""
    profile = validate(load_profile(str(role.parent.parent / "web-server.yaml"))).profile
    assert spec.fingerprint == profile.fingerprint()
    assert load(role / "defaults/main.yml")["tcptune_web_server_fingerprint"] == profile.fingerprint()
    assert 'fingerprint: "{{ tcptune_web_server_fingerprint if not' in (role / "tasks/main.yml").read_text()


def test_argument_specs_come_from_the_modules_option_table_without_a_per_key_dump(role: Path) -> None:
    """Ansible lists every suboption when one is unknown (80 KB for a typo): settings have none; the module checks
    keys and values against the catalog instead (test_role_module)."""
    options = load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    settings = options["tcptune_web_server_settings"]
    assert settings["type"] == "dict" and "options" not in settings
    assert settings["description"][1:] == render.MODULE_OPTIONS["settings"]["description"]
    assert options["tcptune_web_server_persist"]["description"] == render.MODULE_OPTIONS["persist"]["description"]
    assert options["tcptune_web_server_owner"]["default"] == "tcptune_web_server"
    assert "-e tcptune_web_server_verify=true" in " ".join(options["tcptune_web_server_verify"]["description"])


def test_module_documentation_and_argument_spec_come_from_one_table(role: Path) -> None:
    text = (role / "library/tcptune_sysctl.py").read_text()
    namespace: dict = {}
    exec(text.split("EXAMPLES = ")[0], namespace)  # the generated block only: DOCUMENTATION, ARGUMENT_SPEC
    doc = yaml.safe_load(namespace["DOCUMENTATION"])
    assert set(doc["options"]) == set(namespace["ARGUMENT_SPEC"]) == set(render.MODULE_OPTIONS)
    for name, option in namespace["ARGUMENT_SPEC"].items():
        assert {k: v for k, v in doc["options"][name].items() if k != "description"} == option, name
    described = doc["options"]["settings"]["description"]
    assert "C(net.ipv4.tcp_fin_timeout): 1..600 seconds; per network namespace." in described


def test_shipped_keyfacts_are_the_catalogs(role: Path) -> None:
    namespace: dict = {}
    text = (role / "module_utils" / render.core_package() / "keyfacts.py").read_text()
    exec(text.replace("from .keycheck import KeyFacts", "from tcptune.keycheck import KeyFacts"), namespace)
    keys = namespace["KEYS"]
    assert set(keys) == {k.name for k in catalog.all_keys()}
    for key in catalog.all_keys():
        facts = keys[key.name]
        assert (facts.shape, facts.minimum, facts.maximum, facts.choices, facts.scope, facts.removed) == (
            key.shape,
            key.minimum,
            key.maximum,
            key.choices,
            key.scope,
            key.removed,
        ), key.name


def test_the_core_ships_as_one_package_of_byte_identical_copies(role: Path) -> None:
    package = role / "module_utils" / render.core_package()
    assert sorted(p.name for p in (role / "module_utils").iterdir()) == [package.name]
    for name in render.SHIPPED_CORE:
        assert (package / f"{name}.py").read_bytes() == (render.PACKAGE / f"{name}.py").read_bytes(), name
    module = (role / "library/tcptune_sysctl.py").read_text()
    assert f"from ansible.module_utils.{package.name}.engine import" in module
    assert "ansible.module_utils.tcptune_core." not in module


def test_the_package_name_changes_with_any_shipped_file() -> None:
    """Roles made by different tcptune versions never share (or shadow) one copy of the core."""
    files = render.core_files()
    name = render.core_package(files)
    assert name.startswith("tcptune_core_") and len(name) == len("tcptune_core_") + 10
    for changed in ("engine.py", "keyfacts.py", "values.py"):
        other = dict(files, **{changed: files[changed] + b"# another version\n"})
        assert render.core_package(other) != name, changed


@pytest.mark.parametrize("name", [*render.SHIPPED_CORE])
def test_shipped_core_is_standard_library_only_with_relative_imports(name: str) -> None:
    import ast
    import sys

    tree = ast.parse((render.PACKAGE / f"{name}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            modules = [node.module] if node.module else [a.name for a in node.names]
            assert node.level == 1 and set(modules) <= {*render.SHIPPED_CORE, "keyfacts"}, (name, ast.dump(node))
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] in sys.stdlib_module_names, (name, node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in sys.stdlib_module_names, (name, alias.name)


def test_shipped_generic_role_matches_a_fresh_render(tmp_path: Path) -> None:
    """roles/tcptune is generated: after changing the catalog, live.py, values.py, persist.py or the templates,
    regenerate it with `tcptune role --generic --out roles`."""
    fresh = render.render_role(render.generic_spec(), tmp_path)
    fresh_files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    shipped_files = sorted(p.relative_to(SHIPPED_ROLE).as_posix() for p in SHIPPED_ROLE.rglob("*") if p.is_file())
    assert shipped_files == fresh_files, "stale: run 'tcptune role --generic --out roles'"
    _, mismatch, errors = filecmp.cmpfiles(fresh, SHIPPED_ROLE, fresh_files, shallow=False)
    assert not mismatch and not errors, f"stale: {mismatch + errors}; run 'tcptune role --generic --out roles'"


def test_generic_role_takes_settings_from_the_inventory(tmp_path: Path) -> None:
    role = render.render_role(render.generic_spec(), tmp_path)
    options = load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["tcptune_settings"]["required"] is True
    assert {"tcptune_persist", "tcptune_sysctl_file", "tcptune_profile_name"} <= set(options)
    assert "tcptune_settings" in (role / "tasks/main.yml").read_text()
    assert not (role / "molecule").exists()


def test_molecule_scenario_uses_only_keys_a_namespace_host_can_set(role: Path) -> None:
    scenario = load(role / "molecule/default/molecule.yml")
    settings = scenario["provisioner"]["inventory"]["group_vars"]["all"]["tcptune_web_server_settings"]
    assert "net.core.rmem_max" not in settings  # host-wide: read-only in a network namespace
    assert "net.ipv4.tcp_congestion_control" not in settings
    assert settings["net.ipv4.tcp_fin_timeout"] == 15
    assert scenario["prerun"] is False and scenario["driver"]["options"]["managed"] is True
    assert (role / "molecule/default/nshosts.py").read_bytes() == render.NSHOSTS_SOURCE.read_bytes()


def test_rerender_replaces_a_tcptune_role_but_never_a_foreign_directory(spec: render.RoleSpec, tmp_path: Path) -> None:
    first = render.render_role(spec, tmp_path)
    (first / "stale.txt").write_text("x")
    again = render.render_role(spec, tmp_path)
    assert not (again / "stale.txt").exists()
    shutil.rmtree(again)
    (tmp_path / spec.role_name).mkdir()
    (tmp_path / spec.role_name / "mine.yml").write_text("keep")
    with pytest.raises(FleetError):
        render.render_role(spec, tmp_path)
    assert (tmp_path / spec.role_name / "mine.yml").read_text() == "keep"


def test_cli_role_writes_the_role(tmp_path: Path) -> None:
    from tcptune.cli import run

    (tmp_path / "p.yaml").write_text(PROFILE)
    assert run(["role", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/tcptune_web_server/tasks/main.yml").is_file()
    assert run(["role", "--out", str(tmp_path / "out")]) == 64  # neither PROFILE nor --generic


@pytest.mark.slow
def test_generated_role_passes_ansible_lint_production_and_syntax_check(role: Path, tmp_path: Path) -> None:
    lint = subprocess.run(
        ["ansible-lint", "--profile", "production", "--nocolor", "."],
        cwd=role,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    playbook = tmp_path / "site.yml"
    playbook.write_text(f"- name: t\n  hosts: all\n  gather_facts: false\n  roles:\n    - {role.name}\n")
    syntax = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", "localhost,", str(playbook)],
        env={**_env(), "ANSIBLE_ROLES_PATH": str(role.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


@pytest.mark.slow
def test_shipped_generic_role_passes_ansible_lint_production() -> None:
    lint = subprocess.run(
        ["ansible-lint", "--profile", "production", "--nocolor", "."],
        cwd=SHIPPED_ROLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.slow
def test_top_level_molecule_scenarios_pass_ansible_lint_production() -> None:
    lint = subprocess.run(
        ["ansible-lint", "--profile", "production", "--nocolor", "molecule"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


SHIPPED_COLLECTION = REPO / "collection" / "ansible_collections" / "tcptune" / "tuning"


def test_shipped_collection_source_matches_a_fresh_render(tmp_path: Path) -> None:
    """collection/ is generated: regenerate it with `tcptune role --collection --out collection`."""
    fresh = render.render_collection(tmp_path)
    fresh_files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(SHIPPED_COLLECTION).as_posix() for p in SHIPPED_COLLECTION.rglob("*") if p.is_file())
    assert shipped == fresh_files, "stale: run 'tcptune role --collection --out collection'"
    _, mismatch, errors = filecmp.cmpfiles(fresh, SHIPPED_COLLECTION, fresh_files, shallow=False)
    assert not mismatch and not errors, f"stale: {mismatch + errors}; run 'tcptune role --collection --out collection'"


def test_collection_holds_the_module_its_core_under_the_collection_namespace_and_the_roles(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PROFILE)
    from tcptune.cli import run

    assert run(["role", str(tmp_path / "p.yaml"), "--collection", "--out", str(tmp_path / "out")]) == 0
    root = tmp_path / "out/ansible_collections/tcptune/tuning"
    module = (root / "plugins/modules/sysctl_profile.py").read_text()
    assert "from ansible_collections.tcptune.tuning.plugins.module_utils.core.engine import" in module
    assert "module: sysctl_profile" in module
    for name in render.SHIPPED_CORE:
        assert (root / f"plugins/module_utils/core/{name}.py").read_bytes() == (
            render.PACKAGE / f"{name}.py"
        ).read_bytes()
    for role in ("tcptune", "tcptune_web_server"):
        tasks = (root / f"roles/{role}/tasks/main.yml").read_text()
        assert "tcptune.tuning.sysctl_profile:" in tasks, role
        assert not (root / f"roles/{role}/library").exists() and not (root / f"roles/{role}/module_utils").exists()
    galaxy = yaml.safe_load((root / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("tcptune", "tuning")
