"""CLIP tower configurations in one place: OpenAI's architecture rules (quick-GELU, LayerNorm eps
1e-5, heads = width // 64) for the text and image towers, whether random for tests or inferred
from a checkpoint's shapes."""

from __future__ import annotations

DEFAULT_CLIP = "openai/clip-vit-base-patch16"  # ViT-B/16, the paper's CLIP
ZERO_SHOT_TEMPLATE = "a video from a CCTV camera of a {}"  # the paper's zero-shot CLIP prompt
VOCAB_SIZE = 49408
SOT_ID, EOT_ID = 49406, 49407
CONTEXT_LENGTH = 77


def openai_heads(width: int) -> int:
    """OpenAI CLIP's head count: one per 64 channels (so a width-64 test tower has one head)."""
    return max(1, int(width) // 64)


def text_config(
    width: int,
    layers: int,
    output_dim: int = 512,
    *,
    vocab_size: int = VOCAB_SIZE,
    context_length: int = CONTEXT_LENGTH,
    intermediate_size: int | None = None,
):
    """A `CLIPTextConfig`. The special-token ids must lie inside the vocabulary, or transformers'
    pooling silently reads position 0 (DEPENDENCIES.md)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=int(vocab_size),
        hidden_size=int(width),
        intermediate_size=int(intermediate_size or 4 * width),
        num_hidden_layers=int(layers),
        num_attention_heads=openai_heads(width),
        max_position_embeddings=int(context_length),
        projection_dim=int(output_dim),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=SOT_ID,
        eos_token_id=EOT_ID,
        pad_token_id=0,
    )


def vision_config(
    width: int,
    layers: int,
    output_dim: int = 512,
    *,
    patch_size: int = 16,
    image_size: int = 224,
    channels: int = 3,
    intermediate_size: int | None = None,
    heads: int | None = None,
):
    """A `CLIPVisionConfig`; ViT-B/16 is width 768, 12 layers, patch 16, image 224."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=int(width),
        intermediate_size=int(intermediate_size or 4 * width),
        num_hidden_layers=int(layers),
        num_attention_heads=int(heads) if heads else openai_heads(width),
        num_channels=int(channels),
        image_size=int(image_size),
        patch_size=int(patch_size),
        projection_dim=int(output_dim),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
