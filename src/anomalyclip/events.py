"""Anomalous events of a score curve: runs of frames at or above the threshold, fragments
closer than a gap merged, events shorter than a minimum dropped, each named by its most
probable abnormal class.

One `EventTracker` serves both modes: `predict` feeds it a whole video at once
(`anomalous_spans`), `stream` feeds it the scores as they become final and receives each event
as soon as it can no longer grow. Both therefore give the same events for the same scores.

The rules, in frames (`EventRules.frames` converts seconds at a known rate):
1. a run is a maximal stretch of frames with score >= threshold;
2. two runs separated by at most `merge_gap` frames below the threshold are one event (the
   frames in between belong to it);
3. an event shorter than `min_event` frames is dropped (after merging, so fragments close
   together count together).
An event's class is the argmax of its frames' mean abnormal class probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalyclip.classes import best_abnormal
from anomalyclip.errors import InputError
from anomalyclip.runs import true_runs

# The defaults that stop 1-frame fragments, in seconds where the frame rate is known and in
# frames where it is not (16 frames: one chunk of the temporal model, about 0.5 s at 30 fps).
DEFAULT_MIN_EVENT_S = 0.5
DEFAULT_MERGE_GAP_S = 1.0
DEFAULT_MIN_EVENT_FRAMES = 16
DEFAULT_MERGE_GAP_FRAMES = 32
_EPS = 1e-9  # 0.5 s at 30 fps is 15 frames, not 15.000000000000002


def _check(value: float | None, flag: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{flag} must be a number >= 0, got {value}")
    return value


@dataclass(frozen=True)
class EventRules:
    """`min_event` and `merge_gap` in seconds (in frames when the rate is unknown); None: the
    defaults above. 0 turns a rule off."""

    min_event: float | None = None
    merge_gap: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "min_event", _check(self.min_event, "--min-event"))
        object.__setattr__(self, "merge_gap", _check(self.merge_gap, "--merge-gap"))

    def frames(self, fps: float | None) -> tuple[int, int]:
        """(minimum event length, largest gap that merges), both in frames, at `fps`."""
        if fps:
            low = DEFAULT_MIN_EVENT_S if self.min_event is None else self.min_event
            gap = DEFAULT_MERGE_GAP_S if self.merge_gap is None else self.merge_gap
            return max(1, math.ceil(low * fps - _EPS)), math.floor(gap * fps + _EPS)
        low = DEFAULT_MIN_EVENT_FRAMES if self.min_event is None else self.min_event
        gap = DEFAULT_MERGE_GAP_FRAMES if self.merge_gap is None else self.merge_gap
        return max(1, math.ceil(low - _EPS)), math.floor(gap + _EPS)

    def describe(self, fps: float | None) -> dict[str, Any]:
        """What the JSON outputs record about the rules used."""
        low, gap = self.frames(fps)
        return {"min_event_frames": low, "merge_gap_frames": gap}


def describe_event(
    start: int,
    scores: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    normal_id: int,
    fps: float | None = None,
    times: np.ndarray | None = None,
) -> dict[str, Any]:
    """One event's record from its frames' `scores (N,)` and `probs (N, C)`; `times (N,)`
    (seconds) where the frames carry their own, else frame / fps."""
    end = start + len(scores) - 1
    mean_p = probs.mean(axis=0)
    cls = int(best_abnormal(mean_p[None], normal_id)[0])
    event: dict[str, Any] = {"start": start, "end": end, "num_frames": end - start + 1}
    if times is not None:
        event["start_s"], event["end_s"] = round(float(times[0]), 6), round(float(times[-1]), 6)
    elif fps:
        event["start_s"], event["end_s"] = round(start / fps, 6), round(end / fps, 6)
    event.update(
        {
            "class": class_names[cls],
            "class_id": cls,
            "class_prob": float(mean_p[cls]),
            "mean_score": float(scores.mean()),
            "peak_score": float(scores.max()),
            "peak_frame": start + int(scores.argmax()),
        }
    )
    return event


class EventTracker:
    """Scores in, finished events out. `push` takes consecutive frames (any chunk size) and
    returns the events that closed: those followed by more than `merge_gap` frames below the
    threshold. `finish` closes the last one."""

    def __init__(
        self,
        class_names: list[str],
        normal_id: int,
        threshold: float,
        rules: EventRules = EventRules(),
        fps: float | None = None,
    ):
        self.class_names, self.normal_id, self.threshold = list(class_names), int(normal_id), float(threshold)
        self.fps = fps
        self.min_frames, self.max_gap = rules.frames(fps)
        self.frames_seen = 0
        self._open: list[int] | None = None  # [first, last above-threshold frame] of the open event
        self._held: list[tuple[np.ndarray, ...]] = []  # the frames since the open event's start
        self._held_start = 0
        self._timed: bool | None = None

    def push(self, scores, probs, times=None) -> list[dict[str, Any]]:
        """The next `len(scores)` frames: `scores (N,)`, `probs (N, C)`, optional `times (N,)`."""
        scores, probs = np.asarray(scores).reshape(-1), np.asarray(probs)
        if probs.shape != (scores.shape[0], len(self.class_names)):
            raise InputError(f"probs must have shape ({scores.shape[0]}, {len(self.class_names)}), got {probs.shape}")
        if self._timed is None:
            self._timed = times is not None
        elif self._timed != (times is not None):
            raise InputError("give frame times with every chunk or with none")
        chunk = (scores, probs) + ((np.asarray(times, dtype=np.float64).reshape(-1),) if self._timed else ())
        first = self.frames_seen
        self.frames_seen += scores.shape[0]
        closed: list[dict[str, Any]] = []
        if self._open is not None:
            self._held.append(chunk)
        starts, ends = true_runs(~(scores < self.threshold))
        for s, e in zip((starts + first).tolist(), (ends + first).tolist()):
            if self._open is not None and s - self._open[1] - 1 <= self.max_gap:
                self._open[1] = e
                continue
            self._close(closed)
            self._open, self._held_start = [s, e], s
            self._held = [tuple(a[s - first :] for a in chunk)]
        if self._open is not None and self.frames_seen - 1 - self._open[1] > self.max_gap:
            self._close(closed)  # too far behind to merge with anything that comes
        return closed

    def finish(self) -> list[dict[str, Any]]:
        """The end of the video: the open event closes."""
        closed: list[dict[str, Any]] = []
        self._close(closed)
        return closed

    def _close(self, into: list[dict[str, Any]]) -> None:
        if self._open is None:
            return
        s, e = self._open
        self._open = None
        held, self._held = self._held, []
        if e - s + 1 < self.min_frames:
            return
        a, b = s - self._held_start, e - self._held_start + 1
        parts = [np.concatenate(arrays)[a:b] for arrays in zip(*held)]  # scores, probs[, times] of s..e
        times = parts[2] if len(parts) == 3 else None
        into.append(describe_event(s, parts[0], parts[1], self.class_names, self.normal_id, self.fps, times))


def anomalous_spans(
    prediction,
    class_names: list[str],
    normal_id: int,
    fps: float | None = None,
    rules: EventRules = EventRules(),
    times: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The events of one whole video's `predictor.Prediction` (see the module docstring)."""
    tracker = EventTracker(class_names, normal_id, prediction.threshold, rules, fps)
    return tracker.push(prediction.scores, prediction.probs, times) + tracker.finish()
