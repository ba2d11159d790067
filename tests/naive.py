"""The naive path, kept only as a reference for the exactness tests and the benchmarks.

It computes the same numbers as the package's defaults, the slow way round (as the authors'
release does): text features recomputed for every test video with the full 77-token text
transformer, one test video per forward, a Python loop over videos for the MIL selection, the
`axial_attention` library's own reversible transformer in the temporal model, and whole feature
files read for 512 rows.
"""

from __future__ import annotations

import dataclasses

import torch
from axial_attention import AxialImageTransformer

from anomalyclip.config import LossConfig, ModelConfig
from anomalyclip.data.datasets import TestVideos
from anomalyclip.evaluation import EvalResult, Evaluator
from anomalyclip.losses import Selection
from anomalyclip.model import AnomalyCLIP


class LibraryAxial(AxialImageTransformer):
    """The release's temporal transformer (same state-dict keys as ours) on our frames-major
    grids `(G, n, l, E)`."""

    def forward(self, x: torch.Tensor, recompute: bool = True) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (G, E, n, l) inside


def library_axial(cfg: ModelConfig) -> LibraryAxial:
    return LibraryAxial(
        dim=cfg.emb_size, depth=cfg.depth, heads=cfg.heads, dim_heads=None, reversible=True,
        axial_pos_emb_shape=(cfg.num_segments, cfg.seg_length),
    )


def naive_model_config(cfg: ModelConfig) -> ModelConfig:
    """Same network, naive switches: full-length text transformer, recomputation in backward."""
    return dataclasses.replace(cfg, recompute_temporal=True, truncate_text=False)


def naive_model(cfg: ModelConfig, **kw) -> AnomalyCLIP:
    """An AnomalyCLIP under the naive switches whose temporal transformer is the library's own
    (reversible: recomputed by inversion in backward), with the weights a seed gives ours."""
    model = AnomalyCLIP(naive_model_config(cfg), **kw)
    lib = library_axial(model.cfg)
    lib.load_state_dict(model.temporal.axial_attn.state_dict())
    model.temporal.axial_attn = lib
    return model


def optimised_model_config(cfg: ModelConfig) -> ModelConfig:
    """The package defaults, named explicitly: text truncated, plain autograd in the temporal model."""
    return dataclasses.replace(cfg, recompute_temporal=False, truncate_text=True)


def _topk_one(values: torch.Tensor, keep: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """One video: `values (n,)`, `keep (n,)` -> the indices `(k,)` (dropped entries at -/+1e6)."""
    masked = values.clone()
    masked[~keep] = -1e6 if largest else 1e6
    return torch.topk(masked, k, largest=largest).indices


def select_segments_loop(
    similarity: torch.Tensor, labels: torch.Tensor, normal_id: int, cfg: LossConfig, num_segments: int, keep: torch.Tensor
) -> Selection:
    """`losses.select_segments` written as a loop over the videos of the batch (the reference)."""
    b, t, k = similarity.shape
    h = b // 2
    l = t // num_segments
    top, bottom = [], []
    for i in range(b):
        seg = similarity[i].view(num_segments, l, k).sum(dim=1)  # (n, K)
        if i < h:
            y = int(labels[i])
            ranking = seg[:, y - 1 if y > normal_id else y]
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


def naive_events(scores, probs, threshold: float, normal_id: int, min_frames: int, max_gap: int) -> list[dict]:
    """Events the slow way, frame by frame: runs at or above the threshold, merged across gaps
    of at most `max_gap` frames, kept when at least `min_frames` long; class = argmax of the
    mean abnormal probabilities over the event's frames."""
    runs, start = [], None
    for i, s in enumerate(list(scores) + [float("-inf")]):
        if s >= threshold and start is None:
            start = i
        elif s < threshold and start is not None:
            runs.append([start, i - 1])
            start = None
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] - 1 <= max_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    out = []
    for s, e in merged:
        if e - s + 1 < min_frames:
            continue
        n = e - s + 1
        mean = [sum(float(probs[i][c]) for i in range(s, e + 1)) / n for c in range(len(probs[0]))]
        best = max((c for c in range(len(mean)) if c != normal_id), key=lambda c: (mean[c], -c))
        seg = [float(x) for x in scores[s : e + 1]]
        out.append({"start": s, "end": e, "class_id": best, "mean_score": sum(seg) / n, "peak_score": max(seg)})
    return out
