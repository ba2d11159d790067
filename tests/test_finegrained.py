"""Fine-grained detection mAP@tIoU (design/FINEGRAINED.md): hand-computed cases for every odd
corner, and a slow reference written literally from the definition against the fast code."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from anomalyclip.errors import InputError
from anomalyclip.finegrained import fine_grained_aps, fine_grained_map

TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5)
KEYS = ["map_tiou_0.1", "map_tiou_0.2", "map_tiou_0.3", "map_tiou_0.4", "map_tiou_0.5", "map_tiou_avg"]


# -- the slow reference: FINEGRAINED.md step by step, plain loops and sets --------------------
def reference_maps(probs, labels, video, normal_id, include_normal, tious):
    videos = []  # (P_i as lists of floats per class, labels_i), in order of appearance
    order = []
    for t in range(len(video)):
        if not order or video[t] != order[-1]:
            order.append(video[t])
            videos.append(([], []))
        videos[-1][0].append([float(v) for v in probs[t]])
        videos[-1][1].append(int(labels[t]))
    n_classes = len(probs[0])

    gt = {c: [] for c in range(n_classes)}
    for i, (_, y) in enumerate(videos):
        if all(v == normal_id for v in y):
            if include_normal:
                gt[normal_id].append((i, 0, len(y)))
            continue
        t = 0
        while t < len(y):
            u = t
            while u < len(y) and y[u] == y[t]:
                u += 1
            if y[t] != normal_id:
                gt[y[t]].append((i, t, u))
            t = u

    props = {c: [] for c in range(n_classes)}
    for i, (rows, _) in enumerate(videos):
        for c in range(n_classes):
            col = [r[c] for r in rows]
            k = len(col) // 16
            top = sorted(col, reverse=True)[:k]
            conf = sum(top) / k if k else float("nan")
            if not conf > 0:  # VadCLIP zeroes the column: no proposals
                continue
            hi, lo = max(col), min(col)
            thr = hi - (hi - lo) * 0.6
            t = 0
            while t < len(col):
                if col[t] > thr:
                    u = t
                    while u < len(col) and col[u] > thr:
                        u += 1
                    if u - t >= 2:
                        props[c].append((i, t, u, max(col[t:u]) + 0.7 * conf))
                    t = u
                else:
                    t += 1
    if any(not props[c] for c in range(n_classes)):
        return [0.0] * len(tious), [[0.0] * n_classes for _ in tious]

    maps, aps_all = [], []
    for th in tious:
        aps = []
        for c in range(n_classes):
            ranked = sorted(props[c], key=lambda p: -p[3])  # stable: ties stay in (video, start) order
            remaining = list(gt[c])
            tp = []
            for i, s, e, _ in ranked:
                best, best_iou = None, 0.0
                for j, (gi, gs, ge) in enumerate(remaining):
                    if gi != i:
                        continue
                    a, b = set(range(s, e)), set(range(gs, ge))
                    iou = len(a & b) / len(a | b)
                    if iou >= th and iou > best_iou:
                        best, best_iou = j, iou
                if best is None:
                    tp.append(0)
                else:
                    del remaining[best]
                    tp.append(1)
            ap, hits = 0.0, 0
            for k, flag in enumerate(tp):
                hits += flag
                if flag:
                    ap += hits / (k + 1)
            aps.append(ap / len(gt[c]) if hits and gt[c] else 0.0)
        aps_all.append(aps)
        maps.append(sum(aps) / n_classes)
    return maps, aps_all


# -- building inputs ---------------------------------------------------------------------------
def stack(videos):
    """[(P_i (T_i, C), labels_i (T_i,)), ...] -> probs, labels, video ids 0..V-1."""
    probs = np.concatenate([p for p, _ in videos])
    labels = np.concatenate([y for _, y in videos])
    video = np.concatenate([np.full(len(y), i) for i, (_, y) in enumerate(videos)])
    return probs, labels, video


def spans_video(t, n_classes, normal_id, spans, detect=None):
    """A video of t frames labelled normal except `spans` [(cls, s, e)]; probs 1 on `detect`
    [(cls, s, e, value)] (default: the spans, value 1), 0 elsewhere, normal column = 1 - max."""
    y = np.full(t, normal_id)
    p = np.zeros((t, n_classes))
    for c, s, e in spans:
        y[s:e] = c
    for c, s, e, v in detect if detect is not None else [(c, s, e, 1.0) for c, s, e in spans]:
        p[s:e, c] = v
    p[:, normal_id] = 1 - np.delete(p, normal_id, axis=1).max(axis=1)
    return p, y


def maps_of(result):
    return [result[k] for k in KEYS[:-1]]


def every(value):
    """All six keys at `value` (the mean of five equal floats may differ from it in the last bit)."""
    return pytest.approx(dict.fromkeys(KEYS, value), abs=1e-15)


# -- hand-computed cases -----------------------------------------------------------------------
def perfect_set(without=None):
    """C = 5, normal id 2; every abnormal class has a video (one with two spans), two normal
    videos; `without` drops that class's video and puts a 2-frame false positive of it in the
    first normal video instead. Each abnormal column is 1 exactly on its frames. The normal column is 1 on [0, T-1) of
    normal videos (a constant column would give no proposal) and 0 in abnormal videos, whose
    normal frames are no ground truth."""
    c, normal = 5, 2
    videos = [
        spans_video(64, c, normal, [(0, 10, 30)]),
        spans_video(48, c, normal, [(1, 0, 20), (1, 30, 40)]),
        spans_video(70, c, normal, [(3, 5, 69)]),
        spans_video(33, c, normal, [(4, 20, 33)]),
    ]
    videos = [(p, y) for p, y in videos if without not in y]
    for p, _ in videos:
        p[:, normal] = 0
    for t in (48, 80):
        p, y = spans_video(t, c, normal, [])
        p[-1, normal] = 0
        videos.append((p, y))
    if without is not None:
        videos[-2][0][3:5, without] = 1.0
    return stack(videos), normal


def test_perfect_detector_scores_one_for_every_class():
    (probs, labels, video), normal = perfect_set()
    ucf = fine_grained_aps(probs, labels, video, normal)
    xd = fine_grained_aps(probs, labels, video, normal, include_normal=True)
    np.testing.assert_array_equal(ucf, np.tile([1.0, 1.0, 0.0, 1.0, 1.0], (5, 1)))  # UCF: normal AP 0
    np.testing.assert_array_equal(xd, np.ones((5, 5)))
    assert fine_grained_map(probs, labels, video, normal) == every(0.8)  # 4 / 5
    assert fine_grained_map(probs, labels, video, normal, include_normal=True) == every(1.0)


def test_class_without_ground_truth_counts_zero():
    # class 4 has no video, only a false positive: AP 0, still in the mean over all 5 classes
    (probs, labels, video), normal = perfect_set(without=4)
    assert fine_grained_map(probs, labels, video, normal) == every(0.6)  # 3 / 5
    assert fine_grained_map(probs, labels, video, normal, include_normal=True) == every(0.8)


def test_iou_045_counts_at_04_not_05():
    # ground truth [0, 15), proposal [6, 20): 9 shared frames of 20 -> IoU 0.45
    probs, labels, video = stack([spans_video(32, 2, 0, [(1, 0, 15)], detect=[(1, 6, 20, 1.0)])])
    got = fine_grained_map(probs, labels, video, 0)
    assert maps_of(got) == [0.5, 0.5, 0.5, 0.5, 0.0]  # class 1 AP 1 or 0, normal AP 0, over 2 classes
    assert got["map_tiou_avg"] == pytest.approx(0.4, abs=1e-15)


def test_early_return_when_a_class_has_no_proposal():
    (probs, labels, video), normal = perfect_set()
    probs[:, 4] = 0  # class 4: constant column everywhere
    assert fine_grained_map(probs, labels, video, normal, include_normal=True) == every(0.0)
    assert not fine_grained_aps(probs, labels, video, normal).any()
    probs[0:2, 4] = 0.5  # one 2-frame false positive is enough to score again
    aps = fine_grained_aps(probs, labels, video, normal, include_normal=True)
    np.testing.assert_array_equal(aps, np.tile([1, 1, 1, 1, 0.0], (5, 1)))


def test_equal_scores_keep_video_then_start_order():
    # the same 2-frame-conf column in a normal video (false positive) and an abnormal one (true
    # positive): both score 1 + 0.7 * 1; the earlier video ranks first
    fp = spans_video(32, 2, 0, [], detect=[(1, 4, 10, 1.0)])
    tp = spans_video(32, 2, 0, [(1, 4, 10)])
    assert maps_of(fine_grained_map(*stack([fp, tp]), 0)) == [0.25] * 5  # AP 1/2 over 2 classes
    assert maps_of(fine_grained_map(*stack([tp, fp]), 0)) == [0.5] * 5
    # within one video: the false positive at frame 4 ranks before the true one at 20
    both = spans_video(32, 2, 0, [(1, 20, 26)], detect=[(1, 4, 10, 1.0), (1, 20, 26, 1.0)])
    assert maps_of(fine_grained_map(*stack([both]), 0)) == [0.25] * 5


def test_equal_iou_matches_the_first_segment():
    # segments [0, 5) and [7, 12); A = [4, 8) (score 1.7) has IoU 1/8 with both; B = [0, 3)
    # (score 0.8 + 0.7) IoU 3/5 with the first only
    video = spans_video(32, 2, 0, [(1, 0, 5), (1, 7, 12)], detect=[(1, 4, 8, 1.0), (1, 0, 3, 0.8)])
    got = fine_grained_aps(*stack([video]), 0, tious=(0.1, 0.2, 0.5, 0.6, 0.7))
    # th 0.1: A takes [0, 5), B finds it taken: tp = [1, 0] -> 1/2 (taking [7, 12) would give 1);
    # th 0.2-0.6: A misses, B takes [0, 5): tp = [0, 1] -> (1/2) / 2; th 0.7: nothing
    np.testing.assert_array_equal(got[:, 1], [0.5, 0.25, 0.25, 0.25, 0.0])
    assert not got[:, 0].any()


def test_higher_iou_segment_wins_over_the_first():
    # A = [4, 9): IoU 1/9 with [0, 5), 2/8 with [7, 12) -> takes the second; B = [0, 3) then takes the first
    video = spans_video(32, 2, 0, [(1, 0, 5), (1, 7, 12)], detect=[(1, 4, 9, 1.0), (1, 0, 3, 0.8)])
    np.testing.assert_array_equal(fine_grained_aps(*stack([video]), 0, tious=(0.1,))[:, 1], [1.0])


def test_videos_shorter_than_16_frames_propose_nothing():
    long = spans_video(32, 2, 0, [(1, 4, 12)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" warning escapes
        short = fine_grained_map(*stack([long, spans_video(15, 2, 0, [(1, 2, 12)])]), 0)
    assert maps_of(short) == [0.25] * 5  # the 15-frame video's segment counts but is never found
    assert maps_of(fine_grained_map(*stack([long, spans_video(16, 2, 0, [(1, 2, 12)])]), 0)) == [0.5] * 5
    only_short = stack([spans_video(15, 2, 0, [(1, 2, 12)])])
    assert fine_grained_map(*only_short, 0) == every(0.0)  # no proposals: early return


def test_constant_column_proposes_nothing():
    found = spans_video(32, 2, 0, [(1, 4, 12)])
    flat = spans_video(32, 2, 0, [(1, 4, 12)])
    flat[0][:, 1] = 0.3  # constant over the video, ground truth included
    assert maps_of(fine_grained_map(*stack([found, flat]), 0)) == [0.25] * 5  # one of two segments found


def test_runs_of_one_frame_are_dropped():
    # a 1-frame run at frame 3 would rank first (same score, earlier start) as a false positive
    video = spans_video(32, 2, 0, [(1, 10, 12)], detect=[(1, 3, 4, 1.0), (1, 10, 12, 1.0)])
    assert maps_of(fine_grained_map(*stack([video]), 0)) == [0.5] * 5
    only_ones = spans_video(32, 2, 0, [(1, 10, 11)], detect=[(1, 3, 4, 1.0), (1, 10, 11, 1.0)])
    assert fine_grained_map(*stack([only_ones]), 0) == every(0.0)  # class 1: none kept


def test_nonpositive_confidence_proposes_nothing():
    # not probabilities, but VadCLIP zeroes any column whose confidence is not > 0
    found = spans_video(32, 2, 0, [(1, 4, 12)])
    negative = spans_video(32, 2, 0, [(1, 4, 12)])
    negative[0][:, 1] -= 2.0  # -1 on the segment, -2 elsewhere: conf -1
    assert maps_of(fine_grained_map(*stack([found, negative]), 0)) == [0.25] * 5


def test_normal_rule_on_normal_frames_of_abnormal_videos():
    # XD rule: the normal column's runs inside an abnormal video are false positives; with equal
    # scores (1 + 0.7) they rank by video order
    abnormal = spans_video(32, 2, 0, [(1, 8, 20)])  # normal column 1 on [0, 8) and [20, 32)
    normal = spans_video(32, 2, 0, [])
    normal[0][-1, 0] = 0  # normal column 1 on [0, 31)
    aps = fine_grained_aps(*stack([abnormal, normal]), 0, include_normal=True)
    np.testing.assert_array_equal(aps[:, 0], [1 / 3] * 5)  # ranks FP, FP, TP: (1/3) / 1
    np.testing.assert_array_equal(fine_grained_aps(*stack([normal, abnormal]), 0, include_normal=True)[:, 0], [1.0] * 5)


# -- the fast code against the reference --------------------------------------------------------
def random_set(seed, quantised=False):
    """A few short videos (some under 16 frames), smooth-ish noise plus bumps near the spans, so
    that true positives, misses and false positives all occur."""
    rng = np.random.default_rng(seed)
    c, normal = 4, int(rng.integers(0, 4))
    abnormal = [k for k in range(c) if k != normal]
    videos = []
    for i in range(int(rng.integers(5, 9))):
        t = int(rng.choice([8, 15, 16, 40, 90, 160]))
        y = np.full(t, normal)
        p = rng.random((t, c)) * 0.4
        p = (p + np.roll(p, 1, axis=0)) / 2
        if i % 3 != 2 and t >= 8:
            cls = abnormal[int(rng.integers(0, len(abnormal)))]
            for _ in range(int(rng.integers(1, 3))):
                s = int(rng.integers(0, t - 3))
                e = int(rng.integers(s + 1, min(t, s + t // 2 + 2) + 1))
                y[s:e] = cls
                js, je = max(0, s + int(rng.integers(-3, 4))), min(t, e + int(rng.integers(-3, 4)))
                p[js:je, cls] += rng.uniform(0.3, 0.7)
        if quantised:
            p = np.round(p * 4) / 4  # many equal scores and equal IoUs
        videos.append((p, y))
    probs, labels, video = stack(videos)
    return probs, labels, video * 3 + 7, normal  # ids need not be 0..V-1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("include_normal", [False, True])
@pytest.mark.parametrize("form", ["float64", "float32", "quantised"])
def test_matches_reference_on_random_inputs(seed, include_normal, form):
    probs, labels, video, normal = random_set(seed, quantised=form == "quantised")
    if form == "float32":
        probs = probs.astype(np.float32)
    tious = TIOUS + (0.7,)
    want_maps, want_aps = reference_maps(probs, labels, video, normal, include_normal, tious)
    got = fine_grained_map(probs, labels, video, normal, include_normal=include_normal, tious=tious)
    aps = fine_grained_aps(probs, labels, video, normal, include_normal=include_normal, tious=tious)
    np.testing.assert_allclose(aps, want_aps, rtol=0, atol=1e-12)
    np.testing.assert_allclose([got[f"map_tiou_{t:g}"] for t in tious], want_maps, rtol=0, atol=1e-12)
    assert got["map_tiou_avg"] == pytest.approx(np.mean(want_maps), abs=1e-12)


def test_random_inputs_are_not_trivial():
    """The comparison above is not all zeros: most sets score, with values strictly between 0 and 1."""
    scored = []
    for seed in range(6):
        probs, labels, video, normal = random_set(seed)
        scored.append(reference_maps(probs, labels, video, normal, True, (0.1,))[0][0])
    assert sum(0 < v < 1 for v in scored) >= 4, scored


# -- interface ---------------------------------------------------------------------------------
def test_keys_and_custom_thresholds():
    (probs, labels, video), normal = perfect_set()
    assert list(fine_grained_map(probs, labels, video, normal)) == KEYS
    got = fine_grained_map(probs, labels, video, normal, tious=[0.25, 0.75])
    assert list(got) == ["map_tiou_0.25", "map_tiou_0.75", "map_tiou_avg"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, y, v: (p[:-1], y, v), "must both be"),
        (lambda p, y, v: (p, y[:-1], v), "must both be"),
        (lambda p, y, v: (p[:, 0], y, v), r"\(N, C\)"),
        (lambda p, y, v: (p, y, np.r_[v[:-1], 0]), "contiguous"),
        (lambda p, y, v: (np.where(np.arange(p.size).reshape(p.shape) == 7, np.nan, p), y, v), "NaN"),
        (lambda p, y, v: (p, np.r_[y[:-1], 9], v), r"\[0, 5\)"),
        (lambda p, y, v: (p, y + 0.5, v), "integer"),
    ],
)
def test_bad_inputs_raise(change, message):
    (probs, labels, video), normal = perfect_set()
    with pytest.raises(InputError, match=message):
        fine_grained_map(*change(probs, labels, video), normal)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(normal_id=5), "normal_id"),
        (dict(tious=(0.0, 0.5)), r"\(0, 1\]"),
        (dict(tious=()), "empty"),
        (dict(tious=(0.1, 0.1)), "distinct"),
    ],
)
def test_bad_arguments_raise(kw, message):
    (probs, labels, video), normal = perfect_set()
    kw = {"normal_id": normal, **kw}
    with pytest.raises(InputError, match=message):
        fine_grained_map(probs, labels, video, **kw)


def test_import_is_cheap():
    code = (
        "import sys, anomalyclip.finegrained\n"
        "heavy = {'torch', 'transformers', 'sklearn', 'scipy', 'matplotlib'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(src)})
