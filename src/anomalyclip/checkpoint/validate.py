"""Checks on loaded weights and on an exported folder's `config.json`: non-finite weights are
refused, and an export's configuration must agree with itself and with its weights. Every
refusal is one `InputError` line naming the file, the key and the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from anomalyclip.errors import InputError

_CHUNK = 1 << 22  # elements per slice when counting bad values (4 MB of booleans at most)


def check_finite(state_dict: dict[str, Any], path: str | Path) -> None:
    """Refuse NaN or infinite values in any floating tensor, naming the first such key.

    One reduction per tensor and no temporaries: a tensor's sum is finite only if every value
    is (the converse fails only when the sum overflows, which the exact count then settles).
    """
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue
        if t.is_meta or t.numel() == 0:
            continue
        if t.layout == torch.sparse_coo:
            t = t._values()
        elif t.layout != torch.strided:
            continue
        if t.element_size() > 1 and bool(torch.isfinite(t.sum())):  # CPU cannot sum float8
            continue
        nan, inf = _count_non_finite(t)
        if nan or inf:
            raise InputError(
                f"tensor {_show_key(key)} has {nan} NaN and {inf} infinite values out of {t.numel()}; "
                "refusing non-finite weights",
                path,
            )


def _count_non_finite(t: torch.Tensor) -> tuple[int, int]:
    flat = t.contiguous().view(-1)
    nan = inf = 0
    for part in flat.split(_CHUNK):
        part = part.half() if part.element_size() == 1 else part  # float8: count in float16
        nan += int(torch.isnan(part).sum())
        inf += int(torch.isinf(part).sum())
    return nan, inf


# ------------------------------------------------------------------------------------------
# validate_export_config
# ------------------------------------------------------------------------------------------
# What `checkpoint.model_meta` writes, plus the `source` that `export.save_export` adds. Any
# change to either must come with a new format version here (tests tie the two together).
EXPORT_FORMAT_VERSIONS = (1,)
EXPORT_REQUIRED_KEYS = ("format_version", "model_config", "text_config", "class_names", "normal_id", "threshold")
# what the export keeps of its run (checkpoint.native.RUN_KEYS), and the ONNX model's file
EXPORT_OPTIONAL_KEYS = ("source", "checkpoint_kind", "epoch", "run_config", "onnx", "onnx_opset")
_CTX_KEY = "prompt_learner.ctx"
_BN_KEY = "selector.bn.running_mean"


def validate_export_config(meta: Any, path: str | Path, state_dict: dict[str, Any] | None = None) -> None:
    """Check an exported folder's `config.json` (and, if given, that its weights agree).

    Unknown keys are refused, not warned about: only our own `save_export` writes this file,
    and the loader uses every key it writes, so an unknown key is either a hand-edit typo
    (`"treshold": 0.3` would be silently ignored while the user believes it applies) or a newer
    writer, which must bump `format_version` for anything added, and gets the clearer refusal.
    """
    if not isinstance(meta, dict):
        raise InputError(f"config.json must hold a JSON object, not {show_value(meta)}", path)
    known = EXPORT_REQUIRED_KEYS + EXPORT_OPTIONAL_KEYS
    for key in meta:
        if key not in known:
            raise InputError(
                f"unknown key {show_value(key)} (value {show_value(meta[key])}) in an export configuration; "
                f"its keys are {', '.join(known)}",
                path,
            )
    for key in EXPORT_REQUIRED_KEYS:
        if key not in meta:
            raise InputError(f"missing key {show_value(key)} in an export configuration", path)

    version = meta["format_version"]
    if not _is_int(version) or version not in EXPORT_FORMAT_VERSIONS:
        supported = ", ".join(map(str, EXPORT_FORMAT_VERSIONS))
        raise InputError(f"format_version {show_value(version)} is not supported (this version reads {supported})", path)
    for key in ("model_config", "text_config"):
        if not isinstance(meta[key], dict):
            raise InputError(f"{key} must be a JSON object, not {show_value(meta[key])}", path)
    if "source" in meta and not isinstance(meta["source"], str):
        raise InputError(f"source must be a string, not {show_value(meta['source'])}", path)

    names = _check_class_names(meta["class_names"], "class_names", path)
    count = len(names)
    normal_id = meta["normal_id"]
    if not _is_int(normal_id):
        raise InputError(f"normal_id must be an integer, not {show_value(normal_id)}", path)
    if not 0 <= normal_id < count:
        raise InputError(f"normal_id {normal_id} is out of range for {count} classes (0..{count - 1})", path)
    if names[normal_id].lower() != "normal":
        where = [i for i, n in enumerate(names) if n.lower() == "normal"]
        hint = f" ({show_value(names[where[0]])} is class {where[0]})" if where else " (no class is named Normal)"
        raise InputError(f"normal_id {normal_id} names class {show_value(names[normal_id])}, not the Normal class{hint}", path)

    model_cfg = meta["model_config"]
    if "class_names" not in model_cfg or "normal_id" not in model_cfg:
        raise InputError("model_config must hold class_names and normal_id", path)
    cfg_names = _check_class_names(model_cfg["class_names"], "model_config.class_names", path)
    if len(cfg_names) != count:
        raise InputError(
            f"model_config.class_names has {len(cfg_names)} classes but class_names has {count}: "
            f"{show_value(cfg_names)} vs {show_value(names)}",
            path,
        )
    for i, (a, b) in enumerate(zip(cfg_names, names)):
        if a != b:
            raise InputError(f"model_config.class_names[{i}] {show_value(a)} differs from class_names[{i}] {show_value(b)}", path)
    if not _is_int(model_cfg["normal_id"]) or model_cfg["normal_id"] != normal_id:
        raise InputError(f"model_config.normal_id {show_value(model_cfg['normal_id'])} differs from normal_id {normal_id}", path)

    threshold = meta["threshold"]
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if threshold is not None and not (number and 0 <= threshold <= 1):  # NaN fails the comparison too
        raise InputError(f"threshold must be null or a number in [0, 1], not {show_value(threshold)}", path)

    if state_dict is not None:
        _check_weights_class_count(state_dict, count, path)


def _check_class_names(value: Any, key: str, path: str | Path) -> list[str]:
    """A list of at least two distinct non-empty names (one normal, one anomaly or more)."""
    if not isinstance(value, list) or len(value) < 2:
        raise InputError(f"{key} must be a list of at least 2 class names, not {show_value(value)}", path)
    seen: dict[str, int] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{key}[{i}] must be a non-empty string, not {show_value(name)}", path)
        if name.lower() in seen:
            raise InputError(f"{key}[{i}] {show_value(name)} repeats {key}[{seen[name.lower()]}]", path)
        seen[name.lower()] = i
    return value


def _check_weights_class_count(sd: dict[str, Any], count: int, path: str | Path) -> None:
    """The prompt context has one row per class; the selector's statistics one per anomaly class."""
    for key, want, what in ((_CTX_KEY, count, "rows"), (_BN_KEY, count - 1, "entries")):
        t = sd.get(key)
        shape = getattr(t, "shape", None)
        if shape is None or len(shape) == 0:
            raise InputError(f"the weights have no {key} tensor, so their class count cannot be checked", path)
        if shape[0] != want:
            raise InputError(
                f"class_names has {count} classes but the weights' {key} has {shape[0]} {what} (expected {want})", path
            )


# ------------------------------------------------------------------------------------------
# One-line rendering of untrusted values
# ------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def show_value(value: Any, limit: int = 80) -> str:
    """A value as one short line: JSON escapes newlines and control characters."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_key(key: Any) -> str:
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 200 else show_value(key, 200)
