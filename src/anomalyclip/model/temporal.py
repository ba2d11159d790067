"""Axial-attention temporal model over a (segments x frames-in-segment) grid (METHOD §5)."""

from __future__ import annotations

import torch
from axial_attention import AxialImageTransformer
from torch import nn


class ClassificationHead(nn.Module):
    def __init__(self, emb_size: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(emb_size)
        self.linear = nn.Linear(emb_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(self.layer_norm(x))).squeeze(-1)


class TemporalModel(nn.Module):
    """Per-frame inputs arranged as grids `(G, n*l, F)` -> anomaly scores `(G, n*l)`.

    The axial transformer is always built reversible so checkpoint keys never depend on how it
    is run; `recompute=False` runs the same blocks as an ordinary autograd graph (more memory,
    no recomputation in backward), which computes the identical function.
    """

    def __init__(self, in_dim: int, emb_size: int, depth: int, heads: int, num_segments: int, seg_length: int, recompute: bool = True):
        super().__init__()
        self.num_segments, self.seg_length = num_segments, seg_length
        self.recompute = recompute
        self.projection = nn.Linear(in_dim, emb_size)
        self.axial_attn = AxialImageTransformer(
            dim=emb_size,
            depth=depth,
            heads=heads,
            dim_heads=None,
            reversible=True,
            axial_pos_emb_shape=(num_segments, seg_length),
        )
        self.classifier = ClassificationHead(emb_size)

    def _axial_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The reversible sequence's forward, written as plain autograd over the same modules."""
        x = self.axial_attn.pos_emb(x)
        x1 = x2 = x
        for block in self.axial_attn.layers.blocks:
            x1 = x1 + block.f.net(x2)
            x2 = x2 + block.g.net(x1)
        return torch.stack([x1, x2]).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.shape[0]
        h = self.projection(x)  # (G, n*l, E)
        h = h.view(g, self.num_segments, self.seg_length, -1).permute(0, 3, 1, 2)  # (G, E, n, l)
        if self.recompute and torch.is_grad_enabled():
            h = self.axial_attn(h)
        else:
            h = self._axial_plain(h)
        h = h.permute(0, 2, 3, 1).reshape(g, self.num_segments * self.seg_length, -1)  # (G, n*l, E)
        return self.classifier(h)  # (G, n*l)
