"""The arithmetic of one frame through the CLIP image tower, counted from its architecture, and
the frame-rate floor it implies: frames/s = matmul rate / FLOPs per frame.

Only matrix products count (a multiply-add is 2 FLOPs): the patch-embedding convolution, per
layer the Q, K, V and output projections, the attention products QK^T and AV over all tokens,
the two MLP layers, and the final projection of the pooled token. Biases, LayerNorms, softmax and
the activation are left out: they are a few per cent of the work, and memory-bound (the same
convention as `torch.utils.flop_counter.FlopCounterMode`). ViT-B/16 at 224 px: 35.1 GFLOP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TowerFlops:
    """FLOPs of one frame, by part."""

    patch_embedding: int
    qkv_projections: int  # all layers
    attention_products: int  # QK^T and AV, all layers
    out_projections: int  # all layers
    mlp: int  # all layers
    final_projection: int

    @property
    def total(self) -> int:
        return (self.patch_embedding + self.qkv_projections + self.attention_products + self.out_projections
                + self.mlp + self.final_projection)


def tower_flops(config) -> TowerFlops:
    """FLOPs per frame of a `CLIPVisionConfig` (or anything with its fields)."""
    d = int(config.hidden_size)
    layers = int(config.num_hidden_layers)
    mlp_width = int(config.intermediate_size)
    patch = int(config.patch_size)
    channels = int(getattr(config, "num_channels", 3))
    patches = (int(config.image_size) // patch) ** 2
    tokens = patches + 1  # the class token
    return TowerFlops(
        patch_embedding=2 * patches * (channels * patch * patch) * d,
        qkv_projections=layers * 2 * tokens * d * 3 * d,
        attention_products=layers * 2 * (2 * tokens * tokens * d),  # summed over heads: d = heads * head_dim
        out_projections=layers * 2 * tokens * d * d,
        mlp=layers * 2 * (2 * tokens * d * mlp_width),
        final_projection=2 * d * int(config.projection_dim),
    )


def floor_frames_per_second(flops_per_frame: int, matmul_flops_per_second: float) -> float:
    """The most frames/s a device doing nothing but matmuls at the given rate could encode."""
    return matmul_flops_per_second / flops_per_frame
