"""Memory-mapped access to per-video feature files, with checks that name the file and value."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomalyclip.errors import InputError

ALLOWED_DTYPES = (np.float32, np.float16)


def open_features(path: str | Path, feature_dim: int | None = None) -> np.ndarray:
    """The `(T, D)` array of one video, memory-mapped: only the rows used are read from disk."""
    path = Path(path)
    if not path.is_file():
        raise InputError("feature file not found", path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a readable .npy feature file ({e})", path) from None
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D (frames, {feature_dim or 'D'}) array, got shape {arr.shape}", path)
    if arr.dtype not in ALLOWED_DTYPES:
        raise InputError(f"expected float32 or float16 features, got dtype {arr.dtype}", path)
    if feature_dim is not None and arr.shape[1] != feature_dim:
        raise InputError(f"feature width is {arr.shape[1]}, the model expects {feature_dim}", path)
    if arr.shape[0] == 0:
        raise InputError("the feature file has no rows", path)
    return arr


def num_rows(path: str | Path) -> int:
    return open_features(path).shape[0]


def _check_finite(out: np.ndarray, rows: np.ndarray | None, path: str | Path) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        total = out.sum()
    if np.isfinite(total):  # one pass, no (T, D) mask; a finite sum can't hide a NaN or inf
        return
    bad = ~np.isfinite(out)
    if bad.any():  # else the sum overflowed on large finite values
        r = int(np.nonzero(bad.any(axis=1))[0][0])
        row = r if rows is None else int(rows[r])
        raise InputError(f"row {row} holds a non-finite value ({out[r][bad[r]][0]})", path)


def read_rows(arr: np.ndarray, rows: np.ndarray | None, path: str | Path) -> np.ndarray:
    """Rows as float32 (all rows when `rows` is None); NaN or inf ends in an error naming the row."""
    out = np.array(arr if rows is None else arr[rows], dtype=np.float32)  # a writable copy
    _check_finite(out, rows, path)
    return out


def load_features(path: str | Path, feature_dim: int | None = None) -> np.ndarray:
    """A whole video's features `(T, D)` as float32, checked.

    A float32 file is read with plain file reads straight into the result rather than copied out
    of a memory map: mapped pages count towards the process's resident memory, and a 50 000-frame
    test video would hold 100 MB of them until the copy is done."""
    arr = open_features(path, feature_dim)
    offset = getattr(arr, "offset", None)
    if arr.dtype != np.float32 or offset is None or not arr.flags.c_contiguous:
        return read_rows(arr, None, path)
    out = np.empty(arr.shape, dtype=np.float32)
    del arr
    with open(path, "rb") as f:
        f.seek(offset)
        got = f.readinto(memoryview(out).cast("B"))
    if got != out.nbytes:
        raise InputError(f"the file ends after {got} of {out.nbytes} data bytes", path)
    _check_finite(out, None, path)
    return out
