"""Preflight's verdicts against what the real kernel then does: each case in a fresh network namespace, judged by
tcptune first, then written for real in apply's order, stopping at the first refusal as apply does.

A refused verdict must meet a refused write (and the first refused write must have been predicted); ok and warning
verdicts must meet accepted writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.kernel_sandbox import KernelSandbox, host_value

pytestmark = [pytest.mark.slow, pytest.mark.netns]

DRIVER = r"""
import json, sys
from tcptune import kernelfacts, preflight
from tcptune.live import ProcSys, WriteFailed, order_writes
from tcptune.values import canonical

case = json.loads(sys.argv[1])
proc = ProcSys("/proc/sys")
for key, value in case.get("setup", {}).items():
    proc.write(key, value)
desired, raw = case["desired"], case.get("raw", [])
facts = kernelfacts.read_facts(proc, preflight.keys_to_read(desired))
verdicts = preflight.check(desired, facts, raw)
live = {k: v for k, v in facts.live.items()}
changes = []
for key, value in desired.items():
    before = live[key]
    if before.status == "ok" and before.text is not None and canonical(before.text) == canonical(value):
        continue
    changes.append((key, canonical(value), canonical(before.text or "")))
written = {}
for key, new, _old in order_writes(changes):
    try:
        proc.write(key, new)
        written[key] = "accepted"
    except (WriteFailed, ValueError) as exc:
        written[key] = "refused: " + str(exc)
        break
print(json.dumps({"verdicts": {k: v.as_dict() for k, v in verdicts.items()}, "written": written,
                  "allowed": sorted(facts.allowed_cc or []), "available": sorted(facts.available_cc or [])}))
"""


@pytest.fixture
def sandbox() -> Iterator[KernelSandbox]:
    guarded = ("net.ipv4.tcp_ecn", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_reordering", "kernel.pid_max")
    before = {key: host_value(key) for key in guarded}
    box = KernelSandbox()
    try:
        yield box
    finally:
        box.close()
        assert {key: host_value(key) for key in guarded} == before, "the machine's own sysctls changed"


def judge(box: KernelSandbox, case: dict[str, Any]) -> dict[str, Any]:
    import subprocess
    import sys

    out = subprocess.run(
        [*box._enter(), sys.executable, "-c", DRIVER, json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=60,
        env=box.env(),
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


CASES: dict[str, dict[str, Any]] = {
    "accurate-ecn-refused": {"desired": {"net.ipv4.tcp_ecn": "3"}, "expect": {"net.ipv4.tcp_ecn": "refused"}},
    "classic-ecn-ok": {"desired": {"net.ipv4.tcp_ecn": "1"}, "expect": {"net.ipv4.tcp_ecn": "ok"}},
    "tw-reuse-loopback-ok": {"desired": {"net.ipv4.tcp_tw_reuse": "1"}, "expect": {"net.ipv4.tcp_tw_reuse": "ok"}},
    "congestion-allowed-ok": {
        "desired": {"net.ipv4.tcp_congestion_control": "reno"},
        "expect": {"net.ipv4.tcp_congestion_control": "ok"},
    },
    "unprivileged-start-above-live-range": {
        "desired": {"net.ipv4.ip_unprivileged_port_start": "40000"},
        "expect": {"net.ipv4.ip_unprivileged_port_start": "refused"},
    },
    "unprivileged-start-raised-with-the-range": {
        "desired": {"net.ipv4.ip_unprivileged_port_start": "40000", "net.ipv4.ip_local_port_range": "40000 60999"},
        "expect": {"net.ipv4.ip_unprivileged_port_start": "ok", "net.ipv4.ip_local_port_range": "ok"},
    },
    "range-below-live-unprivileged-start": {
        "desired": {"net.ipv4.ip_local_port_range": "1000 60999"},
        "expect": {"net.ipv4.ip_local_port_range": "refused"},
    },
    "range-lowered-with-the-start": {
        "desired": {"net.ipv4.ip_local_port_range": "1000 60999", "net.ipv4.ip_unprivileged_port_start": "1000"},
        "expect": {"net.ipv4.ip_local_port_range": "ok", "net.ipv4.ip_unprivileged_port_start": "ok"},
    },
    "range-against-a-start-set-earlier": {
        "setup": {"net.ipv4.ip_unprivileged_port_start": "2000"},
        "desired": {"net.ipv4.ip_local_port_range": "1500 60999"},
        "expect": {"net.ipv4.ip_local_port_range": "refused"},
    },
    "reordering-above-live-max": {
        "desired": {"net.ipv4.tcp_reordering": "400"},
        "expect": {"net.ipv4.tcp_reordering": "refused"},
    },
    "reordering-with-a-raised-max": {
        "desired": {"net.ipv4.tcp_reordering": "400", "net.ipv4.tcp_max_reordering": "500"},
        "expect": {"net.ipv4.tcp_reordering": "ok", "net.ipv4.tcp_max_reordering": "ok"},
    },
    "retired-key-accepted-with-a-warning": {
        "desired": {"net.ipv4.tcp_fack": "1"},
        "expect": {"net.ipv4.tcp_fack": "warning"},
    },
    "host-wide-obsolete-key-absent-here": {
        "desired": {"net.ipv4.tcp_low_latency": "1"},
        "expect": {"net.ipv4.tcp_low_latency": "refused"},
    },
    "host-wide-key-read-only-here": {
        "desired": {"net.core.rmem_max": "8388608"},
        "expect": {"net.core.rmem_max": "refused"},
    },
    "allowed-congestion-list-read-only-here": {
        "desired": {"net.ipv4.tcp_allowed_congestion_control": "reno"},
        "expect": {"net.ipv4.tcp_allowed_congestion_control": "refused"},
    },
    "optmem-per-netns-on-this-kernel": {
        "desired": {"net.core.optmem_max": "1048576"},
        "expect": {"net.core.optmem_max": "ok"},
    },
    "rto-max-in-range": {"desired": {"net.ipv4.tcp_rto_max_ms": "60000"}, "expect": {"net.ipv4.tcp_rto_max_ms": "ok"}},
    "raw-key-ok": {
        "desired": {"net.ipv4.tcp_stdurg": "1"},
        "raw": ["net.ipv4.tcp_stdurg"],
        "expect": {"net.ipv4.tcp_stdurg": "ok"},
    },
    "raw-key-text-where-numbers-are": {
        "desired": {"net.ipv4.tcp_app_win": "lots"},
        "raw": ["net.ipv4.tcp_app_win"],
        "expect": {"net.ipv4.tcp_app_win": "refused"},
    },
    "raw-key-missing": {
        "desired": {"net.ipv4.tcp_no_such_key": "1"},
        "raw": ["net.ipv4.tcp_no_such_key"],
        "expect": {"net.ipv4.tcp_no_such_key": "refused"},
    },
}


def agree(result: dict[str, Any], expect: dict[str, str]) -> None:
    verdicts, written = result["verdicts"], result["written"]
    for key, outcome in expect.items():
        assert verdicts[key]["outcome"] == outcome, (key, verdicts[key])
    first_refused = next((k for k, w in written.items() if w.startswith("refused")), None)
    refused = {k for k, v in verdicts.items() if v["outcome"] == "refused"}
    if first_refused is not None:
        assert first_refused in refused, (
            f"the kernel refused {first_refused} ({written[first_refused]}); preflight: {verdicts}"
        )
    else:
        assert not refused & set(written), f"preflight refused what the kernel took: {verdicts}, {written}"
    for key in refused:
        assert written.get(key, "refused").startswith("refused") or key not in written, (key, written)
    for key, verdict in verdicts.items():
        if verdict["outcome"] != "refused" and key in written:
            assert written[key] == "accepted", (key, written[key], verdict)


@pytest.mark.parametrize("name", sorted(CASES))
def test_preflight_predicts_what_the_kernel_does(sandbox: KernelSandbox, name: str) -> None:
    case = CASES[name]
    result = judge(sandbox, case)
    agree(result, case["expect"])


def test_a_congestion_control_available_but_not_allowed_is_refused(sandbox: KernelSandbox) -> None:
    probe = judge(sandbox, {"desired": {}})
    candidates = sorted(set(probe["available"]) - set(probe["allowed"]))
    if not candidates:
        pytest.skip("every available algorithm is allowed in namespaces on this machine")
    case = {"desired": {"net.ipv4.tcp_congestion_control": candidates[0]}}
    result = judge(sandbox, case)
    agree(result, {"net.ipv4.tcp_congestion_control": "refused"})
    assert "EPERM" in result["verdicts"]["net.ipv4.tcp_congestion_control"]["reasons"][0]
    assert "not permit" in result["written"]["net.ipv4.tcp_congestion_control"]
