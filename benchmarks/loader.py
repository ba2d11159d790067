"""Training items per second from UCF-Crime-sized feature files: whole-file reading vs reading only the rows used.

An item is one video reduced to 32 x 16 = 512 sampled rows (METHOD §7). The reference reads the
whole file (np.load, ~17 MB for an average UCF-Crime training video) to use 512 rows;
`TrainItems` reads only those rows, with plain reads of each run of consecutive rows, and a worker
asks the disk for every row of its whole batch before it reads any (one round trip per batch, not
per item).

    python benchmarks/loader.py                     # 1610 items over 1610 files (~26 GB on disk)
    python benchmarks/loader.py --files 200 --items 200 --warm-files 100

The OS page cache makes a second read of a file fast, so two figures per method:
  cold: every file is dropped from the page cache (os.posix_fadvise(..., POSIX_FADV_DONTNEED))
        before the pass, and the pass reads each of the `--files` files once (with `--items` above
        `--files`, later visits find some rows cached); the host's own cache under a virtual
        machine may still hold the data;
  warm: items cycle over `--warm-files` files, all read once before the timed pass.
Items come from a DataLoader with `--workers` worker processes and batches of `--batch` (half a
training batch), shuffled, as in training; also read a batch at a time in one process (the
readers alone), and made in memory without any file (the DataLoader's own ceiling). The files
(~26 GB at the defaults) are generated once under `--dir` and reused.
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
    ap.add_argument("--files", type=int, default=1610, help="distinct feature files (UCF-Crime: 1610 training videos)")
    ap.add_argument("--warm-files", type=int, default=200, help="distinct files of the warm passes (they must fit in the page cache)")
    ap.add_argument("--items", type=int, default=1610, help="training items per pass")
    ap.add_argument("--mean-rows", type=int, default=8300, help="mean rows per file (UCF-Crime training: ~17 MB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="passes per figure; the median is printed")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)

    folder = args.dir / f"f{args.files}_r{args.mean_rows}"
    lengths = write_files(folder, args.files, args.mean_rows)
    warm_files = min(args.warm_files, args.files)

    def entries(distinct: int) -> list[VideoEntry]:
        return [VideoEntry(f"video{i % distinct:04d}", 0, lengths[i % distinct] - 1, 0) for i in range(args.items)]

    def drop_all() -> None:
        for i in range(args.files):
            drop_from_cache(folder / f"video{i:04d}.npy")

    cold_entries, warm_entries = entries(args.files), entries(warm_files)
    mean_mb = np.mean([lengths[i % args.files] for i in range(args.items)]) * D * 4 / 2**20
    probe = min(args.items, 320)  # items for the in-process figures
    methods = (("whole file (np.load)", True), ("rows only", False))
    figures: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in methods}
    for _ in range(args.repeats):  # the methods take turns, so a drift of the disk's speed hits both
        for name, whole in methods:
            cold = TrainItems(cold_entries, folder, D, read_whole_file=whole)
            warm = TrainItems(warm_entries, folder, D, read_whole_file=whole)
            drop_all()
            t_cold, n = one_pass(cold, args.workers, args.batch)
            drop_all()
            solo_cold = in_process(cold, probe, args.batch)
            one_pass(warm, args.workers, args.batch)  # fill the page cache
            t_warm, _ = one_pass(warm, args.workers, args.batch)
            solo_warm = in_process(warm, probe, args.batch)
            figures[name].append((n / t_cold, n / t_warm, solo_cold, solo_warm))
    rows = [(name, *np.median(np.array(figures[name]), axis=0).tolist()) for name, _ in methods]
    t_none, n = one_pass(NoRead(args.items), args.workers, args.batch)

    print(
        f"\ntraining items (512 of the rows of one video, float32 x {D}): {args.items} items; cold: {args.files} distinct files "
        f"(mean {mean_mb:.1f} MB) dropped from the page cache before the pass; warm: {warm_files} files read before; "
        f"DataLoader with {args.workers} workers, batches of {args.batch}; {os.cpu_count()} CPUs; median of {args.repeats} passes"
    )
    print(f"{'':<22} {'DataLoader, items/s':>31} {'one process, no DataLoader':>31}")
    print(f"{'reader':<22} {'cold':>15} {'warm':>15} {'cold':>15} {'warm':>15}")
    for name, *v in rows:
        print(f"{name:<22} " + " ".join(f"{x:15.1f}" for x in v))
    print(f"{'speed-up':<22} " + " ".join(f"{b / a:14.1f}x" for a, b in zip(rows[0][1:], rows[1][1:])))
    print(f"{'no file access':<22} {n / t_none:15.1f} {'':15} (the DataLoader's own ceiling: collate, worker transfer)")


if __name__ == "__main__":
    main()
