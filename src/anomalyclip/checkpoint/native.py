"""Our own checkpoints describe themselves: config, class names, centroid and threshold inside,
so they load without a preset, a labels file or the hub."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTextConfig

from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.checkpoint.validate import check_finite
from anomalyclip.config import model_config_from_dict
from anomalyclip.errors import InputError
from anomalyclip.model.anomalyclip import AnomalyCLIP
from anomalyclip.model.clip_text import build_text_model

META_KEY = "anomalyclip"
FORMAT_VERSION = 1
STATE_PREFIX = "model."  # the Lightning module holds the network as `model`
RUN_KEYS = ("checkpoint_kind", "epoch", "run_config")  # what a loaded model keeps of its run


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
    cfg = model_config_from_dict(meta["model_config"])
    return AnomalyCLIP(cfg, clip_text=build_text_model(CLIPTextConfig.from_dict(meta["text_config"])))


def load_state(model: AnomalyCLIP, sd: dict[str, torch.Tensor], path: Path, what: str, strict: bool = True) -> None:
    """A load whose error names the first mismatch in one line (`strict=False`: part of the
    weights, shapes still checked)."""
    try:
        model.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise InputError(f"{what}: {' '.join(lines[:2])}", path) from None


def load_native(ckpt: dict[str, Any], path: Path) -> LoadedModel:
    """A checkpoint our training wrote (its dict holds `META_KEY`)."""
    meta = ckpt[META_KEY]
    model = model_from_meta(meta)
    sd = ckpt.get("state_dict", {})
    if any(k.startswith(STATE_PREFIX) for k in sd):
        sd = {k[len(STATE_PREFIX) :]: v for k, v in sd.items() if k.startswith(STATE_PREFIX)}
    check_finite(sd, path)
    load_state(model, sd, path, "checkpoint does not match its own configuration")
    about = {k: meta[k] for k in RUN_KEYS if k in meta}
    return LoadedModel(model.eval(), meta.get("threshold"), "anomalyclip", about)
