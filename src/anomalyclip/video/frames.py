"""Decoded frames kept for a second use (the overlay of `predict --video`) so a video is decoded
once: in memory up to a budget, then spilled to a temporary file beside the outputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


class FrameStore:
    """Append `(B, H, W, 3)` uint8 batches, iterate `(H, W, 3)` frames back in order."""

    def __init__(self, spill_dir: str | Path, memory_budget: int = 1 << 30):
        self.spill_dir, self.memory_budget = Path(spill_dir), int(memory_budget)
        self._batches: list[np.ndarray | tuple[int, tuple[int, ...]]] = []  # array, or (offset, shape) on disk
        self._held = 0
        self._fd: int | None = None
        self._path: str | None = None
        self._end = 0
        self.num_frames = 0

    def add(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        self.num_frames += batch.shape[0]
        if self._held + batch.nbytes <= self.memory_budget:
            self._batches.append(batch)
            self._held += batch.nbytes
            return
        if self._fd is None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._fd, self._path = tempfile.mkstemp(prefix=".frames-", suffix=".raw", dir=self.spill_dir)
        os.pwrite(self._fd, batch.tobytes(), self._end)
        self._batches.append((self._end, batch.shape))
        self._end += batch.nbytes

    def tee(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass `batches` through, keeping each."""
        for batch in batches:
            self.add(batch)
            yield batch

    def __iter__(self) -> Iterator[np.ndarray]:
        for item in self._batches:
            if isinstance(item, np.ndarray):
                yield from item
                continue
            offset, shape = item
            size = int(np.prod(shape))
            yield from np.frombuffer(os.pread(self._fd, size, offset), dtype=np.uint8).reshape(shape)

    def close(self) -> None:
        self._batches.clear()
        if self._fd is not None:
            os.close(self._fd)
            os.unlink(self._path)
            self._fd = self._path = None

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
