"""What every verb shares: the data-file flags, the default output folder, argument types."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from anomalyclip.config import DataConfig, RunConfig
from anomalyclip.errors import InputError
from anomalyclip.presets import PRESETS, get_preset

DATA_FLAGS = {
    "features": "folder of per-video .npy feature files",
    "train_abnormal": "abnormal training video list",
    "train_normal": "normal training video list",
    "test_list": "test video list",
    "temporal": "temporal annotation file of the test videos",
    "labels": "labels CSV (id,name)",
}
TRAIN_ONLY = ("train_abnormal", "train_normal")


def add_data_flags(p: argparse.ArgumentParser, train: bool) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="dataset preset (METHOD §9 values and file names)")
    p.add_argument("--data-root", help="folder holding the dataset's official files")
    for name, help_ in DATA_FLAGS.items():
        if train or name not in TRAIN_ONLY:
            p.add_argument("--" + name.replace("_", "-"), dest=name, help=help_)


def data_config(args: argparse.Namespace, train: bool) -> RunConfig:
    """The preset's layout under `--data-root`, each file flag overriding; without a preset every
    file must be named."""
    if args.data_root and not Path(args.data_root).is_dir():
        raise InputError("--data-root: no such folder", args.data_root)
    named = [n for n in DATA_FLAGS if (train or n not in TRAIN_ONLY) and getattr(args, n, None)]
    if args.preset and not args.data_root and len(named) < len([n for n in DATA_FLAGS if train or n not in TRAIN_ONLY]):
        raise InputError(f"--preset {args.preset} needs --data-root: the folder holding the dataset's files")
    if args.preset:
        cfg = get_preset(args.preset).run_config(args.data_root)
    else:
        cfg = RunConfig(data=DataConfig(root=args.data_root or "."))
    for name in DATA_FLAGS:
        value = getattr(args, name, None)
        if value:
            setattr(cfg.data, name, str(Path(value).resolve()))
    if not args.preset:
        missing = [n for n in DATA_FLAGS if (train or n not in TRAIN_ONLY) and not getattr(args, n, None)]
        if missing:
            raise InputError("without --preset, give " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cfg


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def out_dir(value: str | None, kind: str) -> Path:
    return Path(value) if value else default_out(kind)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    """How to read a checkpoint: the authors' files need their labels and centroid."""
    p.add_argument("--centroid", help="normal centroid (ncentroid.pt) of an authors' checkpoint; default: beside it")
    p.add_argument(
        "--trust-checkpoint", action="store_true", help="allow pickled Python objects in the checkpoint (trusted files only)"
    )


def add_event_flags(p: argparse.ArgumentParser) -> None:
    """How anomalous frames become events (`events.EventRules`), for `predict` and `stream`."""
    from anomalyclip.events import (
        DEFAULT_MERGE_GAP_FRAMES,
        DEFAULT_MERGE_GAP_S,
        DEFAULT_MIN_EVENT_FRAMES,
        DEFAULT_MIN_EVENT_S,
    )

    p.add_argument("--min-event", type=float, metavar="S",
                   help=f"shortest event kept, in seconds (frames when the rate is unknown); default {DEFAULT_MIN_EVENT_S} s "
                        f"or {DEFAULT_MIN_EVENT_FRAMES} frames; 0: keep every run")
    p.add_argument("--merge-gap", type=float, metavar="S",
                   help=f"events at most this far apart merge, in seconds (frames when the rate is unknown); default "
                        f"{DEFAULT_MERGE_GAP_S} s or {DEFAULT_MERGE_GAP_FRAMES} frames; 0: no merging")


def event_rules(args: argparse.Namespace):
    from anomalyclip.events import EventRules

    return EventRules(args.min_event, args.merge_gap)
