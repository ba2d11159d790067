"""Causal scoring of a video that is still coming, frame by frame or in chunks.

>>> scorer = StreamScorer(Predictor.from_checkpoint("best.ckpt"), hop=16)   # doctest: +SKIP
>>> for feats in camera_features():                  # (N, 512) or (512,) per call
...     out = scorer.push(feats)                     # the frames whose scores became final
...     out.start, out.scores, out.probs, out.pred   # frames out.start .. out.start + N - 1
>>> scorer.flush()                                   # the frames still waiting, at the end

The window is the model's own test mode (`Predictor.predict`, i.e. `AnomalyCLIP.score_videos`)
on the most recent `window` = n*l = 512 frames; while fewer have arrived it is the frames so
far, padded by wrap-around exactly as the offline mode pads a short video. Every `hop` frames
the window is scored once and the `hop` newest frames take their scores from it: a frame's
score depends on the frames up to the end of its hop (at most hop - 1 after it, all arrived
when the score is returned), never on one that arrives later, and it never changes. `hop=1` is
strictly causal per frame at one forward per frame. A video of at most `window` frames pushed
whole and flushed is scored by one window holding all of it: the offline scores, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from anomalyclip.errors import InputError
from anomalyclip.predictor import Prediction, Predictor, check_threshold


@dataclass
class ScoredFrames(Prediction):
    """A `Prediction` of frames `start .. start + num_frames - 1` of the stream."""

    start: int = 0

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.num_frames)


def _concat(parts: list[ScoredFrames], start: int, num_classes: int, threshold: float) -> ScoredFrames:
    if not parts:
        empty = np.zeros(0, dtype=np.float32)
        return ScoredFrames(empty, np.zeros((0, num_classes), np.float32), np.zeros(0, np.int64), threshold, start)
    if len(parts) == 1:
        return parts[0]
    return ScoredFrames(
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.probs for p in parts]),
        np.concatenate([p.pred for p in parts]),
        threshold,
        parts[0].start,
    )


class StreamScorer:
    """Features (or frames, with `encoder`) in, final scores out; see the module docstring.

    `encoder`: a `ClipImageEncoder` for `push_frames`; frames are held until `encode_batch`
    of them are waiting or the next hop is complete, then encoded in one batch."""

    def __init__(
        self,
        predictor: Predictor,
        hop: int = 16,
        window: int | None = None,
        threshold: float | None = None,
        encoder=None,
        encode_batch: int | None = None,
    ):
        self.predictor = predictor
        self.window = int(window or predictor.frames_per_item)
        if not 1 <= int(hop) <= self.window:
            raise InputError(f"--hop must be between 1 and the window of {self.window} frames, got {hop}")
        self.hop = int(hop)
        self.threshold = predictor.threshold if threshold is None else check_threshold(threshold)
        self.encoder = encoder
        if encoder is not None and encoder.embed_dim != predictor.feature_dim:
            raise InputError(f"the image encoder makes {encoder.embed_dim}-d features, the model expects {predictor.feature_dim}-d")
        self.encode_batch = int(encode_batch or (encoder.batch_size if encoder is not None else 1))
        self._recent = torch.zeros(0, predictor.feature_dim, device=predictor.device)  # (<= window, D): the newest frames
        self._pending = 0  # frames pushed but not yet scored
        self._frames: list[np.ndarray] = []  # frames waiting for the encoder
        self.frames_seen = 0  # frames pushed (features) so far
        self.frames_scored = 0
        self.forwards = 0

    @property
    def pending(self) -> int:
        """Frames received whose scores are not final yet (held frames included)."""
        return self._pending + len(self._frames)

    # -- features ---------------------------------------------------------------------------
    def _features(self, features) -> torch.Tensor:
        if isinstance(features, (np.ndarray, torch.Tensor)):
            if features.ndim == 1:
                features = features[None]  # (D,) -> (1, D)
            elif features.ndim == 2 and features.shape == (0, self.predictor.feature_dim):
                return torch.zeros(0, self.predictor.feature_dim)  # nothing new: nothing to check
        return self.predictor._as_tensor(features)

    def push(self, features) -> ScoredFrames:
        """Features of the next frames, `(N, D)` or one `(D,)` -> the scores that became final."""
        x = self._features(features).to(self._recent.device)
        parts: list[ScoredFrames] = []
        i = 0
        while i < x.shape[0]:
            take = min(x.shape[0] - i, self.hop - self._pending)
            self._recent = torch.cat([self._recent, x[i : i + take]])[-self.window :]  # (<= window, D)
            self._pending += take
            self.frames_seen += take
            i += take
            if self._pending == self.hop:
                parts.append(self._score())
        return _concat(parts, self.frames_scored, self.predictor.num_classes, self.threshold)

    def _score(self) -> ScoredFrames:
        """Score the window; its `pending` newest frames become final."""
        out = self.predictor.predict(self._recent, self.threshold)
        self.forwards += 1
        n, start = self._pending, self.frames_scored
        self._pending = 0
        self.frames_scored += n
        return ScoredFrames(out.scores[-n:], out.probs[-n:], out.pred[-n:], self.threshold, start)

    # -- frames -----------------------------------------------------------------------------
    def push_frames(self, frames) -> ScoredFrames:
        """RGB uint8 frames `(N, H, W, 3)`, a list of `(H, W, 3)`, or one `(H, W, 3)` -> the
        scores that became final."""
        if self.encoder is None:
            raise InputError("push_frames needs an image encoder (StreamScorer(..., encoder=ClipImageEncoder(...)))")
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = frames[None]  # (H, W, 3) -> (1, H, W, 3)
        parts: list[ScoredFrames] = []
        for frame in frames:
            self._frames.append(np.asarray(frame))
            to_hop = self.hop - self._pending
            if len(self._frames) >= min(self.encode_batch, to_hop):
                parts.append(self._encode_held())
        return _concat(parts, self.frames_scored, self.predictor.num_classes, self.threshold)

    def _encode_held(self) -> ScoredFrames:
        held, self._frames = self._frames, []
        return self.push(self.encoder.encode(held))

    # -- the end ----------------------------------------------------------------------------
    def flush(self) -> ScoredFrames:
        """Score every frame still waiting (with a window ending at the newest frame). More
        frames may follow; their hops count from here."""
        parts = [self._encode_held()] if self._frames else []
        if self._pending:
            parts.append(self._score())
        return _concat(parts, self.frames_scored, self.predictor.num_classes, self.threshold)
