"""The paper's "CLIP zero-shot" row: no training, each frame's CLIP image feature against the
frozen text tower's feature of every class prompt.

Per frame: cosine similarity of the L2-normalised image feature with each class's L2-normalised
text feature, times CLIP's logit scale, softmax over the C classes (normal included); anomaly
score 1 - p(normal), class probabilities as they come. `ZeroShotCLIP` is a video scorer as the
evaluator wants one (see `anomalyclip.evaluation`), so `anomalyclip zeroshot` writes what
`anomalyclip eval` writes and its row sits beside a trained model's in the report.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anomalyclip.classes import ClassTable
from anomalyclip.clip_config import ZERO_SHOT_TEMPLATE
from anomalyclip.errors import InputError
from anomalyclip.model.clip_text import TextEncoder, load_text_and_logit_scale
from anomalyclip.tokenizer import tokenize

__all__ = ["TEXT_ONLY_LOGIT_SCALE", "ZERO_SHOT_TEMPLATE", "ZeroShotCLIP", "build_zero_shot", "class_texts", "encode_texts"]

# A text-only checkpoint has no logit_scale. OpenAI's released CLIPs all end training with
# exp(logit_scale) at its clamp, 100 (ViT-B/16: 100.00), so that is the value used for them.
TEXT_ONLY_LOGIT_SCALE = 100.0


def class_texts(class_names: list[str], template: str = ZERO_SHOT_TEMPLATE) -> list[str]:
    """One prompt per class: the template's `{}` replaced by the class name, `_` read as a space."""
    if template.count("{}") != 1:
        raise InputError(f"the template must hold '{{}}' exactly once (where the class name goes), got {template!r}")
    return [template.replace("{}", name.replace("_", " ")) for name in class_names]


@torch.no_grad()
def encode_texts(text_tower: nn.Module, texts: list[str]) -> torch.Tensor:
    """Projected text features `(len(texts), D)`, read at each prompt's EOT token, as CLIP's
    `get_text_features` gives them (not normalised)."""
    try:
        ids = tokenize(texts)  # (C, 77): SOT, tokens, EOT, zeros
    except ValueError as e:
        raise InputError(f"a class prompt is too long for CLIP: {e}") from None
    encoder = TextEncoder(text_tower).eval()
    return encoder(encoder.token_embedding(ids), ids.argmax(dim=-1))  # EOT has the largest id


class ZeroShotCLIP(nn.Module):
    """Frame-wise zero-shot CLIP scores; nothing is learnt. Every frame is scored on its own, so
    a video needs no padding (`frames_per_grid` 1)."""

    frames_per_grid = 1

    def __init__(self, text_features: torch.Tensor, logit_scale: float, normal_id: int):
        super().__init__()
        if not math.isfinite(logit_scale) or logit_scale <= 0:
            raise InputError(f"the logit scale must be a positive number, got {logit_scale}")
        if not 0 <= normal_id < text_features.shape[0]:
            raise ValueError(f"normal id {normal_id} outside the {text_features.shape[0]} classes")
        self.register_buffer("frozen_text_features", text_features.detach().float().clone())  # (C, D)
        self.logit_scale = float(logit_scale)
        self.normal_id = int(normal_id)

    @property
    def feature_dim(self) -> int:
        return self.frozen_text_features.shape[1]

    def text_features(self) -> torch.Tensor:
        return self.frozen_text_features

    def freeze_text_features(self) -> torch.Tensor:
        return self.frozen_text_features  # computed once, at construction

    def class_probs(self, features: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        """`(T, D)` image features -> `(T, C)` softmax over the classes of the scaled cosines."""
        text = F.normalize(self.frozen_text_features if text_features is None else text_features, dim=-1)
        image = F.normalize(features.to(text.device, torch.float32), dim=-1)
        return (self.logit_scale * image @ text.T).softmax(dim=-1)

    @torch.no_grad()
    def score_videos(
        self, videos: list[torch.Tensor], text_features: torch.Tensor | None = None, overwrite_input: bool = False
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per video `(T, D)` -> `(scores (T,) = 1 - p(normal), probs (T, C))`. `overwrite_input`
        is accepted for the evaluator; the inputs are never changed."""
        out = []
        for video in videos:
            probs = self.class_probs(video, text_features)
            out.append((1 - probs[:, self.normal_id], probs))
        return out


def build_zero_shot(
    clip: str, classes: ClassTable, template: str = ZERO_SHOT_TEMPLATE, logit_scale: float | None = None
) -> tuple[ZeroShotCLIP, dict]:
    """The baseline for a class table from a CLIP checkpoint (hub id or local folder), and what
    metrics.json records of it. The scale is `logit_scale` when given, else the checkpoint's
    `exp(logit_scale)` (a full CLIP), else TEXT_ONLY_LOGIT_SCALE (a text-only checkpoint)."""
    texts = class_texts(list(classes.names), template)
    tower, found = load_text_and_logit_scale(clip)
    if logit_scale is not None:
        scale, source = float(logit_scale), "given"
    elif found is not None:
        scale, source = found, "checkpoint"
    else:
        scale, source = TEXT_ONLY_LOGIT_SCALE, "text-only checkpoint: OpenAI CLIP's trained value"
    features = encode_texts(tower, texts)  # (C, D)
    del tower  # the text tower is never run again
    model = ZeroShotCLIP(features, scale, classes.normal_id).eval()
    where = str(Path(clip).resolve()) if Path(clip).exists() else str(clip)  # a folder: where it was
    info = dict(clip=where, template=template, prompts=texts, logit_scale=scale, logit_scale_source=source)
    return model, info
