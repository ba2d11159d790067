"""Where streamed frames come from: any source PyAV opens (a file, an `rtsp://` / `http://`
URL, a V4L2 device), read in a background thread into a bounded queue, each frame stamped with
its arrival time.

A live source does not wait for a slow consumer: when the queue is full its oldest frame is
dropped (and counted), so the delay from arrival to score stays bounded. A file is read as
fast as it is consumed, or at its own pace with `realtime=True` (each frame released at its
timestamp, as a camera would deliver it), and then treated as live.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from anomalyclip.video.decode import VideoInfo, open_video


@dataclass
class SourceFrame:
    time_s: float | None  # seconds since the first frame, from the source's timestamps
    arrival: float  # time.perf_counter() when the frame was decoded (had arrived)
    image: np.ndarray  # (H, W, 3) uint8 RGB


def paced(
    frames: Iterable[tuple[float | None, np.ndarray]],
    fps: float | None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[float | None, np.ndarray]]:
    """`(time, frame)` pairs released at their times (frame k / fps where a time is missing);
    without any time or rate they pass at once."""
    start = None
    for k, (t, frame) in enumerate(frames):
        due = t if t is not None else (k / fps if fps else None)
        if due is not None:
            if start is None:
                start = clock() - due
            wait = start + due - clock()
            if wait > 0:
                sleep(wait)
        yield t, frame


class VideoSource:
    """One PyAV source, opened at once (so a bad path or URL fails before any work) and decoded
    by whoever iterates `frames()`."""

    def __init__(
        self,
        source: str | Path,
        fps: float | None = None,
        realtime: bool = False,
        format: str | None = None,
        options: dict[str, str] | None = None,
    ):
        self.reader = open_video(source, fps=fps, format=format, options=options)
        self.info: VideoInfo = self.reader.info
        self.realtime = bool(realtime)
        self.live = self.reader.live or self.realtime

    @property
    def fps(self) -> float | None:
        """The rate of the frames delivered: the target rate, else the source's own."""
        return self.info.fps

    def frames(self) -> Iterator[SourceFrame]:
        try:
            timed = self.reader.timed_frames()
            if self.realtime:
                timed = paced(timed, self.fps)
            for t, image in timed:
                yield SourceFrame(t, time.perf_counter(), image)
        finally:
            self.reader.close()


class FrameFeed:
    """`frames` read by a background thread into a queue of `capacity` frames. `drop_oldest`:
    a full queue drops its oldest frame instead of making the reader wait (live sources).
    Errors of the reader reach the consumer on `take`."""

    def __init__(self, frames: Iterable[SourceFrame], capacity: int, drop_oldest: bool):
        self.capacity, self.drop_oldest = max(1, int(capacity)), bool(drop_oldest)
        self.dropped = 0
        self._items: deque[SourceFrame] = deque()
        self._cond = threading.Condition()
        self._done = self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(frames,), name="stream-reader", daemon=True)
        self._thread.start()

    def _work(self, frames: Iterable[SourceFrame]) -> None:
        it = iter(frames)
        try:
            for frame in it:
                with self._cond:
                    while len(self._items) >= self.capacity and not self._stop:
                        if self.drop_oldest:
                            self._items.popleft()
                            self.dropped += 1
                            break
                        self._cond.wait(0.1)
                    if self._stop:
                        return
                    self._items.append(frame)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._error = e
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def take(self, max_frames: int, timeout: float = 0.1) -> list[SourceFrame]:
        """Up to `max_frames` frames: waits up to `timeout` s for the first, then takes what is
        already there. Empty when none came in time or the source has ended (`finished`)."""
        with self._cond:
            if not self._items and not self._done:
                self._cond.wait_for(lambda: self._items or self._done, timeout)
            out = [self._items.popleft() for _ in range(min(max_frames, len(self._items)))]
            self._cond.notify_all()
            if not out and self._done and self._error is not None:
                error, self._error = self._error, None
                raise error
            return out

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._done and not self._items and self._error is None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader; a source stuck in a read is left to its own timeout (daemon thread)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
