"""`anomalyclip export CKPT [--format safetensors|onnx] --out DIR`: any loadable checkpoint as a
folder of plain data (safetensors weights) or as an ONNX graph of its scoring, both described by
the same `config.json`."""

from __future__ import annotations

import argparse

from anomalyclip.cli.common import add_checkpoint_flags

NAME = "export"
HELP = "write model.safetensors (or model.onnx) + config.json"
FORMATS = ("safetensors", "onnx")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint to export: ours, an exported folder, or the authors' last.ckpt")
    p.add_argument("--out", required=True, help="folder to write the model file and config.json into")
    p.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors (default): the weights, loadable everywhere --checkpoint is; onnx: the scoring "
                        "graph for onnxruntime (predict, stream), needs anomalyclip[onnx]")
    p.add_argument("--labels", default=None, help="labels CSV (id,name) of an authors' checkpoint")
    add_checkpoint_flags(p)


def run(args: argparse.Namespace) -> int:
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.checkpoint.export import export_meta, save_export

    if args.format == "onnx":
        from anomalyclip.checkpoint.onnx_export import EXPORT_PACKAGES, export_onnx, require_onnx

        require_onnx(EXPORT_PACKAGES)  # before the checkpoint is read
    loaded = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint, labels=args.labels, centroid=args.centroid)
    if args.format == "onnx":
        out = export_onnx(loaded.model, args.out, export_meta(loaded))
    else:
        out = save_export(loaded, args.out)
    names, normal = loaded.model.cfg.class_names, loaded.model.cfg.normal_id
    print(f"exported {args.checkpoint} -> {out} ({args.format}; {len(names)} classes, normal '{names[normal]}', "
          f"threshold {loaded.threshold})")
    return 0
