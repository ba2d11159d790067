"""Torch datasets over feature files: sampled training items and whole test videos."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from anomalyclip.classes import ClassTable
from anomalyclip.data.features import FeatureLayout, feature_layout, load_features, open_features, read_rows, read_rows_from, request_rows
from anomalyclip.data.formats import Spans, VideoEntry
from anomalyclip.data.sampling import frame_labels, train_indices
from anomalyclip.errors import InputError


def feature_path(root: str | Path, entry: VideoEntry) -> Path:
    return Path(root) / f"{entry.path}.npy"


def check_entries(entries: list[VideoEntry], root: str | Path, feature_dim: int) -> list[FeatureLayout]:
    """Open every listed file once (header only) so a missing or malformed one fails before
    training starts."""
    layouts = []
    for e in entries:
        try:
            layouts.append(feature_layout(feature_path(root, e), feature_dim))
        except InputError as err:
            raise InputError(f"{err} (listed at {e.source})") from None
    return layouts


class TrainItems(Dataset):
    """One item = one video reduced to n*l sampled rows; only those rows are read.

    `read_whole_file=True` reads each whole file and then indexes it, as the reference does (the
    same items; kept for benchmarks and comparisons).
    """

    def __init__(
        self, entries: list[VideoEntry], root: str | Path, feature_dim: int, n: int = 32, l: int = 16, read_whole_file: bool = False
    ):
        self.entries, self.root, self.feature_dim, self.n, self.l = entries, Path(root), feature_dim, n, l
        self.read_whole_file = read_whole_file
        self.layouts = check_entries(entries, root, feature_dim)

    @property
    def rows(self) -> list[int]:
        return [x.rows for x in self.layouts]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """Several items at once (a DataLoader worker's whole batch): every row run of every item
        is requested from the disk first and read after, so a batch of files that are not in the
        page cache costs about one disk round trip instead of one per item."""
        picks = [(i, train_indices(self.layouts[i].rows, self.n, self.l)) for i in indices]  # same draws as one by one
        paths = [feature_path(self.root, self.entries[i]) for i in indices]
        if self.read_whole_file:
            return [
                (torch.from_numpy(read_rows(np.load(path, allow_pickle=False), idx, path)), self.entries[i].label)
                for (i, idx), path in zip(picks, paths)
            ]
        fds: list[int] = []
        try:
            for path in paths:
                try:
                    fds.append(os.open(path, os.O_RDONLY))
                except OSError as e:
                    raise InputError(f"cannot open feature file ({e.strerror})", path) from None
            for fd, (i, idx) in zip(fds, picks):
                request_rows(fd, self.layouts[i], idx)
            # The rows come in file order (short videos wrap around, but then the file is
            # small), so each run is read straight into its place in sampling order.
            return [
                (torch.from_numpy(read_rows_from(fd, self.layouts[i], idx, path)), self.entries[i].label)
                for fd, (i, idx), path in zip(fds, picks, paths)
            ]  # (n*l, D) each
        finally:
            for fd in fds:
                os.close(fd)


@dataclass
class TestVideo:
    index: int
    features: torch.Tensor  # (T, D)
    labels: torch.Tensor  # (T,) frame class ids


class TestVideos(Dataset):
    """Whole test videos with their frame labels, one file read per item (streamed)."""

    def __init__(self, entries: list[VideoEntry], root: str | Path, temporal: dict[str, Spans], classes: ClassTable, feature_dim: int):
        self.entries, self.root, self.temporal, self.classes, self.feature_dim = entries, Path(root), temporal, classes, feature_dim
        self.rows = [x.rows for x in check_entries(entries, root, feature_dim)]
        for e, t in zip(entries, self.rows):
            if t != e.num_frames:
                warnings.warn(
                    f"{e.source}: the list gives {e.num_frames} frames but {feature_path(root, e)} has {t} rows; "
                    "the rows are used",
                    stacklevel=2,
                )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> TestVideo:
        e = self.entries[i]
        x = load_features(feature_path(self.root, e), self.feature_dim)
        y = frame_labels(x.shape[0], e.label, self.temporal.get(Path(e.path).name, []), self.classes.normal_id, e.start_frame)
        return TestVideo(i, torch.from_numpy(x), torch.from_numpy(y))


def normal_centroid(entries: list[VideoEntry], root: str | Path, feature_dim: int) -> torch.Tensor:
    """Mean raw feature over every frame of every normal training video (METHOD §3)."""
    total = np.zeros(feature_dim, dtype=np.float64)
    count = 0
    for e in entries:
        path = feature_path(root, e)
        arr = open_features(path, feature_dim)
        for start in range(0, arr.shape[0], 8192):  # bounded memory on long videos
            block = read_rows(arr, np.arange(start, min(start + 8192, arr.shape[0])), path)
            total += block.sum(axis=0, dtype=np.float64)
            count += block.shape[0]
    if count == 0:
        raise InputError("no normal training frames to compute the normal centroid from")
    return torch.from_numpy(total / count).float()
