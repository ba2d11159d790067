"""Per-frame prediction for any video's features, in memory: scores, class probabilities and
predicted classes (the writers and the command line build on it).

>>> p = Predictor.from_checkpoint("last.ckpt", centroid="ncentroid.pt")     # doctest: +SKIP
>>> out = p.predict(np.load("Abuse028_x264.npy"))                            # doctest: +SKIP
>>> out.scores.shape, out.probs.shape, p.class_names[out.pred[0]]            # doctest: +SKIP

Inference is exactly METHOD §10 (`AnomalyCLIP.score_videos`); the text features are computed
once per loaded model. An ONNX export is scored by onnxruntime, with the same numbers to float
rounding. Predicted class per frame (METHOD §11): normal if the score is below the
threshold, else the most probable abnormal class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from anomalyclip.classes import predict_classes
from anomalyclip.devices import resolve_device
from anomalyclip.errors import InputError
from anomalyclip.memory import trim_heap
from anomalyclip.model.grid import group_by_budget
from anomalyclip.scoring import Scoring, TorchScoring

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


def _float32(values) -> np.ndarray:
    """A backend's output (a tensor, or onnxruntime's numpy array) as float32 numpy."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.float32, copy=False)


def check_threshold(value: float, where: str = "--threshold") -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"{where} must be a number in [0, 1], got {value}")
    return value


class Predictor:
    """A loaded model ready to score videos: class names, normal id, threshold, and what scores
    (`scoring`: PyTorch with the text features cached, or onnxruntime on an ONNX export)."""

    def __init__(
        self, model=None, threshold: float | None = None, device: str | torch.device = "cpu", source: str = "",
        scoring: Scoring | None = None,
    ):
        if (model is None) == (scoring is None):
            raise ValueError("give one of model and scoring")
        self.scoring: Scoring = TorchScoring(model, device) if scoring is None else scoring
        self.model = getattr(self.scoring, "model", None)  # the torch network, when it is one
        self.device = self.scoring.device
        self.source = source
        self.class_names: list[str] = list(self.scoring.class_names)
        self.normal_id: int = int(self.scoring.normal_id)
        self.checkpoint_threshold = None if threshold is None else float(threshold)
        self.threshold: float = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.threshold_source = "default" if threshold is None else "checkpoint"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        trust: bool = False,
        labels: str | Path | None = None,
        centroid: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> "Predictor":
        """Our checkpoint, an exported folder (safetensors, or ONNX: scored by onnxruntime), or the
        authors' `last.ckpt` (with `labels` / `centroid` where the file does not carry them)."""
        from anomalyclip.checkpoint import load_checkpoint
        from anomalyclip.checkpoint.onnx_export import OnnxScorer, is_onnx_export

        if is_onnx_export(path):
            if str(device) != "auto" and resolve_device(device).type != "cpu":  # auto: the CPU here
                raise InputError(f"an ONNX export is scored by onnxruntime on the CPU; --device {device} needs a "
                                 "torch checkpoint or a safetensors export", path)
            scorer = OnnxScorer(path)
            return cls(threshold=scorer.threshold, source=scorer.source, scoring=scorer)
        loaded = load_checkpoint(path, trust=trust, labels=labels, centroid=centroid)
        loaded.model.freeze_text_features()  # a predictor never trains: the text tower can go
        trim_heap()
        return cls(loaded.model, loaded.threshold, device, loaded.source)

    # -- properties ------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.scoring.name

    @property
    def feature_dim(self) -> int:
        return int(self.scoring.feature_dim)

    @property
    def frames_per_item(self) -> int:
        return int(self.scoring.frames_per_item)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def text_features(self) -> torch.Tensor | None:
        """The cached text features of a torch model; an ONNX graph holds them inside."""
        return getattr(self.scoring, "text_features", None)

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

    def _finish(self, scores, probs, threshold: float) -> Prediction:
        s, p = _float32(scores), _float32(probs)
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
        if self.scoring.batches:
            groups = group_by_budget([t.shape[0] for t in tensors], frames_per_forward, self.frames_per_item)
        else:
            groups = [[i] for i in range(len(tensors))]
        out: list[Prediction] = []
        for group in groups:
            for scores, probs in self.scoring.score_videos([tensors[i] for i in group]):
                out.append(self._finish(scores, probs, thr))
        return out
