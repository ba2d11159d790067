"""`anomalyclip train`: train on pre-extracted CLIP features, then evaluate on the test list."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from anomalyclip.cli.common import add_data_flags, data_config, out_dir
from anomalyclip.config import RunConfig
from anomalyclip.errors import InputError
from anomalyclip.presets import PRESETS

NAME = "train"
HELP = "train on pre-extracted CLIP features"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p, train=True)
    p.add_argument("--out", help="run folder (default runs/train-<preset>-<time>)")
    p.add_argument("--clip", help="CLIP text tower: a hub id (openai/clip-vit-base-patch16) or a local folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--devices", type=int, help="processes (GPUs or CPU workers) for data-parallel training")
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int, help="epochs between test evaluations (0: only at the end)")
    p.add_argument("--num-workers", type=int, help="data loader workers per loader")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt")


def run(args: argparse.Namespace) -> int:
    if not args.preset:
        raise InputError(f"train needs --preset ({', '.join(sorted(PRESETS))})")
    cfg = data_config(args, train=True)
    flags = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, devices=args.devices,
        seed=args.seed, eval_every=args.eval_every, num_workers=args.num_workers,
    )
    cfg.train = dataclasses.replace(cfg.train, **{k: v for k, v in flags.items() if v is not None})
    if args.clip:
        cfg.model.clip = args.clip
    train_and_evaluate(cfg, out_dir(args.out, f"train-{args.preset}"), resume=args.resume)
    return 0


def train_and_evaluate(cfg: RunConfig, out: Path, resume: bool = False) -> dict:
    """Train, then evaluate the best checkpoint on the test list into the run folder."""
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.cli.evaluate import evaluate_into
    from anomalyclip.training import train

    summary = train(cfg, out, resume=resume)
    if not summary["global_zero"]:
        return {"metrics": None, "train_seconds": summary["train_seconds"]}
    loaded = load_checkpoint(summary["best_checkpoint"])
    metrics = evaluate_into(out, loaded.model, summary["data"], cfg.preset, summary["best_checkpoint"], cfg.train.eval_frames_per_forward)
    return {"metrics": metrics, "train_seconds": summary["train_seconds"]}
