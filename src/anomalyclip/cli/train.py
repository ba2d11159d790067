"""`anomalyclip train`: train on pre-extracted CLIP features, then evaluate the final epoch on the
test list (as the paper reports it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from anomalyclip.cli.common import add_checkpoint_flags, add_data_flags, data_config, out_dir
from anomalyclip.config import LOGGERS, PRECISIONS, RunConfig
from anomalyclip.errors import InputError
from anomalyclip.presets import PRESETS

NAME = "train"
HELP = "train on pre-extracted CLIP features"
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "devices", "seed", "eval_every", "num_workers", "logger", "precision")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p, train=True)
    p.add_argument("--config", help="a run's config.json to run again (flags given here override it)")
    p.add_argument("--out", help="run folder (default runs/train-<preset>-<time>)")
    p.add_argument("--clip", help="CLIP text tower: a hub id, a local transformers folder, OpenAI's ViT-B-16.pt or an "
                                  "authors' last.ckpt (default for the datasets: openai/clip-vit-base-patch16)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--devices", type=int, help="processes (GPUs or CPU workers) for data-parallel training")
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int, help="epochs between test evaluations (0: only at the end)")
    p.add_argument("--num-workers", type=int, help="data loader workers per loader")
    p.add_argument("--logger", choices=LOGGERS, help="where the per-epoch numbers go besides logs/version_N/metrics.csv "
                                                    "(default csv: only there; tensorboard, mlflow: optional extras)")
    p.add_argument("--precision", choices=PRECISIONS, help="32 (default), bf16-mixed (CPU or GPU) or 16-mixed (GPU): "
                                                          "Lightning's mixed precision")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt")
    p.add_argument("--init-from", metavar="CKPT", help="start from released weights: the authors' last.ckpt, "
                                                       "one of ours, or an exported folder")
    p.add_argument("--keep-centroid", action="store_true", help="with --init-from: keep its normal centroid "
                                                                "instead of computing it from the training data")
    p.add_argument("--labels-of-init", dest="init_labels", help="labels CSV the --init-from checkpoint was trained with "
                                                                "(for an authors' file whose class count is not a shipped table's)")
    add_checkpoint_flags(p)


def _file_flags_given(args: argparse.Namespace) -> bool:
    return bool(args.data_root) or any(getattr(args, n, None) for n in ("features", "train_abnormal", "train_normal",
                                                                         "test_list", "temporal", "labels"))


def run_config(args: argparse.Namespace) -> RunConfig:
    """From --config (or, to resume, the run folder's config.json), else from --preset; the
    flags given override either."""
    recorded = Path(args.config) if args.config else None
    if recorded is None and args.resume and args.out and not args.preset and (Path(args.out) / "config.json").is_file():
        recorded = Path(args.out) / "config.json"
    if recorded is not None:
        try:
            cfg = RunConfig.from_dict(json.loads(recorded.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise InputError(f"not a readable run configuration: {e}", recorded) from None
        if args.preset or _file_flags_given(args):
            files = data_config(args, train=True) if args.preset else None
            cfg.data = files.data if files else dataclasses.replace(cfg.data, **{
                n: str(Path(v).resolve()) for n in ("features", "train_abnormal", "train_normal", "test_list", "temporal", "labels")
                if (v := getattr(args, n, None))})
    elif not args.preset:
        raise InputError(f"train needs --preset ({', '.join(sorted(PRESETS))}) or --config RUN/config.json")
    else:
        cfg = data_config(args, train=True)
    flags = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    cfg.train = dataclasses.replace(cfg.train, **flags)
    if args.clip:
        cfg.model.clip = args.clip
    cfg.train.check()
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = run_config(args)
    init = None
    if args.init_from:
        if args.clip:
            raise InputError("--init-from brings its own CLIP text tower; drop --clip")
        if args.resume:
            raise InputError("--init-from starts a new run; --resume continues one: give one of them")
        from anomalyclip.checkpoint import load_checkpoint

        # an authors' file carries no centroid; unless it is kept, none is needed (it is
        # computed from the training data)
        init = load_checkpoint(args.init_from, trust=args.trust_checkpoint, labels=args.init_labels,
                               centroid=args.centroid, require_centroid=args.keep_centroid)
    train_and_evaluate(cfg, out_dir(args.out, f"train-{cfg.preset or 'run'}"), resume=args.resume,
                       init_from=init, keep_centroid=args.keep_centroid)
    return 0


def train_and_evaluate(cfg: RunConfig, out: Path, resume: bool = False, init_from=None, keep_centroid: bool = False) -> dict:
    """Train, then evaluate the final epoch's checkpoint on the test list into the run folder."""
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.cli.evaluate import evaluate_into, run_of
    from anomalyclip.training.run import train

    summary = train(cfg, out, resume=resume, init_from=init_from, keep_centroid=keep_centroid)
    if not summary["global_zero"]:
        return {"metrics": None, "train_seconds": summary["train_seconds"]}
    if summary["transferred"]:
        t = summary["transferred"]
        print(f"started from the --init-from weights: {len(t['copied'])} tensors copied, {len(t['fresh'])} fresh"
              + (f"; classes new to them: {', '.join(t['new_classes'])}" if t["new_classes"] else ""))
    loaded = load_checkpoint(summary["last_checkpoint"])
    metrics = evaluate_into(out, loaded.model, summary["data"], cfg.preset, summary["last_checkpoint"],
                            cfg.train.eval_frames_per_forward, extra=run_of(loaded))
    best = out / "metrics_best_on_test.json"
    if best.is_file():
        b = json.loads(best.read_text())
        print(f"best epoch on the test set: {b['epoch']} (AUC {100 * b['auc_roc']:.2f}, AP {100 * b['auc_pr']:.2f}) in {best.name}; "
              "chosen on the test set, so optimistic: the paper's numbers are the last epoch's (metrics.json)")
    return {"metrics": metrics, "train_seconds": summary["train_seconds"]}
