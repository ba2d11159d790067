"""CLIP image preprocessing (METHOD §12) for batches of RGB uint8 frames.

Resize the shorter side to 224 with bicubic interpolation (the longer side becomes
`int(224 * long / short)`), centre-crop 224 x 224 (offsets `(size - 224) // 2`), scale to [0, 1]
and normalise with CLIP's mean and std. This is exactly what `transformers.CLIPImageProcessor`
does with its default CLIP settings (its PIL backend, used when torchvision is absent).

Two resize implementations; the default is chosen by how closely it matches the processor:

* ``"pil"`` (default): PIL bicubic on each uint8 frame, the same call the processor makes.
  Measured max abs difference to `CLIPImageProcessor` after normalisation: **0.0** (bit-equal)
  on 320x240, 180x320, 1920x1080, 720x576, 150x100 and 301x225 frames, natural-like and noise
  content. About 1.3 ms per 320x240 frame and 15 ms per 1080p frame on one core; frames of a
  batch are resized in a thread pool (PIL releases the GIL), so it keeps up with a GPU encoder.
* ``"torch"``: `torch.nn.functional.interpolate(uint8, mode="bicubic", antialias=True)` on the
  whole batch, about 3x faster on CPU, but its rounding differs from PIL's by one or two grey
  levels on ~0.5 % of pixels: max abs difference 0.015-0.028 after normalisation (1-2 / 255 / std).
  (Resizing float tensors instead is far worse when upscaling: up to 0.33.)

The resize and crop run on the CPU in uint8 (`resize_crop`); the float conversion and
normalisation (`normalize`) run on the target device so only uint8 crops are transferred.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from anomalyclip.errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
METHODS = ("pil", "torch")

Frames = np.ndarray | torch.Tensor | Sequence[np.ndarray]


@dataclass(frozen=True)
class PreprocessSettings:
    """The preprocessing recorded in every feature sidecar."""

    resize_shortest_edge: int = 224
    resample: str = "bicubic"
    crop_size: int = 224
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    method: str = "pil"
    crops: int = 1

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"preprocessing method must be one of {', '.join(METHODS)}, got {self.method!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_mean"] = list(self.image_mean)
        d["image_std"] = list(self.image_std)
        d["implementation"] = {
            "pil": "PIL bicubic per frame (equals transformers.CLIPImageProcessor)",
            "torch": "torch interpolate bicubic antialias on uint8 (within 2/255 of CLIPImageProcessor)",
        }[self.method]
        return d


def resized_shape(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """(new_height, new_width) with the shorter side `size`, as CLIPImageProcessor computes it."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    return (height - crop) // 2, (width - crop) // 2


def _center_crop_hw(img: np.ndarray, crop: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < crop or w < crop:  # cannot happen after resizing the shorter side to >= crop
        raise InputError(f"frame {w}x{h} is smaller than the {crop}x{crop} crop")
    top, left = _crop_offsets(h, w, crop)
    return img[top : top + crop, left : left + crop]


def _check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"expected RGB uint8 frames of shape (H, W, 3), got {frame.dtype} {tuple(frame.shape)}")


def _as_frame_list(frames: Frames) -> list[np.ndarray]:
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4:
            raise InputError(f"expected frames of shape (N, H, W, 3), got {tuple(frames.shape)}")
        return list(frames)
    return [np.asarray(f) for f in frames]


def _pil_resize_crop(frame: np.ndarray, size: int, crop: int) -> np.ndarray:
    from PIL import Image

    _check_frame(frame)
    h, w = frame.shape[:2]
    nh, nw = resized_shape(h, w, size)
    if (nh, nw) != (h, w):
        frame = np.asarray(Image.fromarray(frame).resize((nw, nh), resample=Image.Resampling.BICUBIC))
    return _center_crop_hw(frame, crop)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="clip-resize")
    return _POOL


def resize_crop(frames: Frames, settings: PreprocessSettings = PreprocessSettings()) -> torch.Tensor:
    """Resize (shorter side) and centre-crop RGB uint8 frames: (N, H, W, 3) or a list of (H, W, 3)
    of any sizes -> (N, 3, crop, crop) uint8 tensor on the CPU."""
    frames = _as_frame_list(frames)
    if not frames:
        return torch.empty(0, 3, settings.crop_size, settings.crop_size, dtype=torch.uint8)
    size, crop = settings.resize_shortest_edge, settings.crop_size
    if settings.method == "pil":
        if len(frames) == 1:
            crops = [_pil_resize_crop(frames[0], size, crop)]
        else:
            crops = list(_pool().map(lambda f: _pil_resize_crop(f, size, crop), frames))
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    # torch: one interpolate call per group of equally sized frames
    out = torch.empty(len(frames), 3, crop, crop, dtype=torch.uint8)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        _check_frame(f)
        groups.setdefault(f.shape[:2], []).append(i)
    for (h, w), idx in groups.items():
        x = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).contiguous()
        nh, nw = resized_shape(h, w, size)
        if (nh, nw) != (h, w):
            x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = _crop_offsets(nh, nw, crop)
        out[idx] = x[:, :, top : top + crop, left : left + crop]
    return out


def normalize(
    crops: torch.Tensor,
    settings: PreprocessSettings = PreprocessSettings(),
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> float pixel values: x / 255, minus mean, divided by std."""
    crops = crops.to(device=device, non_blocking=True) if device is not None else crops
    x = crops.to(torch.float32, copy=True)  # the in-place steps below never touch `crops`
    mean = torch.tensor(settings.image_mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(settings.image_std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x.mul_(settings.rescale_factor).sub_(mean).div_(std)
    return x.to(dtype)


def preprocess(
    frames: Frames,
    settings: PreprocessSettings = PreprocessSettings(),
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """RGB uint8 frames -> (N, 3, 224, 224) float32 CLIP pixel values (see the module docstring)."""
    return normalize(resize_crop(frames, settings), settings, device=device)
