"""OpenAI CLIP's state-dict layout (the authors' release stores its CLIP this way) mapped onto
`transformers`' CLIP modules, with shape checks that name the key."""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from anomalyclip.clip_config import EOT_ID, text_config, vision_config
from anomalyclip.errors import InputError

# One OpenAI residual block -> one transformers CLIPEncoderLayer (besides the split in_proj).
BLOCK_MAP = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
}


def tensor_at(sd: dict[str, Any], key: str, where: Any, ndim: int | None = None, show: str = "") -> torch.Tensor:
    """`sd[key]`, a tensor of `ndim` dimensions; `show` is the key prefix printed in errors."""
    if key not in sd:
        raise InputError(f"not a checkpoint of the released AnomalyCLIP layout: key {show}{key} is missing", where)
    t = sd[key]
    if not isinstance(t, torch.Tensor):
        raise InputError(f"key {show}{key} holds a {type(t).__name__}, not a tensor", where)
    if ndim is not None and t.dim() != ndim:
        raise InputError(f"key {show}{key} has shape {tuple(t.shape)}, expected {ndim} dimensions", where)
    return t


def count_blocks(sd: dict[str, Any], pattern: str, what: str, where: Any) -> int:
    """How many numbered blocks `pattern` (a regex with one group) finds; they must be 0..N-1."""
    rx = re.compile(pattern)
    indices = sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})
    if indices != list(range(len(indices))):
        raise InputError(f"{what} are numbered {indices}, expected 0..{len(indices) - 1}", where)
    return len(indices)


def map_blocks(
    sd: dict[str, torch.Tensor],
    src: str,
    dst: str,
    layers: int,
    width: int,
    out: dict[str, torch.Tensor],
    used: set[str],
    where: Any,
    show: str = "",
) -> None:
    """OpenAI `transformer.resblocks.{i}.*` under `src` -> transformers `encoder.layers.{i}.*` under `dst`."""
    for i in range(layers):
        s, d = f"{src}transformer.resblocks.{i}.", f"{dst}encoder.layers.{i}."
        w = tensor_at(sd, s + "attn.in_proj_weight", where, 2, show)
        b = tensor_at(sd, s + "attn.in_proj_bias", where, 1, show)
        if tuple(w.shape) != (3 * width, width) or tuple(b.shape) != (3 * width,):
            raise InputError(
                f"key {show}{s}attn.in_proj_weight/bias has shape {tuple(w.shape)}/{tuple(b.shape)}, "
                f"expected ({3 * width}, {width})/({3 * width},)",
                where,
            )
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[f"{d}self_attn.{name}.weight"] = w[j * width : (j + 1) * width]
            out[f"{d}self_attn.{name}.bias"] = b[j * width : (j + 1) * width]
        used.update({s + "attn.in_proj_weight", s + "attn.in_proj_bias"})
        for a, h in BLOCK_MAP.items():
            out[d + h] = tensor_at(sd, s + a, where, None, show)
            used.add(s + a)


def map_openai_vision_keys(sd: dict[str, torch.Tensor], where: Any = "the image encoder"):
    """OpenAI-layout ViT keys (`conv1.weight`, ..., `proj`; e.g. an authors' `net.image_encoder.*`
    with the prefix removed) -> a `CLIPVisionModelWithProjection` state dict and its config, the
    architecture inferred from the shapes."""
    conv = sd.get("conv1.weight")
    if not isinstance(conv, torch.Tensor) or conv.dim() != 4:
        raise InputError(f"{where}: conv1.weight (width, 3, patch, patch) is missing")
    width, channels, patch, patch2 = conv.shape
    if patch != patch2:
        raise InputError(f"{where}: non-square patches {patch}x{patch2} are not supported")
    pos = sd.get("positional_embedding")
    if not isinstance(pos, torch.Tensor) or pos.dim() != 2:
        raise InputError(f"{where}: positional_embedding is missing")
    grid = math.isqrt(pos.shape[0] - 1)
    if grid * grid != pos.shape[0] - 1:
        raise InputError(f"{where}: positional_embedding has {pos.shape[0]} rows, not 1 + a square number")
    proj = sd.get("proj")
    if not isinstance(proj, torch.Tensor) or proj.dim() != 2 or proj.shape[0] != width:
        raise InputError(f"{where}: proj (width {width}, output size) is missing")
    layers = count_blocks(sd, r"transformer\.resblocks\.(\d+)\.", "vision transformer blocks", where)
    if layers == 0:
        raise InputError(f"{where}: no transformer.resblocks")
    config = vision_config(
        int(width),
        layers,
        int(proj.shape[1]),
        patch_size=int(patch),
        image_size=int(patch) * grid,
        channels=int(channels),
        intermediate_size=int(tensor_at(sd, "transformer.resblocks.0.mlp.c_fc.weight", where, 2).shape[0]),
    )
    v = "vision_model."
    out: dict[str, torch.Tensor] = {
        v + "embeddings.patch_embedding.weight": conv,
        v + "embeddings.class_embedding": tensor_at(sd, "class_embedding", where, 1),
        v + "embeddings.position_embedding.weight": pos,
        "visual_projection.weight": proj.T.contiguous(),
    }
    used = {"conv1.weight", "class_embedding", "positional_embedding", "proj"}
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{v}{b}.{p}"] = tensor_at(sd, f"{a}.{p}", where, 1)
            used.add(f"{a}.{p}")
    map_blocks(sd, "", v, layers, int(width), out, used, where)
    unused = sorted(set(sd) - used)
    if unused:
        raise InputError(f"{where}: key {unused[0]} has no place in a CLIP vision model")
    return out, config


def openai_text_config(sd: dict[str, Any], where: Any, show: str = ""):
    """The text tower's `CLIPTextConfig` from the shapes of OpenAI-layout keys (`token_embedding.weight`,
    `positional_embedding`, `transformer.resblocks.*`, `text_projection`)."""
    vocab, width = tensor_at(sd, "token_embedding.weight", where, 2, show).shape
    if vocab <= EOT_ID:
        raise InputError(f"token_embedding has {vocab} rows; CLIP's BPE needs {EOT_ID + 1}", where)
    layers = count_blocks(sd, r"transformer\.resblocks\.(\d+)\.", "text transformer blocks", where)
    if layers == 0:
        raise InputError("no text transformer blocks (transformer.resblocks.*)", where)
    context_length, w_pos = tensor_at(sd, "positional_embedding", where, 2, show).shape
    w_proj, out_dim = tensor_at(sd, "text_projection", where, 2, show).shape
    if w_pos != width or w_proj != width:
        raise InputError(f"text encoder widths disagree: tokens {width}, positional {w_pos}, projection {w_proj}", where)
    intermediate = tensor_at(sd, "transformer.resblocks.0.mlp.c_fc.weight", where, 2, show).shape[0]
    return text_config(int(width), layers, int(out_dim), vocab_size=int(vocab), context_length=int(context_length),
                       intermediate_size=int(intermediate))


def map_openai_text_keys(sd: dict[str, Any], where: Any, show: str = ""):
    """OpenAI-layout text-tower keys -> a `CLIPTextModelWithProjection` state dict, its config,
    and the keys used."""
    config = openai_text_config(sd, where, show)
    t = "text_model."
    out = {
        t + "embeddings.token_embedding.weight": sd["token_embedding.weight"],
        t + "embeddings.position_embedding.weight": sd["positional_embedding"],
        t + "final_layer_norm.weight": tensor_at(sd, "ln_final.weight", where, 1, show),
        t + "final_layer_norm.bias": tensor_at(sd, "ln_final.bias", where, 1, show),
        "text_projection.weight": sd["text_projection"].T.contiguous(),
    }
    used = {"token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection"}
    map_blocks(sd, "", t, config.num_hidden_layers, config.hidden_size, out, used, where, show)
    return out, config, used
