"""`anomalyclip eval`: a checkpoint (ours, an export, or the authors' `last.ckpt`) on a test list."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalyclip.cli.common import DATA_FLAGS, TRAIN_ONLY, add_checkpoint_flags, add_data_flags, data_config, out_dir
from anomalyclip.config import DataConfig
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


def run_of(loaded) -> dict:
    """What metrics.json says of the checkpoint's run: its kind (the final epoch, as the paper
    reports, or the best on test) and its epoch."""
    return {"checkpoint_kind": loaded.kind, "epoch": loaded.meta.get("epoch")}


def _files_named(args: argparse.Namespace) -> bool:
    return bool(args.preset or args.data_root) or any(getattr(args, n, None) for n in DATA_FLAGS if n not in TRAIN_ONLY)


def recorded_test_files(loaded, checkpoint) -> DataConfig:
    """The test files a checkpoint of ours was trained with, when they still exist."""
    recorded = (loaded.meta.get("run_config") or {}).get("data")
    if not recorded:
        raise InputError("this checkpoint does not record its data files; give --preset and --data-root, "
                         "or --features, --test-list, --temporal and --labels", checkpoint)
    data = DataConfig(**{k: v for k, v in recorded.items() if k in DataConfig.__dataclass_fields__})
    for name in ("features", "test_list", "temporal", "labels"):
        path = Path(getattr(data, name))
        if not path.is_absolute() or not path.exists():
            raise InputError(f"the checkpoint's {name.replace('_', ' ')} {path} no longer exists; name the files "
                             "(--preset and --data-root, or --features, --test-list, --temporal, --labels)", checkpoint)
    print("using the checkpoint's data files: " + ", ".join(f"{n.replace('_', ' ')} {getattr(data, n)}"
                                                          for n in ("features", "test_list", "temporal", "labels")))
    return data


def run(args: argparse.Namespace) -> int:
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.data.run_data import load_run_data

    if not _files_named(args):
        loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, centroid=args.centroid)
        files = recorded_test_files(loaded, args.checkpoint)
        preset = (loaded.meta.get("run_config") or {}).get("preset", "")
        data = load_run_data(files, need_train=False)
        labels = files.resolve("labels")
    else:
        cfg = data_config(args, train=False)
        preset = args.preset or ""
        data = load_run_data(cfg.data, need_train=False)
        labels = cfg.data.resolve("labels")
        loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, labels=labels, centroid=args.centroid)
    if list(loaded.model.cfg.class_names) != list(data.classes.names):
        raise InputError(
            f"the checkpoint's classes {loaded.model.cfg.class_names} differ from the labels CSV's {data.classes.names}",
            labels,
        )
    evaluate_into(out_dir(args.out, "eval"), loaded.model, data, preset, args.checkpoint, args.frames_per_forward,
                  extra=run_of(loaded))
    return 0
