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
    from safetensors import SafetensorError, safe_open

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
        with safe_open(str(weights), framework="pt") as f:  # the header only
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: torch.empty(s.get_shape(), dtype=_DTYPES.get(s.get_dtype(), torch.uint8), device="meta") for k, s in slices.items()}
    except (SafetensorError, OSError) as e:
        raise InputError(f"cannot read the exported weights: {e}", weights) from None
    validate_export_config(meta, cfg_path, shapes)
    try:
        model = model_from_meta(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"not a valid export configuration: {e}", cfg_path) from None
    read_weights_into(model, weights, shapes)
    return LoadedModel(model.eval(), meta.get("threshold"), "export", {k: meta[k] for k in RUN_KEYS if k in meta})


# safetensors' dtype names; the size of a tensor is all they serve for (others count as bytes)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
_READ_BYTES = 16 * 2**20  # file pages mapped at once while reading weights


def _pieces(shapes: dict[str, torch.Tensor]) -> list[list[tuple[str, slice | None]]]:
    """The file's tensors in groups of about `_READ_BYTES`: small tensors whole (None), a larger
    one in slices of its rows, each slice a group of its own."""
    pieces: list[list[tuple[str, slice | None]]] = [[]]
    size = 0
    for key, t in shapes.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > _READ_BYTES and t.dim() > 0 and t.shape[0] > 1:
            step = max(1, t.shape[0] * _READ_BYTES // nbytes)
            pieces += [[(key, slice(a, min(a + step, t.shape[0])))] for a in range(0, t.shape[0], step)]
            pieces.append([])
            size = 0
            continue
        if size + nbytes > _READ_BYTES and pieces[-1]:
            pieces.append([])
            size = 0
        pieces[-1].append((key, None))
        size += nbytes
    return [p for p in pieces if p]


def read_weights_into(model: torch.nn.Module, weights: Path, shapes: dict[str, torch.Tensor]) -> None:
    """A strict load of the file's tensors into the model's own, about 16 MB at a time.

    safetensors maps the file, and every page read stays resident until the file is closed: a
    whole-file load holds the weights twice (300 MB more for a ViT-B/16 text tower). Reopening
    the file for each piece keeps one piece mapped at a time; the numbers copied are the same.
    """
    from safetensors import SafetensorError, safe_open

    what = "the weights do not match config.json"
    own = model.state_dict(keep_vars=True)  # references, no copy
    missing, unexpected = [k for k in own if k not in shapes], [k for k in shapes if k not in own]
    if missing or unexpected:
        words = [f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(unexpected[:3])}" if unexpected else ""]
        raise InputError(f"{what}: " + "; ".join(w for w in words if w), weights)
    for key, t in shapes.items():
        if own[key].shape != t.shape:
            raise InputError(f"{what}: {key} has shape {tuple(t.shape)} in the file, {tuple(own[key].shape)} in the model", weights)
    for piece in _pieces(shapes):
        try:
            with safe_open(str(weights), framework="pt") as f:
                whole = {key: f.get_tensor(key) for key, rows in piece if rows is None}
                check_finite(whole, weights)
                load_state(model, whole, weights, what, strict=False)
                for key, rows in piece:
                    if rows is not None:
                        part = f.get_slice(key)[rows]  # only these rows' pages are read
                        check_finite({key: part}, weights)
                        with torch.no_grad():
                            own[key][rows].copy_(part)
                del whole
        except (SafetensorError, OSError) as e:
            raise InputError(f"cannot read the exported weights: {e}", weights) from None
