"""Wall time of `fine_grained_map` on a UCF-Crime-shaped test set (numpy only, no files).

290 videos, 1.1 M frames (log-normal lengths, at least 64 frames, as benchmarks/eval.py), 14
classes, normal id 7, 140 abnormal videos with 1-2 spans. Probabilities as the model gives them
(`softmax(S) * p` for abnormal classes, `1 - p` for normal, float32), in two forms:
  smooth: p and the class logits vary per 16-frame snippet, interpolated, plus small per-frame
          noise: the usual case, a few proposals per video and class;
  noisy:  every value uniform in [0, 1), independently (not probabilities any more): the worst
          case, the threshold falls near 0.4 and about one frame in seven starts a kept run of
          each class (~2 M proposals in all).
Prints the median of `--repeats` calls for each, both rules.

    python benchmarks/finegrained.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from anomalyclip.finegrained import fine_grained_map  # noqa: E402

N_CLASSES, NORMAL = 14, 7


def lengths(videos: int, frames: int, rng) -> np.ndarray:
    raw = rng.lognormal(0.0, 1.0, videos)
    out = np.maximum(64, np.round(raw / raw.sum() * frames)).astype(int)
    out[np.argmax(out)] += frames - int(out.sum())  # exact total
    return out


def snippet_noise(t: int, width: int, rng) -> np.ndarray:
    """(t, width) values varying smoothly over 16-frame snippets."""
    knots = rng.standard_normal((t // 16 + 2, width))
    pos = np.arange(t) / 16
    i = pos.astype(int)
    f = (pos - i)[:, None]
    return knots[i] * (1 - f) + knots[i + 1] * f


def video(t: int, label: int, rng, noisy: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (t, C) float32 and labels (t,) of one video."""
    y = np.full(t, NORMAL)
    if label != NORMAL:
        for part in range(int(rng.integers(1, 3))):
            lo, hi = part * t // 2, (part + 1) * t // 2
            width = max(8, int(rng.uniform(0.1, 0.5) * (hi - lo)))
            s = int(rng.integers(lo, max(lo + 1, hi - width)))
            y[s : min(t, s + width)] = label
    if noisy:
        return rng.random((t, N_CLASSES), dtype=np.float32), y
    k = N_CLASSES - 1
    z = snippet_noise(t, 1, rng)[:, 0] + 0.2 * rng.standard_normal(t)
    logits = snippet_noise(t, k, rng) + 0.2 * rng.standard_normal((t, k))
    on = y != NORMAL
    z = z - 2.0 + 4.0 * on
    if label != NORMAL:
        logits[on, label - (label > NORMAL)] += 3.0
    p = 1 / (1 + np.exp(-z))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = np.empty((t, N_CLASSES), dtype=np.float32)
    probs[:, np.arange(N_CLASSES) != NORMAL] = e / e.sum(axis=1, keepdims=True) * p[:, None]
    probs[:, NORMAL] = 1 - p
    return probs, y


def test_set(videos: int, frames: int, noisy: bool, seed: int):
    rng = np.random.default_rng(seed)
    abnormal = [c for c in range(N_CLASSES) if c != NORMAL]
    parts = []
    for i, t in enumerate(lengths(videos, frames, rng).tolist()):
        label = abnormal[i % len(abnormal)] if i < videos * 140 // 290 else NORMAL
        parts.append(video(t, label, rng, noisy))
    probs = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    vid = np.repeat(np.arange(len(parts)), [len(y) for _, y in parts])
    return probs, labels, vid


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=290)
    ap.add_argument("--frames", type=int, default=1_100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for form in ("smooth", "noisy"):
        probs, labels, vid = test_set(args.videos, args.frames, form == "noisy", args.seed)
        for include_normal in (False, True):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = fine_grained_map(probs, labels, vid, NORMAL, include_normal=include_normal)
                times.append(time.perf_counter() - t0)
            rule = "XD rule" if include_normal else "UCF rule"
            values = " ".join(f"{v:.4f}" for v in result.values())
            print(f"{form:6s} {rule}: {statistics.median(times):6.2f} s (median of {args.repeats}; "
                  f"{len(probs)} frames, {args.videos} videos)  mAP@0.1..0.5, avg: {values}")


if __name__ == "__main__":
    main()
