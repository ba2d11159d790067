"""The CLIP image tower: frames -> raw (not L2-normalised) 512-d image embeddings (METHOD §12).

`ClipImageEncoder(clip, device)` loads `transformers.CLIPVisionModelWithProjection` from whatever
`--clip` names (`clip_sources`: a hub id, looked up in the local cache first, a folder
`save_pretrained` wrote, OpenAI's `ViT-B-16.pt`, or an authors' `last.ckpt`).

`encode(frames)` = preprocessing (`preprocess.py`) + vision transformer + visual projection,
i.e. the `image_embeds` output under `torch.inference_mode()`, `batch_size` frames at a time,
returned as float32. The tower runs in float32 unless `precision` says otherwise (`precision.py`).

Speed choices, measured with `benchmarks/extract.py` (README, extraction speed): attention by
PyTorch's `scaled_dot_product_attention` ("sdpa", not transformers' "eager" matmul + softmax),
no `torch.compile` (a minute or more of warm-up on a CPU, and no faster there), and on the CPU
freed activations kept for reuse instead of re-mapped (`cpu_memory.py`).

`save_random_clip_vision(folder)` writes a small randomly initialised model of the real
architecture for tests and benchmarks (no download).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from anomalyclip.clip_config import DEFAULT_CLIP, vision_config
from anomalyclip.clip_sources import load_clip_tower, quiet_transformers
from anomalyclip.devices import resolve_device
from anomalyclip.errors import InputError
from anomalyclip.video.cpu_memory import keep_freed_memory
from anomalyclip.video.precision import tower_dtype
from anomalyclip.video.preprocess import Frames, PreprocessSettings, normalize, resize_crop

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def load_clip_vision(clip: str | Path = DEFAULT_CLIP, device: str | torch.device | None = "cpu"):
    """Load the image tower. Returns (model in eval mode on `device`, model id, weights sha256 or None)."""
    tower = load_clip_tower(clip, "vision")
    tower.model.eval().requires_grad_(False).to(resolve_device(device))
    return tower.model, tower.model_id, tower.weights_sha256


class ClipImageEncoder:
    """Frames (uint8 RGB) -> raw CLIP image embeddings, float32 (N, projection_dim)."""

    def __init__(
        self,
        clip: str | Path = DEFAULT_CLIP,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        preprocess: PreprocessSettings | str = "pil",
        model=None,
        precision: str = "32",
        attention: str = "sdpa",
    ):
        """`model`: an already built CLIPVisionModelWithProjection to use instead of loading `clip`
        (then `clip` is only recorded as the model id; it is converted in place). `precision`: "32",
        "bf16" or "16". `attention`: transformers' attention implementation ("sdpa" or "eager")."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.settings = preprocess if isinstance(preprocess, PreprocessSettings) else PreprocessSettings(method=preprocess)
        self.precision = str(precision)
        self.dtype = tower_dtype(self.precision, self.device)
        if model is None:
            self.model, self.model_id, self.weights_sha256 = load_clip_vision(clip, self.device)
        else:
            self.model = model.eval().requires_grad_(False).to(self.device)
            self.model_id, self.weights_sha256 = str(clip), None
        self.model.to(self.dtype)
        self.model.set_attn_implementation(attention)
        if self.device.type == "cpu":
            keep_freed_memory()
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
                pixels = normalize(crops[start : start + self.batch_size], self.settings, device=self.device, dtype=self.dtype)
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
            "precision": self.precision,
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
    with quiet_transformers():
        model.save_pretrained(folder)
    return folder
