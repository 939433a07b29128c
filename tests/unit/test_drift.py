"""diff's boot view and its Prometheus form: predictions of the boot applier -> per-key boot states, drift, gauges.

Pure values in, pure values out; the CLI around them is tested in test_cli_live.py, the predictions in test_boot.py.
"""

from __future__ import annotations

import math

from tcptune.boot import Applier, Assignment, Prediction
from tcptune.drift import Drift, boot_states, prometheus_text
from tcptune.live import LiveValue
from tcptune.plan import plan

OWN = "/etc/sysctl.d/90-tcptune.conf"


def ours(value: str, line: int = 4) -> Assignment:
    return Assignment("k", value, OWN, line)


def theirs(value: str) -> Assignment:
    return Assignment("k", value, "/etc/sysctl.d/99-local.conf", 7)


def state(prediction: Prediction, want: str = "15", root: str = "/") -> str:
    (found,) = boot_states({"k": want}, {"k": prediction}, OWN, root)
    return found.status


def test_a_later_file_that_overrides_ours_is_named_with_our_line_as_on_this_machine() -> None:
    prediction = Prediction("k", "ok", "30", theirs("30"), (ours("15"),))
    (found,) = boot_states({"k": "15"}, {"k": prediction}, OWN, "/srv/image")
    assert found.status == "differs" and found.value == "30"
    assert found.source is not None and found.source.where() == "/srv/image/etc/sysctl.d/99-local.conf:7"
    assert [e.where() for e in found.shadowed] == ["/srv/image/etc/sysctl.d/90-tcptune.conf:4"]


def test_our_own_assignment_winning_is_ok_and_overrides_nothing() -> None:
    (found,) = boot_states({"k": "15"}, {"k": Prediction("k", "ok", "15", ours("15"), (theirs("30"),))}, OWN)
    assert (found.status, found.shadowed) == ("ok", ())


def test_each_prediction_becomes_a_boot_state() -> None:
    assert state(Prediction("k", "ok", "15", ours("15"))) == "ok"
    assert state(Prediction("k", "partial", "15\t2", ours("15 2"), reason="refused after one")) == "differs"
    assert state(Prediction("k", "not-set", "60")) == "not persisted"
    assert state(Prediction("k", "not-set", "15")) == "kernel default"  # no file, and the default is wanted
    assert state(Prediction("k", "not-set", None)) == "not persisted"  # nothing sets it; its default is unknown
    assert state(Prediction("k", "rejected", None, refused=((ours("x"), "invalid"),))) == "rejected"
    assert state(Prediction("k", "rejected", "15", refused=((ours("x"), "invalid"),))) == "kernel default"
    assert state(Prediction("k", "unknown", None, reason="glob")) == "unknown"


def test_kernel_tabs_are_no_boot_drift() -> None:
    (found,) = boot_states({"k": "4096 131072 6291456"}, {"k": Prediction("k", "ok", "4096\t131072\t6291456")}, OWN)
    assert (found.status, found.value) == ("ok", "4096 131072 6291456")


def drifted(*predictions: Prediction) -> Drift:
    desired = {p.key: "15" for p in predictions}
    live = {key: LiveValue(key, "15", "ok", True) for key in desired}
    current = plan(desired, live, profile="web", fingerprint="abc")
    states = boot_states(desired, {p.key: p for p in predictions}, OWN)
    return Drift(current, states, True, Applier("systemd", "252", "systemd (PID 1) starts ..."), True)


def test_unknown_after_reboot_is_counted_and_is_not_drift_and_not_no_drift() -> None:
    result = drifted(Prediction("a", "ok", "15"), Prediction("b", "unknown", None, reason="glob"))
    assert not result.drift and [b.key for b in result.boot_unknown] == ["b"]
    data = result.as_dict()
    assert data["summary"]["boot_unknown"] == 1 and data["summary"]["boot_drift"] is False
    assert data["boot_applier"] == {
        "name": "systemd",
        "version": "252",
        "how": "systemd (PID 1) starts ...",
        "reads_own_file": True,
    }
    text = prometheus_text(result, generation=3, checked_at=1700000000.5)
    assert 'tcptune_key_boot_drift{key="a"} 0\n' in text and 'tcptune_key_boot_drift{key="b"} NaN\n' in text
    assert "tcptune_boot_unknown_keys 1\n" in text and "tcptune_drift 0\n" in text


def test_not_persisted_and_rejected_are_boot_drift() -> None:
    assert drifted(Prediction("a", "not-set", None)).drift
    assert drifted(Prediction("a", "rejected", None)).drift
    assert not Drift(drifted(Prediction("a", "not-set", None)).plan, [], check_boot=False).drift


def test_prometheus_text_is_bounded_escaped_and_parses() -> None:
    result = drifted(Prediction("net.core.somaxconn", "ok", "30"))
    result = result._replace(plan=result.plan._replace(profile='we"b\\\n\x1b' + "x" * 500))
    text = prometheus_text(result, generation=7, checked_at=1700000000.25)
    samples = parse(text)
    assert samples[("tcptune_key_drift", (("key", "net.core.somaxconn"),))] == 0
    assert samples[("tcptune_key_boot_drift", (("key", "net.core.somaxconn"),))] == 1
    assert samples[("tcptune_generation", ())] == 7 and samples[("tcptune_drift", ())] == 1
    assert samples[("tcptune_last_check_timestamp_seconds", ())] == 1700000000.25
    (info,) = [labels for name, labels in samples if name == "tcptune_info"]
    profile = dict(info)["profile"]
    assert profile.startswith('we"b\\') and len(profile) == 200 and "\n" not in profile and "\x1b" not in profile
    assert dict(info)["generation"] == "7" and dict(info)["boot_applier"] == "systemd-sysctl 252"


def test_nothing_managed_is_generation_0_with_no_key_series() -> None:
    samples = parse(prometheus_text(None, generation=0, checked_at=1.0))
    assert samples[("tcptune_generation", ())] == 0 and samples[("tcptune_managed_keys", ())] == 0
    assert not [name for name, _ in samples if name.startswith("tcptune_key_")]
    assert math.isnan(parse(prometheus_text(None, generation=None, checked_at=1.0))[("tcptune_generation", ())])


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The text format read back by prometheus_client's own parser: what node_exporter accepts."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
