"""Read the frames of a video file or live source (PyAV) or of a frame folder (PIL) as RGB
uint8 arrays.

Three inputs are accepted:

* a video file (`.mp4 .avi .mkv .mov .webm`, anything FFmpeg opens): every decoded frame by
  default, or frames sampled by timestamp to a target rate;
* a live source: a URL (`rtsp://`, `http://`, `udp://`, ...) or a capture device (`/dev/video0`,
  opened with FFmpeg's `v4l2` input), handed to `av.open` as written, with the FFmpeg options
  given (`container_arguments` shows exactly what is passed);
* a frame folder, the layout of the authors' pipeline: one folder per video holding
  `000000.jpg, 000001.jpg, ...` (any image files whose names end in a number; read in numeric
  order). A folder has no timestamps, so its rate is unknown (`None`) unless given.

Every problem with the input (missing, empty, unreadable, corrupt, no video stream, no frames)
raises `InputError` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from anomalyclip.errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

_TRAILING_NUMBER = re.compile(r"(\d+)$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Seconds a network source may take to open, and to deliver the next packet, before it is
# reported as unreachable (PyAV's `timeout`).
OPEN_TIMEOUT_S, READ_TIMEOUT_S = 15.0, 15.0
# Tolerance when comparing a frame's timestamp with the next sampling instant (seconds).
_TIME_EPS = 1e-6


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video before decoding it.

    `fps` is the rate of the frames the reader yields: the target rate when sampling, else the
    native rate. `native_fps` is the container's average rate (None for a frame folder unless
    given). `declared_frames` is the container's frame count claim (often absent or inexact);
    the real count is `VideoReader.frames_read` (`frames_decoded` before sampling) after iterating.
    """

    path: Path | str  # a URL stays a string
    kind: str  # "file", "frames" or "live"
    native_fps: float | None
    fps: float | None
    declared_frames: int | None
    width: int | None
    height: int | None


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and bool(_URL.match(source))


def is_device(source: str | Path) -> bool:
    """A capture device: a V4L2 node such as /dev/video0 (need not exist to be named one)."""
    return str(source).startswith("/dev/video")


def is_live(source: str | Path) -> bool:
    return is_url(source) or is_device(source)


def container_arguments(source: str | Path, format: str | None = None, options: dict[str, str] | None = None) -> dict:
    """The keyword arguments `av.open` gets for `source`: the source itself unchanged, the
    FFmpeg input format (`v4l2` for a /dev/video device unless another is named), the FFmpeg
    options as given, and a timeout for network sources."""
    args: dict = {"file": str(source), "mode": "r"}
    if format is None and is_device(source):
        format = "v4l2"
    if format is not None:
        args["format"] = format
    if options:
        args["options"] = {str(k): str(v) for k, v in options.items()}
    if is_url(source):
        args["timeout"] = (OPEN_TIMEOUT_S, READ_TIMEOUT_S)
    return args


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_frame_folder(path: str | Path) -> bool:
    """A directory holding at least one image file whose name ends in a number."""
    path = Path(path)
    if not path.is_dir():
        return False
    for child in path.iterdir():
        if child.is_file() and _is_image(child) and _TRAILING_NUMBER.search(child.stem):
            return True
    return False


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in numeric order of the number ending their names."""
    folder = Path(folder)
    numbered: dict[int, Path] = {}
    for child in folder.iterdir():
        if not (child.is_file() and _is_image(child)):
            continue
        m = _TRAILING_NUMBER.search(child.stem)
        if m is None:
            raise InputError(
                "frame folder holds an image whose name does not end in a frame number "
                f"(expected names like 000000.jpg): {child.name!r}",
                folder,
            )
        idx = int(m.group(1))
        if idx in numbered:
            raise InputError(f"frame number {idx} appears twice: {numbered[idx].name!r} and {child.name!r}", folder)
        numbered[idx] = child
    if not numbered:
        raise InputError("frame folder holds no image files (expected 000000.jpg, 000001.jpg, ...)", folder)
    return [numbered[i] for i in sorted(numbered)]


def parse_fps(value, what: str = "--fps", allow_native: bool = False) -> float | None:
    """`None` (and "native" where allowed) -> None, every frame; a positive number -> that rate."""
    if value is None or (allow_native and isinstance(value, str) and value.strip().lower() == "native"):
        return None
    expected = "'native' or a positive number" if allow_native else "a positive number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be {expected}, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"{what} must be {expected}, got {value!r}")
    return number


class _Sampler:
    """Keep the first frame at or after each instant k / fps (k = 0, 1, ...), times relative to
    the first frame. No frame is emitted twice, so a target above the native rate yields every
    frame."""

    def __init__(self, fps: float | None):
        self.fps = fps
        self.t0: float | None = None
        self.k = 0

    def keep(self, t: float) -> bool:
        if self.fps is None:
            return True
        if self.t0 is None:
            self.t0 = t
        rel = t - self.t0
        if rel + _TIME_EPS < self.k / self.fps:
            return False
        self.k = math.floor(rel * self.fps + _TIME_EPS) + 1
        return True


class VideoReader:
    """Iterate the frames of one video file or frame folder.

    >>> with open_video("Abuse/Abuse028_x264.mp4") as r:       # doctest: +SKIP
    ...     for batch in r.batches(64):                        # (B, H, W, 3) uint8
    ...         ...
    ...     r.frames_read, r.info.fps
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        frames_fps: float | None = None,
        format: str | None = None,
        options: dict[str, str] | None = None,
    ):
        """`format` / `options`: FFmpeg's input format and options, for live sources above all
        (`{"rtsp_transport": "tcp"}`, `{"video_size": "640x480"}`)."""
        self.live = is_live(path)
        self.path = str(path) if is_url(path) else Path(path)
        self.target_fps = parse_fps(fps, "target fps")
        frames_fps = parse_fps(frames_fps, "frame-folder fps")
        self.frames_read = 0
        self.frames_decoded = 0  # before sampling: compared with `info.declared_frames`
        self._container = None
        self._frame_files: list[Path] | None = None
        self._open_args = container_arguments(path, format, options)
        if self.live or format is not None:
            self.info = self._open_container()
        elif self.path.is_dir():
            self._frame_files = list_frame_files(self.path)
            if self.target_fps is not None and frames_fps is None:
                raise InputError(
                    "cannot sample a frame folder to a target fps: its own frame rate is unknown "
                    "(extract it at its native rate, or give the folder's fps)",
                    self.path,
                )
            first = self._read_image(self._frame_files[0])
            self.info = VideoInfo(
                path=self.path,
                kind="frames",
                native_fps=frames_fps,
                fps=self.target_fps if self.target_fps is not None else frames_fps,
                declared_frames=len(self._frame_files),
                width=first.shape[1],
                height=first.shape[0],
            )
        else:
            self.info = self._open_container()

    # ------------------------------------------------------------------ video files
    def _open_container(self) -> VideoInfo:
        import av

        if not self.live:
            if not self.path.exists():
                raise InputError("video not found", self.path)
            if not self.path.is_file():
                raise InputError("not a video file or frame folder", self.path)
            if self.path.stat().st_size == 0:
                raise InputError("the video file is empty (0 bytes)", self.path)
        try:
            container = av.open(**self._open_args)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            what = "cannot open the live source" if self.live else "cannot open the video (unreadable or corrupt)"
            raise InputError(f"{what}: {_av_message(e)}", self.path) from None
        if not container.streams.video:
            container.close()
            raise InputError("the file holds no video stream", self.path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        native = float(rate) if rate else None
        if native is not None and (not math.isfinite(native) or native <= 0):
            native = None
        self._container = container
        self._stream = stream
        self._native_fps = native
        return VideoInfo(
            path=self.path,
            kind="live" if self.live else "file",
            native_fps=native,
            fps=self.target_fps if self.target_fps is not None else native,
            declared_frames=int(stream.frames) if stream.frames else None,
            width=stream.codec_context.width or None,
            height=stream.codec_context.height or None,
        )

    def _file_frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        import av
        import av.video.reformatter

        sampler = _Sampler(self.target_fps)
        reformatter = av.video.reformatter.VideoReformatter()
        decoded = 0
        t0: float | None = None
        try:
            for frame in self._container.decode(self._stream):
                if frame.time is not None:
                    t = float(frame.time)
                elif self._native_fps:
                    t = decoded / self._native_fps
                else:
                    t = None
                if sampler.fps is not None:
                    if t is None:
                        raise InputError("frames carry no timestamps and the frame rate is unknown; "
                                         "cannot sample to a target fps", self.path)
                    keep = sampler.keep(t)
                else:
                    keep = True
                decoded += 1
                self.frames_decoded = decoded
                if keep:
                    # same pixels as frame.to_ndarray(format="rgb24"), several times faster: the
                    # reformatter keeps its conversion context from frame to frame
                    arr = reformatter.reformat(frame, format="rgb24").to_ndarray()
                    self.frames_read += 1
                    if t is not None and t0 is None:
                        t0 = t
                    yield (None if t is None else t - t0), arr
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise InputError(
                f"decoding failed after {decoded} frames (corrupt video?): {_av_message(e)}", self.path
            ) from None
        if self.frames_read == 0:
            raise InputError("no frames could be decoded from the video", self.path)

    # ------------------------------------------------------------------ frame folders
    def _read_image(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise InputError(f"cannot read frame image: {e}", path) from None

    def _folder_frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        sampler = _Sampler(self.target_fps)
        native = self.info.native_fps
        for i, p in enumerate(self._frame_files):
            self.frames_decoded = i + 1
            if sampler.fps is not None and not sampler.keep(i / native):
                continue
            arr = self._read_image(p)
            self.frames_read += 1
            yield (i / native if native else None), arr

    # ------------------------------------------------------------------ public
    def timed_frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        """Yield `(time, frame)`: seconds since the first frame (None where neither timestamps
        nor a rate are known) and the (H, W, 3) uint8 RGB frame. Call once per reader."""
        if self._frame_files is not None:
            yield from self._folder_frames()
        else:
            yield from self._file_frames()

    def frames(self) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 RGB frames. Call once per reader."""
        for _, frame in self.timed_frames():
            yield frame

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield (B, H, W, 3) uint8 batches of at most `batch_size` frames (a batch is cut early
        if the frame size changes mid-video)."""
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        buf: list[np.ndarray] = []
        for frame in self.frames():
            if buf and (len(buf) >= batch_size or frame.shape != buf[0].shape):
                yield np.stack(buf)
                buf = []
            buf.append(frame)
        if buf:
            yield np.stack(buf)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _av_message(e: BaseException) -> str:
    # PyAV's str() adds an errno and the file name; the InputError names the file already.
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return str(text).replace("\n", " ")


def open_video(
    path: str | Path,
    fps: float | None = None,
    frames_fps: float | None = None,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> VideoReader:
    """Open a video file, live source or frame folder. `fps=None`: every frame (native rate); a
    number: the first frame at or after each instant k/fps. `frames_fps`: the rate of a frame
    folder, if known. `format`, `options`: FFmpeg's input format and options."""
    return VideoReader(path, fps=fps, frames_fps=frames_fps, format=format, options=options)


def read_frames(path: str | Path, fps: float | None = None, frames_fps: float | None = None) -> tuple[np.ndarray, VideoInfo]:
    """All frames at once as (T, H, W, 3) uint8 (small videos and tests), with the video's info."""
    with open_video(path, fps=fps, frames_fps=frames_fps) as reader:
        frames = list(reader.frames())
        return np.stack(frames), reader.info


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as an exact fraction (29.97 -> 30000/1001) for writing video streams."""
    return Fraction(fps).limit_denominator(1001)
