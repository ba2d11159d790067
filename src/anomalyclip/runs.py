"""Maximal runs of equal values: spans above a threshold, bands of one predicted class, and
consecutive feature rows that one read can fetch all come from this."""

from __future__ import annotations

import numpy as np


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(starts, lengths)` of the maximal runs of equal consecutive values of a 1-D array."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.nonzero(values[1:] != values[:-1])[0] + 1]
    return starts, np.diff(np.r_[starts, values.size])


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(starts, ends)` of the runs of True in a boolean mask, ends inclusive."""
    mask = np.asarray(mask, dtype=bool)
    starts, lengths = runs(mask)
    on = mask[starts] if starts.size else np.zeros(0, dtype=bool)
    return starts[on], starts[on] + lengths[on] - 1


def consecutive_runs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(positions, lengths)` of the runs of consecutive integers in `rows` (`r, r+1, ...`): within
    such a run `rows[i] - i` is constant."""
    rows = np.asarray(rows, dtype=np.int64)
    return runs(rows - np.arange(rows.size))
