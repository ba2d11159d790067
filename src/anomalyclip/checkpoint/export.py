"""An exported model: a folder of plain data, `model.safetensors` + `config.json`.

The folder holds no pickled Python objects, so it loads without `--trust-checkpoint`, and it
describes itself (class names, normal id, centroid, threshold, text-tower configuration).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.checkpoint.native import RUN_KEYS, load_state, model_from_meta, model_meta
from anomalyclip.checkpoint.validate import check_finite, validate_export_config
from anomalyclip.errors import InputError, output_error
from anomalyclip.fileio import OutputSet, atomic_path, usual_mode, write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _plain_tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses non-contiguous and memory-sharing tensors: give each its own copy."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def export_meta(loaded: LoadedModel) -> dict[str, Any]:
    """The `config.json` of an export of `loaded` (the safetensors and the ONNX exports share it)."""
    meta = model_meta(loaded.model, loaded.threshold)
    meta["source"] = loaded.source
    meta.update({k: loaded.meta[k] for k in RUN_KEYS if k in loaded.meta})
    return meta


def save_export(loaded: LoadedModel, out_dir: str | Path) -> Path:
    """Write a loaded model to `out_dir` (weights first, then the config that marks it complete)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the export destination exists and is not a folder", out_dir)
    meta = export_meta(loaded)
    with OutputSet(out_dir) as files:
        with atomic_path(files.path(WEIGHTS_NAME)) as tmp:
            try:
                save_file(_plain_tensors(loaded.model.state_dict()), str(tmp), metadata={"format": "pt"})
            except SafetensorError as e:  # its I/O errors come as text: "... (os error 28)"
                code = re.search(r"os error (\d+)", str(e))
                raise output_error(out_dir / WEIGHTS_NAME, OSError(int(code.group(1)), str(e)) if code else OSError(str(e))) from None
            usual_mode(tmp)  # safetensors writes its file owner-only
        write_json(files.path(CONFIG_NAME), meta)
    return out_dir


def load_export(path: str | Path) -> LoadedModel:
    """Read a folder written by `save_export` (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from anomalyclip.checkpoint.onnx_export import is_onnx_export

    path = Path(path)
    cfg_path, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not weights.is_file() and is_onnx_export(path):
        raise InputError("an ONNX export holds no PyTorch weights: it scores with predict and stream only; "
                         "give the checkpoint it was exported from, or a safetensors export", path)
    for f in (cfg_path, weights):
        if not f.is_file():
            raise InputError(f"not an exported model folder: {f.name} is missing", path)
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid export configuration: {e}", cfg_path) from None
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise InputError(f"cannot read the exported weights: {e}", weights) from None
    validate_export_config(meta, cfg_path, sd)
    check_finite(sd, weights)
    try:
        model = model_from_meta(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"not a valid export configuration: {e}", cfg_path) from None
    load_state(model, sd, weights, "the weights do not match config.json")
    return LoadedModel(model.eval(), meta.get("threshold"), "export", {k: meta[k] for k in RUN_KEYS if k in meta})
