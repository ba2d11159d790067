"""Where a CLIP tower comes from, whatever the user names with `--clip`: a hub id
(`openai/clip-vit-base-patch16`, read from the local cache first), a folder `transformers`
saved (a whole `CLIPModel` or one tower), OpenAI's `ViT-B-16.pt`, or an authors' `last.ckpt`
(which holds the whole CLIP). The text tower serves training and the zero-shot baseline, the
image tower extraction; each is checked complete, and each failure is one line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from anomalyclip.errors import InputError

TOWERS = ("text", "vision")
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
HOW_TO_PASS = "pass --clip a local folder (saved by transformers), OpenAI's ViT-B-16.pt or an authors' last.ckpt"


@dataclass
class ClipTower:
    model: torch.nn.Module  # CLIPTextModelWithProjection or CLIPVisionModelWithProjection, eval mode
    model_id: str  # what the user named
    weights_sha256: str | None  # of the weight files, when known (recorded in feature sidecars)
    logit_scale: float | None = None  # CLIP's learned temperature, where the source holds it


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' loading progress bars and its report of the other tower's keys."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def sha256_files(files: list[Path]) -> str | None:
    """sha256 over the bytes of `files` in order (one file: its usual sha256)."""
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The weights files of a saved model folder, in name order (safetensors preferred)."""
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if files:
            return files
    return []


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def looks_like_path(clip: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else names a file or folder."""
    return clip.startswith((".", "/", "~")) or "\\" in clip or clip.endswith(("/", ".pt", ".ckpt", ".pth")) or clip.count("/") > 1


def _classes(tower: str):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

    return (CLIPTextModelWithProjection, CLIPTextConfig) if tower == "text" else (CLIPVisionModelWithProjection, CLIPVisionConfig)


def _tower_config(folder: Path, tower: str):
    """The tower's config from a saved folder. A whole `CLIPModel`'s sub-configs keep their own
    `projection_dim` default; `CLIPModel` itself uses the top-level one, so it is taken here too."""
    _, config_class = _classes(tower)
    try:
        top = json.loads((folder / "config.json").read_text())
        config = config_class.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputError(f"not a readable transformers CLIP config: {_one_line(e)}", folder / "config.json") from None
    if top.get("model_type") == "clip" and "projection_dim" in top:
        config.projection_dim = int(top["projection_dim"])
    return config


def _logit_scale_of(files: list[Path]) -> float | None:
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), "pt") as st:
                if "logit_scale" in st.keys():
                    return float(st.get_tensor("logit_scale").exp())
    return None


def _from_pretrained(source: str, tower: str, **kwargs):
    model_class, _ = _classes(tower)
    with quiet_transformers():
        model, info = model_class.from_pretrained(source, dtype=torch.float32, output_loading_info=True, **kwargs)
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    if missing:
        raise InputError(
            f"the CLIP {tower} tower {source!r} lacks weights for {', '.join(sorted(missing)[:5])}"
            f"{' ...' if len(missing) > 5 else ''} (is it a CLIP model with its projection?)"
        )
    return model


def _from_folder(folder: Path, tower: str) -> ClipTower:
    if not (folder / "config.json").is_file():
        raise InputError("not a transformers CLIP folder (no config.json)", folder)
    try:
        model = _from_pretrained(str(folder), tower, config=_tower_config(folder, tower), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise InputError(f"cannot load a CLIP {tower} tower from this folder: {_one_line(e)}", folder) from None
    files = weight_files(folder)
    return ClipTower(model, str(folder), sha256_files(files), _logit_scale_of(files))


def _from_openai_file(path: Path, tower: str, trust: bool) -> ClipTower:
    from anomalyclip.checkpoint.clip_files import read_openai_clip
    from anomalyclip.checkpoint.openai_layout import map_openai_text_keys, map_openai_vision_keys

    sd = read_openai_clip(path, trust)
    if tower == "text":
        if "token_embedding.weight" not in sd:
            raise InputError("holds no CLIP text tower (token_embedding.weight is missing)", path)
        hf, config, _ = map_openai_text_keys({k: v for k, v in sd.items() if not k.startswith("visual.")}, path)
    else:
        visual = {k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")}
        if not visual:
            raise InputError("holds no CLIP image tower (visual.* / net.image_encoder.* keys)", path)
        hf, config = map_openai_vision_keys(visual, path)
    model_class, _ = _classes(tower)
    config._attn_implementation = "sdpa"
    model = model_class(config)
    result = model.load_state_dict({k: v.float() for k, v in hf.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise InputError(f"the CLIP {tower} tower in this file lacks {missing[0]}", path)
    scale = sd.get("logit_scale")
    return ClipTower(model.eval(), str(path), sha256_files([path]), None if scale is None else float(scale.detach().float().exp()))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub's endpoint. Without it, a machine with no network waits
    through the hub client's retries (tens of seconds of warnings) before the same error."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(repo_id: str, tower: str) -> ClipTower:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    model = None
    try:  # already cached: never touch the network
        model = _from_pretrained(repo_id, tower, local_files_only=True)
    except OSError:
        pass
    if model is None and not offline and hub_reachable():
        try:
            model = _from_pretrained(repo_id, tower)
        except (OSError, ValueError):
            model = None
    if model is None:
        raise InputError(f"cannot load the CLIP {tower} tower {repo_id!r}: it is not in the local hub cache and "
                         f"the hub {'is switched off (HF_HUB_OFFLINE=1)' if offline else 'cannot be reached'}; {HOW_TO_PASS}, "
                         f"or fetch it once on a connected machine (`huggingface-cli download {repo_id}`)")
    files = _cached_hub_weights(repo_id)
    return ClipTower(model, repo_id, sha256_files(files), _logit_scale_of(files))


def _cached_hub_weights(repo_id: str) -> list[Path]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return []
    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            hit = try_to_load_from_cache(repo_id, name)
        except Exception:  # noqa: BLE001 - a cache lookup must never break loading
            return []
        if isinstance(hit, str) and os.path.isfile(hit):
            return [Path(hit)]
    return []


def load_clip_tower(clip: str | Path, tower: str, trust: bool = False) -> ClipTower:
    """One CLIP tower ("text" or "vision") from whatever `clip` names (see the module docstring)."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    spec = str(clip)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_folder(path, tower)
    if path.is_file():
        return _from_openai_file(path, tower, trust)
    if path.exists() or looks_like_path(spec):
        raise InputError(f"CLIP not found: no such file or folder; {HOW_TO_PASS}", spec)
    return _from_hub(spec, tower)
