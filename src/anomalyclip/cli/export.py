"""`anomalyclip export CKPT --out DIR`: any loadable checkpoint as a folder of plain data."""

from __future__ import annotations

import argparse

from anomalyclip.cli.common import add_checkpoint_flags

NAME = "export"
HELP = "write model.safetensors + config.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint to export: ours, or the authors' last.ckpt")
    p.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    p.add_argument("--labels", default=None, help="labels CSV (id,name) of an authors' checkpoint")
    add_checkpoint_flags(p)


def run(args: argparse.Namespace) -> int:
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.checkpoint.export import save_export

    loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, labels=args.labels, centroid=args.centroid)
    out = save_export(loaded, args.out)
    names, normal = loaded.model.cfg.class_names, loaded.model.cfg.normal_id
    print(f"exported {args.checkpoint} -> {out} ({len(names)} classes, normal '{names[normal]}', threshold {loaded.threshold})")
    return 0
