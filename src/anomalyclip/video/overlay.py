"""Draw per-frame anomaly scores and class probabilities onto a video.

Every frame given is written (same frame count) with: the anomaly score, the three most likely
abnormal classes with their probabilities, and a border that is red when the score is at or
above the threshold and blue otherwise. Output: mp4, H.264 (libx264; MPEG-4 part 2 if libx264 is
missing), yuv420p, even width and height (an odd frame is padded by one pixel, which the border
covers). The file is written to a temporary name and renamed, so a failure leaves nothing.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from anomalyclip.classes import abnormal_ids
from anomalyclip.errors import InputError
from anomalyclip.fileio import StagedFile
from anomalyclip.video.decode import fps_fraction

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

    top = sorted(abnormal_ids(len(class_names), normal_id), key=lambda i: -float(probs[i]))[:3]
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


class OverlayWriter:
    """Annotated frames appended one at a time to an mp4 (the file appears, complete, on `close`)."""

    def __init__(self, out_path: str | Path, class_names: Sequence[str], normal_id: int, threshold: float, fps: float | None):
        out_path = Path(out_path)
        if out_path.suffix.lower() != ".mp4":
            raise InputError("the overlay is written as mp4; give a path ending in .mp4", out_path)
        if not 0 <= normal_id < len(class_names):
            raise InputError(f"normal_id {normal_id} is not a class index (0..{len(class_names) - 1})")
        self.class_names, self.normal_id, self.threshold = list(class_names), int(normal_id), float(threshold)
        self.rate = fps_fraction(fps or 30.0)
        self._file = StagedFile(out_path)
        self._container = self._stream = self._font = None
        self.count = 0

    def add(self, frame: np.ndarray, score: float, probs: np.ndarray) -> None:
        import av

        if self._font is None:
            self._font = _font(max(10, min(frame.shape[:2]) // 18))
        img = render_frame(frame, float(score), probs, self.class_names, self.normal_id, self.threshold, self._font)
        if self._container is None:
            self._container, self._stream = _open_writer(self._file.tmp, img.shape[1], img.shape[0], self.rate)
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts = self.count
        vf.time_base = 1 / self.rate
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        """Finish the file (`ok=True`) or drop it."""
        try:
            if self._container is not None:
                if ok:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if ok and self._container is not None:
                self._file.commit()
        finally:
            self._file.discard()


def write_overlay(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    scores,
    probs,
    class_names: Sequence[str],
    normal_id: int,
    threshold: float,
    fps: float | None = None,
) -> Path:
    """Write `out_path` (mp4): every frame of `frames` with its score and top-3 abnormal classes.

    `scores` (T,) and `probs` (T, C) hold one row per frame (T must equal the frame count);
    `class_names` (C) index `probs`' columns; `normal_id` is left out of the top 3. `fps`: frame
    rate of the written video (default 30). Returns `out_path`.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != scores.shape[0]:
        raise InputError(f"probs must have shape (T, C) with T = {scores.shape[0]} scores, got {probs.shape}")
    if probs.shape[1] != len(class_names):
        raise InputError(f"probs has {probs.shape[1]} columns but {len(class_names)} class names were given")
    total = scores.shape[0]
    writer = OverlayWriter(out_path, class_names, normal_id, threshold, fps)
    ok = False
    try:
        for frame in frames:
            if writer.count >= total:
                raise InputError(f"the video has more frames than the {total} scores given")
            writer.add(frame, scores[writer.count], probs[writer.count])
        if writer.count != total:
            raise InputError(f"the video has {writer.count} frames but {total} scores were given")
        ok = True
    finally:
        writer.close(ok)
    return Path(out_path)
