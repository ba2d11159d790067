"""The class-space rules on torch tensors (their numpy side is `anomalyclip.classes`)."""

from __future__ import annotations

import torch


def drop_normal(t: torch.Tensor, normal_id: int, dim: int = 0) -> torch.Tensor:
    """Remove the normal class's entry along `dim` (class space -> K-space)."""
    return torch.cat([t.narrow(dim, 0, normal_id), t.narrow(dim, normal_id + 1, t.shape[dim] - normal_id - 1)], dim)


def class_probs(similarity: torch.Tensor, scores: torch.Tensor, normal_id: int) -> torch.Tensor:
    """`P (..., C)`: softmax over abnormal classes times p, and 1 - p as the normal column (METHOD §6)."""
    abn = similarity.softmax(dim=-1) * scores[..., None]  # (..., K)
    nor = (1 - scores)[..., None]
    return torch.cat([abn[..., :normal_id], nor, abn[..., normal_id:]], dim=-1)
