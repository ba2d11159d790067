"""Checkpoints that describe themselves: config, class names, centroid and threshold inside.

Loaded with `weights_only=True` by default: a checkpoint is data, never code.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTextConfig

from anomalyclip.config import ModelConfig, model_config_from_dict
from anomalyclip.errors import InputError
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.clip_text import build_text_model

META_KEY = "anomalyclip"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    model: AnomalyCLIP
    threshold: float | None  # Youden threshold of the last evaluation, if any
    source: str  # "anomalyclip" (ours), "export" or "reference" (the authors' release)


def model_meta(model: AnomalyCLIP, threshold: float | None = None) -> dict[str, Any]:
    """Everything needed to rebuild `model` without a preset, a labels file or the hub."""
    if model.text_encoder is None:
        raise ValueError("this model's text tower was dropped by freeze_text_features(); it cannot be saved")
    return {
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(model.cfg),
        "text_config": model.text_encoder.clip.config.to_dict(),
        "class_names": list(model.cfg.class_names),
        "normal_id": model.cfg.normal_id,
        "threshold": None if threshold is None else float(threshold),
    }


def model_from_meta(meta: dict[str, Any]) -> AnomalyCLIP:
    cfg: ModelConfig = model_config_from_dict(meta["model_config"])
    text_cfg = CLIPTextConfig.from_dict(meta["text_config"])
    return AnomalyCLIP(cfg, clip_text=build_text_model(text_cfg))


def torch_load(path: str | Path, trust: bool = False) -> Any:
    """`torch.load` that refuses pickled code unless the user passed `--trust-checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise InputError(f"cannot read checkpoint: {e}", path) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise InputError(
            "this checkpoint holds pickled Python objects that a safe load refuses "
            f"({first}); if you trust its source, pass --trust-checkpoint to load it fully",
            path,
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable PyTorch checkpoint: {e}", path) from None


def state_dict_without_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def load_checkpoint(path: str | Path, trust: bool = False, **import_options: Any) -> LoadedModel:
    """Load our Lightning checkpoints, our exported folders, or the authors' released files."""
    path = Path(path)
    if path.is_dir():
        from anomalyclip.export import load_export

        return load_export(path)
    ckpt = torch_load(path, trust)
    if not isinstance(ckpt, dict):
        raise InputError("not a checkpoint dictionary", path)
    if META_KEY in ckpt:
        meta = ckpt[META_KEY]
        model = model_from_meta(meta)
        sd = ckpt.get("state_dict", {})
        sd = state_dict_without_prefix(sd, "model.") if any(k.startswith("model.") for k in sd) else sd
        _load_state(model, sd, path)
        return LoadedModel(model.eval(), meta.get("threshold"), "anomalyclip")
    sd = ckpt.get("state_dict", ckpt)
    if isinstance(sd, dict) and any(str(k).startswith("net.") for k in sd):
        from anomalyclip.reference import import_reference_checkpoint

        return import_reference_checkpoint(path, sd, **import_options)
    raise InputError("not an anomalyclip checkpoint nor a reference AnomalyCLIP checkpoint", path)


def _load_state(model: AnomalyCLIP, sd: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InputError(f"checkpoint does not match its own configuration: {str(e).splitlines()[0]}", path) from None
