"""The files a prediction leaves for each video: `<name>.csv` (one row per frame), `<name>.json`
(summary and anomalous spans) and `<name>.png` (the score over time). `predict --features`,
`predict --video` and `stream` all write through `PredictionWriter`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anomalyclip.events import EventRules, anomalous_spans
from anomalyclip.fileio import OutputSet, write_json, write_text


@dataclass
class VideoMeta:
    """What is known about one video beside its prediction."""

    name: str  # output name, may hold sub-folders ("cam1/clip")
    source: str | None = None
    fps: float | None = None
    gt_spans: list[tuple[int, int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    times: np.ndarray | None = None  # (T,) seconds of each frame where the source gave them (else frame / fps)


@dataclass
class Written:
    paths: dict[str, Path]  # "csv", "json", "png"
    spans: list[dict[str, Any]]


def _fmt(x: float) -> str:
    return "%.9g" % x  # 9 significant digits give back the exact float32


def prediction_csv(prediction, class_names: list[str], fps: float | None = None, times: np.ndarray | None = None) -> str:
    """`frame[,time_s],score,pred,pred_name,p_<class>...` one row per frame; `time_s` from
    `times` (T,) if given, else frame / fps."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    timed = times is not None or bool(fps)
    header = ["frame"] + (["time_s"] if timed else []) + ["score", "pred", "pred_name"] + [f"p_{n}" for n in class_names]
    w.writerow(header)
    scores, probs, pred = prediction.scores.tolist(), prediction.probs.tolist(), prediction.pred.tolist()
    seconds = None if times is None else np.asarray(times, dtype=np.float64).tolist()
    for i in range(prediction.num_frames):
        row = [str(i)]
        if timed:
            row.append("%.6f" % (seconds[i] if seconds is not None else i / fps))
        row += [_fmt(scores[i]), str(pred[i]), class_names[pred[i]]]
        row += [_fmt(v) for v in probs[i]]
        w.writerow(row)
    return buf.getvalue()


class PredictionWriter:
    """Writes each video's three files under `out_dir`, each atomically; the spans follow
    `rules` (`events.EventRules`)."""

    def __init__(
        self,
        out_dir: str | Path,
        class_names: list[str],
        normal_id: int,
        threshold_source: str | None = None,
        rules: EventRules = EventRules(),
    ):
        self.out_dir = Path(out_dir)
        self.class_names, self.normal_id = list(class_names), int(normal_id)
        self.threshold_source = threshold_source
        self.rules = rules

    def paths(self, name: str) -> dict[str, Path]:
        base = self.out_dir / name
        return {ext: base.with_name(f"{base.name}.{ext}") for ext in ("csv", "json", "png")}

    def summary(self, meta: VideoMeta, prediction, spans: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"video": meta.name}
        if meta.source is not None:
            out["source"] = str(meta.source)
        out.update({"num_frames": prediction.num_frames, "fps": meta.fps, "threshold": float(prediction.threshold)})
        if self.threshold_source:
            out["threshold_source"] = self.threshold_source
        out.update(
            {
                "class_names": self.class_names,
                "normal_id": self.normal_id,
                "max_score": float(prediction.scores.max()),
                "mean_score": float(prediction.scores.mean()),
                "abnormal_frames": int((prediction.pred != self.normal_id).sum()),
                "event_rules": self.rules.describe(meta.fps),
                "spans": spans,
            }
        )
        if meta.gt_spans is not None:
            out["ground_truth"] = [{"start": int(s), "end": int(e)} for s, e in meta.gt_spans]
        out.update(meta.extra)
        return out

    def write(self, meta: VideoMeta, prediction, files: OutputSet | None = None) -> Written:
        """The video's three files, as one set (`files`: a set the caller adds more to)."""
        if files is None:
            with OutputSet(self.out_dir) as files:
                return self.write(meta, prediction, files)
        from anomalyclip.plots import plot_prediction

        paths = self.paths(meta.name)
        staged = {k: files.path(str(p.relative_to(self.out_dir))) for k, p in paths.items()}
        spans = anomalous_spans(prediction, self.class_names, self.normal_id, meta.fps, self.rules, meta.times)
        write_text(staged["csv"], prediction_csv(prediction, self.class_names, meta.fps, meta.times))
        write_json(staged["json"], self.summary(meta, prediction, spans))
        plot_prediction(staged["png"], prediction, self.class_names, self.normal_id, meta.fps, meta.gt_spans,
                        title=meta.name, spans=spans)
        return Written(paths, spans)
