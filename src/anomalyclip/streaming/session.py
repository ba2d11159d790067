"""One stream from source to outputs: frames taken from the reader's queue as they arrive, encoded
by the scorer's image tower in micro-batches (`StreamScorer.push_frames`: a batch as soon as
`encode_batch` frames wait or a hop is complete), scored causally; each final score goes to the
JSONL at once, to the event tracker, to the overlay, and is kept for the files written at the
end. Ctrl-C (SIGINT) or SIGTERM ends the loop between two batches, so every output is closed
cleanly."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.events import EventTracker
from anomalyclip.predictor import Prediction
from anomalyclip.streaming.jsonl import JsonlSink
from anomalyclip.streaming.scorer import ScoredFrames, StreamScorer
from anomalyclip.streaming.sources import FrameFeed, SourceFrame

END_OF_SOURCE, INTERRUPTED, SOURCE_ERROR = "end of source", "interrupted", "source error"


class StopOnSignal:
    """While active, SIGINT / SIGTERM set `event` instead of raising; a second one raises
    KeyboardInterrupt. Outside the main thread signals cannot be caught and nothing changes."""

    def __init__(self):
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@dataclass
class StreamResult:
    prediction: Prediction  # every frame scored, in order
    times: np.ndarray | None  # (T,) seconds, when the rate is known
    latency: np.ndarray  # (T,) seconds from a frame's arrival to its score
    events: list[dict[str, Any]]
    dropped: int
    reason: str
    wall_s: float
    forwards: int
    first_score_after: int | None  # frames that had arrived when the first score came out
    error: InputError | None = None  # what ended the source, when it failed mid-stream

    def latency_summary(self) -> dict[str, float] | None:
        if not len(self.latency):
            return None
        return {"median": float(np.median(self.latency)), "p95": float(np.quantile(self.latency, 0.95))}


class StreamSession:
    """`scorer`: a `StreamScorer` with its image encoder; `tracker`, `sink`, optional `overlay`
    (`OverlayWriter`). `fps`: the stream's rate (None: unknown). `on_frames(n)` after each
    batch of final scores."""

    def __init__(self, scorer: StreamScorer, tracker: EventTracker, sink: JsonlSink | None = None,
                 overlay=None, fps: float | None = None, on_frames=None):
        if scorer.encoder is None:
            raise ValueError("a stream session scores frames: give the StreamScorer an encoder")
        self.scorer, self.tracker, self.sink, self.overlay = scorer, tracker, sink, overlay
        self.fps, self.on_frames = fps, on_frames
        self._waiting: deque[SourceFrame] = deque()  # frames received, not yet scored
        self._arrived = 0
        self._first_after: int | None = None
        self._parts: list[tuple[ScoredFrames, list[float | None], np.ndarray]] = []
        self._events: list[dict[str, Any]] = []

    def _time(self, frame: SourceFrame, index: int) -> float | None:
        if frame.time_s is not None:
            return frame.time_s
        return index / self.fps if self.fps else None

    def _emit(self, out: ScoredFrames) -> None:
        if out.num_frames == 0:
            return
        now = time.perf_counter()
        if self._first_after is None:
            self._first_after = self._arrived
        frames = [self._waiting.popleft() for _ in range(out.num_frames)]
        times = [self._time(f, out.start + i) for i, f in enumerate(frames)]
        latency = np.array([now - f.arrival for f in frames])
        if self.sink is not None:
            self.sink.frames(out.start, out.scores, out.probs, out.pred, times)
        closed = self.tracker.push(out.scores, out.probs, times if self.fps else None)
        self._closed(closed)
        if self.overlay is not None:
            for i, f in enumerate(frames):
                self.overlay.add(f.image, out.scores[i], out.probs[i], times[i])
        self._parts.append((out, times, latency))
        if self.on_frames is not None:
            self.on_frames(out.num_frames)

    def _closed(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._events += events
            if self.sink is not None:
                self.sink.events(events)

    def run(self, feed: FrameFeed, stop: threading.Event | None = None) -> StreamResult:
        """Until the source ends, fails (an `InputError` from the reader) or `stop` is set; then
        the frames still waiting are scored."""
        started = time.perf_counter()
        reason, error = END_OF_SOURCE, None
        while True:
            if stop is not None and stop.is_set():
                reason = INTERRUPTED
                break
            try:
                got = feed.take(self.scorer.encode_batch)
            except InputError as e:  # a camera gone, a corrupt packet: keep what was scored
                reason, error = SOURCE_ERROR, e
                break
            if not got:
                if feed.finished:
                    break
                continue
            self._waiting.extend(got)
            self._arrived += len(got)
            self._emit(self.scorer.push_frames([f.image for f in got]))
        feed.close()
        self._emit(self.scorer.flush())
        self._closed(self.tracker.finish())
        result = self._result(reason, feed.dropped, time.perf_counter() - started)
        result.error = error
        return result

    def _result(self, reason: str, dropped: int, wall_s: float) -> StreamResult:
        parts = self._parts
        c = self.scorer.predictor.num_classes
        scores = np.concatenate([p.scores for p, _, _ in parts]) if parts else np.zeros(0, np.float32)
        probs = np.concatenate([p.probs for p, _, _ in parts]) if parts else np.zeros((0, c), np.float32)
        pred = np.concatenate([p.pred for p, _, _ in parts]) if parts else np.zeros(0, np.int64)
        times = [t for _, ts, _ in parts for t in ts]
        latency = np.concatenate([lat for _, _, lat in parts]) if parts else np.zeros(0)
        known = bool(times) and all(t is not None for t in times)
        return StreamResult(
            Prediction(scores, probs, pred, self.scorer.threshold),
            np.asarray(times, dtype=np.float64) if known and self.fps else None,
            latency, self._events, dropped, reason, wall_s, self.scorer.forwards, self._first_after,
        )
