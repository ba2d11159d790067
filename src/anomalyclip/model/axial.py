"""The axial-attention transformer of the temporal model (METHOD §5), owned here.

The release builds it with `axial_attention.AxialImageTransformer(dim=E, depth, heads=8,
reversible=True, axial_pos_emb_shape=(n, l))`. These modules hold the same parameters under
the same state-dict names (so the authors' checkpoints load one to one; the nesting
`f.net.fn.fn.to_q` is theirs) and are created in the same order (so a seed gives the same initial
weights), but compute on frames-major grids `(G, n, l, E)`: layer norms and linear layers need
no permuted copy, and the 3x3 convolutions run channels-last. The library's reversible sequence
is replaced by its forward written as plain autograd (`y1 = x1 + f(x2)`, `y2 = x2 + g(y1)`,
output the mean of both halves); `recompute=True` trades memory for a second forward per block
in backward, as the reversible scheme does. `tests/test_temporal.py` checks forward and
gradients against the library itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.dim_heads = heads, dim // heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)


class PreNorm(nn.Module):
    """LayerNorm, then attention (`fn` is registered first, as the release's key order has it)."""

    def __init__(self, dim: int, fn: SelfAttention):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)


class AxisAttention(nn.Module):
    """Pre-normed self-attention along one grid axis of `(G, n, l, E)`: 1 = across segments,
    2 = across the frames of a segment."""

    def __init__(self, dim: int, heads: int, axis: int):
        super().__init__()
        self.axis = axis
        self.fn = PreNorm(dim, SelfAttention(dim, heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.fn.fn
        g, n, l, _ = x.shape
        h, e = att.heads, att.dim_heads
        y = self.fn.norm(x)  # per frame, so the layout does not matter
        q = att.to_q(y)
        k, v = att.to_kv(y).chunk(2, dim=-1)
        if self.axis == 1:  # across segments: (G, l, h, n, e)
            split = lambda t: t.view(g, n, l, h, e).permute(0, 2, 3, 1, 4)  # noqa: E731
        else:  # across frames of a segment: (G, n, h, l, e)
            split = lambda t: t.view(g, n, l, h, e).permute(0, 1, 3, 2, 4)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        dots = torch.matmul(q, k.transpose(-1, -2)) * (e**-0.5)
        out = torch.matmul(dots.softmax(dim=-1), v)  # (G, a, h, t, e)
        out = out.permute(0, 3, 1, 2, 4) if self.axis == 1 else out.permute(0, 1, 3, 2, 4)  # (G, n, l, h, e)
        return att.to_out(out.reshape(g, n, l, h * e))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels with the release's form: `(x - mean) / (std + eps) * g + b`."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x (G, n, l, E)`, channels last."""
        std = x.var(dim=-1, unbiased=False, keepdim=True).sqrt()
        mean = x.mean(dim=-1, keepdim=True)
        return (x - mean) / (std + self.eps) * self.g.view(-1) + self.b.view(-1)


class FeedForward(nn.Sequential):
    """`ChannelLayerNorm -> Conv3x3 (E -> 4E) -> LeakyReLU -> Conv3x3 (4E -> E)` over the grid."""

    def __init__(self, dim: int):
        super().__init__(
            ChannelLayerNorm(dim),
            nn.Conv2d(dim, dim * 4, 3, padding=1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(dim * 4, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, conv1, act, conv2 = self
        y = norm(x).permute(0, 3, 1, 2)  # (G, E, n, l) view with channels-last strides
        y = F.conv2d(y, conv1.weight, conv1.bias, padding=conv1.padding)
        y = F.leaky_relu(y, act.negative_slope, inplace=True)
        y = F.conv2d(y, conv2.weight, conv2.bias, padding=conv2.padding)
        return y.permute(0, 2, 3, 1)  # (G, n, l, E)


class Branch(nn.Module):
    """One half of a reversible block (the release wraps each in a module holding `net`)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ReversibleBlock(nn.Module):
    def __init__(self, f: nn.Module, g: nn.Module):
        super().__init__()
        self.f, self.g = Branch(f), Branch(g)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1 = x1 + self.f(x2)
        return y1, x2 + self.g(y1)


class BlockSequence(nn.Module):
    def __init__(self, blocks: list[ReversibleBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class AxialPositionalEmbedding(nn.Module):
    """Learned `(E, n)` and `(E, l)` embeddings added over the grid (stored channels-first)."""

    def __init__(self, dim: int, n: int, l: int):
        super().__init__()
        self.param_0 = nn.Parameter(torch.randn(1, dim, n, 1))
        self.param_1 = nn.Parameter(torch.randn(1, dim, 1, l))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x (G, n, l, E)`."""
        return x + self.param_0.permute(0, 2, 3, 1) + self.param_1.permute(0, 2, 3, 1)  # (1, n, 1, E), (1, 1, l, E)


class AxialTransformer(nn.Module):
    """`(G, n, l, E)` -> `(G, n, l, E)`: per layer, attention across segments then across frames,
    then two convolutional feed-forwards, each pair as one reversible block."""

    def __init__(self, dim: int, depth: int, heads: int, n: int, l: int):
        super().__init__()
        self.pos_emb = AxialPositionalEmbedding(dim, n, l)
        blocks = []
        for _ in range(depth):
            blocks.append(ReversibleBlock(AxisAttention(dim, heads, axis=1), AxisAttention(dim, heads, axis=2)))
            blocks.append(ReversibleBlock(FeedForward(dim), FeedForward(dim)))
        self.layers = BlockSequence(blocks)

    def forward(self, x: torch.Tensor, recompute: bool = False) -> torch.Tensor:
        x = self.pos_emb(x)
        x1 = x2 = x
        for block in self.layers.blocks:
            if recompute and torch.is_grad_enabled():
                x1, x2 = checkpoint(block, x1, x2, use_reentrant=False)
            else:
                x1, x2 = block(x1, x2)
        return (x1 + x2) * 0.5  # the mean of the two halves
