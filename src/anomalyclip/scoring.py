"""What a `Predictor` scores videos with: a PyTorch model, or an ONNX export on onnxruntime
(`checkpoint.onnx_export.OnnxScorer`). Both take whole videos of raw CLIP features and give the
test-mode scores and class probabilities of METHOD §10; the predictor only checks the input,
groups the videos and turns probabilities into classes."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from anomalyclip.devices import resolve_device


class Scoring(Protocol):
    name: str  # what scores: printed beside the results
    class_names: list[str]
    normal_id: int
    feature_dim: int
    frames_per_item: int  # n*l: a window of the test mode
    device: torch.device  # where the input features go
    batches: bool  # several videos per forward pay off

    def score_videos(self, videos: Sequence[torch.Tensor]) -> list[tuple[object, object]]:
        """Per video `(T, D)` -> `(scores (T,), probs (T, C))`, tensors or numpy arrays."""
        ...


class TorchScoring:
    """`AnomalyCLIP.score_videos` on `device`, the text features computed once."""

    name = "torch"
    batches = True

    def __init__(self, model, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.class_names: list[str] = list(model.cfg.class_names)
        self.normal_id: int = int(model.cfg.normal_id)
        self.feature_dim: int = int(model.cfg.feature_dim)
        self.frames_per_item: int = int(model.cfg.frames_per_item)
        with torch.no_grad():
            self.text_features = self.model.text_features().detach()  # (C, D), once per model

    def score_videos(self, videos: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.model.score_videos(list(videos), self.text_features)
