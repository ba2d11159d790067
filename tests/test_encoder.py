"""The encoder's speed choices (sdpa attention, batching, kept memory on the CPU) leave the
features as transformers' own forward gives them."""

from __future__ import annotations

import numpy as np
import torch

from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision
from anomalyclip.video.preprocess import preprocess
from media import decode_all, make_video

SHAPE = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)


def test_features_equal_the_plain_transformers_forward(tmp_path):
    frames = decode_all(make_video(tmp_path / "v.mp4", 21, 200, 150, seed=8))[0]
    plain = build_random_clip_vision(seed=9, **SHAPE)
    plain.set_attn_implementation("eager")
    with torch.no_grad():
        ref = plain(pixel_values=preprocess(frames)).image_embeds.numpy()
    enc = ClipImageEncoder("tiny", device="cpu", batch_size=8, model=build_random_clip_vision(seed=9, **SHAPE))
    assert enc.model.config._attn_implementation == "sdpa"
    feats = enc.encode(frames)
    assert feats.dtype == np.float32 and feats.shape == ref.shape == (21, 512)
    assert np.abs(feats - ref).max() <= 1e-5
    assert np.abs(feats[1:] - ref[:-1]).max() > 1e-3  # the comparison can fail
