"""Fine-grained detection mAP at temporal IoU thresholds (design/FINEGRAINED.md).

The CLIP-based peers (VadCLIP and those comparing with it) report mAP@tIoU 0.1-0.5 and their mean.
To be comparable with their tables this follows VadCLIP's public evaluation exactly, odd corners
included; each corner is marked where it is implemented. numpy only, so importing it stays cheap.

Proposals are found per video with whole-array operations; the greedy matching walks only the
(proposal, segment) pairs that reach the IoU threshold, which are few (disjoint proposals can
reach IoU >= th with one segment at most 1/th times), so a video full of noise costs no more
than its sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomalyclip.errors import InputError

__all__ = ["DEFAULT_TIOUS", "fine_grained_aps", "fine_grained_map"]

DEFAULT_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5)
TOP_FRACTION = 16  # class confidence: mean of the floor(T / 16) largest values
THRESHOLD_RATIO = 0.6  # thr = max - (max - min) * 0.6
CONF_WEIGHT = 0.7  # proposal score = run max + 0.7 * confidence
MIN_RUN = 2  # runs shorter than two frames are dropped


@dataclass
class Segments:
    """Temporal segments of one class: video index, start and end frame (half-open, local to the
    video), ordered by video then start. `score` is set for proposals only."""

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.video)


# -- the metric ------------------------------------------------------------------------------
def fine_grained_map(probs, labels, video, normal_id: int, *, include_normal: bool = False, tious=DEFAULT_TIOUS) -> dict:
    """mAP at each temporal IoU threshold and their mean, as fractions in [0, 1].

    probs (N, C): per-frame class probabilities, columns in class-id order, normal included.
    labels (N,): per-frame class ids. video (N,): a video id per frame; each video's frames
    contiguous and in order. include_normal=False is the UCF-Crime rule (normal AP always 0,
    still counted in the mean over all C classes); True is the XD-Violence rule (the normal class
    is scored against whole-video segments of all-normal videos).

    Returns {"map_tiou_0.1": ..., ..., "map_tiou_0.5": ..., "map_tiou_avg": ...} (keys
    f"map_tiou_{th:g}"). Raises InputError on inconsistent shapes, non-contiguous videos,
    non-finite values, bad ids or thresholds.

    Corners, as VadCLIP's code behaves:
    - a video shorter than 16 frames has floor(T/16) = 0 largest values; their mean is NaN
      (numpy's mean of an empty slice), NaN > 0 is false and VadCLIP multiplies such a column by
      that false: the video yields no proposals at all (its ground truth still counts). Likewise
      any column whose confidence is <= 0.
    - a column constant over a video yields no proposal there (nothing is strictly above max).
      So a detector whose normal column is exactly constant on a normal video (1 - p with p = 0)
      never matches that video's normal segment under the XD rule.
    - if any class (normal included, under both rules) has no proposal in any video, every
      threshold's mAP is 0 (VadCLIP returns early); proposals do not depend on the threshold.
    - equal scores keep the order video, then start frame (a stable sort; VadCLIP's unstable sort
      leaves it to numpy); among segments with equal IoU the first (video, start) is matched.
    - thresholds must lie in (0, 1]: at 0 VadCLIP's matching breaks (an IoU of 0 "matches").
    Arithmetic is float64 (float32 inputs are used exactly as given, so thresholds and runs are
    the same as VadCLIP's); VadCLIP sums a float32 column's confidence in float32, which can
    differ in the last bits and so only reorder scores equal to within rounding.
    """
    aps, tious = _aps(probs, labels, video, normal_id, include_normal, tious)
    return map_dict(aps.mean(axis=1), tious)


def fine_grained_aps(probs, labels, video, normal_id: int, *, include_normal: bool = False, tious=DEFAULT_TIOUS) -> np.ndarray:
    """Per-class AP, (len(tious), C), whose row means are `fine_grained_map`'s values (all zero
    when some class has no proposal). Same arguments and errors as `fine_grained_map`."""
    return _aps(probs, labels, video, normal_id, include_normal, tious)[0]


def map_dict(values, tious) -> dict:
    """The metric's keys: one per threshold (f"map_tiou_{th:g}") and the mean, as Python floats."""
    out = {f"map_tiou_{th:g}": float(v) for th, v in zip(tious, values)}
    out["map_tiou_avg"] = float(np.mean(values))
    return out


def _aps(probs, labels, video, normal_id, include_normal, tious) -> tuple[np.ndarray, tuple[float, ...]]:
    probs, labels, bounds, normal_id, tious = check_inputs(probs, labels, video, normal_id, tious)
    n_classes = probs.shape[1]
    props = proposals(probs, bounds)
    aps = np.zeros((len(tious), n_classes))
    if any(len(p) == 0 for p in props):
        return aps, tious  # VadCLIP's early return: one class without any proposal zeroes the mAP
    gts = ground_truth(labels, bounds, normal_id, n_classes, include_normal)
    for c in range(n_classes):
        aps[:, c] = class_ap(props[c], gts[c], tious)
    return aps, tious


# -- inputs ----------------------------------------------------------------------------------
def check_inputs(probs, labels, video, normal_id, tious):
    """Arrays in the forms the metric needs, or an InputError naming what is wrong."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise InputError(f"fine-grained mAP: probs must be a non-empty (N, C) array, got shape {probs.shape}")
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float64)
    n, n_classes = probs.shape
    labels, video = np.asarray(labels), np.asarray(video)
    if labels.shape != (n,) or video.shape != (n,):
        raise InputError(f"fine-grained mAP: labels {labels.shape} and video {video.shape} must both be ({n},), as probs' rows")
    if not np.isfinite(probs).all():
        raise InputError("fine-grained mAP: probs hold NaN or infinite values")
    labels = _class_ids(labels, n_classes)
    if not isinstance(normal_id, (int, np.integer)) or not 0 <= normal_id < n_classes:
        raise InputError(f"fine-grained mAP: normal_id must be a class id in [0, {n_classes}), got {normal_id!r}")
    return probs, labels, video_bounds(video), int(normal_id), _thresholds(tious)


def _class_ids(labels: np.ndarray, n_classes: int) -> np.ndarray:
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise InputError("fine-grained mAP: labels must be integer class ids")
    elif labels.dtype.kind not in "iu":
        raise InputError(f"fine-grained mAP: labels must be integer class ids, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InputError(f"fine-grained mAP: labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}")
    return labels


def video_bounds(video: np.ndarray) -> np.ndarray:
    """First frame of each video and N at the end, (V + 1,); InputError if a video id comes back
    after another video's frames."""
    if video.dtype.kind == "f" and not np.isfinite(video).all():
        raise InputError("fine-grained mAP: video ids hold NaN or infinite values")
    starts = np.flatnonzero(np.r_[True, video[1:] != video[:-1]])
    ids = video[starts]
    if len(np.unique(ids)) != len(ids):
        _, first, counts = np.unique(ids, return_index=True, return_counts=True)
        bad = ids[first[counts > 1][0]]
        raise InputError(f"fine-grained mAP: each video's frames must be contiguous; video {bad!r} comes back after another")
    return np.r_[starts, len(video)]


def _thresholds(tious) -> tuple[float, ...]:
    tious = tuple(float(t) for t in np.atleast_1d(np.asarray(tious, dtype=float)))
    if not tious:
        raise InputError("fine-grained mAP: tious is empty")
    # th <= 0 breaks VadCLIP's matching (a zero IoU "matches" with no segment chosen): refuse it
    if not all(0.0 < t <= 1.0 for t in tious):
        raise InputError(f"fine-grained mAP: tIoU thresholds must lie in (0, 1], got {tious}")
    if len({f"{t:g}" for t in tious}) != len(tious):
        raise InputError(f"fine-grained mAP: tIoU thresholds must be distinct (as f'{{th:g}}'), got {tious}")
    return tious


# -- ground truth ----------------------------------------------------------------------------
def ground_truth(labels: np.ndarray, bounds: np.ndarray, normal_id: int, n_classes: int, include_normal: bool) -> list[Segments]:
    """Per class: every maximal run of an abnormal class's frames is one segment; under the XD
    rule an all-normal video is one normal segment [0, T). Under the UCF rule the normal class has
    none (VadCLIP labels them "A", a name its UCF class list lacks, so they never match)."""
    n = len(labels)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    change[1:] = labels[1:] != labels[:-1]
    change[bounds[:-1]] = True  # runs never cross a video boundary
    start = np.flatnonzero(change)
    end = np.r_[start[1:], n]
    vid = np.searchsorted(bounds, start, side="right") - 1
    cls = labels[start]
    whole = (start == bounds[vid]) & (end == bounds[vid + 1])
    keep = (cls != normal_id) | (whole if include_normal else False)
    start, end, vid, cls = start[keep], end[keep], vid[keep], cls[keep]
    local_start, local_end = start - bounds[vid], end - bounds[vid]
    return _split_by_class(cls, n_classes, vid, local_start, local_end)


def _split_by_class(cls, n_classes, vid, start, end, score=None) -> list[Segments]:
    """Segments grouped by class; a stable sort keeps each class's (video, start) order."""
    order = np.argsort(cls, kind="stable")
    edges = np.searchsorted(cls[order], np.arange(n_classes + 1))
    out = []
    for c in range(n_classes):
        sel = order[edges[c] : edges[c + 1]]
        out.append(Segments(vid[sel], start[sel], end[sel], None if score is None else score[sel]))
    return out


# -- proposals -------------------------------------------------------------------------------
def proposals(probs: np.ndarray, bounds: np.ndarray) -> list[Segments]:
    """Every video's proposals of every class, grouped by class."""
    n_classes = probs.shape[1]
    parts = []
    for v in range(len(bounds) - 1):
        cls, s, e, score = video_proposals(probs[bounds[v] : bounds[v + 1]])
        parts.append((cls, np.full(len(cls), v, dtype=np.int64), s, e, score))
    cls, vid, s, e, score = (np.concatenate(col) for col in zip(*parts))
    return _split_by_class(cls, n_classes, vid, s, e, score)


def video_proposals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One video's proposals, (class, start, end, score) arrays ordered by class then start."""
    t, n_classes = x.shape
    conf = class_confidence(x)
    # VadCLIP zeroes a column whose confidence is not > 0 (NaN included: T < 16), and a zero
    # column has nothing above its threshold: no proposals for it
    usable = conf > 0
    hi = x.max(axis=0).astype(np.float64)
    lo = x.min(axis=0).astype(np.float64)
    thr = hi - (hi - lo) * THRESHOLD_RATIO  # float64, exactly this form
    xt = np.ascontiguousarray(x.T)  # (C, T): each class's frames contiguous
    above = (xt > thr[:, None]) & usable[:, None]  # strict; float32 values compare exactly in float64
    edges = np.diff(above.view(np.int8), axis=1, prepend=np.int8(0), append=np.int8(0))
    cls, start = np.nonzero(edges == 1)
    _, end = np.nonzero(edges == -1)  # same row-major order: the i-th end closes the i-th start
    keep = end - start >= MIN_RUN
    cls, start, end = cls[keep], start[keep], end[keep]
    score = _run_max(xt, cls, start, end) + CONF_WEIGHT * conf[cls]
    return cls.astype(np.int64), start.astype(np.int64), end.astype(np.int64), score


def class_confidence(x: np.ndarray) -> np.ndarray:
    """Per class, the mean of the floor(T/16) largest values, in float64; NaN when T < 16, as
    numpy's mean of an empty slice (which VadCLIP's code takes, with a warning)."""
    t = x.shape[0]
    k = t // TOP_FRACTION
    if k == 0:
        return np.full(x.shape[1], np.nan)
    top = np.partition(x, t - k, axis=0)[t - k :]
    return top.mean(axis=0, dtype=np.float64)


def _run_max(xt: np.ndarray, cls, start, end) -> np.ndarray:
    """max(x[s:e, c]) of every run, in one reduceat over the flattened (C, T) array."""
    if len(cls) == 0:
        return np.zeros(0)
    t = xt.shape[1]
    flat = np.append(xt.ravel(), xt.dtype.type(0))  # the last run may end at C*T: one cell more
    idx = np.empty(2 * len(cls), dtype=np.int64)
    idx[0::2] = cls * t + start
    idx[1::2] = cls * t + end
    return np.maximum.reduceat(flat, idx)[0::2].astype(np.float64)


# -- matching and AP -------------------------------------------------------------------------
def class_ap(props: Segments, gt: Segments, tious: tuple[float, ...]) -> np.ndarray:
    """AP of one class's pooled proposals at each threshold (0 without ground truth)."""
    out = np.zeros(len(tious))
    if len(gt) == 0 or len(props) == 0:
        return out
    order = np.argsort(-props.score, kind="stable")  # ties: video, then start (see the docstring)
    rank = np.empty(len(props), dtype=np.int64)
    rank[order] = np.arange(len(props))
    p, g, iou = overlaps(props, gt)
    for i, th in enumerate(tious):
        sel = iou >= th
        tp = greedy_match(rank[p[sel]], g[sel], iou[sel], len(props), len(gt))
        out[i] = average_precision(tp, len(gt))
    return out


def overlaps(props: Segments, gt: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (proposal, segment) pair of the same video that shares a frame, with its IoU on
    integer frame sets (one float division of two counts, as `len(set & set) / len(set | set)`)."""
    span = int(max(props.end.max(), gt.end.max())) + 1  # > any frame: video * span + frame sorts
    key_start = props.video * span + props.start
    key_end = props.video * span + props.end  # disjoint runs: ends sorted as starts are
    lo = np.searchsorted(key_end, gt.video * span + gt.start, side="right")  # first with end > gt start
    hi = np.searchsorted(key_start, gt.video * span + gt.end, side="left")  # first with start >= gt end
    counts = np.maximum(hi - lo, 0)
    g = np.repeat(np.arange(len(gt)), counts)
    p = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    inter = np.minimum(props.end[p], gt.end[g]) - np.maximum(props.start[p], gt.start[g])
    union = (props.end[p] - props.start[p]) + (gt.end[g] - gt.start[g]) - inter
    return p, g, inter / union


def greedy_match(rank: np.ndarray, g: np.ndarray, iou: np.ndarray, n_props: int, n_gt: int) -> np.ndarray:
    """True positives, in rank order: walking proposals by score, each takes the unmatched segment
    of highest IoU among those reaching the threshold (the first, by video and start, among equal
    IoUs). Only the candidate pairs are walked: a proposal without one is a false positive."""
    tp = np.zeros(n_props, dtype=bool)
    order = np.lexsort((g, -iou, rank))  # by rank, then IoU descending, then segment order
    matched = [False] * n_gt
    done = -1
    for r, j in zip(rank[order].tolist(), g[order].tolist()):
        if r == done or matched[j]:
            continue
        matched[j] = True
        tp[r] = True
        done = r
    return tp


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """sum over ranks k of precision@k * tp_k / n_gt, non-interpolated; 0 without a true positive."""
    pos = np.flatnonzero(tp)
    if len(pos) == 0:
        return 0.0
    return float(np.sum(np.arange(1, len(pos) + 1) / (pos + 1)) / n_gt)
