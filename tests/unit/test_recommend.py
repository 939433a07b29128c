"""recommend's windows: a --sample with the listeners polled in between, or the counters recorded at the last apply
(a generation's "counters"), checked before they are trusted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tcptune import recommend as rec
from tcptune.advise import Thresholds
from tcptune.sockets import Evidence, Listener, SocketCounts, take_evidence, watch_listeners

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sockets"
TREES = {"source": "proc", "proc_net": str(FIXTURES), "proc_root": str(FIXTURES / "proc_sys")}


def _generation(**fields: object) -> dict[str, object]:
    return {
        "format": 1,
        "generation": 3,
        "created": "2025-01-02T03:04:05Z",
        "counters": {"TcpExt.ListenOverflows": 10, "Tcp.ActiveOpens": 20},
        **fields,
    }


def test_a_generations_counters_become_a_baseline() -> None:
    baseline = rec.counter_baseline(_generation(counters_netns="net:[4026531840]"))
    assert baseline == rec.CounterBaseline(
        {"TcpExt.ListenOverflows": 10, "Tcp.ActiveOpens": 20},
        1735787045.0,
        "generation 3 was applied",
        "net:[4026531840]",
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"counters": None},
        {"counters": {}},
        {"counters": {"TcpExt.ListenOverflows": -1}},
        {"counters": {"TcpExt.ListenOverflows": True}},
        {"counters": {"TcpExt.ListenOverflows": "10"}},
        {"counters": [1, 2]},
        {"created": "yesterday"},
        {"created": "2025-01-02T03:04:05"},  # no time zone: not a moment
        {"created": 1735787045},
    ],
)
def test_a_generation_without_usable_counters_gives_no_baseline(fields: dict[str, object]) -> None:
    assert rec.counter_baseline(_generation(**fields)) is None


def test_counters_are_judged_over_the_time_since_the_apply() -> None:
    evidence = take_evidence(**TREES)
    counters = dict(evidence.counters)
    baseline = rec.CounterBaseline(
        {"Tcp.ActiveOpens": counters["Tcp.ActiveOpens"] - 7}, evidence.taken_at - 7500, "generation 3 was applied"
    )
    assert rec.apply_baseline(evidence, baseline, booted=evidence.taken_at - 86400) is None
    assert evidence.windowed("Tcp.ActiveOpens") == 7 and evidence.windowed("TcpExt.ListenOverflows") == 0
    assert evidence.window == 7500 and evidence.window_text == "the 2 h 5 min since generation 3 was applied"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"booted_after": True}, "are from before the last boot"),
        ({"higher": True}, "are higher than today's (the counters were reset since)"),
        ({"netns": "net:[1]"}, "are from another network namespace"),
        ({"future": True}, "are dated in the future"),
    ],
)
def test_a_baseline_that_cannot_be_compared_is_refused_with_the_reason(change: dict[str, object], says: str) -> None:
    evidence = take_evidence(**TREES)
    evidence.netns = "net:[2]"
    opens = evidence.counters["Tcp.ActiveOpens"]
    taken = evidence.taken_at + 60 if change.get("future") else evidence.taken_at - 60
    baseline = rec.CounterBaseline(
        {"Tcp.ActiveOpens": opens + 1 if change.get("higher") else opens},
        taken,
        "generation 3 was applied",
        change.get("netns"),  # type: ignore[arg-type]
    )
    booted = evidence.taken_at - 30 if change.get("booted_after") else evidence.taken_at - 3600
    assert (
        rec.apply_baseline(evidence, baseline, booted) == f"the counters recorded when generation 3 was applied {says}"
    )
    assert evidence.deltas is None and evidence.window is None


def test_recommend_uses_the_baseline_and_notes_when_it_cannot(tmp_path: Path) -> None:
    now = time.time()
    good = rec.CounterBaseline({"Tcp.ActiveOpens": 0}, now - 100, "generation 3 was applied")
    found = rec.recommend(thresholds=Thresholds(), baseline=good, owners=False, state_dir=str(tmp_path), **TREES)
    assert found.notes == () and found.evidence.window_text is not None
    assert "since generation 3 was applied" in found.evidence.window_text
    reset = rec.CounterBaseline({"Tcp.ActiveOpens": 10**9}, now - 100, "generation 3 was applied")
    found = rec.recommend(thresholds=Thresholds(), baseline=reset, owners=False, state_dir=str(tmp_path), **TREES)
    assert found.evidence.window is None
    assert found.notes == (
        "the counters recorded when generation 3 was applied are higher than today's (the counters were reset "
        "since): counters judged without a window (--sample SECONDS gives one)",
    )


def test_a_sample_wins_over_the_baseline(tmp_path: Path) -> None:
    baseline = rec.CounterBaseline({"Tcp.ActiveOpens": 0}, time.time() - 100, "generation 3 was applied")
    found = rec.recommend(
        thresholds=Thresholds(),
        baseline=baseline,
        sample=1,
        sleep=lambda _s: None,
        owners=False,
        state_dir=str(tmp_path),
        **TREES,
    )
    assert found.evidence.window_text is not None and found.evidence.window_text.endswith("(--sample)")


def test_watching_listeners_keeps_each_ones_longest_queue() -> None:
    polls = iter([[("0.0.0.0", 80, 3)], [("0.0.0.0", 80, 129), ("::", 22, 1)], [("0.0.0.0", 80, 0)]])
    slept: list[float] = []
    peaks = watch_listeners(0.6, lambda: next(polls), slept.append, every=0.2)
    assert peaks == {("0.0.0.0", 80): 129, ("::", 22): 1}
    assert len(slept) == 3 and abs(sum(slept) - 0.6) < 1e-9


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (125, "2 min 5 s"), (7500, "2 h 5 min"), (200000, "2 d 7 h")]
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert rec.duration_text(seconds) == text


def test_the_listeners_a_sample_saw_full_reach_the_judgement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst that fills a queue and drains before the window ends is still seen (listener_peaks)."""
    readings = iter([100, 130])

    def reading(**_kw: object) -> Evidence:
        counts = SocketCounts(listeners=[Listener("127.0.0.1", 7006, 0, 8)])
        overflows = next(readings)
        previous = _kw.get("previous")
        evidence = Evidence(
            counts=counts,
            sysctls={"net.core.somaxconn": "4096"},
            counters={"TcpExt.ListenOverflows": overflows},
            taken_at=time.time(),
        )
        if isinstance(previous, Evidence):
            evidence.deltas = {"TcpExt.ListenOverflows": overflows - previous.counters["TcpExt.ListenOverflows"]}
            evidence.window = 2.0
        return evidence

    monkeypatch.setattr(rec, "take_evidence", reading)
    monkeypatch.setattr(rec, "listener_queues", lambda source, proc_net: [("127.0.0.1", 7006, 9)])
    found = rec.recommend(thresholds=Thresholds(), sample=2, sleep=lambda _s: None, state_dir=str(tmp_path))
    (finding,) = found.findings
    assert finding.id == "listen-overflows" and "30 times in the last 2.0 s (--sample)" in finding.title
    assert finding.numbers["listeners"] == [
        {"address": "127.0.0.1", "port": 7006, "backlog": 8, "queue_peak": 9, "limited_by": "application backlog"}
    ]
    assert finding.suggest == {}  # backlog 8 under somaxconn 4096: the application's backlog is the limit
