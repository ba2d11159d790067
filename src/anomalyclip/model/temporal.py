"""The temporal model (METHOD §5): per-frame inputs on a (segments x frames-in-segment) grid ->
anomaly scores."""

from __future__ import annotations

import torch
from torch import nn

from anomalyclip.model.axial import AxialTransformer


class ClassificationHead(nn.Module):
    def __init__(self, emb_size: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(emb_size)
        self.linear = nn.Linear(emb_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(self.layer_norm(x))).squeeze(-1)


class TemporalModel(nn.Module):
    """Grids `(G, n*l, F)` -> anomaly scores `(G, n*l)`. `recompute=True` recomputes each block's
    forward in backward instead of storing it (less memory, same numbers)."""

    # On CPU grids go through in pieces of this many (grids are independent, so the numbers are
    # the same): every intermediate then stays small (16 MB at E = 256), in cache and reused by
    # the allocator, where whole-batch tensors (128 MB at batch 64) come as fresh pages each
    # time. About 10% faster at batch 64.
    cpu_grids_per_piece = 8

    def __init__(self, in_dim: int, emb_size: int, depth: int, heads: int, num_segments: int, seg_length: int, recompute: bool = False):
        super().__init__()
        self.num_segments, self.seg_length = num_segments, seg_length
        self.recompute = recompute
        self.projection = nn.Linear(in_dim, emb_size)
        self.axial_attn = AxialTransformer(emb_size, depth, heads, num_segments, seg_length)
        self.classifier = ClassificationHead(emb_size)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.shape[0]
        h = self.projection(x).view(g, self.num_segments, self.seg_length, -1)  # (G, n, l, E)
        h = self.axial_attn(h, recompute=self.recompute)
        return self.classifier(h.reshape(g, self.num_segments * self.seg_length, -1))  # (G, n*l)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        piece = self.cpu_grids_per_piece
        if x.device.type == "cpu" and x.shape[0] > piece and not (self.recompute and torch.is_grad_enabled()):
            return torch.cat([self._forward(c) for c in x.split(piece)])
        return self._forward(x)
