"""Export any loadable checkpoint to a folder of plain data: `model.safetensors` + `config.json`.

The folder holds no pickled Python objects, so it loads without `--trust-checkpoint`, and it
describes itself (class names, normal id, centroid, threshold, text-tower configuration).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from anomalyclip.checkpoint import LoadedModel, model_from_meta, model_meta
from anomalyclip.errors import InputError
from anomalyclip.fileio import atomic_path, write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _plain_tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses non-contiguous and memory-sharing tensors: give each its own copy."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_export(loaded: LoadedModel, out_dir: str | Path) -> Path:
    """Write a loaded model to `out_dir` (weights first, then the config that marks it complete)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the export destination exists and is not a folder", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = model_meta(loaded.model, loaded.threshold)
    meta["source"] = loaded.source
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        save_file(_plain_tensors(loaded.model.state_dict()), str(tmp), metadata={"format": "pt"})
    write_json(out_dir / CONFIG_NAME, meta)
    return out_dir


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, trust: bool = False, **import_options: Any) -> Path:
    """Load `ckpt_path` (ours, an export, or the authors' `last.ckpt`) and write it to `out_dir`."""
    from anomalyclip.checkpoint import load_checkpoint

    loaded = load_checkpoint(ckpt_path, trust=trust, **{k: v for k, v in import_options.items() if v is not None})
    return save_export(loaded, out_dir)


def load_export(path: str | Path) -> LoadedModel:
    """Read a folder written by `export_checkpoint` (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    cfg_path, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    for f in (cfg_path, weights):
        if not f.is_file():
            raise InputError(f"not an exported model folder: {f.name} is missing", path)
    try:
        meta = json.loads(cfg_path.read_text())
        model = model_from_meta(meta)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"not a valid export configuration: {e}", cfg_path) from None
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise InputError(f"cannot read the exported weights: {e}", weights) from None
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InputError(f"the weights do not match config.json: {str(e).splitlines()[0]} {_first_detail(e)}", weights) from None
    return LoadedModel(model.eval(), meta.get("threshold"), "export")


def _first_detail(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
    return lines[0] if lines else ""


# ------------------------------------------------------------------------------------------
# CLI: anomalyclip export CKPT --out DIR
# ------------------------------------------------------------------------------------------
def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoint", help="checkpoint to export: ours, or the authors' last.ckpt")
    parser.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow pickled Python objects in the checkpoint (only for files from a source you trust)",
    )
    parser.add_argument("--labels", default=None, help="labels CSV (id,name) of an authors' checkpoint")
    parser.add_argument(
        "--centroid", default=None, help="normal centroid (ncentroid.pt) of an authors' checkpoint; default: beside it"
    )
    return parser


def main_export(args: argparse.Namespace) -> int:
    out = export_checkpoint(
        args.checkpoint, args.out, trust=args.trust_checkpoint, labels=args.labels, centroid=args.centroid
    )
    meta = json.loads((out / CONFIG_NAME).read_text())
    print(
        f"exported {args.checkpoint} -> {out} ({len(meta['class_names'])} classes, "
        f"normal '{meta['class_names'][meta['normal_id']]}', threshold {meta['threshold']})"
    )
    return 0
