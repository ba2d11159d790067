"""Memory-mapped access to per-video feature files, with checks that name the file and value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.runs import consecutive_runs

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

    Read with plain file reads straight into the result rather than copied out of a memory map:
    mapped pages count towards the process's resident memory, and a 50 000-frame test video would
    hold 100 MB of them until the copy is done."""
    layout = feature_layout(path, feature_dim)
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_rows_from(fd, layout, np.arange(layout.rows), path)  # one run: one read
    finally:
        os.close(fd)


# -- rows by plain file reads ------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureLayout:
    """Where a feature file's rows lie, read once from its header."""

    rows: int
    dim: int
    dtype: np.dtype
    offset: int | None  # byte offset of row 0; None when rows are not contiguous (Fortran order)


def feature_layout(path: str | Path, feature_dim: int | None = None) -> FeatureLayout:
    arr = open_features(path, feature_dim)
    offset = getattr(arr, "offset", None) if arr.flags.c_contiguous else None
    return FeatureLayout(arr.shape[0], arr.shape[1], arr.dtype, offset)


def row_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """`rows` cut into runs of consecutive rows: `(position in rows, first row, length)`."""
    pos, lengths = consecutive_runs(rows)
    return list(zip(pos.tolist(), np.asarray(rows)[pos].tolist(), lengths.tolist()))


def request_rows(fd: int, layout: FeatureLayout, rows: np.ndarray) -> None:
    """Ask the OS to start reading every run of `rows` now (a hint; `read_rows_from` waits for
    them). Asking for all the runs of a batch first makes a batch of uncached files cost about one
    disk round trip instead of one per run."""
    if layout.offset is None or not hasattr(os, "posix_fadvise"):
        return
    step = layout.dim * layout.dtype.itemsize
    for _, first, length in row_runs(rows):
        os.posix_fadvise(fd, layout.offset + first * step, length * step, os.POSIX_FADV_WILLNEED)


def _read_into(fd: int, buf: memoryview, offset: int) -> int:
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done) if hasattr(os, "preadv") else _pread_into(fd, buf[done:], offset + done)
        if got == 0:
            break
        done += got
    return done


def _pread_into(fd: int, buf: memoryview, offset: int) -> int:
    data = os.pread(fd, len(buf), offset)
    buf[: len(data)] = data
    return len(data)


def read_rows_from(fd: int, layout: FeatureLayout, rows: np.ndarray, path: str | Path) -> np.ndarray:
    """`rows` of an open feature file as float32 `(len(rows), D)`, in the order given, by plain
    reads of each run straight into the result (no memory map: no page faults, nothing mapped)."""
    if layout.offset is None:
        return read_rows(open_features(path), rows, path)
    out = np.empty((len(rows), layout.dim), dtype=layout.dtype)
    step = layout.dim * layout.dtype.itemsize
    flat = memoryview(out).cast("B")
    for pos, first, length in row_runs(rows):
        want = length * step
        if _read_into(fd, flat[pos * step : pos * step + want], layout.offset + first * step) != want:
            raise InputError(f"the file ends before row {first + length - 1}", path)
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    _check_finite(out, rows, path)
    return out


# -- finding feature files ---------------------------------------------------------------------
def collect_feature_files(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """`(file, output name)` for .npy files and folders (scanned recursively). The name is the
    stem; files sharing a stem keep their sub-folders relative to their common folder."""
    files: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.npy") if q.is_file())
            if not found:
                raise InputError("no .npy feature files in this folder (searched recursively)", p)
        elif p.is_file():
            found = [p]
        else:
            raise InputError("feature file or folder not found", p)
        for q in found:
            r = q.resolve()
            if r not in seen:
                seen.add(r)
                files.append(q)
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        resolved = [g.resolve() for g in group]
        common = Path(os.path.commonpath([str(r.parent) for r in resolved]))
        for g, r in zip(group, resolved):
            names[g] = r.relative_to(common).with_suffix("").as_posix()
    return [(f, names[f]) for f in files]
