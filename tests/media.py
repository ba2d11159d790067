"""Test videos made with PyAV, independent of the package's own decoding."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_video(path: Path, frames: int, width: int, height: int, fps: int = 25, seed: int = 0,
               container_options: dict[str, str] | None = None) -> Path:
    """An H.264 mp4 of moving coloured shapes over a gradient. `container_options`: FFmpeg muxer
    options, e.g. `{"movflags": "faststart"}` (the index first, so a truncated copy still opens)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)
    colours = rng.integers(0, 256, size=(3, 3))
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = base.copy()
            for k, col in enumerate(colours):
                cx = int((i * (3 + 2 * k) + 40 * k) % width)
                cy = int((height / 2) + (height / 3) * math.sin(i / (7 + k)))
                img[max(0, cy - 15 - 5 * k) : cy + 15 + 5 * k, max(0, cx - 20) : cx + 20] = col
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def decode_all(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        return np.stack(frames), float(st.average_rate)


def truncate(path: Path, fraction: float) -> Path:
    """Cut the file to `fraction` of its bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
