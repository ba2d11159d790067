"""CLIP's text tower (from `transformers`) driven by prompt embeddings instead of token ids.

`transformers`' CLIPTextModel only accepts ids, so the encoder is called part by part with an
explicit causal mask (DEPENDENCIES.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from anomalyclip.clip_config import text_config
from anomalyclip.errors import InputError


def random_text_config(width: int = 64, layers: int = 2, output_dim: int = 512) -> CLIPTextConfig:
    """A small CLIP text tower of the real architecture, for the demo and tests."""
    return text_config(width, layers, output_dim)


def build_text_model(config: CLIPTextConfig) -> CLIPTextModelWithProjection:
    config._attn_implementation = "sdpa"
    return CLIPTextModelWithProjection(config)


def _from_pretrained(cls, spec: str, **kwargs):
    """`cls.from_pretrained` on a local folder or a hub id (never both silently); offline for a
    folder and under HF_HUB_OFFLINE=1."""
    path = Path(spec)
    local = path.exists()
    if local and not (path / "config.json").is_file():
        raise InputError("not a transformers CLIP folder (no config.json)", path)
    if local or os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    try:
        return cls.from_pretrained(str(spec), **kwargs)
    except OSError as e:
        raise InputError(f"cannot load a CLIP text model from {spec!r}: {e}") from None


def load_text_model(spec: str) -> CLIPTextModelWithProjection:
    """Load the pretrained text tower from a local folder or a hub id."""
    return _from_pretrained(CLIPTextModelWithProjection, spec, attn_implementation="sdpa")


def load_text_and_logit_scale(spec: str) -> tuple[nn.Module, float | None]:
    """The text tower (a module with `text_model` and `text_projection`, as `TextEncoder` needs)
    and CLIP's temperature `exp(logit_scale)`, as `CLIPModel` multiplies its logits by. Only a
    full CLIP checkpoint holds the scale: for a text-only one, or a full one whose weights lack
    it, the scale is None. The image tower of a full checkpoint is dropped once loaded."""
    from transformers import AutoConfig, CLIPModel

    if getattr(_from_pretrained(AutoConfig, spec), "model_type", None) != "clip":
        return load_text_model(spec), None
    full, info = _from_pretrained(CLIPModel, spec, attn_implementation="sdpa", output_loading_info=True)
    scale = None if "logit_scale" in info["missing_keys"] else float(full.logit_scale.detach().exp())
    full.vision_model = full.visual_projection = None  # 350 MB at ViT-B/16, never run here
    return full, scale


def causal_mask(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask `(1, 1, L, L)`: position i attends to positions <= i."""
    mask = torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu(1)
    return mask[None, None]


class TextEncoder(nn.Module):
    """Prompt embeddings `(C, L, W)` -> text features `(C, D)` taken at each prompt's EOT."""

    def __init__(self, clip_text: CLIPTextModelWithProjection):
        super().__init__()
        self.clip = clip_text

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.clip.text_model.embeddings.token_embedding

    @property
    def text_projection(self) -> nn.Linear:
        return self.clip.text_projection

    def forward(self, prompts: torch.Tensor, eot: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        tm = self.clip.text_model
        if truncate:
            # The causal mask makes rows after the last EOT irrelevant to every EOT row.
            prompts = prompts[:, : int(eot.max()) + 1]
        length = prompts.shape[1]
        h = tm.embeddings(inputs_embeds=prompts)  # (C, L, W), positions added
        h = tm.encoder(inputs_embeds=h, attention_mask=causal_mask(length, h.device, h.dtype)).last_hidden_state
        h = tm.final_layer_norm(h)
        h = h[torch.arange(h.shape[0], device=h.device), eot]  # (C, W)
        return self.clip.text_projection(h)  # (C, D)
