"""Anomalous spans of one video's prediction: the runs of frames at or above the threshold,
each named by its most probable abnormal class."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomalyclip.classes import best_abnormal
from anomalyclip.runs import true_runs


def anomalous_spans(prediction, class_names: list[str], normal_id: int, fps: float | None = None) -> list[dict[str, Any]]:
    """Maximal runs of consecutive frames with score >= threshold; a run's class is the argmax
    of its mean abnormal probabilities. `prediction` is a `predictor.Prediction`."""
    starts, ends = true_runs(~(prediction.scores < prediction.threshold))
    spans = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        seg = prediction.scores[s : e + 1]
        mean_p = prediction.probs[s : e + 1].mean(axis=0)
        cls = int(best_abnormal(mean_p[None], normal_id)[0])
        span: dict[str, Any] = {"start": s, "end": e, "num_frames": e - s + 1}
        if fps:
            span["start_s"] = round(s / fps, 6)
            span["end_s"] = round(e / fps, 6)
        span.update(
            {
                "class": class_names[cls],
                "class_id": cls,
                "class_prob": float(mean_p[cls]),
                "mean_score": float(seg.mean()),
                "peak_score": float(seg.max()),
                "peak_frame": s + int(seg.argmax()),
            }
        )
        spans.append(span)
    return spans
