"""Draw per-frame anomaly scores and class probabilities onto a video.

Every frame given is written (same frame count) with: the time and the anomaly score, the three
most likely abnormal classes with their probabilities while the score is at or above the
threshold, and a border that is red then and blue otherwise. The text panel's font is sized to
the frame, so the panel covers a bounded part of it (`PANEL_WIDTH`, `PANEL_HEIGHT`). Output: mp4, H.264 (libx264; MPEG-4 part 2 if libx264 is
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


# The text panel may take at most these parts of the frame's width and height (with the three
# class lines of an alarm); its font shrinks to fit, down to a smallest readable size.
PANEL_WIDTH, PANEL_HEIGHT, SMALLEST_FONT = 0.45, 0.36, 7


def clock(seconds: float | None, frame: int | None = None) -> str:
    """`m:ss.s` (`h:mm:ss.s` past an hour); `#frame` when the time is unknown."""
    if seconds is None:
        return f"#{frame if frame is not None else 0}"
    tenths = int(round(max(0.0, seconds) * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    text = f"{m:02d}:{rest // 10:02d}.{rest % 10}" if h else f"{m}:{rest // 10:02d}.{rest % 10}"
    return f"{h}:{text}" if h else text


def _panel_lines(time_text: str, score: float, alarm: bool, top: list[tuple[str, float]]) -> list[str]:
    lines = [f"{time_text}  {score:.3f}"]
    if alarm:
        lines += [f"{name} {p:.2f}" for name, p in top]
    return lines


def _text_size(draw, lines: list[str], font) -> tuple[int, int, int]:
    """(width, height, line height) of a block of lines."""
    boxes = [draw.textbbox((0, 0), t, font=font) for t in lines]
    line_h = max(b[3] - b[1] for b in boxes) + max(2, getattr(font, "size", 10) // 5)
    return max(b[2] - b[0] for b in boxes), line_h * len(lines), line_h


def panel_font(height: int, width: int, class_names: Sequence[str], normal_id: int):
    """The largest font (from height / 24 down to SMALLEST_FONT) whose fullest panel (the time,
    the score and three class lines with the longest names) fits the panel budget."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    names = sorted((class_names[i] for i in abnormal_ids(len(class_names), normal_id)), key=len, reverse=True)
    worst = _panel_lines("0:00:00.0", 1.0, True, [(n, 1.0) for n in (names[:3] or ["-"])])
    size = max(SMALLEST_FONT, height // 24)
    while True:
        font = _font(size)
        w, h, _ = _text_size(draw, worst, font)
        if size <= SMALLEST_FONT or (w + 8 <= PANEL_WIDTH * width and h + 6 <= PANEL_HEIGHT * height):
            return font
        size -= 1


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
    time_s: float | None = None,
    index: int | None = None,
) -> np.ndarray:
    """One annotated frame: (H, W, 3) uint8 in -> (H', W', 3) uint8 out, H' and W' even.

    Top left: the time (`time_s`, else `#index`) and the score; while the score is at or above
    the threshold also the three most probable abnormal classes. A red border marks an alarm, a
    blue one a normal frame. `font`: from `panel_font` (computed here when not given)."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    img = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(img, "RGBA")
    H, W = img.height, img.width
    bw = border_width(H, W)
    alarm = score >= threshold
    font = font or panel_font(H, W, class_names, normal_id)

    top = sorted(abnormal_ids(len(class_names), normal_id), key=lambda i: -float(probs[i]))[:3]
    lines = _panel_lines(clock(time_s, index), score, alarm, [(class_names[i], float(probs[i])) for i in top])
    text_w, text_h, line_h = _text_size(draw, lines, font)
    x, y = bw + 3, bw + 3
    draw.rectangle([x - 2, y - 2, x + text_w + 2, y + text_h], fill=(0, 0, 0, 150))
    for k, t in enumerate(lines):
        draw.text((x, y + k * line_h), t, font=font, fill=(255, 110, 110) if k == 0 and alarm else (255, 255, 255))
    draw.rectangle([0, 0, W - 1, H - 1], outline=RED if alarm else BLUE, width=bw)
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

    def add(self, frame: np.ndarray, score: float, probs: np.ndarray, time_s: float | None = None) -> None:
        """Append one frame; `time_s` (seconds) is shown, else the frame's number."""
        import av

        if self._font is None:  # the frame size is known from the first frame on
            h, w = frame.shape[:2]
            self._font = panel_font(h + h % 2, w + w % 2, self.class_names, self.normal_id)
        img = render_frame(frame, float(score), probs, self.class_names, self.normal_id, self.threshold, self._font,
                           time_s=time_s, index=self.count)
        if self._container is None:
            self._container, self._stream = _open_writer(self._file.tmp, img.shape[1], img.shape[0], self.rate)
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts = self.count
        vf.time_base = 1 / self.rate
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        """Finish the file (`ok=True`) or drop it; later calls do nothing."""
        container, self._container = self._container, None
        try:
            if container is not None:
                if ok:
                    for packet in self._stream.encode():
                        container.mux(packet)
                container.close()
                if ok:
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
    times=None,
) -> Path:
    """Write `out_path` (mp4): every frame of `frames` with its time, score and top-3 abnormal classes.

    `scores` (T,) and `probs` (T, C) hold one row per frame (T must equal the frame count);
    `class_names` (C) index `probs`' columns; `normal_id` is left out of the top 3. `fps`: frame
    rate of the written video (default 30); the time shown is `times[i]` (seconds) if given, else
    i / fps, else the frame number. Returns `out_path`.
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
            i = writer.count
            writer.add(frame, scores[i], probs[i], times[i] if times is not None else (i / fps if fps else None))
        if writer.count != total:
            raise InputError(f"the video has {writer.count} frames but {total} scores were given")
        ok = True
    finally:
        writer.close(ok)
    return Path(out_path)
