"""`anomalyclip` command line: demo, train, eval, predict, export, extract."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from anomalyclip.config import PRESETS, DataConfig, RunConfig, preset_config
from anomalyclip.errors import InputError

DATA_FLAGS = {
    "features": "folder of per-video .npy feature files",
    "train_abnormal": "abnormal training video list",
    "train_normal": "normal training video list",
    "test_list": "test video list",
    "temporal": "temporal annotation file of the test videos",
    "labels": "labels CSV (id,name)",
}


def _add_data_flags(p: argparse.ArgumentParser, train: bool) -> None:
    for name, help_ in DATA_FLAGS.items():
        if train or name not in ("train_abnormal", "train_normal"):
            p.add_argument("--" + name.replace("_", "-"), dest=name, help=help_)


def _data_config(args: argparse.Namespace, train: bool) -> RunConfig:
    if args.preset:
        cfg = preset_config(args.preset, args.data_root or ".")
    else:
        cfg = RunConfig(data=DataConfig(root=args.data_root or "."))
    for name in DATA_FLAGS:
        value = getattr(args, name, None)
        if value:
            setattr(cfg.data, name, str(Path(value).resolve()))
    if not args.preset:
        missing = [n for n in DATA_FLAGS if (train or n not in ("train_abnormal", "train_normal")) and not getattr(args, n, None)]
        if missing:
            raise InputError("without --preset, give " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cfg


def _default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# -- commands ----------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    if not args.preset:
        raise InputError("train needs --preset (ucfcrime, shanghaitech, xdviolence or synthetic)")
    cfg = _data_config(args, train=True)
    flags = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, devices=args.devices,
        seed=args.seed, eval_every=args.eval_every, num_workers=args.num_workers,
    )
    overrides = {k: v for k, v in flags.items() if v is not None}
    cfg.train = dataclasses.replace(cfg.train, **overrides)
    if args.clip:
        cfg.model.clip = args.clip
    out = Path(args.out) if args.out else _default_out(f"train-{args.preset}")
    run_training(cfg, out, resume=args.resume)
    return 0


def run_training(cfg: RunConfig, out: Path, resume: bool = False) -> dict:
    """Train, then evaluate the best checkpoint on the test list into the run folder."""
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.data.datasets import TestVideos
    from anomalyclip.evaluation import evaluate, format_table, write_eval_outputs
    from anomalyclip.metrics import headline
    from anomalyclip.training import train

    summary = train(cfg, out, resume=resume)
    if not summary["global_zero"]:
        return {"metrics": None, "train_seconds": summary["train_seconds"]}
    data = summary["data"]
    loaded = load_checkpoint(summary["best_checkpoint"])
    ds = TestVideos(data.test, data.features, data.temporal, data.classes, cfg.model.feature_dim)
    loaded.model.freeze_text_features()  # inference only from here: the text tower can go
    result = evaluate(loaded.model, ds, cfg.train.eval_frames_per_forward)
    result.metrics["checkpoint"] = str(summary["best_checkpoint"])
    write_eval_outputs(out, result, data.test, data.classes)
    name, value = headline(result.metrics, cfg.preset)
    print(format_table(result.metrics))
    print(f"headline {name}: {100 * value:.2f}   run folder: {out}")
    return {"metrics": result.metrics, "train_seconds": summary["train_seconds"]}


def cmd_demo(args: argparse.Namespace) -> int:
    from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic

    start = time.time()
    out = Path(args.out) if args.out else _default_out("demo")
    if (out / "checkpoints" / "last.ckpt").exists():
        raise InputError("the run folder already holds a run; choose another --out", out)
    print(f"writing the synthetic dataset to {out / 'data'}")
    write_synthetic(out / "data", SyntheticSpec(seed=args.seed))
    cfg = preset_config("synthetic", out / "data")
    if args.epochs:
        cfg.train.epochs = args.epochs
    summary = run_training(cfg, out)
    if summary["metrics"] is None:
        return 0
    print(f"demo wall time: {time.time() - start:.1f} s (training {summary['train_seconds']:.1f} s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.data.datasets import TestVideos
    from anomalyclip.evaluation import evaluate, format_table, write_eval_outputs
    from anomalyclip.metrics import headline
    from anomalyclip.training import load_run_data

    cfg = _data_config(args, train=False)
    data = load_run_data(cfg, need_train=False)
    loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, labels=cfg.data.resolve("labels"), centroid=args.centroid)
    model = loaded.model
    if list(model.cfg.class_names) != list(data.classes.names):
        raise InputError(
            f"the checkpoint's classes {model.cfg.class_names} differ from the labels CSV's {data.classes.names}",
            cfg.data.resolve("labels"),
        )
    ds = TestVideos(data.test, data.features, data.temporal, data.classes, model.cfg.feature_dim)
    model.freeze_text_features()  # inference only from here: the text tower can go
    result = evaluate(model, ds, args.frames_per_forward)
    result.metrics["checkpoint"] = str(args.checkpoint)
    out = Path(args.out) if args.out else _default_out("eval")
    write_eval_outputs(out, result, data.test, data.classes)
    name, value = headline(result.metrics, args.preset or "")
    print(format_table(result.metrics))
    print(f"headline {name}: {100 * value:.2f}   outputs: {out}")
    return 0


def _optional(module: str, attr: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalyclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and evaluate on the built-in synthetic dataset (offline, CPU)")
    p.add_argument("--out", help="run folder (default runs/demo-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train on pre-extracted CLIP features")
    p.add_argument("--preset", choices=sorted(PRESETS), help="dataset preset (METHOD §9 values and file names)")
    p.add_argument("--data-root", help="folder holding the dataset's official files")
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
    _add_data_flags(p, train=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a test list")
    p.add_argument("--checkpoint", required=True, help="our .ckpt, an exported folder, or the authors' last.ckpt")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--data-root")
    p.add_argument("--out", help="output folder (default runs/eval-<time>)")
    p.add_argument("--centroid", help="normal centroid file for the authors' checkpoints (default: ncentroid.pt beside it)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a full (pickle) load of a checkpoint you trust")
    p.add_argument("--frames-per-forward", type=int, default=16384, help="padded frames scored per forward")
    _add_data_flags(p, train=False)
    p.set_defaults(func=cmd_eval)

    for name, mod, adder, runner, help_ in (
        ("predict", "anomalyclip.inference", "add_predict_arguments", "main_predict", "per-frame scores, classes and plots for videos"),
        ("export", "anomalyclip.export", "add_export_arguments", "main_export", "write model.safetensors + config.json"),
        ("extract", "anomalyclip.video.extract", "add_extract_arguments", "main_extract", "CLIP features from video files"),
    ):
        add, run = _optional(mod, adder), _optional(mod, runner)
        if add is None or run is None:
            continue
        p = sub.add_parser(name, help=help_)
        add(p)
        p.set_defaults(func=run)
    return parser


def _one_line(e: InputError) -> str:
    """The message itself, also when a data-loader worker wrapped it with its traceback."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("InputError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
