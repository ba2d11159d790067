"""How a whole test video becomes 512-frame grids for the temporal model (METHOD §10), and how
many grids or videos go through one call. Grids are scored independently, so every grouping
here bounds working memory only: the numbers are the same."""

from __future__ import annotations

import math

import torch


def num_grids(num_rows: int, frames_per_grid: int) -> int:
    return max(1, math.ceil(num_rows / frames_per_grid))


def padded_length(num_rows: int, frames_per_grid: int) -> int:
    """`T' = ceil(T / (n*l)) * n*l`: the length of the wrap-around padded video."""
    return num_grids(num_rows, frames_per_grid) * frames_per_grid


def eval_grid_index(num_rows: int, n: int = 32, l: int = 16) -> torch.Tensor:
    """Frame positions `(s, n*l)` of the s interleaved grids of a padded test video.

    The video is extended by wrap-around to `T'` frames; 16-frame chunk k goes to grid `k mod s`
    at segment `k // s`. Positions are in `[0, T')`; row = position mod T.
    """
    s = num_grids(num_rows, n * l)
    chunk = torch.arange(n)[None, :] * s + torch.arange(s)[:, None]  # (s, n)
    return (chunk[:, :, None] * l + torch.arange(l)).reshape(s, n * l)  # (s, n*l)


def group_by_budget(lengths: list[int], budget: int, frames_per_grid: int) -> list[list[int]]:
    """Consecutive videos grouped so each group holds about `budget` padded frames (a longer
    video forms a group of its own)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, t in enumerate(lengths):
        size = padded_length(t, frames_per_grid)
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        groups.append(current)
    return groups


def grids_per_call(device: torch.device) -> int:
    """Grids per temporal-model call when scoring whole videos. On CPU 8-16 grids run a few
    percent faster than 32 (they stay in cache); a GPU wants larger calls."""
    return 16 if device.type == "cpu" else 64
