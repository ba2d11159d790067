"""Events of a score curve: merging across short gaps, the minimum length, the class over the
event, seconds to frames, and the same events whether the scores come whole or in chunks."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyclip.errors import InputError
from anomalyclip.events import EventRules, EventTracker, anomalous_spans
from anomalyclip.predictor import Prediction
from naive import naive_events

NAMES = ["Abuse", "Fighting", "Normal", "Shooting"]
NORMAL = 2


def curve(*pieces: tuple[float, int]) -> np.ndarray:
    """A hand-made score curve: (value, frames) pieces."""
    return np.concatenate([np.full(n, v, dtype=np.float32) for v, n in pieces])


def uniform_probs(scores: np.ndarray) -> np.ndarray:
    p = np.empty((len(scores), len(NAMES)), dtype=np.float32)
    p[:] = (scores / 3)[:, None]
    p[:, NORMAL] = 1 - scores
    return p


def spans_of(scores, probs=None, threshold=0.5, fps=None, rules=EventRules()):
    probs = uniform_probs(scores) if probs is None else probs
    pred = np.zeros(len(scores), dtype=np.int64)
    return anomalous_spans(Prediction(scores, probs, pred, threshold), NAMES, NORMAL, fps, rules)


def test_fragments_closer_than_the_gap_merge_and_short_ones_are_dropped():
    # runs: 0-0 (1 frame), 6-25 (20), 29-38 (10), 89-90 (2)
    s = curve((0.9, 1), (0.1, 5), (0.9, 20), (0.1, 3), (0.9, 10), (0.1, 50), (0.9, 2))
    got = spans_of(s, rules=EventRules(min_event=16, merge_gap=4))
    assert [(e["start"], e["end"], e["num_frames"]) for e in got] == [(6, 38, 33)]  # gap 3 <= 4 merges; gap 5 does not
    assert got[0]["mean_score"] == pytest.approx((30 * 0.9 + 3 * 0.1) / 33, rel=1e-6)  # the gap's frames belong to it
    assert got[0]["peak_score"] == pytest.approx(0.9)

    # merging happens before the length rule: two 10-frame runs 2 apart make one 22-frame event
    s2 = curve((0.1, 4), (0.9, 10), (0.2, 2), (0.8, 10), (0.1, 4))
    assert [(e["start"], e["end"]) for e in spans_of(s2, rules=EventRules(min_event=16, merge_gap=2))] == [(4, 25)]
    assert spans_of(s2, rules=EventRules(min_event=16, merge_gap=1)) == []  # apart, each too short
    # both rules off: the raw runs
    assert [(e["start"], e["end"]) for e in spans_of(s, rules=EventRules(0, 0))] == [(0, 0), (6, 25), (29, 38), (89, 90)]


def test_an_event_ending_at_a_gap_edge_and_the_threshold_itself():
    s = curve((0.5, 3), (0.49, 4), (0.5, 3))  # the threshold counts as anomalous
    assert [(e["start"], e["end"]) for e in spans_of(s, rules=EventRules(0, 4))] == [(0, 9)]
    assert [(e["start"], e["end"]) for e in spans_of(s, rules=EventRules(0, 3))] == [(0, 2), (7, 9)]


def test_the_class_is_the_most_probable_abnormal_class_over_the_event():
    # 20 frames lean slightly to Abuse, 13 strongly to Shooting: a majority vote of the frames
    # would say Abuse, the mean probability over the event says Shooting
    s = curve((0.1, 5), (0.9, 33), (0.1, 5))
    p = np.zeros((len(s), 4), dtype=np.float32)
    p[:, NORMAL] = 1 - s
    p[5:25, 0], p[5:25, 1], p[5:25, 3] = 0.40, 0.15, 0.35
    p[25:38, 0], p[25:38, 1], p[25:38, 3] = 0.02, 0.03, 0.85
    (event,) = spans_of(s, p, rules=EventRules(0, 0))
    assert event["class"] == "Shooting" and event["class_id"] == 3
    assert event["class_prob"] == pytest.approx((20 * 0.35 + 13 * 0.85) / 33, rel=1e-6)


def test_seconds_become_frames_at_the_rate():
    assert EventRules(0.5, 0.3).frames(10) == (5, 3)
    assert EventRules(0.1, 0.1).frames(30) == (3, 3)  # 0.1 * 30 is 3.0000000000000004
    assert EventRules(0.5, 1.0).frames(30) == (15, 30)
    assert EventRules().frames(30) == (15, 30) and EventRules().frames(None) == (16, 32)  # the defaults
    assert EventRules(0, 0).frames(25) == (1, 0)
    assert EventRules(2, 5).frames(None) == (2, 5)  # frames when the rate is unknown
    # at 10 fps a 0.4 s event (4 frames) is too short for --min-event 0.5, a 0.5 s one is not
    s = curve((0.1, 10), (0.9, 4), (0.1, 10), (0.9, 5), (0.1, 10))
    got = spans_of(s, fps=10, rules=EventRules(0.5, 0.3))
    assert [(e["start"], e["end"], e["start_s"], e["end_s"]) for e in got] == [(24, 28, 2.4, 2.8)]
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="min-event"):
            EventRules(min_event=bad)
        with pytest.raises(InputError, match="merge-gap"):
            EventRules(merge_gap=bad)


def test_default_rules_remove_one_frame_fragments():
    # two real 60-frame events, each broken by dips below the threshold, and lone spikes
    s = np.full(600, 0.2, dtype=np.float32)
    s[100:160] = s[400:460] = 0.8
    s[[110, 111, 130, 140, 141, 142, 143, 420, 441, 442, 443, 444, 445]] = 0.3
    s[[20, 60, 250, 300, 520, 521]] = 0.7
    raw = spans_of(s, rules=EventRules(0, 0))
    assert len(raw) == 4 + 3 + 5 and sorted(e["num_frames"] for e in raw)[:4] == [1, 1, 1, 1]
    got = spans_of(s)  # the defaults, in frames (no rate): 16 frames long, gaps up to 32 merge
    assert [(e["start"], e["end"]) for e in got] == [(100, 159), (400, 459)]
    got = spans_of(s, fps=30)  # the defaults in seconds: 0.5 s (15 frames), gaps up to 1 s (30 frames)
    assert [(e["start"], e["end"]) for e in got] == [(100, 159), (400, 459)]


@pytest.mark.parametrize("seed", range(6))
def test_chunked_and_whole_give_the_naive_events(seed):
    rng = np.random.default_rng(seed)
    t = int(rng.integers(50, 400))
    # a slow wave plus noise: runs of every length, gaps of every length
    s = np.clip(0.5 + 0.3 * np.sin(np.arange(t) / rng.uniform(3, 15)) + 0.2 * rng.standard_normal(t), 0, 1).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=t).astype(np.float32)
    low, gap = int(rng.integers(1, 12)), int(rng.integers(0, 8))
    rules = EventRules(low, gap)
    expected = naive_events(s, p, 0.5, NORMAL, low, gap)
    whole = spans_of(s, p, rules=rules)
    tracker = EventTracker(NAMES, NORMAL, 0.5, rules)
    chunked, at = [], 0
    while at < t:
        n = int(rng.integers(1, 40))
        chunked += tracker.push(s[at : at + n], p[at : at + n])
        at += n
    chunked += tracker.finish()
    for got in (whole, chunked):
        assert [(e["start"], e["end"], e["class_id"]) for e in got] == [(e["start"], e["end"], e["class_id"]) for e in expected]
        for g, e in zip(got, expected):
            assert g["mean_score"] == pytest.approx(e["mean_score"], rel=1e-5)
            assert g["peak_score"] == pytest.approx(e["peak_score"], rel=1e-6)


def test_an_event_closes_as_soon_as_it_can_no_longer_grow():
    tracker = EventTracker(NAMES, NORMAL, 0.5, EventRules(min_event=3, merge_gap=4))
    s = curve((0.9, 5), (0.1, 10))
    p = uniform_probs(s)
    closed_at = None
    for i in range(len(s)):
        if tracker.push(s[i : i + 1], p[i : i + 1]):
            closed_at = i
            break
    assert closed_at == 4 + 4 + 1  # last anomalous frame 4, then 5 normal frames: more than the gap
    assert tracker.finish() == []


def test_frame_times_name_the_event_times():
    s = curve((0.1, 3), (0.9, 4), (0.1, 3))
    times = np.array([0.0, 0.1, 0.25, 0.3, 0.42, 0.5, 0.61, 0.7, 0.8, 0.9])  # a source with uneven timestamps
    (event,) = anomalous_spans(Prediction(s, uniform_probs(s), np.zeros(10, np.int64), 0.5), NAMES, NORMAL, 10,
                               EventRules(0, 0), times)
    assert (event["start_s"], event["end_s"]) == (0.3, 0.61)
