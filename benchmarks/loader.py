"""Training items per second from UCF-Crime-sized feature files: whole-file reading vs memory-mapped rows.

An item is one video reduced to 32 x 16 = 512 sampled rows (METHOD §7). The reference reads the
whole file (np.load, ~17 MB for an average UCF-Crime training video) to use 512 rows;
`TrainItems` memory-maps the file and reads only those rows, and a worker asks the disk for every
row of its whole batch before it reads any (one round trip per batch, not per item).

    python benchmarks/loader.py                     # 1610 items over 200 distinct files (~3.4 GB)
    python benchmarks/loader.py --files 40 --items 400 --mean-rows 4000

The OS page cache makes a second read of a file fast, so two figures per method:
  cold-ish: before each item its file is dropped from the page cache
            (os.posix_fadvise(..., POSIX_FADV_DONTNEED); no memory map is kept between items);
            the host's own cache under this machine may still hold the data;
  warm:     every file was read once before the timed pass.
Items come from a DataLoader with `--workers` worker processes and batches of `--batch` (half a
training batch), shuffled, as in training; also read a batch at a time in one process (the
readers alone), and made in memory without any file (the DataLoader's own ceiling). The files
are generated once under `--dir` and reused; `--items` entries cycle over `--files` distinct files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from anomalyclip.data.datasets import TrainItems, feature_path
from anomalyclip.data.formats import VideoEntry

DEFAULT_DIR = Path(tempfile.gettempdir()) / "anomalyclip_bench" / "ucf_train"
D = 512


def write_files(folder: Path, files: int, mean_rows: int, seed: int = 0) -> list[int]:
    """`files` float32 (T, 512) .npy files, log-normal lengths with mean `mean_rows` (some shorter
    than one 512-frame item, as in UCF-Crime)."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        have = json.loads(manifest.read_text())
        if have.get("files") == files and have.get("mean_rows") == mean_rows:
            return have["lengths"]
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(0.0, 0.9, files)
    lengths = np.maximum(100, np.round(raw / raw.mean() * mean_rows)).astype(int).tolist()
    need = sum(lengths) * D * 4
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need * 1.2:
        sys.exit(f"need {need / 1e9:.1f} GB free under {folder}, have {free / 1e9:.1f} GB; use --dir or fewer --files")
    print(f"writing {files} feature files ({need / 1e9:.2f} GB) to {folder} ...", flush=True)
    for i, t in enumerate(lengths):
        np.save(folder / f"video{i:04d}.npy", rng.standard_normal((t, D), dtype=np.float32))
    os.sync()
    manifest.write_text(json.dumps(dict(files=files, mean_rows=mean_rows, lengths=lengths)))
    return lengths


def drop_from_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Cold(Dataset):
    """Each item's file leaves the page cache right before it is read; no map is kept after."""

    def __init__(self, items: TrainItems):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]):
        for i in indices:
            self.items._open.pop(i, None)  # a kept memory map pins its pages in the cache
            drop_from_cache(feature_path(self.items.root, self.items.entries[i]))
        try:
            return self.items.__getitems__(indices)
        finally:
            for i in indices:
                self.items._open.pop(i, None)


class NoRead(Dataset):
    """The DataLoader's own cost: items of the same size made in memory, no file touched."""

    def __init__(self, n: int):
        self.n, self.row = n, np.random.default_rng(0).standard_normal((512, D), dtype=np.float32)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.from_numpy(self.row.copy()), 0


def in_process(ds: Dataset, count: int, batch: int) -> float:
    """Items per second read in this process, `batch` at a time as a worker does (no DataLoader)."""
    np.random.seed(0)
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        ds.__getitems__(list(range(start, min(count, start + batch))))
    return count / (time.perf_counter() - t0)


def seed_worker(worker_id: int) -> None:
    np.random.seed(1000 + worker_id)


def one_pass(ds: Dataset, workers: int, batch: int) -> tuple[float, int]:
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return time.perf_counter() - t0, n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200, help="distinct feature files generated")
    ap.add_argument("--items", type=int, default=1610, help="training items per pass (UCF-Crime: 1610 videos)")
    ap.add_argument("--mean-rows", type=int, default=8300, help="mean rows per file (UCF-Crime training: ~17 MB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)

    lengths = write_files(args.dir / f"f{args.files}_r{args.mean_rows}", args.files, args.mean_rows)
    folder = args.dir / f"f{args.files}_r{args.mean_rows}"
    entries = [VideoEntry(f"video{i % args.files:04d}", 0, lengths[i % args.files] - 1, 0) for i in range(args.items)]
    mean_mb = np.mean([lengths[i % args.files] for i in range(args.items)]) * D * 4 / 2**20

    rows = []
    probe = min(args.items, args.files)  # distinct files for the in-process figures
    for name, whole in (("whole file (np.load)", True), ("memory-mapped rows", False)):
        items = TrainItems(entries, folder, D, read_whole_file=whole)
        t_cold, n = one_pass(Cold(items), args.workers, args.batch)
        one_pass(items, args.workers, args.batch)  # fill the page cache
        t_warm, _ = one_pass(items, args.workers, args.batch)
        solo_cold = in_process(Cold(items), probe, args.batch)
        solo_warm = in_process(items, probe, args.batch)
        rows.append((name, n / t_cold, n / t_warm, solo_cold, solo_warm))
    t_none, n = one_pass(NoRead(args.items), args.workers, args.batch)

    print(
        f"\ntraining items (512 of the rows of one video, float32 x {D}): {args.items} items over {args.files} distinct files, "
        f"mean file {mean_mb:.1f} MB; DataLoader with {args.workers} workers, batches of {args.batch}; {os.cpu_count()} CPUs"
    )
    print(f"{'':<22} {'DataLoader, items/s':>31} {'one process, no DataLoader':>31}")
    print(f"{'reader':<22} {'cold-ish':>15} {'warm':>15} {'cold-ish':>15} {'warm':>15}")
    for name, *v in rows:
        print(f"{name:<22} " + " ".join(f"{x:15.1f}" for x in v))
    print(f"{'speed-up':<22} " + " ".join(f"{b / a:14.1f}x" for a, b in zip(rows[0][1:], rows[1][1:])))
    print(f"{'no file access':<22} {n / t_none:15.1f} {'':15} (the DataLoader's own ceiling: collate, worker transfer)")


if __name__ == "__main__":
    main()
