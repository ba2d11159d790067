"""Text-driven directions in the re-centred CLIP space, and MIL segment selection (METHOD §4, §7)."""

from __future__ import annotations

import torch
from torch import nn

from anomalyclip.model.class_space import drop_normal


class Selector(nn.Module):
    """Scalar projections of re-centred frames on the K abnormal-class directions, batch-normed."""

    def __init__(self, num_abnormal: int, normal_id: int):
        super().__init__()
        self.normal_id = normal_id
        self.bn = nn.BatchNorm1d(num_abnormal, affine=False, eps=1e-5, momentum=0.1)

    def directions(self, text_features: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
        d = drop_normal(text_features, self.normal_id) - centroid  # (K, D)
        return d / d.norm(dim=-1, keepdim=True)

    def forward(self, centred: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """`centred (N, D)`, `directions (K, D)` -> similarity `S (N, K)`."""
        return self.bn(centred @ directions.T)


def select_k(values: torch.Tensor, keep: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Indices `(B, k)` of the k largest (or smallest) of `values (B, n)` among kept entries.

    Dropped entries are pushed to -1e6 (top-k) or +1e6 (bottom-k) as the reference does, so they
    are only chosen when fewer than k entries are kept.
    """
    fill = torch.full_like(values, -1e6 if largest else 1e6)
    return torch.where(keep, values, fill).topk(k, dim=1, largest=largest).indices


def gather_segments(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of the selected segments: `x (B, n, l, F)`, `idx (B, k)` -> `(B, k, l, F)`."""
    b, _, l, f = x.shape
    return x.gather(1, idx[:, :, None, None].expand(b, idx.shape[1], l, f))
