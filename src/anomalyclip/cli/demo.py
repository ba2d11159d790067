"""`anomalyclip demo`: write the synthetic dataset, train and evaluate on it (offline, CPU)."""

from __future__ import annotations

import argparse
import time

from anomalyclip.cli.common import out_dir
from anomalyclip.errors import InputError

NAME = "demo"
HELP = "train and evaluate on the built-in synthetic dataset (offline, CPU)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder (default runs/demo-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")


def run(args: argparse.Namespace) -> int:
    from anomalyclip.cli.train import train_and_evaluate
    from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic
    from anomalyclip.presets import preset_config

    start = time.time()
    out = out_dir(args.out, "demo")
    if (out / "checkpoints" / "last.ckpt").exists():
        raise InputError("the run folder already holds a run; choose another --out", out)
    print(f"writing the synthetic dataset to {out / 'data'}")
    write_synthetic(out / "data", SyntheticSpec(seed=args.seed))
    cfg = preset_config("synthetic", out / "data")
    if args.epochs:
        cfg.train.epochs = args.epochs
    summary = train_and_evaluate(cfg, out)
    if summary["metrics"] is not None:
        print(f"demo wall time: {time.time() - start:.1f} s (training {summary['train_seconds']:.1f} s)")
    return 0
