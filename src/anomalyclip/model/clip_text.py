"""CLIP's text tower (from `transformers`) driven by prompt embeddings instead of token ids.

`transformers`' CLIPTextModel only accepts ids, so the encoder is called part by part with an
explicit causal mask (DEPENDENCIES.md).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from anomalyclip.clip_config import text_config


def random_text_config(width: int = 64, layers: int = 2, output_dim: int = 512) -> CLIPTextConfig:
    """A small CLIP text tower of the real architecture, for the demo and tests."""
    return text_config(width, layers, output_dim)


def build_text_model(config: CLIPTextConfig) -> CLIPTextModelWithProjection:
    config._attn_implementation = "sdpa"
    return CLIPTextModelWithProjection(config)


def load_text_model(spec: str) -> CLIPTextModelWithProjection:
    """The pretrained text tower from whatever `--clip` names (`clip_sources`)."""
    return load_text_and_logit_scale(spec)[0]


def load_text_and_logit_scale(spec: str) -> tuple[CLIPTextModelWithProjection, float | None]:
    """The text tower and CLIP's temperature `exp(logit_scale)` (as `CLIPModel` multiplies its
    logits by), None where the source holds no scale (a text-only folder)."""
    from anomalyclip.clip_sources import load_clip_tower

    tower = load_clip_tower(spec, "text")
    tower.model.config._attn_implementation = "sdpa"
    return tower.model, tower.logit_scale


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
