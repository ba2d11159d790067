"""Which feature rows a training item uses (METHOD §7), and the frame labels of a test video (§11)."""

from __future__ import annotations

import numpy as np


def train_indices(num_rows: int, n: int = 32, l: int = 16, rng: np.random.Generator | np.random.RandomState | None = None) -> np.ndarray:
    """Rows of one training item: n segments of l consecutive frames, `(n*l,)`, wrapping short videos.

    Segment i starts at `i*dist + randint(dist - l + 2)` with `dist` from the video length, or from
    n*l for videos shorter than n*l (then the random offset is always 0).
    """
    rng = np.random if rng is None else rng
    length = n * l
    dist = (num_rows - l + 1) // n if num_rows >= length else (length - l + 1) // n
    high = dist - l + 2
    offsets = rng.randint(high, size=n) if hasattr(rng, "randint") else rng.integers(high, size=n)
    starts = np.arange(n) * dist + offsets  # (n,)
    return ((starts[:, None] + np.arange(l)[None, :]) % num_rows).reshape(-1)  # (n*l,)


def frame_labels(num_rows: int, label: int, spans: list[tuple[int, int]], normal_id: int, start_frame: int = 0) -> np.ndarray:
    """Row i is `label` if `start <= i + start_frame <= end` for a span, else normal (inclusive)."""
    out = np.full(num_rows, normal_id, dtype=np.int64)
    frame = np.arange(num_rows) + start_frame
    for s, e in spans:
        out[(frame >= s) & (frame <= e)] = label
    return out
