"""The authors' released checkpoints (PyTorch Lightning `last.ckpt`, keys `net.*`; FORMATS.md).

The released files store no network configuration: everything is inferred from tensor shapes,
so full-size and down-sized files load alike. The OpenAI-layout CLIP text transformer is mapped
onto `transformers`' CLIP modules; the selector's BatchNorm statistics and the temporal model map
one to one. `to_reference_state_dict` is the inverse (our modules -> the authors' layout), and
`map_openai_vision_keys` maps the released image tower onto `CLIPVisionModelWithProjection`.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTextConfig, CLIPVisionConfig

from anomalyclip.checkpoint import LoadedModel
from anomalyclip.config import ModelConfig, asset_path
from anomalyclip.errors import InputError
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.clip_text import EOT_ID, SOT_ID, build_text_model
from anomalyclip.tokenizer import class_prompts, tokenize

PREFIX = "net."
TEXT = "text_encoder.clip.text_model."
TEMPORAL_HEADS = 8  # fixed in the release; not recoverable from shapes (to_q is E x E for any split)
SHIPPED_TABLES = ("ucf_labels.csv", "sht_labels.csv", "xd_labels.csv")
CENTROID_NAME = "ncentroid.pt"
# Present in the released files but not needed to score features.
IGNORED_PREFIXES = ("image_encoder.",)
IGNORED_KEYS = ("selector_model.logit_scale",)

# One OpenAI residual block -> one transformers CLIPEncoderLayer (besides the split in_proj).
_BLOCK_MAP = {
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


# ------------------------------------------------------------------------------------------
# shape helpers
# ------------------------------------------------------------------------------------------
def _get(sd: dict[str, torch.Tensor], key: str, path: Any, ndim: int | None = None, show: str = PREFIX) -> torch.Tensor:
    """`sd[key]`, a tensor of `ndim` dimensions; `show` is the key prefix printed in errors."""
    if key not in sd:
        raise InputError(f"not a checkpoint of the released AnomalyCLIP layout: key {show}{key} is missing", path)
    t = sd[key]
    if not isinstance(t, torch.Tensor):
        raise InputError(f"key {show}{key} holds a {type(t).__name__}, not a tensor", path)
    if ndim is not None and t.dim() != ndim:
        raise InputError(f"key {show}{key} has shape {tuple(t.shape)}, expected {ndim} dimensions", path)
    return t


def _indices(sd: dict[str, Any], pattern: str) -> list[int]:
    """Sorted distinct integers `i` of keys matching `pattern` (a regex with one group)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


def _check_contiguous(indices: list[int], what: str, path: Any) -> int:
    if indices != list(range(len(indices))):
        raise InputError(f"{what} are numbered {indices}, expected 0..{len(indices) - 1}", path)
    return len(indices)


def _map_blocks(
    sd: dict[str, torch.Tensor],
    src: str,
    dst: str,
    layers: int,
    width: int,
    out: dict[str, torch.Tensor],
    used: set[str],
    path: Any,
    show: str = PREFIX,
) -> None:
    """OpenAI `transformer.resblocks.{i}.*` under `src` -> transformers `encoder.layers.{i}.*` under `dst`."""
    for i in range(layers):
        s, d = f"{src}transformer.resblocks.{i}.", f"{dst}encoder.layers.{i}."
        w = _get(sd, s + "attn.in_proj_weight", path, 2, show)
        b = _get(sd, s + "attn.in_proj_bias", path, 1, show)
        if tuple(w.shape) != (3 * width, width) or tuple(b.shape) != (3 * width,):
            raise InputError(
                f"key {show}{s}attn.in_proj_weight/bias has shape {tuple(w.shape)}/{tuple(b.shape)}, "
                f"expected ({3 * width}, {width})/({3 * width},)",
                path,
            )
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[f"{d}self_attn.{name}.weight"] = w[j * width : (j + 1) * width]
            out[f"{d}self_attn.{name}.bias"] = b[j * width : (j + 1) * width]
        used.update({s + "attn.in_proj_weight", s + "attn.in_proj_bias"})
        for a, h in _BLOCK_MAP.items():
            out[d + h] = _get(sd, s + a, path, None, show)
            used.add(s + a)


def _unmap_blocks(hf: dict[str, torch.Tensor], src: str, dst: str, layers: int, out: dict[str, torch.Tensor]) -> None:
    """transformers `encoder.layers.{i}.*` under `src` -> OpenAI `transformer.resblocks.{i}.*` under `dst`."""
    for i in range(layers):
        s, d = f"{src}encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
        q, k, v = (f"{s}self_attn.{n}_proj" for n in "qkv")
        out[d + "attn.in_proj_weight"] = torch.cat([hf[q + ".weight"], hf[k + ".weight"], hf[v + ".weight"]])
        out[d + "attn.in_proj_bias"] = torch.cat([hf[q + ".bias"], hf[k + ".bias"], hf[v + ".bias"]])
        for a, h in _BLOCK_MAP.items():
            out[d + a] = hf[s + h]


# ------------------------------------------------------------------------------------------
# class names and centroid
# ------------------------------------------------------------------------------------------
def _class_table(num_classes: int, labels: str | Path | None, class_names: list[str] | None, path: Any) -> tuple[list[str], int]:
    from anomalyclip.data.formats import read_labels

    if labels is not None:
        table = read_labels(labels)
        names, normal_id, where = table.names, table.normal_id, str(labels)
    elif class_names is not None:
        names = [str(n) for n in class_names]
        normal = [i for i, n in enumerate(names) if n.strip().lower() == "normal"]
        if len(normal) != 1:
            raise InputError(f"exactly one class must be named 'Normal' (any case), got {names}")
        normal_id, where = normal[0], "the class names given"
    else:
        matches = []
        for name in SHIPPED_TABLES:
            table = read_labels(asset_path(name))
            if table.num_classes == num_classes:
                matches.append(table)
        if len(matches) != 1:
            raise InputError(
                f"the checkpoint has {num_classes} classes, which matches "
                + ("no" if not matches else "more than one")
                + " shipped labels table (UCF-Crime 14, ShanghaiTech 18, XD-Violence 7); "
                "pass --labels with the labels CSV (id,name) it was trained with",
                path,
            )
        return list(matches[0].names), matches[0].normal_id
    if len(names) != num_classes:
        raise InputError(
            f"{where} lists {len(names)} classes but the checkpoint has {num_classes} "
            "(prompt_learner.ctx); pass the labels CSV the checkpoint was trained with",
            path,
        )
    return list(names), normal_id


def _load_centroid(centroid: str | Path | torch.Tensor | None, ckpt_path: Path, dim: int) -> torch.Tensor:
    if isinstance(centroid, torch.Tensor):
        t, where = centroid, "the centroid given"
    else:
        if centroid is not None:
            candidates = [Path(centroid)]
            if not candidates[0].is_file():
                raise InputError("centroid file not found (--centroid)", candidates[0])
        else:
            candidates = [ckpt_path.parent / CENTROID_NAME, ckpt_path.parent.parent / CENTROID_NAME]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise InputError(
                    "the normal centroid is not stored in the authors' checkpoints; looked for "
                    + " and ".join(str(c) for c in candidates)
                    + "; pass --centroid with the ncentroid.pt file saved beside the run",
                    ckpt_path,
                )
            candidates = found[:1]
        where = candidates[0]
        t = _read_centroid_file(where)
    t = t.detach().to(torch.float32).reshape(-1) if t.dim() == 2 and 1 in t.shape else t.detach().to(torch.float32)
    if tuple(t.shape) != (dim,):
        raise InputError(f"the centroid has shape {tuple(t.shape)}, the checkpoint expects ({dim},)", where)
    if not torch.isfinite(t).all():
        raise InputError("the centroid holds non-finite values", where)
    return t


def _read_centroid_file(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        import numpy as np

        try:
            return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        except (ValueError, OSError) as e:
            raise InputError(f"not a readable .npy centroid: {e}", path) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of a safe load is a bad input file
        raise InputError(f"not a readable centroid file (a tensor saved with torch.save): {str(e).splitlines()[0]}", path) from None
    if isinstance(obj, dict) and len(obj) == 1:
        obj = next(iter(obj.values()))
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"the centroid file holds a {type(obj).__name__}, expected a tensor", path)
    return obj


# ------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------
def infer_reference_architecture(sd: dict[str, torch.Tensor], path: Any = None) -> dict[str, Any]:
    """Network sizes from the tensor shapes of an authors'-layout state dict (keys without `net.`)."""
    ctx = _get(sd, "prompt_learner.ctx", path)
    if ctx.dim() != 3:
        raise InputError(
            f"prompt_learner.ctx has shape {tuple(ctx.shape)}; only class-specific contexts (C, n_ctx, W) are supported", path
        )
    num_classes, n_ctx, width = ctx.shape
    k = _get(sd, "selector_model.bn_layer.running_mean", path, 1).shape[0]
    if k != num_classes - 1:
        raise InputError(f"the selector has {k} abnormal classes but the prompts have {num_classes} classes (expected K = C - 1)", path)
    vocab, w_tok = _get(sd, "token_embedding.weight", path, 2).shape
    if w_tok != width:
        raise InputError(f"token_embedding width {w_tok} != prompt context width {width}", path)
    if vocab <= EOT_ID:
        raise InputError(f"token_embedding has {vocab} rows; CLIP's BPE needs {EOT_ID + 1}", path)
    layers = _check_contiguous(_indices(sd, r"text_encoder\.transformer\.resblocks\.(\d+)\."), "text transformer blocks", path)
    if layers == 0:
        raise InputError("no text transformer blocks (text_encoder.transformer.resblocks.*)", path)
    context_length, w_pos = _get(sd, "text_encoder.positional_embedding", path, 2).shape
    w_proj, out_dim = _get(sd, "text_encoder.text_projection", path, 2).shape
    if w_pos != width or w_proj != width:
        raise InputError(f"text encoder widths disagree: positional {w_pos}, projection {w_proj}, prompts {width}", path)
    intermediate = _get(sd, "text_encoder.transformer.resblocks.0.mlp.c_fc.weight", path, 2).shape[0]
    suffix = _get(sd, "prompt_learner.token_suffix", path, 3)
    if tuple(suffix.shape) != (num_classes, context_length - 1 - n_ctx, width):
        raise InputError(
            f"prompt_learner.token_suffix has shape {tuple(suffix.shape)}, expected "
            f"({num_classes}, {context_length - 1 - n_ctx}, {width})",
            path,
        )
    emb, in_dim = _get(sd, "temporal_model.projection.weight", path, 2).shape
    if in_dim == out_dim:
        concat = False
    elif in_dim == out_dim + k:
        concat = True
    else:
        raise InputError(
            f"temporal_model.projection takes {in_dim} inputs; expected D = {out_dim} or D + K = {out_dim + k}", path
        )
    blocks = _check_contiguous(_indices(sd, r"temporal_model\.axial_attn\.layers\.blocks\.(\d+)\."), "axial blocks", path)
    if blocks == 0 or blocks % 2:
        raise InputError(f"{blocks} axial blocks; the reversible axial transformer has 2 per layer", path)
    if emb % TEMPORAL_HEADS:
        raise InputError(f"temporal width {emb} is not divisible by the {TEMPORAL_HEADS} heads", path)
    pos0 = _get(sd, "temporal_model.axial_attn.pos_emb.param_0", path, 4)
    pos1 = _get(sd, "temporal_model.axial_attn.pos_emb.param_1", path, 4)
    return dict(
        num_classes=int(num_classes),
        n_ctx=int(n_ctx),
        width=int(width),
        vocab_size=int(vocab),
        text_layers=layers,
        text_heads=max(1, int(width) // 64),
        intermediate_size=int(intermediate),
        context_length=int(context_length),
        feature_dim=int(out_dim),
        emb_size=int(emb),
        depth=blocks // 2,
        concat_features=concat,
        num_segments=int(pos0.shape[2]),
        seg_length=int(pos1.shape[3]),
    )


def text_config_for(arch: dict[str, Any]) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=arch["vocab_size"],
        hidden_size=arch["width"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["text_layers"],
        num_attention_heads=arch["text_heads"],
        max_position_embeddings=arch["context_length"],
        projection_dim=arch["feature_dim"],
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=SOT_ID,
        eos_token_id=EOT_ID,
        pad_token_id=0,
    )


def map_reference_state_dict(sd: dict[str, torch.Tensor], arch: dict[str, Any], path: Any = None) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Authors' keys (without `net.`) -> our state dict (without the centroid); also the keys used."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, transform=None) -> None:
        t = _get(sd, src, path)
        out[dst] = transform(t) if transform else t
        used.add(src)

    take("token_embedding.weight", TEXT + "embeddings.token_embedding.weight")
    take("text_encoder.positional_embedding", TEXT + "embeddings.position_embedding.weight")
    _map_blocks(sd, "text_encoder.", TEXT, arch["text_layers"], arch["width"], out, used, path)
    take("text_encoder.ln_final.weight", TEXT + "final_layer_norm.weight")
    take("text_encoder.ln_final.bias", TEXT + "final_layer_norm.bias")
    take("text_encoder.text_projection", "text_encoder.clip.text_projection.weight", lambda t: t.T)
    for name in ("ctx", "token_prefix", "token_suffix"):
        take(f"prompt_learner.{name}", f"prompt_learner.{name}")
    take("selector_model.bn_layer.running_mean", "selector.bn.running_mean")
    take("selector_model.bn_layer.running_var", "selector.bn.running_var")
    if "selector_model.bn_layer.num_batches_tracked" in sd:
        take("selector_model.bn_layer.num_batches_tracked", "selector.bn.num_batches_tracked")
    else:  # not used in evaluation mode; some exports drop it
        out["selector.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    for k in sd:
        if k.startswith("temporal_model."):
            out["temporal." + k[len("temporal_model.") :]] = sd[k]
            used.add(k)
    return out, used


def import_reference_checkpoint(
    path: str | Path,
    state_dict: dict[str, Any],
    labels: str | Path | None = None,
    centroid: str | Path | torch.Tensor | None = None,
    class_names: list[str] | None = None,
) -> LoadedModel:
    """Build our `AnomalyCLIP` from an authors' `last.ckpt` state dict (keys `net.*`).

    `labels`: a labels CSV; `class_names`: names in id order; neither: the shipped table whose
    class count matches. `centroid`: a `(D,)` tensor file (torch.save), or `ncentroid.pt` beside
    the checkpoint (or one folder up, the authors' run layout).
    """
    path = Path(path)
    extra = sorted(k for k in state_dict if not str(k).startswith(PREFIX))
    if extra:
        raise InputError(f"unexpected key {extra[0]!r} outside the network (net.*) in the authors' checkpoint", path)
    sd = {k[len(PREFIX) :]: v for k, v in state_dict.items()}
    arch = infer_reference_architecture(sd, path)
    names, normal_id = _class_table(arch["num_classes"], labels, class_names, path)
    cfg = ModelConfig(
        class_names=names,
        normal_id=normal_id,
        n_ctx=arch["n_ctx"],
        feature_dim=arch["feature_dim"],
        emb_size=arch["emb_size"],
        depth=arch["depth"],
        heads=TEMPORAL_HEADS,
        num_segments=arch["num_segments"],
        seg_length=arch["seg_length"],
        concat_features=arch["concat_features"],
        # The text tower is rebuilt from the stored text config; these describe its shape.
        clip="random",
        random_clip_width=arch["width"],
        random_clip_layers=arch["text_layers"],
    )
    mapped, used = map_reference_state_dict(sd, arch, path)
    unused = sorted(
        k for k in sd if k not in used and not k.startswith(IGNORED_PREFIXES) and k not in IGNORED_KEYS
    )
    if unused:
        raise InputError(f"the authors' checkpoint holds key {PREFIX}{unused[0]} that has no place in the model", path)
    mapped["centroid"] = _load_centroid(centroid, path, arch["feature_dim"])
    mapped = {k: (v.float() if v.is_floating_point() else v) for k, v in mapped.items()}

    model = AnomalyCLIP(cfg, clip_text=build_text_model(text_config_for(arch)))
    _check_prompt_tokens(model, mapped, path)
    try:
        result = model.load_state_dict(mapped, strict=False)
    except RuntimeError as e:  # a tensor whose shape disagrees with the inferred architecture
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise InputError(f"the authors' checkpoint does not fit the inferred architecture: {detail}", path) from None
    if result.missing_keys:
        raise InputError(
            f"not a checkpoint of the released AnomalyCLIP layout: key {_reference_key(result.missing_keys[0])} is missing", path
        )
    if result.unexpected_keys:
        raise InputError(
            f"the authors' checkpoint holds key {_reference_key(result.unexpected_keys[0])} that has no place in the model", path
        )
    return LoadedModel(model.eval(), None, "reference")


def _reference_key(key: str) -> str:
    """The authors' name of one of our one-to-one mapped keys (for error messages)."""
    for ours, theirs in (("temporal.", "temporal_model."), ("selector.bn.", "selector_model.bn_layer."), ("prompt_learner.", "prompt_learner.")):
        if key.startswith(ours):
            return PREFIX + theirs + key[len(ours) :]
    return key


def _check_prompt_tokens(model: AnomalyCLIP, mapped: dict[str, torch.Tensor], path: Path) -> None:
    """Warn when the stored prompt token embeddings disagree with the class names' tokens: the
    EOT positions come from the names, so wrong names silently change the text features."""
    ids = tokenize(class_prompts(model.cfg.class_names, model.cfg.n_ctx), model.text_encoder.clip.config.max_position_embeddings)
    tok = mapped[TEXT + "embeddings.token_embedding.weight"].float()
    expected = tok[ids[:, 1 + model.cfg.n_ctx :]]
    stored = mapped["prompt_learner.token_suffix"].float()
    if expected.shape != stored.shape or not torch.allclose(expected, stored, atol=1e-3, rtol=1e-3):
        warnings.warn(
            f"{path}: the checkpoint's prompt token embeddings do not match the tokens of the class names "
            f"{model.cfg.class_names}; if predictions look wrong, pass the labels CSV it was trained with (--labels)",
            stacklevel=3,
        )


# ------------------------------------------------------------------------------------------
# the inverse
# ------------------------------------------------------------------------------------------
def to_reference_state_dict(model: AnomalyCLIP) -> dict[str, torch.Tensor]:
    """Our modules -> the authors' layout (`net.*` keys, OpenAI CLIP text tower). No image encoder."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    out["token_embedding.weight"] = sd[TEXT + "embeddings.token_embedding.weight"]
    out["text_encoder.positional_embedding"] = sd[TEXT + "embeddings.position_embedding.weight"]
    _unmap_blocks(sd, TEXT, "text_encoder.", model.text_encoder.clip.config.num_hidden_layers, out)
    out["text_encoder.ln_final.weight"] = sd[TEXT + "final_layer_norm.weight"]
    out["text_encoder.ln_final.bias"] = sd[TEXT + "final_layer_norm.bias"]
    out["text_encoder.text_projection"] = sd["text_encoder.clip.text_projection.weight"].T.contiguous()
    for name in ("ctx", "token_prefix", "token_suffix"):
        out[f"prompt_learner.{name}"] = sd[f"prompt_learner.{name}"]
    out["selector_model.logit_scale"] = torch.tensor(math.log(1 / 0.07))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        out[f"selector_model.bn_layer.{name}"] = sd[f"selector.bn.{name}"]
    for k, v in sd.items():
        if k.startswith("temporal."):
            out["temporal_model." + k[len("temporal.") :]] = v
    return {PREFIX + k: v for k, v in out.items()}


# ------------------------------------------------------------------------------------------
# the released image tower
# ------------------------------------------------------------------------------------------
def map_openai_vision_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], CLIPVisionConfig]:
    """OpenAI-layout ViT keys (`conv1.weight`, ..., `proj`; e.g. `net.image_encoder.*` with the
    prefix removed) -> a `CLIPVisionModelWithProjection` state dict and its config."""
    where = "the image encoder"
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
    layers = len(_indices(sd, r"transformer\.resblocks\.(\d+)\."))
    if layers == 0:
        raise InputError(f"{where}: no transformer.resblocks")
    config = CLIPVisionConfig(
        hidden_size=int(width),
        intermediate_size=int(_get(sd, "transformer.resblocks.0.mlp.c_fc.weight", where, 2, "").shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=max(1, int(width) // 64),
        num_channels=int(channels),
        image_size=int(patch) * grid,
        patch_size=int(patch),
        projection_dim=int(proj.shape[1]),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    v = "vision_model."
    out: dict[str, torch.Tensor] = {
        v + "embeddings.patch_embedding.weight": conv,
        v + "embeddings.class_embedding": _get(sd, "class_embedding", where, 1, ""),
        v + "embeddings.position_embedding.weight": pos,
        "visual_projection.weight": proj.T.contiguous(),
    }
    used = {"conv1.weight", "class_embedding", "positional_embedding", "proj"}
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{v}{b}.{p}"] = _get(sd, f"{a}.{p}", where, 1, "")
            used.add(f"{a}.{p}")
    _map_blocks(sd, "", v, layers, int(width), out, used, where, "")
    unused = sorted(set(sd) - used)
    if unused:
        raise InputError(f"{where}: key {unused[0]} has no place in a CLIP vision model")
    return out, config


def reference_image_encoder(path: str | Path, trust: bool = False):
    """The released image tower of an authors' checkpoint as a `CLIPVisionModelWithProjection`."""
    from transformers import CLIPVisionModelWithProjection

    from anomalyclip.checkpoint import torch_load

    ckpt = torch_load(path, trust)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    prefix = PREFIX + "image_encoder."
    if not isinstance(sd, dict) or not any(str(k).startswith(prefix) for k in sd):
        raise InputError(f"no image encoder ({prefix}*) in this checkpoint", path)
    hf, config = map_openai_vision_keys({k[len(prefix) :]: v.float() for k, v in sd.items() if k.startswith(prefix)})
    config._attn_implementation = "sdpa"
    model = CLIPVisionModelWithProjection(config)
    model.load_state_dict(hf, strict=True)
    return model.eval()
