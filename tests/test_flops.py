"""The tower's FLOPs counted from its architecture agree with what PyTorch counts in a forward."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from anomalyclip.video.encoder import build_random_clip_vision, random_clip_vision_config
from anomalyclip.video.flops import floor_frames_per_second, tower_flops


@pytest.mark.parametrize("shape", [
    dict(),  # the tiny test tower: hidden 64, 2 layers, 1 head
    dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=2, intermediate_size=200, patch_size=32,
         projection_dim=48),
])
def test_counted_flops_equal_the_flop_counter(shape):
    model = build_random_clip_vision(seed=0, **shape)
    model.set_attn_implementation("eager")  # its attention products are plain bmm, which the counter sees
    px = torch.randn(3, 3, 224, 224)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=px)
    assert tower_flops(model.config).total * 3 == counter.get_total_flops()


def test_vit_b16_is_about_35_gflop_and_the_floor_follows():
    flops = tower_flops(random_clip_vision_config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                  intermediate_size=3072))
    assert 35.0e9 < flops.total < 35.3e9  # ViT-B/16 at 224 px: 17.6 G multiply-adds
    assert flops.mlp > flops.qkv_projections > flops.out_projections > flops.attention_products > flops.patch_embedding
    assert floor_frames_per_second(flops.total, 2 * flops.total) == 2.0
