"""The catalog's facts against the running kernel: each key read in a fresh network namespace (and the host's value
read only), and each modelled kernel bound written for real in that throwaway namespace.

Facts that depend on the machine (memory-sized defaults, the build's congestion control) are not compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tcptune import catalog, kernel_write
from tcptune.values import canonical
from tests.integration.kernel_sandbox import KernelSandbox, host_value

pytestmark = [pytest.mark.slow, pytest.mark.netns]

RELEASE = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])

PROBE = r"""
import json, os, sys
out = {}
for key in json.loads(open(0).read()):
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path) as handle:
            value = handle.read().rstrip("\n")
        out[key] = {"exists": True, "writable": os.access(path, os.W_OK), "value": value}
    except FileNotFoundError:
        out[key] = {"exists": False}
print(json.dumps(out))
"""

TRIALS = r"""
import json, os, sys, errno
result = {}
for key, values in json.loads(sys.stdin.read()).items():
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as handle:
        before = handle.read()
    outcomes = []
    for value in values:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, (value + "\n").encode())
            outcomes.append(True)
        except OSError as exc:
            outcomes.append(errno.errorcode[exc.errno])
        finally:
            os.close(fd)
        with open(path, "w") as handle:
            handle.write(before)
    result[key] = outcomes
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[KernelSandbox]:
    guarded = ("net.ipv4.tcp_reordering", "net.ipv4.tcp_max_reordering", "net.ipv4.tcp_ecn", "kernel.pid_max")
    before = {key: host_value(key) for key in guarded}
    box = KernelSandbox()
    try:
        yield box
    finally:
        box.close()
        assert {key: host_value(key) for key in guarded} == before, "the machine's own sysctls changed"


def _run(box: KernelSandbox, code: str, payload: object) -> dict[str, object]:
    import subprocess
    import sys

    out = subprocess.run(
        [*box._enter(), sys.executable, "-c", code],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


@pytest.fixture(scope="module")
def in_netns(sandbox: KernelSandbox) -> dict[str, dict[str, object]]:
    return _run(sandbox, PROBE, [k.name for k in catalog.all_keys()])  # type: ignore[return-value]


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")) if text else (0,)


def _judged(key: catalog.Key) -> bool:
    """Keys whose presence this kernel can show: not removed, not newer than it, module loaded."""
    if key.removed or _version(key.added) > RELEASE:
        return False
    if key.module and not os.path.exists("/proc/sys/" + key.name.replace(".", "/")):
        return False
    return key.name.startswith("net.")  # fs.* is read-only in the sandbox for every key


@pytest.mark.parametrize("key", [k for k in catalog.all_keys() if _judged(k)], ids=lambda k: k.name)
def test_scope_matches_the_kernel(key: catalog.Key, in_netns: dict[str, dict[str, object]]) -> None:
    seen = in_netns[key.name]
    scope = key.scope
    if key.netns_since and _version(key.netns_since) > RELEASE:
        scope = "global"
    if scope == "netns":
        assert seen["exists"] and seen["writable"], f"{key.name} is not writable in a child namespace"
    else:
        assert not seen["exists"] or not seen["writable"], f"{key.name} is writable in a child namespace"
        host_value(key.name)  # and it exists on the host (read only)


@pytest.mark.parametrize(
    "key",
    [k for k in catalog.all_keys() if _judged(k) and k.default is not None and k.scope == "netns"],
    ids=lambda k: k.name,
)
def test_default_matches_a_fresh_namespace(key: catalog.Key, in_netns: dict[str, dict[str, object]]) -> None:
    assert canonical(in_netns[key.name]["value"]) == canonical(key.default)


def _trial_values(rule: catalog.KernelWrite) -> list[int]:
    values = []
    for edge in (rule.low, rule.high):
        if edge is not None:
            values += [edge - 1, edge, edge + 1]
    top = {"u8": 255, "uint": 2**32 - 1, "int": 2**31 - 1}.get(rule.handler)
    if top is not None:
        values += [top, top + 1, -1]
    return sorted(set(values))


MODELLED = {
    name: rule
    for name, rule in catalog.KERNEL_WRITES.items()
    if rule.arity == 1 and rule.handler in ("int", "u8", "uint", "jiffies", "capped")
}


def test_kernel_bounds_match_what_the_kernel_accepts(
    sandbox: KernelSandbox, in_netns: dict[str, dict[str, object]]
) -> None:
    """Every modelled per-namespace key, written at and around its bounds: the model and the kernel agree."""
    trials = {}
    for name, rule in MODELLED.items():
        seen = in_netns.get(name) or _run(sandbox, PROBE, [name])[name]
        if not (seen.get("exists") and seen.get("writable")) or _version(rule.since) > RELEASE:  # type: ignore[union-attr]
            continue
        trials[name] = [str(v) for v in _trial_values(rule)]
    assert "net.ipv4.tcp_rto_max_ms" in trials and "net.ipv4.tcp_tw_reuse_delay" in trials
    outcomes = _run(sandbox, TRIALS, trials)
    disagreements = []
    for name, values in trials.items():
        rule = MODELLED[name]
        current = kernel_write.parse_shown(rule, str(in_netns[name]["value"]))
        peer = None
        if rule.peer:
            peer = kernel_write.parse_shown(catalog.KERNEL_WRITES[rule.peer], str(in_netns[rule.peer]["value"]))
        for value, real in zip(values, outcomes[name]):  # type: ignore[call-overload]
            predicted = kernel_write.write(rule, current, (value + "\n").encode(), kernel_write.KernelFacts(), peer)
            if predicted.accepted is None:
                continue
            if predicted.accepted != (real is True):
                disagreements.append(f"{name}={value}: kernel {real}, model {predicted.accepted}")
    assert not disagreements, disagreements


def test_accurate_ecn_is_refused_where_the_catalog_says(sandbox: KernelSandbox) -> None:
    (history,) = catalog.get("net.ipv4.tcp_ecn").value_history  # type: ignore[union-attr]
    outcomes = _run(sandbox, TRIALS, {"net.ipv4.tcp_ecn": ["2", "3", "5"]})["net.ipv4.tcp_ecn"]
    if _version(history.older_through) >= RELEASE:
        assert outcomes == [True, "EINVAL", "EINVAL"]
