"""The authors' released checkpoints (PyTorch Lightning `last.ckpt`, keys `net.*`; FORMATS.md).

The released files store no network configuration: everything is inferred from tensor shapes,
so full-size and down-sized files load alike. The OpenAI-layout CLIP text transformer is mapped
onto `transformers`' CLIP modules (`openai_layout`); the selector's BatchNorm statistics and
the temporal model map one to one. The normal centroid is a separate file (`ncentroid.pt`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from anomalyclip.assets import asset_path
from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.checkpoint.openai_layout import count_blocks, map_openai_text_keys, openai_text_config, tensor_at
from anomalyclip.checkpoint.safe_load import load_torch_file
from anomalyclip.checkpoint.validate import check_finite
from anomalyclip.classes import ClassTable
from anomalyclip.config import ModelConfig
from anomalyclip.data.formats import read_labels
from anomalyclip.errors import InputError
from anomalyclip.model.anomalyclip import AnomalyCLIP
from anomalyclip.model.clip_text import build_text_model
from anomalyclip.presets import PRESETS
from anomalyclip.tokenizer import class_prompts, tokenize

PREFIX = "net."
TEXT = "text_encoder.clip.text_model."
TEMPORAL_HEADS = 8  # fixed in the release; not recoverable from shapes (to_q is E x E for any split)
CENTROID_NAME = "ncentroid.pt"
# Present in the released files but not needed to score features.
IGNORED_PREFIXES = ("image_encoder.",)
IGNORED_KEYS = ("selector_model.logit_scale",)


def _get(sd: dict[str, Any], key: str, path: Any, ndim: int | None = None) -> torch.Tensor:
    return tensor_at(sd, key, path, ndim, PREFIX)


# ------------------------------------------------------------------------------------------
# class names and centroid
# ------------------------------------------------------------------------------------------
def _class_table(num_classes: int, labels: str | Path | None, class_names: list[str] | None, path: Any) -> tuple[list[str], int]:
    if labels is not None:
        table = read_labels(labels)
        names, normal_id, where = table.names, table.normal_id, str(labels)
    elif class_names is not None:
        table = ClassTable.from_names(class_names)
        names, normal_id, where = table.names, table.normal_id, "the class names given"
    else:
        matches = []
        for name in sorted({p.labels_asset for p in PRESETS.values() if p.labels_asset}):
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
            found = _centroid_candidates(ckpt_path, candidates)
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


def _centroid_candidates(ckpt_path: Path, candidates: list[Path] | None) -> list[Path]:
    """The `ncentroid.pt` files beside the checkpoint or one folder up that exist."""
    candidates = candidates or [ckpt_path.parent / CENTROID_NAME, ckpt_path.parent.parent / CENTROID_NAME]
    return [c for c in candidates if c.is_file()]


def _read_centroid_file(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        import numpy as np

        try:
            return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        except (ValueError, OSError) as e:
            raise InputError(f"not a readable .npy centroid: {e}", path) from None
    obj = load_torch_file(path)
    if isinstance(obj, dict) and len(obj) == 1:
        obj = next(iter(obj.values()))
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"the centroid file holds a {type(obj).__name__}, expected a tensor", path)
    return obj


# ------------------------------------------------------------------------------------------
# architecture and keys
# ------------------------------------------------------------------------------------------
def text_view(sd: dict[str, Any]) -> dict[str, Any]:
    """The CLIP text tower of an authors' state dict under OpenAI's names."""
    view = {k[len("text_encoder.") :]: v for k, v in sd.items() if k.startswith("text_encoder.")}
    if "token_embedding.weight" in sd:
        view["token_embedding.weight"] = sd["token_embedding.weight"]
    return view


def _authors_key(openai_key: str) -> str:
    return openai_key if openai_key == "token_embedding.weight" else "text_encoder." + openai_key


def infer_reference_architecture(sd: dict[str, torch.Tensor], path: Any = None) -> dict[str, Any]:
    """Network sizes from the tensor shapes of an authors'-layout state dict (keys without
    `net.`); the text tower's as a `CLIPTextConfig` under "text"."""
    ctx = _get(sd, "prompt_learner.ctx", path)
    if ctx.dim() != 3:
        raise InputError(
            f"prompt_learner.ctx has shape {tuple(ctx.shape)}; only class-specific contexts (C, n_ctx, W) are supported", path
        )
    num_classes, n_ctx, width = ctx.shape
    k = _get(sd, "selector_model.bn_layer.running_mean", path, 1).shape[0]
    if k != num_classes - 1:
        raise InputError(f"the selector has {k} abnormal classes but the prompts have {num_classes} classes (expected K = C - 1)", path)
    _get(sd, "token_embedding.weight", path, 2)
    text = openai_text_config(text_view(sd), path, PREFIX + "text_encoder.")
    if text.hidden_size != width:
        raise InputError(f"token_embedding width {text.hidden_size} != prompt context width {width}", path)
    context_length, out_dim = text.max_position_embeddings, text.projection_dim
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
    blocks = count_blocks(sd, r"temporal_model\.axial_attn\.layers\.blocks\.(\d+)\.", "axial blocks", path)
    if blocks == 0 or blocks % 2:
        raise InputError(f"{blocks} axial blocks; the reversible axial transformer has 2 per layer", path)
    if emb % TEMPORAL_HEADS:
        raise InputError(f"temporal width {emb} is not divisible by the {TEMPORAL_HEADS} heads", path)
    pos0 = _get(sd, "temporal_model.axial_attn.pos_emb.param_0", path, 4)
    pos1 = _get(sd, "temporal_model.axial_attn.pos_emb.param_1", path, 4)
    return dict(
        num_classes=int(num_classes),
        n_ctx=int(n_ctx),
        text=text,
        feature_dim=int(out_dim),
        emb_size=int(emb),
        depth=blocks // 2,
        concat_features=concat,
        num_segments=int(pos0.shape[2]),
        seg_length=int(pos1.shape[3]),
    )


def map_reference_state_dict(sd: dict[str, torch.Tensor], path: Any = None) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Authors' keys (without `net.`) -> our state dict (without the centroid); also the keys used."""
    text, _, text_used = map_openai_text_keys(text_view(sd), path, PREFIX + "text_encoder.")
    out = {"text_encoder.clip." + k: v for k, v in text.items()}
    used = {_authors_key(k) for k in text_used}

    def take(src: str, dst: str) -> None:
        out[dst] = _get(sd, src, path)
        used.add(src)

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


# ------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------
def import_reference_checkpoint(
    path: str | Path,
    state_dict: dict[str, Any],
    labels: str | Path | None = None,
    centroid: str | Path | torch.Tensor | None = None,
    class_names: list[str] | None = None,
    require_centroid: bool = True,
) -> LoadedModel:
    """Build our `AnomalyCLIP` from an authors' `last.ckpt` state dict (keys `net.*`).

    `labels`: a labels CSV; `class_names`: names in id order; neither: the shipped table whose
    class count matches. `centroid`: a `(D,)` tensor file (torch.save), or `ncentroid.pt` beside
    the checkpoint (or one folder up, the authors' run layout); with `require_centroid=False` a
    missing one is left at zero (for a run that computes its own).
    """
    path = Path(path)
    check_finite(state_dict, path)
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
        # The text tower is built from the inferred text config; these describe its shape.
        clip="random",
        random_clip_width=arch["text"].hidden_size,
        random_clip_layers=arch["text"].num_hidden_layers,
    )
    mapped, used = map_reference_state_dict(sd, path)
    unused = sorted(
        k for k in sd if k not in used and not k.startswith(IGNORED_PREFIXES) and k not in IGNORED_KEYS
    )
    if unused:
        raise InputError(f"the authors' checkpoint holds key {PREFIX}{unused[0]} that has no place in the model", path)
    if require_centroid or centroid is not None or _centroid_candidates(path, None):
        mapped["centroid"] = _load_centroid(centroid, path, arch["feature_dim"])
    else:
        mapped["centroid"] = torch.zeros(arch["feature_dim"])
    mapped = {k: (v.float() if v.is_floating_point() else v) for k, v in mapped.items()}

    model = AnomalyCLIP(cfg, clip_text=build_text_model(arch["text"]))
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
    # the authors evaluate their final epoch's last.ckpt
    return LoadedModel(model.eval(), None, "reference", {"checkpoint_kind": "last"} if path.name == "last.ckpt" else {})


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
