"""Frame features from video (METHOD §12): decoding, CLIP preprocessing, the image encoder,
the resumable extraction job, and score overlays.

* `decode`: `open_video`, `read_frames` (PyAV files and frame folders)
* `preprocess`: `preprocess`, `resize_crop`, `normalize`, `PreprocessSettings`
* `encoder`: `ClipImageEncoder`, `load_clip_vision`, `save_random_clip_vision`
* `extract`: `run_extract`, `add_extract_arguments`, `main_extract`
* `overlay`: `write_overlay`

Names are loaded on first use, so importing this package (or `extract` for `--help`) does not
import torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VIDEO_EXTENSIONS": "decode",
    "IMAGE_EXTENSIONS": "decode",
    "VideoInfo": "decode",
    "VideoReader": "decode",
    "is_frame_folder": "decode",
    "open_video": "decode",
    "read_frames": "decode",
    "CLIP_MEAN": "preprocess",
    "CLIP_STD": "preprocess",
    "PreprocessSettings": "preprocess",
    "resize_crop": "preprocess",
    "normalize": "preprocess",
    "ClipImageEncoder": "encoder",
    "load_clip_vision": "encoder",
    "save_random_clip_vision": "encoder",
    "build_random_clip_vision": "encoder",
    "run_extract": "extract",
    "add_extract_arguments": "extract",
    "main_extract": "extract",
    "write_overlay": "overlay",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
