"""`anomalyclip eval`: a checkpoint (ours, an export, or the authors' `last.ckpt`) on a test list."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalyclip.cli.common import add_checkpoint_flags, add_data_flags, data_config, out_dir
from anomalyclip.errors import InputError

NAME = "eval"
HELP = "evaluate a checkpoint on a test list"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="our .ckpt, an exported folder, or the authors' last.ckpt")
    add_data_flags(p, train=False)
    p.add_argument("--out", help="output folder (default runs/eval-<time>)")
    add_checkpoint_flags(p)
    p.add_argument("--frames-per-forward", type=int, default=16384, help="padded frames scored per forward")


def evaluate_into(
    out: Path, model, data, preset: str, checkpoint, frames_per_forward: int, *, method: str = "anomalyclip", extra: dict | None = None
) -> dict:
    """Evaluate `model` (AnomalyCLIP or the zero-shot baseline) on the run's test list, write
    every output into `out` (metrics.json also holds `checkpoint`, None when there is none, and
    `extra`), print the summary."""
    from anomalyclip.eval_outputs import summary, write_eval_outputs
    from anomalyclip.evaluation import evaluate_test_list
    from anomalyclip.presets import preset_for

    result = evaluate_test_list(model, data, frames_per_forward, preset=preset or None, method=method)
    result.metrics["checkpoint"] = None if checkpoint is None else str(checkpoint)
    result.metrics.update(extra or {})
    write_eval_outputs(out, result, data.test, data.classes)
    print(summary(result.metrics, preset_for(result.metrics["dataset"]), out))
    return result.metrics


def run(args: argparse.Namespace) -> int:
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.data.run_data import load_run_data

    cfg = data_config(args, train=False)
    data = load_run_data(cfg.data, need_train=False)
    labels = cfg.data.resolve("labels")
    loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, labels=labels, centroid=args.centroid)
    if list(loaded.model.cfg.class_names) != list(data.classes.names):
        raise InputError(
            f"the checkpoint's classes {loaded.model.cfg.class_names} differ from the labels CSV's {data.classes.names}",
            labels,
        )
    evaluate_into(out_dir(args.out, "eval"), loaded.model, data, args.preset or "", args.checkpoint, args.frames_per_forward)
    return 0
