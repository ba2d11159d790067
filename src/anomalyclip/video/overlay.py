"""Draw per-frame anomaly scores and class probabilities onto a video.

Every input frame is written (same frame count) with: the anomaly score, the three most likely
abnormal classes with their probabilities, and a border that is red when the score is at or
above the threshold and blue otherwise. Output: mp4, H.264 (libx264; MPEG-4 part 2 if libx264 is
missing), yuv420p, even width and height (an odd frame is padded by one pixel, which the border
covers). The file is written to a temporary name and renamed, so a failure leaves nothing.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.fileio import atomic_path
from anomalyclip.video.decode import fps_fraction, open_video

RED = (230, 30, 30)
BLUE = (30, 90, 230)


def border_width(height: int, width: int) -> int:
    return max(4, min(height, width) // 40)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _open_writer(path: Path, width: int, height: int, rate: Fraction):
    import av

    container = av.open(str(path), mode="w", format="mp4")
    last: Exception | None = None
    for codec in ("libx264", "mpeg4"):
        try:
            stream = container.add_stream(codec, rate=rate)
        except (av.error.FFmpegError, ValueError, KeyError) as e:  # codec not built in
            last = e
            continue
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        return container, stream
    container.close()
    raise RuntimeError(f"no H.264 or MPEG-4 encoder in this FFmpeg build: {last}")


def render_frame(
    frame: np.ndarray,
    score: float,
    probs: np.ndarray,
    class_names: Sequence[str],
    normal_id: int,
    threshold: float,
    font=None,
) -> np.ndarray:
    """One annotated frame: (H, W, 3) uint8 in -> (H', W', 3) uint8 out, H' and W' even."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    img = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(img, "RGBA")
    H, W = img.height, img.width
    bw = border_width(H, W)
    alarm = score >= threshold
    colour = RED if alarm else BLUE
    font = font or _font(max(10, min(H, W) // 18))

    abnormal = [i for i in range(len(class_names)) if i != normal_id]
    top = sorted(abnormal, key=lambda i: -float(probs[i]))[:3]
    lines = [f"anomaly {score:.3f}" + ("  ALERT" if alarm else "")]
    lines += [f"{class_names[i]} {float(probs[i]):.2f}" for i in top]
    x, y = bw + 4, bw + 4
    boxes = [draw.textbbox((0, 0), t, font=font) for t in lines]
    line_h = max(b[3] - b[1] for b in boxes) + 3
    text_w = max(b[2] - b[0] for b in boxes)
    draw.rectangle([x - 3, y - 3, x + text_w + 3, y + line_h * len(lines) + 1], fill=(0, 0, 0, 150))
    for k, t in enumerate(lines):
        draw.text((x, y + k * line_h), t, font=font, fill=(255, 110, 110) if k == 0 and alarm else (255, 255, 255))
    draw.rectangle([0, 0, W - 1, H - 1], outline=colour, width=bw)
    return np.asarray(img.convert("RGB"))


def write_overlay(
    video_path: str | Path,
    out_path: str | Path,
    scores,
    probs,
    class_names: Sequence[str],
    normal_id: int,
    threshold: float,
    fps: float | None = None,
) -> Path:
    """Write `out_path` (mp4): every frame of `video_path` with its score and top-3 abnormal classes.

    `scores` (T,) and `probs` (T, C) hold one row per decoded frame of the video (T must equal the
    frame count); `class_names` (C) index `probs`' columns; `normal_id` is left out of the top 3.
    `fps`: frame rate of the written video (default: the input's, else 30). Returns `out_path`.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != scores.shape[0]:
        raise InputError(f"probs must have shape (T, C) with T = {scores.shape[0]} scores, got {probs.shape}")
    if probs.shape[1] != len(class_names):
        raise InputError(f"probs has {probs.shape[1]} columns but {len(class_names)} class names were given")
    if not 0 <= normal_id < len(class_names):
        raise InputError(f"normal_id {normal_id} is not a class index (0..{len(class_names) - 1})")
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        raise InputError("the overlay is written as mp4; give a path ending in .mp4", out_path)
    total = scores.shape[0]
    import av

    with open_video(video_path) as reader, atomic_path(out_path) as tmp:
        rate = fps_fraction(fps if fps else (reader.info.native_fps or 30.0))
        container = stream = None
        font = None
        n = 0
        try:
            for frame in reader.frames():
                if n >= total:
                    raise InputError(f"the video has more frames than the {total} scores given", video_path)
                if font is None:
                    font = _font(max(10, min(frame.shape[:2]) // 18))
                img = render_frame(frame, scores[n], probs[n], class_names, normal_id, threshold, font)
                if container is None:
                    container, stream = _open_writer(tmp, img.shape[1], img.shape[0], rate)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = n
                vf.time_base = 1 / rate
                for packet in stream.encode(vf):
                    container.mux(packet)
                n += 1
            if n != total:
                raise InputError(f"the video has {n} frames but {total} scores were given", video_path)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            if container is not None:
                container.close()
    return out_path
