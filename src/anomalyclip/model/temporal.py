"""Axial-attention temporal model over a (segments x frames-in-segment) grid (METHOD §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    no recomputation in backward), which computes the identical function. That plain path (also
    used whenever no gradient is needed) calls the library's parameters on frames-major grids,
    `(G, n, l, E)`: layer norms and linear layers need no permuted copy of the grid, and the 3x3
    convolutions run channels-last, where the library's modules permute to channels-first and
    back around each part.
    """

    def __init__(self, in_dim: int, emb_size: int, depth: int, heads: int, num_segments: int, seg_length: int, recompute: bool = False):
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

    # -- the plain path, on frames-major grids (G, n, l, E) ---------------------------------
    @staticmethod
    def _attention(permute_to_from: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`PermuteToFrom(PreNorm(SelfAttention))` on `x (G, n, l, E)`; the attended axis is the
        one the module's permutation moves next to the channels (n or l)."""
        pre = permute_to_from.fn
        att = pre.fn
        axis = permute_to_from.permutation[-2] - 1  # (G, E, n, l) axis -> (G, n, l, E) axis
        g, n, l, d = x.shape
        h, e = att.heads, att.dim_heads
        y = pre.norm(x)  # per-frame, so the layout does not matter
        q = att.to_q(y)
        k, v = att.to_kv(y).chunk(2, dim=-1)
        if axis == 1:  # over segments: (G, l, h, n, e)
            split = lambda t: t.view(g, n, l, h, e).permute(0, 2, 3, 1, 4)
        else:  # over frames in a segment: (G, n, h, l, e)
            split = lambda t: t.view(g, n, l, h, e).permute(0, 1, 3, 2, 4)
        q, k, v = split(q), split(k), split(v)
        dots = torch.matmul(q, k.transpose(-1, -2)) * (e**-0.5)
        out = torch.matmul(dots.softmax(dim=-1), v)  # (G, a, h, t, e)
        if axis == 1:
            out = out.permute(0, 3, 1, 2, 4)
        else:
            out = out.permute(0, 1, 3, 2, 4)
        return att.to_out(out.reshape(g, n, l, h * e))

    @staticmethod
    def _feed_forward(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """`ChanLayerNorm -> Conv3x3 -> LeakyReLU -> Conv3x3` on `x (G, n, l, E)`, channels-last."""
        norm, conv1, act, conv2 = seq
        std = x.var(dim=-1, unbiased=False, keepdim=True).sqrt()
        mean = x.mean(dim=-1, keepdim=True)
        y = (x - mean) / (std + norm.eps) * norm.g.view(-1) + norm.b.view(-1)
        y = y.permute(0, 3, 1, 2)  # (G, E, n, l) view, channels-last strides
        y = F.conv2d(y, conv1.weight, conv1.bias, padding=conv1.padding)
        y = F.leaky_relu(y, act.negative_slope, inplace=True)
        y = F.conv2d(y, conv2.weight, conv2.bias, padding=conv2.padding)
        return y.permute(0, 2, 3, 1)  # (G, n, l, E)

    def _part(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.Sequential):
            return self._feed_forward(module, x)
        return self._attention(module, x)

    def _axial_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The reversible sequence's forward as plain autograd over the same parameters:
        `(G, n, l, E)` -> `(G, n, l, E)`."""
        pos = self.axial_attn.pos_emb
        for i in range(pos.num_axials):
            x = x + getattr(pos, f"param_{i}").permute(0, 2, 3, 1)  # (1, E, n, 1) -> (1, n, 1, E)
        x1 = x2 = x
        for block in self.axial_attn.layers.blocks:
            x1 = x1 + self._part(block.f.net, x2)
            x2 = x2 + self._part(block.g.net, x1)
        return (x1 + x2) * 0.5  # = stack([x1, x2]).mean(0)

    # On CPU the plain path runs in pieces of this many grids (grids are independent, so the
    # numbers are the same): every intermediate then stays small (16 MB at E = 256), in cache and
    # reused by the allocator, where whole-batch tensors (128 MB at batch 64) come as fresh pages
    # each time. About 10% faster at batch 64.
    cpu_grids_per_piece = 8

    def _forward(self, x: torch.Tensor, plain: bool) -> torch.Tensor:
        g = x.shape[0]
        h = self.projection(x).view(g, self.num_segments, self.seg_length, -1)  # (G, n, l, E)
        if plain:
            h = self._axial_plain(h)
        else:
            h = self.axial_attn(h.permute(0, 3, 1, 2))  # (G, E, n, l)
            h = h.permute(0, 2, 3, 1)
        return self.classifier(h.reshape(g, self.num_segments * self.seg_length, -1))  # (G, n*l)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            return self._forward(x, plain=False)
        piece = self.cpu_grids_per_piece
        if x.device.type == "cpu" and x.shape[0] > piece:
            return torch.cat([self._forward(c, plain=True) for c in x.split(piece)])
        return self._forward(x, plain=True)
