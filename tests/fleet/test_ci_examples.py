"""The CI/CD recipes in examples/ci run here, command for command, so they cannot rot.

Both files are read with PyYAML; which jobs each event selects is worked out from their own ``if:``/``rules:``; their
shell commands run in order (bash -eo pipefail, as both CI systems run them) in a copy of the example repository,
against namespace hosts reached by real SSH with the key and known-hosts lines the pipeline itself installs from its
secrets. Only the steps listed in the SKIPS below do not run, each with its reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcptune.ansible import nshosts

from . import ci_pipelines as ci
from .conftest import host_read

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "ci"
GITHUB = EXAMPLES / "github" / "tcptune.yml"
GITLAB = EXAMPLES / "gitlab" / ".gitlab-ci.yml"
GATE = 'tcptune diff "$TCPTUNE_PROFILE" -i "$TCPTUNE_INVENTORY" --format json > drift.json'
PUSH = 'tcptune push "$TCPTUNE_PROFILE" -i "$TCPTUNE_INVENTORY" --yes'

NETWORK_INSTALL = "installs from the network; this venv's tcptune, ansible-lint and molecule come first on PATH"
GITHUB_SKIPS = {
    "actions/checkout@v4": "the working directory is a fresh copy of the example repository",
    "actions/upload-artifact@v4": "no artifact store here: the test checks that the step runs after a failure and "
    "that the file it uploads exists",
    "Install tcptune, ansible-lint and Molecule; sshd and ip for the namespace hosts": "apt-get and pip: "
    + NETWORK_INSTALL,
    "Install tcptune": "pipx: " + NETWORK_INSTALL,
}
GITLAB_SKIPS = {
    "python3 -m pip install --quiet --root-user-action=ignore pipx": NETWORK_INSTALL,
    'pipx install "$TCPTUNE_PIP_SPEC"': NETWORK_INSTALL,
    "apt-get update -qq": "apt from the network (sshd and ip are on this machine already)",
    "apt-get install -y -qq --no-install-recommends openssh-server iproute2": "apt from the network (and would "
    "change this machine); sshd and ip are here already",
    'python3 -m pip install --quiet --root-user-action=ignore "$TCPTUNE_PIP_SPEC" ansible-lint molecule': "pip: "
    + NETWORK_INSTALL,
}

# ---- the files themselves (fast, no root) ------------------------------------------------------------------------


def github_plan(event: str, ref: str = "refs/heads/main") -> dict[str, str]:
    return ci.run_github(
        ci.load(GITHUB), event=event, ref=ref, secrets={}, base_env={}, workdir=REPO, skip={}, runner=None
    ).jobs


def gitlab_plan(source: str, branch: str | None = "main") -> dict[str, str]:
    variables = {"CI_PIPELINE_SOURCE": source, "CI_DEFAULT_BRANCH": "main"}
    if branch:
        variables["CI_COMMIT_BRANCH"] = branch
    run = ci.run_gitlab(ci.load(GITLAB), variables=variables, base_env={}, workdir=REPO, skip={}, runner=None)
    return run.jobs


def selected(jobs: dict[str, str]) -> list[str]:
    return [name for name, result in jobs.items() if result != "skipped"]


@pytest.mark.parametrize(
    ("event", "ref", "jobs"),
    [
        ("pull_request", "refs/pull/7/merge", ["check"]),
        ("push", "refs/heads/main", ["check", "push", "drift"]),
        ("push", "refs/heads/feature", ["check", "drift"]),
        ("schedule", "refs/heads/main", ["drift"]),
        ("workflow_dispatch", "refs/heads/main", ["check", "drift"]),
    ],
)
def test_github_workflow_pushes_on_main_only_and_gates_drift_except_on_pull_requests(
    event: str, ref: str, jobs: list[str]
) -> None:
    assert selected(github_plan(event, ref)) == jobs


@pytest.mark.parametrize(
    ("source", "branch", "jobs"),
    [
        ("merge_request_event", None, ["validate", "role"]),
        ("push", "main", ["validate", "role", "push", "drift"]),
        ("push", "feature", ["validate", "role"]),
        ("schedule", "main", ["drift"]),
        ("web", "main", ["validate", "role", "drift"]),
    ],
)
def test_gitlab_pipeline_pushes_on_the_default_branch_only_and_gates_drift_on_it_and_on_schedules(
    source: str, branch: str | None, jobs: list[str]
) -> None:
    assert selected(gitlab_plan(source, branch)) == jobs


def test_github_workflow_uploads_the_drift_report_even_when_the_gate_fails() -> None:
    steps = ci.load(GITHUB)["jobs"]["drift"]["steps"]
    names = [s.get("name") for s in steps]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert names.index("Drift gate (exit 2 = drift, 1 = error)") < steps.index(upload)
    assert upload["if"] == "always()" and upload["with"]["path"] == "drift.json"
    gate_step = next(s for s in steps if s.get("name") == "Drift gate (exit 2 = drift, 1 = error)")
    push_steps = ci.load(GITHUB)["jobs"]["push"]["steps"]
    assert gate_step["run"] == GATE and any(s.get("run") == PUSH for s in push_steps)


def test_gitlab_pipeline_keeps_the_drift_report_even_when_the_gate_fails() -> None:
    drift = ci.gitlab_jobs(ci.load(GITLAB))["drift"]
    assert drift["script"] == [GATE] and ci.gitlab_jobs(ci.load(GITLAB))["push"]["script"] == [PUSH]
    assert drift["artifacts"]["when"] == "always" and drift["artifacts"]["paths"] == ["drift.json"]


def test_every_skipped_step_exists_in_its_file_so_the_skip_lists_cannot_go_stale() -> None:
    github = ci.load(GITHUB)
    steps = [s.get("name") or s.get("uses") for job in github["jobs"].values() for s in job["steps"]]
    uses = [s["uses"] for job in github["jobs"].values() for s in job["steps"] if "uses" in s]
    assert set(GITHUB_SKIPS) <= set(steps) | set(uses)
    gitlab = ci.gitlab_jobs(ci.load(GITLAB))
    lines = {line for job in gitlab.values() for line in job.get("before_script", []) + job["script"]}
    assert set(GITLAB_SKIPS) <= lines


def test_commands_take_values_from_variables_not_ci_expressions() -> None:
    """``${{ }}`` inside a run script is template injection waiting to happen; values travel in env instead."""
    github = ci.load(GITHUB)
    for job in github["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step
    assert {"TCPTUNE_PROFILE", "TCPTUNE_INVENTORY", "TCPTUNE_PIP_SPEC"} <= set(github["env"])
    assert {"TCPTUNE_PROFILE", "TCPTUNE_INVENTORY", "TCPTUNE_PIP_SPEC"} <= set(ci.load(GITLAB)["variables"])


def test_expression_evaluators_follow_the_ci_systems_rules() -> None:
    functions = {"success": lambda: False, "always": lambda: True, "cancelled": lambda: False}
    context = {"github": {"event_name": "push"}, "needs": {"a": {"result": "skipped"}}}
    assert ci.github_expression("!cancelled() && needs.a.result != 'failure'", context, functions) is True
    assert ci.github_expression("github.event_name == 'push' || success()", context, functions) is True
    assert ci._github_condition("github.event_name == 'push'", context, functions) is False  # implicit success()
    assert ci.gitlab_rule('$A == "x" && $B == $C', {"A": "x", "B": "main", "C": "main"}) is True
    assert ci.gitlab_rule('$A != "x" || $UNSET', {"A": "x"}) is False


# ---- the pipelines' commands against namespace hosts (slow, root) ------------------------------------------------

PROFILE_VALUES = {"net.ipv4.tcp_fin_timeout": "15", "net.core.somaxconn": "8192"}  # examples/ci/profiles/web.yaml


@pytest.fixture(scope="module", params=["github", "gitlab"])
def pipeline(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Three namespace hosts and a copy of the example repository; then the pipeline as it runs on a schedule (hosts
    at their defaults: drift), on a push to main (check, push, gate) and on a schedule with one host down."""
    kind = request.param
    fleet = nshosts.up(3)
    scratch = Path(tempfile.mkdtemp(prefix="tci", dir="/tmp"))  # short: Molecule's SSH ControlPath lives under HOME
    try:
        yield _run_scenarios(kind, fleet, scratch)
    finally:
        problems = fleet.down()
        shutil.rmtree(scratch, ignore_errors=True)
        assert not problems, problems


def _run_scenarios(kind: str, fleet: nshosts.Fleet, scratch: Path) -> dict[str, Any]:
    checkout, home, temp = scratch / "repo", scratch / "h", scratch / "t"
    shutil.copytree(EXAMPLES / "profiles", checkout / "profiles")
    home.mkdir()
    temp.mkdir()
    data = ci.load(GITHUB if kind == "github" else GITLAB)
    settings = data["env"] if kind == "github" else data["variables"]
    inventory = checkout / settings["TCPTUNE_INVENTORY"]
    inventory.parent.mkdir(parents=True)
    # Address, user and interpreter only: the SSH key and the host keys come from the pipeline's own set-up steps.
    python = "/usr/bin/python3"
    hosts = {
        h.name: {"ansible_host": h.address, "ansible_user": "root", "ansible_python_interpreter": python}
        for h in fleet.hosts
    }
    inventory.write_text(json.dumps({"all": {"children": {"web": {"hosts": hosts}}}}))
    key = Path(fleet.key_file).read_text()
    host_key = Path(Path(fleet.key_file).parent, "hostkey.pub").read_text().split()
    known_hosts = "".join(f"{h.address} {host_key[0]} {host_key[1]}\n" for h in fleet.hosts)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CI": "true",
        "TMPDIR": str(temp),  # a job's /tmp is its own (a container): what its mktemp makes goes with the scratch dir
    }

    def run(event: str, branch: str = "main") -> ci.PipelineRun:
        if kind == "github":
            github_env = {**env, "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(checkout)}
            secrets = {"TCPTUNE_SSH_KEY": key, "TCPTUNE_KNOWN_HOSTS": known_hosts}
            return ci.run_github(
                data,
                event=event,
                ref=f"refs/heads/{branch}",
                secrets=secrets,
                base_env=github_env,
                workdir=checkout,
                skip=GITHUB_SKIPS,
            )
        files = {"TCPTUNE_SSH_KEY": key, "TCPTUNE_KNOWN_HOSTS": known_hosts}
        for name, text in files.items():  # File-type CI/CD variables: the variable holds a path
            (temp / name).write_text(text)
        variables = {"CI_PIPELINE_SOURCE": event, "CI_COMMIT_BRANCH": branch, "CI_DEFAULT_BRANCH": "main"}
        variables.update({name: str(temp / name) for name in files})
        return ci.run_gitlab(
            data,
            variables=variables,
            base_env={**env, "CI_PROJECT_DIR": str(checkout)},
            workdir=checkout,
            skip=GITLAB_SKIPS,
        )

    def report() -> Any:
        path = checkout / "drift.json"
        out = json.loads(path.read_text()) if path.exists() else None
        path.unlink(missing_ok=True)
        return out

    scheduled = run("schedule")
    scheduled_report = report()
    main = run("push")
    main_report = report()
    values = {h.name: {k: host_read(fleet, h.name, k) for k in PROFILE_VALUES} for h in fleet.hosts}
    persisted = {h.name: Path(h.directory, "sysctl.d", "90-tcptune.conf").exists() for h in fleet.hosts}
    fleet.stop("h2")
    down = run("schedule")
    down_report = report()
    return {
        "kind": kind,
        "scheduled": scheduled,
        "scheduled_report": scheduled_report,
        "main": main,
        "main_report": main_report,
        "values": values,
        "persisted": persisted,
        "down": down,
        "down_report": down_report,
    }


def gate(run: ci.PipelineRun, kind: str) -> ci.StepRun:
    return run.step("drift", "Drift gate (exit 2 = drift, 1 = error)" if kind == "github" else GATE)


@pytest.mark.slow
@pytest.mark.netns
def test_scheduled_gate_fails_on_drift_and_writes_the_report(pipeline: dict[str, Any]) -> None:
    run = pipeline["scheduled"]
    assert selected(run.jobs) == ["drift"], run.log()
    assert gate(run, pipeline["kind"]).rc == 2, run.log()
    assert run.jobs["drift"] == "failure"
    report = pipeline["scheduled_report"]
    assert report is not None and report["drift"] is True
    assert sorted(report["hosts"]) == ["h1", "h2", "h3"]
    assert report["hosts"]["h1"]["keys"]["net.ipv4.tcp_fin_timeout"]["desired"] == "15"


@pytest.mark.slow
@pytest.mark.netns
def test_the_drift_report_is_kept_after_the_failed_gate(pipeline: dict[str, Any]) -> None:
    assert pipeline["scheduled_report"] is not None  # the gate wrote it before failing
    if pipeline["kind"] == "github":
        upload = pipeline["scheduled"].step("drift", "Upload the drift report")
        assert upload.condition_true and upload.with_["path"] == "drift.json"
    else:
        artifacts = ci.gitlab_jobs(ci.load(GITLAB))["drift"]["artifacts"]
        assert artifacts["when"] == "always" and artifacts["paths"] == ["drift.json"]


@pytest.mark.slow
@pytest.mark.netns
def test_main_branch_pipeline_validates_lints_runs_molecule_pushes_and_then_passes_the_gate(
    pipeline: dict[str, Any],
) -> None:
    run = pipeline["main"]
    assert set(run.jobs.values()) == {"success"}, run.log()
    if pipeline["kind"] == "github":
        expected = {
            ("check", "Validate every profile (warnings fail too)"),
            ("check", "Render the profile's Ansible role"),
            ("check", "ansible-lint"),
            ("check", "molecule test"),
            ("push", "Push the profile to the fleet"),
        }
    else:
        jobs = ci.gitlab_jobs(ci.load(GITLAB))
        expected = {(name, "\n".join(jobs[name]["script"])) for name in ("validate", "role", "push")}
    assert expected <= {(s.job, s.name) for s in run.steps if s.rc == 0}, run.log()
    assert gate(run, pipeline["kind"]).rc == 0
    assert pipeline["main_report"]["drift"] is False


@pytest.mark.slow
@pytest.mark.netns
def test_push_job_applied_and_persisted_the_profile_on_every_host(pipeline: dict[str, Any]) -> None:
    assert pipeline["values"] == {h: PROFILE_VALUES for h in ("h1", "h2", "h3")}, pipeline["main"].log()
    assert all(pipeline["persisted"].values())


@pytest.mark.slow
@pytest.mark.netns
def test_gate_exits_1_with_a_report_when_a_host_is_unreachable(pipeline: dict[str, Any]) -> None:
    run = pipeline["down"]
    assert gate(run, pipeline["kind"]).rc == 1, run.log()
    report = pipeline["down_report"]
    assert report["hosts"]["h2"]["status"] == "unreachable" and report["hosts"]["h1"]["status"] == "ok"


def test_example_profiles_pass_strict_validation() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tcptune", "validate", "--strict", *map(str, sorted(EXAMPLES.glob("profiles/*.yaml")))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
