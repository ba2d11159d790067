"""One video through the image tower: decode -> resize and crop -> encode, the three stages
overlapping (two background threads), the features returned in memory."""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from anomalyclip.video.decode import VideoInfo, open_video
from anomalyclip.video.frames import FrameStore


@dataclass
class EncodedVideo:
    features: np.ndarray  # (T, D) float32, one row per decoded frame
    info: VideoInfo
    num_frames: int
    frames_decoded: int | None = None  # every frame decoded, before sampling to a target fps


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Produce `items` in a background thread, `depth` ahead. Exceptions reach the consumer;
    closing the generator stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((False, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="video-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def encode_video(
    source: str | Path,
    encoder,
    fps: float | None = None,
    frames_fps: float | None = None,
    on_frames: Callable[[int], None] | None = None,
    keep: FrameStore | None = None,
) -> EncodedVideo:
    """Features of every decoded frame of `source` (a file or a frame folder) by `encoder` (a
    `ClipImageEncoder`). `fps`: sample to that rate; `frames_fps`: a frame folder's own rate;
    `on_frames(n)` after each encoded batch; `keep` also keeps the decoded frames."""
    feats: list[np.ndarray] = []
    with open_video(source, fps=fps, frames_fps=frames_fps) as reader:
        batches = reader.batches(encoder.batch_size)
        if keep is not None:
            batches = keep.tee(batches)
        # the closings stop both threads, outer first, before the reader closes
        with contextlib.closing(prefetch(batches, depth=1)) as decoded, contextlib.closing(
            prefetch(encoder.prepare(b) for b in decoded)
        ) as prepared:
            for crops in prepared:
                feats.append(encoder.embed(crops))
                if on_frames is not None:
                    on_frames(int(crops.shape[0]))
        num_frames, decoded = reader.frames_read, reader.frames_decoded
        info = reader.info
    features = np.concatenate(feats).astype(np.float32, copy=False)
    if features.shape != (num_frames, encoder.embed_dim):
        raise RuntimeError(f"{source}: got features {features.shape} for {num_frames} frames")
    return EncodedVideo(features, info, num_frames, decoded)
