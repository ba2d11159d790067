"""Per-frame prediction for any video's features: the Python API and `anomalyclip predict`.

>>> p = Predictor.from_checkpoint("last.ckpt", centroid="ncentroid.pt")     # doctest: +SKIP
>>> out = p.predict(np.load("Abuse028_x264.npy"))                            # doctest: +SKIP
>>> out.scores.shape, out.probs.shape, p.class_names[out.pred[0]]            # doctest: +SKIP

Inference is exactly METHOD §10 (`AnomalyCLIP.score_videos`); the text features are computed
once per loaded model. Predicted class per frame (METHOD §11): normal if the score is below the
threshold, else the most probable abnormal class.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from anomalyclip.errors import InputError
from anomalyclip.fileio import write_json, write_text
from anomalyclip.model.anomalyclip import predict_classes

DEFAULT_THRESHOLD = 0.5


@dataclass
class Prediction:
    scores: np.ndarray  # (T,) anomaly score p per frame, float32
    probs: np.ndarray  # (T, C) class probabilities P (rows sum to 1), float32
    pred: np.ndarray  # (T,) predicted class id per frame, int64
    threshold: float  # the threshold `pred` was made with

    @property
    def num_frames(self) -> int:
        return int(self.scores.shape[0])


def check_threshold(value: float, where: str = "--threshold") -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"{where} must be a number in [0, 1], got {value}")
    return value


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but no CUDA GPU is available")
    return dev


class Predictor:
    """A loaded model ready to score videos: class names, normal id, threshold, cached text features."""

    def __init__(self, model, threshold: float | None = None, device: str | torch.device = "cpu", source: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.source = source
        self.class_names: list[str] = list(model.cfg.class_names)
        self.normal_id: int = int(model.cfg.normal_id)
        self.checkpoint_threshold = None if threshold is None else float(threshold)
        self.threshold: float = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.threshold_source = "default" if threshold is None else "checkpoint"
        with torch.no_grad():
            self._text_features = self.model.text_features().detach()  # (C, D), once per model

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        trust: bool = False,
        labels: str | Path | None = None,
        centroid: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> "Predictor":
        """Our checkpoint, an exported folder, or the authors' `last.ckpt` (with `labels` /
        `centroid` where the file does not carry them)."""
        from anomalyclip.checkpoint import load_checkpoint

        options: dict[str, Any] = {}
        if labels is not None:
            options["labels"] = labels
        if centroid is not None:
            options["centroid"] = centroid
        loaded = load_checkpoint(path, trust=trust, **options)
        loaded.model.freeze_text_features()  # a predictor never trains: the text tower can go
        return cls(loaded.model, loaded.threshold, device, loaded.source)

    # -- properties ------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.model.cfg.feature_dim)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def text_features(self) -> torch.Tensor:
        return self._text_features

    # -- prediction ------------------------------------------------------------------------
    def _as_tensor(self, features: np.ndarray | torch.Tensor, index: int | None = None) -> torch.Tensor:
        what = "features" if index is None else f"features of video {index}"
        if isinstance(features, np.ndarray):
            if features.dtype.kind != "f":
                raise InputError(f"{what} must be floating point, got dtype {features.dtype}")
            arr = np.ascontiguousarray(features, dtype=np.float32)
            t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # memory-mapped files are read-only
        elif isinstance(features, torch.Tensor):
            if not features.is_floating_point():
                raise InputError(f"{what} must be floating point, got dtype {features.dtype}")
            t = features.detach().to(torch.float32)
        else:
            raise InputError(f"{what} must be a numpy array or a torch tensor, got {type(features).__name__}")
        if t.dim() != 2 or t.shape[1] != self.feature_dim or t.shape[0] == 0:
            raise InputError(f"{what} must have shape (frames >= 1, {self.feature_dim}), got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            row = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
            raise InputError(f"{what}: row {row} holds a non-finite value")
        return t

    def _finish(self, scores: torch.Tensor, probs: torch.Tensor, threshold: float) -> Prediction:
        s = scores.detach().cpu().numpy().astype(np.float32, copy=False)
        p = probs.detach().cpu().numpy().astype(np.float32, copy=False)
        return Prediction(s, p, predict_classes(s, p, self.normal_id, threshold), threshold)

    def predict(self, features: np.ndarray | torch.Tensor, threshold: float | None = None) -> Prediction:
        """One video's features `(T, D)` -> scores `(T,)`, probabilities `(T, C)`, classes `(T,)`."""
        return self.predict_many([features], threshold)[0]

    def predict_many(
        self, videos: Sequence[np.ndarray | torch.Tensor], threshold: float | None = None, frames_per_forward: int = 16384
    ) -> list[Prediction]:
        """Several videos; consecutive videos share a forward up to `frames_per_forward` padded frames."""
        thr = self.threshold if threshold is None else check_threshold(threshold, "threshold")
        videos = list(videos)
        tensors = [self._as_tensor(v, i if len(videos) > 1 else None) for i, v in enumerate(videos)]
        grid = self.model.cfg.frames_per_item
        out: list[Prediction] = []
        batch: list[torch.Tensor] = []
        padded = 0
        for t in tensors + [None]:
            size = 0 if t is None else math.ceil(t.shape[0] / grid) * grid
            if batch and (t is None or padded + size > frames_per_forward):
                for scores, probs in self.model.score_videos(batch, self._text_features):
                    out.append(self._finish(scores, probs, thr))
                batch, padded = [], 0
            if t is not None:
                batch.append(t)
                padded += size
        return out


# ------------------------------------------------------------------------------------------
# spans and output files
# ------------------------------------------------------------------------------------------
def anomalous_spans(
    prediction: Prediction, class_names: list[str], normal_id: int, fps: float | None = None
) -> list[dict[str, Any]]:
    """Maximal runs of consecutive frames with score >= threshold, each with its class: the
    argmax of the mean abnormal probabilities over the run."""
    abnormal = ~(prediction.scores < prediction.threshold)
    if not abnormal.any():
        return []
    edges = np.diff(np.concatenate([[0], abnormal.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1  # inclusive ends
    abn_cols = [c for c in range(len(class_names)) if c != normal_id]
    spans = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        seg = prediction.scores[s : e + 1]
        mean_p = prediction.probs[s : e + 1][:, abn_cols].mean(axis=0)
        cls = abn_cols[int(mean_p.argmax())]
        span: dict[str, Any] = {"start": s, "end": e, "num_frames": e - s + 1}
        if fps:
            span["start_s"] = round(s / fps, 6)
            span["end_s"] = round(e / fps, 6)
        span.update(
            {
                "class": class_names[cls],
                "class_id": cls,
                "class_prob": float(mean_p.max()),
                "mean_score": float(seg.mean()),
                "peak_score": float(seg.max()),
                "peak_frame": s + int(seg.argmax()),
            }
        )
        spans.append(span)
    return spans


def _fmt(x: float) -> str:
    return "%.9g" % x  # 9 significant digits give back the exact float32


def prediction_csv(prediction: Prediction, class_names: list[str], fps: float | None = None) -> str:
    """`frame[,time_s],score,pred,pred_name,p_<class>...` one row per frame."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["frame"] + (["time_s"] if fps else []) + ["score", "pred", "pred_name"] + [f"p_{n}" for n in class_names]
    w.writerow(header)
    scores, probs, pred = prediction.scores.tolist(), prediction.probs.tolist(), prediction.pred.tolist()
    for i in range(prediction.num_frames):
        row = [str(i)]
        if fps:
            row.append("%.6f" % (i / fps))
        row += [_fmt(scores[i]), str(pred[i]), class_names[pred[i]]]
        row += [_fmt(v) for v in probs[i]]
        w.writerow(row)
    return buf.getvalue()


def write_video_outputs(
    out_dir: str | Path,
    name: str,
    prediction: Prediction,
    class_names: list[str],
    normal_id: int,
    fps: float | None = None,
    gt_spans: list[tuple[int, int]] | None = None,
    source: str | None = None,
    threshold_source: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """`<name>.csv`, `<name>.json` and `<name>.png` under `out_dir` (`name` may hold sub-folders),
    each written atomically. Returns the three paths."""
    out_dir = Path(out_dir)
    base = out_dir / name
    paths = {"csv": base.with_name(base.name + ".csv"), "json": base.with_name(base.name + ".json"), "png": base.with_name(base.name + ".png")}
    spans = anomalous_spans(prediction, class_names, normal_id, fps)
    summary: dict[str, Any] = {"video": name}
    if source is not None:
        summary["source"] = str(source)
    summary.update(
        {
            "num_frames": prediction.num_frames,
            "fps": fps,
            "threshold": float(prediction.threshold),
        }
    )
    if threshold_source:
        summary["threshold_source"] = threshold_source
    summary.update(
        {
            "class_names": list(class_names),
            "normal_id": int(normal_id),
            "max_score": float(prediction.scores.max()),
            "mean_score": float(prediction.scores.mean()),
            "abnormal_frames": int((prediction.pred != normal_id).sum()),
            "spans": spans,
        }
    )
    if gt_spans is not None:
        summary["ground_truth"] = [{"start": int(s), "end": int(e)} for s, e in gt_spans]
    if extra:
        summary.update(extra)
    write_text(paths["csv"], prediction_csv(prediction, class_names, fps))
    write_json(paths["json"], summary)
    from anomalyclip.plots import plot_prediction

    plot_prediction(paths["png"], prediction, class_names, normal_id, fps, gt_spans, title=name)
    return paths


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def collect_feature_files(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """`(file, output name)` for .npy files and folders (scanned recursively). The name is the
    stem; files sharing a stem keep their sub-folders relative to their common folder."""
    files: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.npy") if q.is_file())
            if not found:
                raise InputError("no .npy feature files in this folder (searched recursively)", p)
        elif p.is_file():
            found = [p]
        else:
            raise InputError("feature file or folder not found", p)
        for q in found:
            r = q.resolve()
            if r not in seen:
                seen.add(r)
                files.append(q)
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        resolved = [g.resolve() for g in group]
        common = Path(os.path.commonpath([str(r.parent) for r in resolved]))
        for g, r in zip(group, resolved):
            names[g] = r.relative_to(common).with_suffix("").as_posix()
    return [(f, names[f]) for f in files]


# ------------------------------------------------------------------------------------------
# CLI: anomalyclip predict
# ------------------------------------------------------------------------------------------
def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--checkpoint", required=True, help="our .ckpt, an exported folder, or the authors' last.ckpt"
    )
    parser.add_argument(
        "--features", nargs="+", metavar="PATH", help="per-video .npy feature files (T, D) or folders of them (recursive)"
    )
    parser.add_argument("--labels", help="labels CSV (id,name) for an authors' checkpoint whose class count is not a shipped table's")
    parser.add_argument("--centroid", help="normal centroid (ncentroid.pt) of an authors' checkpoint; default: beside it")
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="allow pickled Python objects in the checkpoint (trusted files only)"
    )
    parser.add_argument("--fps", type=float, help="frames per second of the features: adds times in seconds")
    parser.add_argument("--threshold", type=float, help="anomaly threshold (default: the checkpoint's, else 0.5)")
    parser.add_argument("--temporal", help="temporal annotation file: ground-truth spans shaded in the plots")
    parser.add_argument("--out", help="output folder (default runs/predict-<time>)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    # Video input (anomalyclip.video.predict_video).
    parser.add_argument("--video", nargs="+", metavar="FILE", help="video files or frame folders: features are extracted first")
    parser.add_argument("--clip", help="CLIP image tower for --video: a hub id or a local transformers folder")
    parser.add_argument("--overlay", action="store_true", help="with --video: also write the video with the scores drawn on it")
    return parser


def _video_predictor():
    try:
        from anomalyclip.video.predict_video import predict_on_video
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("anomalyclip"):
            raise InputError(
                "prediction on video files is not available in this installation "
                f"({e.name} is missing); extract features first and pass --features"
            ) from None
        raise
    return predict_on_video


def main_predict(args: argparse.Namespace) -> int:
    features = getattr(args, "features", None)
    videos = getattr(args, "video", None)
    if not features and not videos:
        raise InputError("nothing to predict: give --features (.npy files or folders) or --video")
    fps = getattr(args, "fps", None)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps must be a positive number, got {fps}")
    threshold = getattr(args, "threshold", None)
    if threshold is not None:
        threshold = check_threshold(threshold)
    items = collect_feature_files(features) if features else []
    temporal_path = getattr(args, "temporal", None)
    gt = None
    if temporal_path:
        from anomalyclip.data.formats import read_temporal

        gt = read_temporal(temporal_path)
    predict_on_video = _video_predictor() if videos else None  # fail before loading the model

    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        trust=getattr(args, "trust_checkpoint", False),
        labels=getattr(args, "labels", None),
        centroid=getattr(args, "centroid", None),
        device=getattr(args, "device", "cpu") or "cpu",
    )
    if threshold is not None:
        predictor.threshold, predictor.threshold_source = threshold, "option"
    out = Path(args.out) if getattr(args, "out", None) else Path("runs") / f"predict-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    args.out = str(out)

    if items:
        from anomalyclip.data.features import load_features

        print(
            f"{len(items)} feature file(s); threshold {predictor.threshold:.4g} ({predictor.threshold_source}); "
            f"classes: {', '.join(predictor.class_names)}"
        )
    for path, name in items:
        feats = load_features(path, predictor.feature_dim)
        pred = predictor.predict(feats)
        spans_gt = None if gt is None else gt.get(path.stem, [])
        write_video_outputs(
            out, name, pred, predictor.class_names, predictor.normal_id, fps, spans_gt, str(path), predictor.threshold_source
        )
        n_spans = len(anomalous_spans(pred, predictor.class_names, predictor.normal_id))
        print(f"  {name}: {pred.num_frames} frames, max score {pred.scores.max():.3f}, {n_spans} anomalous span(s)")
    rc = 0
    if predict_on_video is not None:
        rc = int(predict_on_video(args, predictor) or 0)
    print(f"outputs: {out}")
    return rc
