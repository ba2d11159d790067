"""The CLIP image tower: frames -> raw (not L2-normalised) 512-d image embeddings (METHOD §12).

`ClipImageEncoder(clip, device)` loads `transformers.CLIPVisionModelWithProjection` from a hub id
(`openai/clip-vit-base-patch16`) or a local folder written by `save_pretrained` (a full
`CLIPModel` checkpoint also works: its text tower is ignored). A local folder is loaded with
`local_files_only=True`, and a hub id is first looked up in the local cache only, so nothing
touches the network when the weights are already on disk.

`encode(frames)` = preprocessing (`preprocess.py`) + vision transformer + visual projection,
i.e. the `image_embeds` output, in float32 under `torch.inference_mode()`, `batch_size` frames
at a time.

`save_random_clip_vision(folder)` writes a small randomly initialised model of the real
architecture for tests and benchmarks (no download).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from anomalyclip.clip_config import DEFAULT_CLIP, vision_config
from anomalyclip.devices import resolve_device
from anomalyclip.errors import InputError
from anomalyclip.video.preprocess import Frames, PreprocessSettings, normalize, resize_crop

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bars and info chatter for one call."""
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


def weight_files(folder: str | Path) -> list[Path]:
    """The weights files of a saved model folder, in name order (safetensors preferred)."""
    folder = Path(folder)
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if files:
            return files
    return []


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


def _cached_hub_weights(repo_id: str) -> list[Path]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return []
    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            hit = try_to_load_from_cache(repo_id, name)
        except Exception:  # noqa: BLE001 - a cache lookup must never break extraction
            return []
        if isinstance(hit, str) and os.path.isfile(hit):
            return [Path(hit)]
    return []


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_path(clip: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else names a folder."""
    return clip.startswith((".", "/", "~")) or "\\" in clip or clip.endswith("/") or clip.count("/") > 1


def load_clip_vision(clip: str | Path = DEFAULT_CLIP, device: str | torch.device | None = "cpu"):
    """Load the image tower. Returns (model in eval mode on `device`, model id, weights sha256 or None)."""
    from transformers import CLIPVisionModelWithProjection

    dev = resolve_device(device)
    clip_str = str(clip)
    local = Path(clip_str).expanduser()
    kwargs = dict(dtype=torch.float32, output_loading_info=True)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise InputError("CLIP model folder holds no config.json (expected a save_pretrained folder)", local)
        try:
            with _quiet_transformers():
                model, info = CLIPVisionModelWithProjection.from_pretrained(str(local), local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"cannot load a CLIP image encoder from this folder: {_one_line(e)}", clip_str) from None
        model_id, sha = str(local), sha256_files(weight_files(local))
    elif local.exists() or _looks_like_path(clip_str):
        raise InputError("CLIP model folder not found (give a folder from save_pretrained or a hub id "
                         f"such as {DEFAULT_CLIP})", clip_str)
    else:
        model = None
        with _quiet_transformers():
            try:  # already cached: never touch the network
                model, info = CLIPVisionModelWithProjection.from_pretrained(clip_str, local_files_only=True, **kwargs)
            except OSError:
                pass
            if model is None:
                try:
                    model, info = CLIPVisionModelWithProjection.from_pretrained(clip_str, **kwargs)
                except (OSError, ValueError) as e:
                    raise InputError(
                        f"cannot load CLIP image encoder {clip_str!r} (not cached, and the hub is not reachable "
                        f"or has no such model): {_one_line(e)}"
                    ) from None
        model_id, sha = clip_str, sha256_files(_cached_hub_weights(clip_str))
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    if missing:
        raise InputError(
            f"CLIP image encoder {clip_str!r} lacks weights for {', '.join(sorted(missing)[:5])}"
            f"{' ...' if len(missing) > 5 else ''} (is it a CLIP vision model with its projection?)"
        )
    model.eval().requires_grad_(False).to(dev)
    return model, model_id, sha


class ClipImageEncoder:
    """Frames (uint8 RGB) -> raw CLIP image embeddings, float32 (N, projection_dim)."""

    def __init__(
        self,
        clip: str | Path = DEFAULT_CLIP,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        preprocess: PreprocessSettings | str = "pil",
        model=None,
    ):
        """`model`: an already built CLIPVisionModelWithProjection to use instead of loading `clip`
        (then `clip` is only recorded as the model id)."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.settings = preprocess if isinstance(preprocess, PreprocessSettings) else PreprocessSettings(method=preprocess)
        if model is None:
            self.model, self.model_id, self.weights_sha256 = load_clip_vision(clip, self.device)
        else:
            self.model = model.eval().requires_grad_(False).to(self.device)
            self.model_id, self.weights_sha256 = str(clip), None
        cfg = self.model.config
        if cfg.image_size != self.settings.crop_size:
            raise InputError(
                f"CLIP image encoder {self.model_id!r} expects {cfg.image_size}px images, preprocessing makes "
                f"{self.settings.crop_size}px"
            )
        self.embed_dim = int(cfg.projection_dim)

    # the two halves, so callers can run the CPU half in a prefetch thread
    def prepare(self, frames: Frames) -> torch.Tensor:
        """CPU half: resize + centre crop -> (N, 3, 224, 224) uint8 (pinned when encoding on CUDA)."""
        crops = resize_crop(frames, self.settings)
        if self.device.type == "cuda":
            crops = crops.pin_memory()
        return crops

    def embed(self, crops: torch.Tensor) -> np.ndarray:
        """Device half: normalise + vision model + projection, `batch_size` at a time -> (N, D) float32."""
        out = []
        with torch.inference_mode():
            for start in range(0, crops.shape[0], self.batch_size):
                pixels = normalize(crops[start : start + self.batch_size], self.settings, device=self.device)
                emb = self.model(pixel_values=pixels).image_embeds
                out.append(emb.float().cpu())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    def encode(self, frames: Frames) -> np.ndarray:
        """RGB uint8 frames (N, H, W, 3) -> (N, D) float32 raw image embeddings (not L2-normalised)."""
        return self.embed(self.prepare(frames))

    def metadata(self) -> dict:
        return {
            "clip_model": self.model_id,
            "clip_weights_sha256": self.weights_sha256,
            "feature_dim": self.embed_dim,
            "preprocessing": self.settings.to_dict(),
        }


# ---------------------------------------------------------------------- random models
def random_clip_vision_config(
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int | None = None,
    intermediate_size: int | None = None,
    patch_size: int = 16,
    image_size: int = 224,
    projection_dim: int = 512,
):
    """A CLIPVisionConfig of the ViT architecture. Defaults: the tiny test model (hidden 64, 2
    layers, 1 head, MLP 256). ViT-B/16: hidden_size=768, num_hidden_layers=12 (12 heads, MLP 3072)."""
    return vision_config(
        hidden_size,
        num_hidden_layers,
        projection_dim,
        patch_size=patch_size,
        image_size=image_size,
        intermediate_size=intermediate_size,
        heads=num_attention_heads,
    )


def build_random_clip_vision(seed: int = 0, **config_kwargs):
    """A randomly initialised CLIPVisionModelWithProjection (eval mode); see `random_clip_vision_config`."""
    from transformers import CLIPVisionModelWithProjection

    cfg = random_clip_vision_config(**config_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(cfg)
    return model.eval()


def save_random_clip_vision(folder: str | Path, seed: int = 0, **config_kwargs) -> Path:
    """Build a random image tower and `save_pretrained` it to `folder` (loadable by `--clip folder`)."""
    folder = Path(folder)
    model = build_random_clip_vision(seed=seed, **config_kwargs)
    with _quiet_transformers():
        model.save_pretrained(folder)
    return folder
