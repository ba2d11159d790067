"""MIL selection of segments and the seven loss terms (METHOD §7-8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anomalyclip.classes import to_k_space
from anomalyclip.config import LossConfig
from anomalyclip.model.class_space import class_probs
from anomalyclip.model.selector import gather_segments, select_k


@dataclass
class Selection:
    """Segment indices chosen per video: top-k of every video, bottom-k of the abnormal half."""

    top: torch.Tensor  # (B, k_top)
    bottom_abn: torch.Tensor  # (B/2, k_bottom)


def abnormal_column(seg: torch.Tensor, labels_k: torch.Tensor) -> torch.Tensor:
    """`seg (B, n, K)`, `labels_k (B,)` -> each video's own class column `(B, n)`."""
    b, n, _ = seg.shape
    return seg.gather(2, labels_k[:, None, None].expand(b, n, 1)).squeeze(2)


def select_segments(
    similarity: torch.Tensor,
    labels: torch.Tensor,
    normal_id: int,
    cfg: LossConfig,
    num_segments: int,
    keep: torch.Tensor | None = None,
) -> Selection:
    """Pick segments by their summed similarity, with a random keep-mask shared by top and bottom.

    `similarity (B, n*l, K)` and `labels (B,)` class ids, the abnormal half first. Abnormal videos
    rank by their own class column, normal ones by the sum over classes.
    """
    b, t, k = similarity.shape
    h = b // 2
    seg = similarity.view(b, num_segments, t // num_segments, k).sum(dim=2)  # (B, n, K)
    abn = abnormal_column(seg[:h], to_k_space(labels[:h], normal_id))  # (B/2, n)
    ranking = torch.cat([abn, seg[h:].sum(dim=2)])  # (B, n)
    if keep is None:
        keep = torch.bernoulli(torch.full((b, num_segments), 1.0 - cfg.segment_drop, device=similarity.device)).bool()
    return Selection(
        top=select_k(ranking, keep, cfg.num_topk, largest=True),
        bottom_abn=select_k(abn, keep[:h], cfg.num_bottomk, largest=False),
    )


def _nll(log_p: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """Mean negative log-likelihood over rows of `log_p (..., C)`."""
    if isinstance(target, int):
        return -log_p[..., target].mean()
    return -log_p.gather(-1, target[..., None]).mean()


def compute_losses(
    similarity: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    selection: Selection,
    normal_id: int,
    cfg: LossConfig,
    num_segments: int,
) -> dict[str, torch.Tensor]:
    """The seven weighted terms and their sum `loss`. Inputs: `similarity (B, n*l, K)`,
    `scores (B, n*l)`, `labels (B,)` class ids with the abnormal half first."""
    b, t, k = similarity.shape
    h, n, l = b // 2, num_segments, t // num_segments
    y = labels[:h]  # (B/2,) class ids
    y_k = to_k_space(y, normal_id)
    s4 = similarity.view(b, n, l, k)
    log_p = class_probs(similarity, scores, normal_id).log().view(b, n, l, k + 1)  # (B, n, l, C)

    s_top_abn = gather_segments(s4[:h], selection.top[:h])  # (B/2, k_top, l, K)
    dir_abn = -abnormal_column(s_top_abn.flatten(1, 2), y_k).mean()
    dir_nor = s4[h:].amax(dim=-1).mean()

    lp_top_abn = gather_segments(log_p[:h], selection.top[:h])  # (B/2, k_top, l, C)
    topk_abn = _nll(lp_top_abn, y[:, None, None].expand(lp_top_abn.shape[:-1]))
    bottomk_abn = _nll(gather_segments(log_p[:h], selection.bottom_abn), normal_id)
    topk_nor = _nll(gather_segments(log_p[h:], selection.top[h:]), normal_id)

    p_abn = scores[:h].reshape(-1)  # abnormal half in order
    nxt = torch.cat([p_abn[1:], p_abn[-1:]])  # the last score is paired with itself
    smooth = ((nxt - p_abn) ** 2).sum()
    sparse = p_abn.mean()

    terms = {
        "dir_abn": cfg.dir_abn * dir_abn,
        "dir_nor": cfg.dir_nor * dir_nor,
        "topk_abn": cfg.topk_abn * topk_abn,
        "bottomk_abn": cfg.bottomk_abn * bottomk_abn,
        "topk_nor": cfg.topk_nor * topk_nor,
        "smooth": cfg.smooth * smooth,
        "sparse": cfg.sparse * sparse,
    }
    terms["loss"] = sum(terms.values())
    return terms


def training_losses(
    out, labels: torch.Tensor, normal_id: int, cfg: LossConfig, num_segments: int, keep: torch.Tensor | None = None, select=select_segments
) -> dict[str, torch.Tensor]:
    """The MIL selection, then the seven terms, for a model output `out` (`similarity`,
    `scores`) of one batch; `select` can be swapped for a reference implementation."""
    selection = select(out.similarity, labels, normal_id, cfg, num_segments, keep=keep)
    return compute_losses(out.similarity, out.scores, labels, selection, normal_id, cfg, num_segments)
