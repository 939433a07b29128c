"""Just enough of GitHub Actions and GitLab CI to run the example pipelines' own commands here, in order.

Which jobs an event selects (GitHub ``if:`` expressions with their implicit ``success()``, ``needs`` results; GitLab
``rules:``, stages, ``extends``), the environment each command sees (workflow/job/step ``env``, ``$GITHUB_ENV``,
GitLab ``variables`` and File-type variables), and the shell each runs (``bash -eo pipefail``, as both do). Steps
that cannot run here are skipped only when the caller names them, with a reason; everything else runs as written.
No text of the pipeline files is rewritten: values reach the commands through the variables the files themselves use.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class StepRun:
    job: str
    name: str
    """GitHub: the step's name (or its ``uses``); GitLab: the command line."""
    rc: int | None
    """None: not run (skipped by the caller, or its condition was false)."""
    skipped: str = ""
    """Why it did not run."""
    output: str = ""
    uses: str = ""
    with_: dict[str, Any] = field(default_factory=dict)
    condition_true: bool = True


@dataclass
class PipelineRun:
    jobs: dict[str, str] = field(default_factory=dict)
    """job -> success, failure or skipped, in the order they were considered."""
    steps: list[StepRun] = field(default_factory=list)

    def step(self, job: str, name: str) -> StepRun:
        found = [s for s in self.steps if s.job == job and s.name == name]
        assert found, f"{job}: no step {name!r} ran or was considered; steps: {[(s.job, s.name) for s in self.steps]}"
        return found[-1]

    def log(self) -> str:
        return "\n".join(f"--- {s.job}: {s.name}: rc {s.rc} {s.skipped}\n{s.output[-4000:]}" for s in self.steps)


Runner = Callable[[str, dict[str, str], Path], tuple[int, str]]
"""(bash script text, environment, working directory) -> (exit code, output)."""


def bash(script: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """What both CI systems do with a Linux shell step: ``bash --noprofile --norc -eo pipefail`` on a script file."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
    try:
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", handle.name],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.unlink(handle.name)
    return proc.returncode, proc.stdout + proc.stderr


def load(path: Path) -> dict[str, Any]:
    """PyYAML reads ``on:`` as True (YAML 1.1); put it back under its name."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


# ---- expressions -------------------------------------------------------------------------------------------------

_GITHUB_TOKEN = re.compile(r"\s+|&&|\|\||==|!=|!|\(|\)|,|'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_.*-]*|\S")
_GITLAB_TOKEN = re.compile(r"\s+|&&|\|\||==|!=|\(|\)|\$[A-Za-z_][A-Za-z0-9_]*|\"[^\"]*\"|'[^']*'|\S")


def github_expression(text: str, context: Mapping[str, Any], functions: Mapping[str, Callable[[], bool]]) -> Any:
    """Evaluate a GitHub Actions expression (the subset the examples use: ==, !=, !, &&, ||, (), literals, dotted
    context names, status functions). A condition without a status function gets the implicit ``success() &&``."""
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    python: list[str] = []
    names = [t for t in _GITHUB_TOKEN.findall(text) if t.strip()]
    for index, token in enumerate(names):
        following = names[index + 1] if index + 1 < len(names) else ""
        if token in ("&&", "||", "!"):
            python.append({"&&": " and ", "||": " or ", "!": " not "}[token])
        elif token in ("==", "!=", "(", ")"):
            python.append(token)
        elif token.startswith("'"):
            python.append(repr(token[1:-1].replace("''", "'")))
        elif following == "(":
            if token not in functions:
                raise ValueError(f"unsupported function {token}() in {text!r}")
            python.append(f"_fn[{token!r}]")
        elif token in ("true", "false", "null"):
            python.append({"true": "True", "false": "False", "null": "None"}[token])
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", token):
            python.append(f"_ctx({token!r})")
        else:
            raise ValueError(f"unsupported token {token!r} in {text!r}")
    return eval("".join(python), {"__builtins__": {}}, {"_fn": functions, "_ctx": lambda n: _lookup(context, n)})


def _lookup(context: Mapping[str, Any], name: str) -> Any:
    value: Any = context
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def gitlab_rule(text: str, variables: Mapping[str, str]) -> bool:
    """Evaluate a GitLab ``rules: if:`` (==, !=, &&, ||, (), "strings", $VARIABLES; an unset variable is null)."""
    python: list[str] = []
    for token in _GITLAB_TOKEN.findall(text):
        if not token.strip():
            continue
        if token in ("&&", "||"):
            python.append({"&&": " and ", "||": " or "}[token])
        elif token in ("==", "!=", "(", ")"):
            python.append(token)
        elif token.startswith("$"):
            python.append(f"_v({token[1:]!r})")
        elif token[0] in "\"'":
            python.append(repr(token[1:-1]))
        else:
            raise ValueError(f"unsupported token {token!r} in rule {text!r}")
    return bool(eval("".join(python), {"__builtins__": {}}, {"_v": lambda n: variables.get(n) or None}))


# ---- GitHub Actions ----------------------------------------------------------------------------------------------


def run_github(
    workflow: dict[str, Any],
    *,
    event: str,
    ref: str,
    secrets: Mapping[str, str],
    base_env: Mapping[str, str],
    workdir: Path,
    skip: Mapping[str, str],
    runner: Runner | None = bash,
) -> PipelineRun:
    """Run the workflow's jobs for ``event`` on ``ref`` in dependency order; ``runner=None`` only selects jobs
    (every selected job counts as succeeded). ``skip`` maps a step's name or ``uses`` to why it cannot run here."""
    shell = (((workflow.get("defaults") or {}).get("run") or {}).get("shell")) or "bash"
    assert shell == "bash", f"the test runs steps with bash -eo pipefail; the workflow says {shell}"
    context: dict[str, Any] = {"github": {"event_name": event, "ref": ref}, "secrets": dict(secrets), "needs": {}}
    run = PipelineRun()
    for name in _github_order(workflow["jobs"]):
        job = workflow["jobs"][name]
        needs = _as_list(job.get("needs"))
        results = [run.jobs[n] for n in needs]
        context["needs"] = {n: {"result": run.jobs[n]} for n in needs}
        functions = {
            "success": lambda results=results: all(r == "success" for r in results),
            "failure": lambda results=results: any(r == "failure" for r in results),
            "always": lambda: True,
            "cancelled": lambda: False,
        }
        if not _github_condition(job.get("if"), context, functions):
            run.jobs[name] = "skipped"
            continue
        if runner is None:
            run.jobs[name] = "success"
            continue
        run.jobs[name] = _github_job(name, job, workflow, context, base_env, workdir, skip, runner, run)
    return run


def _github_job(
    name: str,
    job: dict[str, Any],
    workflow: dict[str, Any],
    context: dict[str, Any],
    base_env: Mapping[str, str],
    workdir: Path,
    skip: Mapping[str, str],
    runner: Runner,
    run: PipelineRun,
) -> str:
    files = Path(tempfile.mkdtemp(prefix="gh", dir=base_env.get("RUNNER_TEMP")))
    github_env, github_path = files / "env", files / "path"
    github_env.touch()
    github_path.touch()
    failed: list[str] = []  # steps that failed so far
    for step in job["steps"]:
        label = step.get("name") or step.get("uses") or step.get("run", "").splitlines()[0]
        functions = {
            "success": lambda: not failed,
            "failure": lambda: bool(failed),
            "always": lambda: True,
            "cancelled": lambda: False,
        }
        condition = _github_condition(step.get("if"), context, functions)
        uses = step.get("uses", "")
        if uses or label in skip:
            reason = skip.get(label) or skip.get(uses)
            assert reason, f"{name}: step {label!r} cannot run here and is not in the test's skip list"
            run.steps.append(
                StepRun(name, label, None, reason, uses=uses, with_=step.get("with") or {}, condition_true=condition)
            )
            continue
        if not condition:
            run.steps.append(StepRun(name, label, None, "condition false", condition_true=False))
            continue
        script = step["run"]
        assert "${{" not in script, f"{name}: {label}: commands must read values from the environment, not ${{{{ }}}}"
        env = {**base_env, "GITHUB_ENV": str(github_env), "GITHUB_PATH": str(github_path)}
        for scope in (workflow.get("env"), job.get("env")):
            env.update({k: str(_github_value(v, context)) for k, v in (scope or {}).items()})
        env.update(_github_env_file(github_env))
        env.update({k: str(_github_value(v, context)) for k, v in (step.get("env") or {}).items()})
        added = [line for line in github_path.read_text().splitlines() if line]
        if added:
            env["PATH"] = os.pathsep.join(reversed(added)) + os.pathsep + env["PATH"]
        rc, output = runner(script, env, workdir)
        run.steps.append(StepRun(name, label, rc, output=output))
        if rc != 0:
            failed.append(label)
    return "failure" if failed else "success"


def _github_condition(text: Any, context: Mapping[str, Any], functions: Mapping[str, Callable[[], bool]]) -> bool:
    if text is None:
        return functions["success"]()
    text = str(text)
    if not re.search(r"\b(success|failure|always|cancelled)\(", text):
        text = f"success() && ({text.strip().removeprefix('${{').removesuffix('}}')})"
    return bool(github_expression(text, context, functions))


def _github_value(value: Any, context: Mapping[str, Any]) -> Any:
    text = str(value)
    if "${{" not in text:
        return text
    match = re.fullmatch(r"\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}", text.strip())
    assert match, f"only ${{{{ secrets.NAME }}}} is supported in env values: {text!r}"
    secret = context["secrets"].get(match.group(1))
    assert secret is not None, f"the test supplies no secret {match.group(1)}"
    return secret


def _github_env_file(path: Path) -> dict[str, str]:
    """``$GITHUB_ENV``: NAME=value lines (the heredoc form is not used by the examples)."""
    out = {}
    for line in path.read_text().splitlines():
        assert "<<" not in line, "heredoc syntax in $GITHUB_ENV is not supported by this test"
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def _github_order(jobs: dict[str, Any]) -> list[str]:
    order: list[str] = []
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(n in order for n in _as_list(jobs[j].get("needs")))]
        assert ready, f"cycle in needs: {pending}"
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# ---- GitLab CI ---------------------------------------------------------------------------------------------------

_GITLAB_GLOBALS = {
    "stages",
    "variables",
    "default",
    "workflow",
    "include",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
}


def gitlab_jobs(pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every job with ``extends`` resolved (hashes merged deeply, anything else replaced, as GitLab does)."""
    jobs = {}
    for name, job in pipeline.items():
        if name in _GITLAB_GLOBALS or name.startswith(".") or not isinstance(job, dict):
            continue
        jobs[name] = _extended(pipeline, job)
    return jobs


def _extended(pipeline: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for parent in _as_list(job.get("extends")):
        merged = _deep_merge(merged, _extended(pipeline, pipeline[parent]))
    return _deep_merge(merged, {k: v for k, v in job.items() if k != "extends"})


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_gitlab(
    pipeline: dict[str, Any],
    *,
    variables: Mapping[str, str],
    base_env: Mapping[str, str],
    workdir: Path,
    skip: Mapping[str, str],
    runner: Runner | None = bash,
) -> PipelineRun:
    """Run the pipeline's jobs stage by stage for the predefined ``variables`` (CI_PIPELINE_SOURCE, ...);
    ``runner=None`` only selects jobs. ``skip`` maps a command line to why it cannot run here."""
    jobs = gitlab_jobs(pipeline)
    stages = pipeline.get("stages") or ["build", "test", "deploy"]
    default = pipeline.get("default") or {}
    run = PipelineRun()
    failed_stage = False
    for stage in stages:
        stage_failed = False
        for name, job in jobs.items():
            if job.get("stage", "test") != stage:
                continue
            env_vars = {**variables, **{k: str(v) for k, v in (pipeline.get("variables") or {}).items()}}
            env_vars.update({k: str(v) for k, v in (job.get("variables") or {}).items()})
            when = _gitlab_when(job, env_vars)
            if when == "never" or (failed_stage and when == "on_success"):
                run.jobs[name] = "skipped"
                continue
            if runner is None:
                run.jobs[name] = "success"
                continue
            assert "after_script" not in job, "after_script is not run by this test"
            lines = [*(job.get("before_script", default.get("before_script")) or []), *job["script"]]
            script = []
            for line in lines:
                if line in skip:
                    run.steps.append(StepRun(name, line, None, skip[line]))
                else:
                    script.append(line)
            env = {**base_env, **env_vars}
            rc, output = runner("\n".join(script) + "\n", env, workdir)
            run.steps.append(StepRun(name, "\n".join(job["script"]), rc, output=output))
            run.jobs[name] = "success" if rc == 0 else "failure"
            stage_failed |= rc != 0
        failed_stage |= stage_failed
    return run


def _gitlab_when(job: dict[str, Any], variables: Mapping[str, str]) -> str:
    rules = job.get("rules")
    if rules is None:
        return job.get("when", "on_success")
    for rule in rules:
        if "if" not in rule or gitlab_rule(rule["if"], variables):
            return rule.get("when", "on_success")
    return "never"
