"""AnomalyCLIP as a plain `nn.Module`, usable without Lightning."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPTextModelWithProjection

from anomalyclip.config import ModelConfig
from anomalyclip.errors import InputError
from anomalyclip.model.grid import eval_grid_index, grids_per_call as default_grids_per_call
from anomalyclip.model.class_space import class_probs
from anomalyclip.model.clip_text import TextEncoder, build_text_model, load_text_model, random_text_config
from anomalyclip.model.prompt import PromptLearner
from anomalyclip.model.selector import Selector
from anomalyclip.model.temporal import TemporalModel


@dataclass
class TrainOutput:
    similarity: torch.Tensor  # S (B, n*l, K)
    scores: torch.Tensor  # p (B, n*l)


class AnomalyCLIP(nn.Module):
    def __init__(self, cfg: ModelConfig, clip_text: CLIPTextModelWithProjection | None = None):
        super().__init__()
        if cfg.num_classes < 2:
            raise ValueError("need at least one abnormal class and the normal class")
        self.cfg = cfg
        if clip_text is None:
            clip_text = (
                build_text_model(random_text_config(cfg.random_clip_width, cfg.random_clip_layers, cfg.feature_dim))
                if cfg.clip == "random"
                else load_text_model(cfg.clip)
            )
        if clip_text.config.projection_dim != cfg.feature_dim:
            raise InputError(
                f"the CLIP text tower {cfg.clip!r} makes {clip_text.config.projection_dim}-d features but the video "
                f"features are {cfg.feature_dim}-d (use the CLIP the features were extracted with)"
            )
        self.text_encoder = TextEncoder(clip_text)
        self.prompt_learner = PromptLearner(
            cfg.class_names, cfg.n_ctx, self.text_encoder.token_embedding, clip_text.config.max_position_embeddings
        )
        k = cfg.num_classes - 1
        self.selector = Selector(k, cfg.normal_id)
        in_dim = cfg.feature_dim + (k if cfg.concat_features else 0)
        self.temporal = TemporalModel(
            in_dim, cfg.emb_size, cfg.depth, cfg.heads, cfg.num_segments, cfg.seg_length, cfg.recompute_temporal
        )
        self.register_buffer("centroid", torch.zeros(cfg.feature_dim))
        # Frozen CLIP except its text projection (METHOD §2).
        for p in self.text_encoder.parameters():
            p.requires_grad_(False)
        self.text_encoder.text_projection.weight.requires_grad_(True)

    # -- what the evaluation reads of any video scorer (as of the zero-shot baseline) ----------
    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    @property
    def frames_per_grid(self) -> int:
        """Each test video is padded to a multiple of this many frames (METHOD §10)."""
        return self.cfg.frames_per_item

    # -- parts -----------------------------------------------------------------------------
    def text_features(self) -> torch.Tensor:
        """`T (C, D)`; constant at inference, so callers compute it once and pass it on."""
        if self.text_encoder is None:
            if self.training:
                raise RuntimeError("this model's text tower was dropped for inference; load the checkpoint again to train it")
            return self.frozen_text_features
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.eot_index, truncate=self.cfg.truncate_text)

    def freeze_text_features(self) -> torch.Tensor:
        """Inference only: compute the text features once, keep them, and drop the CLIP text tower
        (250 MB at ViT-B/16), which inference never runs again. Changes no score; a model without
        its tower can no longer be trained, saved or exported."""
        if self.text_encoder is not None:
            was_training = self.training
            with torch.no_grad():
                features = self.eval().text_features().detach().clone()  # (C, D)
            self.train(was_training)
            self.register_buffer("frozen_text_features", features, persistent=False)
            self.text_encoder = None
        return self.frozen_text_features

    def similarity(self, centred: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.selector(centred, self.selector.directions(text_features, self.centroid))

    def temporal_input(self, centred: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return torch.cat([similarity, centred], dim=-1) if self.cfg.concat_features else centred

    def class_probs(self, similarity: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return class_probs(similarity, scores, self.cfg.normal_id)

    # -- training: a batch of sampled items --------------------------------------------------
    def forward(self, features: torch.Tensor, text_features: torch.Tensor | None = None) -> TrainOutput:
        """`features (B, n*l, D)` raw CLIP features -> similarity and scores per frame."""
        b, t, d = features.shape
        if text_features is None:
            text_features = self.text_features()
        centred = (features - self.centroid).reshape(b * t, d)  # (B*n*l, D)
        s = self.similarity(centred, text_features)  # (B*n*l, K)
        p = self.temporal(self.temporal_input(centred, s).view(b, t, -1))  # (B, n*l)
        return TrainOutput(similarity=s.view(b, t, -1), scores=p)

    # -- inference: whole videos (METHOD §10) ------------------------------------------------
    @torch.no_grad()
    def score_videos(
        self,
        videos: list[torch.Tensor],
        text_features: torch.Tensor | None = None,
        overwrite_input: bool = False,
        grids_per_call: int | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per video `(T, D)` -> `(scores (T,), probs (T, C))`; all videos go through one forward.

        `overwrite_input=True` lets a lone float32 video on the model's device be centred in place
        (its values are then lost): a long test video is not copied, which saves 100 MB on
        UCF-Crime's longest one. `grids_per_call` bounds the grids per temporal-model call (a long
        video is scored in pieces; the numbers are the same)."""
        if text_features is None:
            text_features = self.text_features()
        n, l = self.cfg.num_segments, self.cfg.seg_length
        dev = self.centroid.device
        lengths = [v.shape[0] for v in videos]
        v0 = videos[0]
        if overwrite_input and len(videos) == 1 and v0.dtype == torch.float32 and v0.device == dev and v0.is_contiguous():
            centred = v0  # (T, D)
        else:
            centred = torch.cat([v.to(dev, torch.float32) for v in videos])  # (sum T, D), a new tensor
        centred -= self.centroid
        s = self.similarity(centred, text_features)  # (sum T, K); running BN stats: per frame
        inp = self.temporal_input(centred, s)
        rows, offsets = [], 0
        index = []
        for length in lengths:
            frames = eval_grid_index(length, n, l).to(dev)  # (s, n*l) positions in the padded video
            index.append(frames)
            rows.append(offsets + frames % length)  # rows of `inp`, wrap-around padding
            offsets += length
        chunk = grids_per_call or default_grids_per_call(dev)
        scores_grid = torch.cat([self.temporal(inp[r]) for r in torch.cat(rows).split(chunk)])  # (sum s, n*l)
        out, g0, offsets = [], 0, 0
        for length, frames in zip(lengths, index):
            g = frames.shape[0]
            p = torch.empty(g * n * l, device=dev)
            p[frames.reshape(-1)] = scores_grid[g0 : g0 + g].reshape(-1)  # back to frame order
            p = p[:length]
            out.append((p, self.class_probs(s[offsets : offsets + length], p)))
            g0 += g
            offsets += length
        return out


