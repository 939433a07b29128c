"""Differential test: tcptune's boot prediction against the real systemd-sysctl and ``sysctl --system``.

Seeded generated sysctl.d trees (``TCPTUNE_DIFF_SEED`` replays a run; the seed is printed) are applied by the real
programs in fresh network namespaces (see boot_ns_driver.py); every key of interest is read back and compared with
``boot.predict`` for that applier. Every prediction that is not "unknown" must match the kernel exactly.

Debian packages: systemd (/lib/systemd/systemd-sysctl) and procps (/usr/sbin/sysctl).
"""

from __future__ import annotations

import collections
import gzip
import os
import random
import re
import shutil
import time
from pathlib import Path

import pytest

from tcptune import boot, catalog
from tcptune.kernel_write import KernelFacts
from tests.integration import real_appliers
from tests.integration.sysctl_tree_gen import CLASSES, GLOBAL_KEYS, GLOBS, INTERFACE_KEYS, Generator, Rule, _matches

pytestmark = [pytest.mark.slow, pytest.mark.netns]

TREES = int(os.environ.get("TCPTUNE_DIFF_TREES", "300"))
SYSTEMD = "/lib/systemd/systemd-sysctl"
PROCPS = "/usr/sbin/sysctl"
GUARDED = ("kernel/pid_max", "vm/swappiness", "fs/file-max", "net/ipv4/tcp_fin_timeout", "net/ipv4/tcp_rmem")


def host(path: str) -> str:
    with open("/proc/sys/" + path) as handle:
        return handle.read()


def config_hz() -> int | None:
    try:
        with gzip.open("/proc/config.gz", "rt") as handle:
            found = re.search(r"^CONFIG_HZ=(\d+)$", handle.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def key_pool(names: set[str], read_only: set[str]) -> dict[str, Rule]:
    """Keys the trees may name: every modelled per-namespace key, the interface keys, and some that must fail."""
    pool: dict[str, Rule] = {}
    for name, rule in catalog.KERNEL_WRITES.items():
        path = name.replace(".", "/")
        if rule.handler != "congestion" and path in names and path not in read_only:
            pool[path] = Rule(rule.handler, rule.arity, rule.low, rule.high)
    for path in INTERFACE_KEYS:
        pool[path] = Rule("devinet")
    for path in GLOBAL_KEYS:
        pool.setdefault(path, Rule("int"))
    return pool


@pytest.mark.skipif(not (os.path.exists(SYSTEMD) and os.path.exists(PROCPS)), reason="needs systemd and procps")
def test_boot_prediction_agrees_with_the_real_appliers(tmp_path: Path) -> None:
    seed = int(os.environ.get("TCPTUNE_DIFF_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nTCPTUNE_DIFF_SEED={seed} trees={TREES}")
    started = time.monotonic()
    before = {path: host(path) for path in GUARDED}

    facts, _ = real_appliers.run([], [], list(GLOBAL_KEYS))
    names, read_only = set(facts["names"]), set(facts["read_only"])
    pool = key_pool(names, read_only)
    for pattern in GLOBS:  # a glob may reach only keys that are read back
        reached = {n for n in names if _matches(pattern, n)}
        assert reached <= set(pool), f"{pattern} reaches keys outside the pool: {reached - set(pool)}"

    generator = Generator(random.Random(seed), pool)
    trees = [generator.tree(tmp_path / f"tree-{i:03d}") for i in range(TREES)]
    keys = sorted(pool)
    _, runs = real_appliers.run([t.root for t in trees], keys, list(GLOBAL_KEYS))
    assert len(runs) == 2 * TREES
    fresh = runs[0]["initial"]
    assert all(r["initial"] == fresh for r in runs), "a run did not start from a fresh namespace's defaults"

    facts_hz = KernelFacts(hz=config_hz())
    defaults = boot.catalog_defaults()  # what diff starts from (boot.kernel_view): no fresh namespace to read there
    as_diff = as_diff_agreed = 0
    compared = agreed = 0
    touched_compared = 0
    unknown_by_class: collections.Counter[str] = collections.Counter()
    unknown_reasons: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    mismatches: list[str] = []
    for record in runs:
        tree = trees[record["tree"]]
        initial = {k: v for k, v in record["initial"].items() if v is not None}
        view = boot.KernelView(frozenset(names), frozenset(read_only), initial, facts_hz)
        predicted = boot.predict(str(tree.root), keys, record["applier"], view)
        as_diff_view = boot.KernelView(frozenset(names), frozenset(read_only), defaults, facts_hz)
        for key, prediction in boot.predict(str(tree.root), keys, record["applier"], as_diff_view).items():
            if prediction.status == "unknown" or prediction.value is None:
                continue  # no claim about the value (a key nothing sets whose default the catalog does not know)
            as_diff += 1
            if prediction.value == record["final"][key]:
                as_diff_agreed += 1
            else:
                mismatches.append(
                    f"{tree.root.name} {record['applier']} {key} from catalog defaults: predicted"
                    f" {prediction.value!r} ({prediction.status}), kernel has {record['final'][key]!r}"
                )
        for key in keys:
            prediction = predicted[key]
            statuses[f"{record['applier']}:{prediction.status}"] += 1
            if prediction.status == "unknown":
                unknown_reasons[re.sub(r"'[^']*'", "'...'", prediction.reason)] += 1
                if os.environ.get("TCPTUNE_DIFF_DEBUG"):
                    print("unknown:", tree.root.name, record["applier"], key, prediction)
                for name in tree.classes:
                    unknown_by_class[name] += 1
                continue
            compared += 1
            if prediction.status != "not-set" or record["final"][key] != record["initial"][key]:
                touched_compared += 1
            if prediction.value == record["final"][key]:
                agreed += 1
                continue
            mismatches.append(
                f"{tree.root.name} {record['applier']} {key}: predicted {prediction.value!r} ({prediction.status},"
                f" {prediction.source.where() if prediction.source else '-'} {prediction.reason}),"
                f" kernel has {record['final'][key]!r} (before {record['initial'][key]!r}); rc={record['rc']}"
            )

    covered = set().union(*(t.classes for t in trees))
    elapsed = time.monotonic() - started
    print(f"agreement: {agreed}/{compared} predictions ({touched_compared} on keys a tree sets), seed {seed}")
    print(f"from the catalog's defaults, as diff predicts: {as_diff_agreed}/{as_diff}")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"unknown predictions by class of the tree: {dict(sorted(unknown_by_class.items()))}")
    print(f"unknown reasons: {dict(unknown_reasons.most_common())}")
    print(f"classes not generated: {sorted(set(CLASSES) - covered)}; {elapsed:.1f} s")
    assert {path: host(path) for path in GUARDED} == before, "the machine's own sysctls changed"
    assert not mismatches, f"seed {seed}: {len(mismatches)} mismatches:\n" + "\n".join(mismatches[:25])
    assert set(CLASSES) <= covered, f"seed {seed}: classes never generated: {set(CLASSES) - covered}"
    assert touched_compared > TREES, "too few keys were actually set to mean anything"
    unknown = sum(n for status, n in statuses.items() if status.endswith(":unknown"))
    assert unknown <= 0.05 * sum(statuses.values()), f"{unknown} unknown predictions: the model says too little"
    shutil.rmtree(tmp_path, ignore_errors=True)
