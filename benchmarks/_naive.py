"""The naive path, kept only as a reference for the benchmarks and the exactness tests.

It computes the same numbers as the package's defaults, the slow way round (as the authors'
release does): text features recomputed for every test video with the full 77-token text
transformer, one test video per forward, a Python loop over videos for the MIL selection,
reversible recomputation in the temporal model, and whole feature files read for 512 rows.
"""

from __future__ import annotations

import dataclasses

import torch

from anomalyclip.config import LossConfig, ModelConfig
from anomalyclip.data.datasets import TestVideos
from anomalyclip.evaluation import EvalResult, Evaluator
from anomalyclip.losses import Selection
from anomalyclip.model import AnomalyCLIP


def naive_model_config(cfg: ModelConfig) -> ModelConfig:
    """Same network, naive switches: full-length text transformer, reversible recomputation."""
    return dataclasses.replace(cfg, recompute_temporal=True, truncate_text=False)


def optimised_model_config(cfg: ModelConfig) -> ModelConfig:
    """The package defaults, named explicitly: text truncated, plain autograd in the temporal model."""
    return dataclasses.replace(cfg, recompute_temporal=False, truncate_text=True)


def _topk_one(values: torch.Tensor, keep: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """One video: `values (n,)`, `keep (n,)` -> the indices `(k,)` (dropped entries at -/+1e6)."""
    masked = values.clone()
    masked[~keep] = -1e6 if largest else 1e6
    return torch.topk(masked, k, largest=largest).indices


def select_segments_loop(
    similarity: torch.Tensor, labels_k: torch.Tensor, cfg: LossConfig, num_segments: int, keep: torch.Tensor
) -> Selection:
    """`losses.select_segments` written as a loop over the videos of the batch (the reference)."""
    b, t, k = similarity.shape
    h = b // 2
    l = t // num_segments
    top, bottom = [], []
    for i in range(b):
        seg = similarity[i].view(num_segments, l, k).sum(dim=1)  # (n, K)
        if i < h:
            ranking = seg[:, int(labels_k[i])]
            bottom.append(_topk_one(ranking, keep[i], cfg.num_bottomk, largest=False))
        else:
            ranking = seg.sum(dim=1)
        top.append(_topk_one(ranking, keep[i], cfg.num_topk, largest=True))
    return Selection(top=torch.stack(top), bottom_abn=torch.stack(bottom))


@torch.no_grad()
def evaluate_naive(model: AnomalyCLIP, dataset: TestVideos) -> EvalResult:
    """One test video per forward, text features recomputed for every video."""
    model.eval()
    evaluator = Evaluator(dataset.classes)
    for i in range(len(dataset)):
        video = dataset[i]
        [(scores, probs)] = model.score_videos([video.features])  # no text given: computed here
        evaluator.update(video, scores, probs)
    return evaluator.compute()
