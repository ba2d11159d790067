"""The built-in synthetic dataset, written in the official on-disk layout.

CLIP-like 512-d frame features: a normal manifold (centroid + low-rank slow drift + noise); in
abnormal videos one or two contiguous spans add a class-specific direction. Training lists carry
only video labels; only the test temporal file carries spans, so weak supervision matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomalyclip.data.formats import VideoEntry, temporal_line
from anomalyclip.fileio import atomic_path, write_text

NORMAL = "Normal"


@dataclass
class SyntheticSpec:
    seed: int = 0
    abnormal_classes: tuple[str, ...] = ("Accident", "Explosion", "Fighting", "Shooting", "Vandalism")
    train_abnormal_per_class: int = 6
    train_normal: int = 30
    test_abnormal_per_class: int = 3
    test_normal: int = 15
    min_len: int = 100
    max_len: int = 3000
    dim: int = 512
    rank: int = 8
    noise: float = 0.12
    strength: tuple[float, float] = (1.2, 2.2)  # anomaly magnitude along its direction
    shared: float = 0.6  # part of every anomaly direction shared by all classes

    @property
    def class_names(self) -> list[str]:
        return sorted([*self.abnormal_classes, NORMAL])


def _length(rng: np.random.Generator, spec: SyntheticSpec, i: int) -> int:
    if i % 4 == 0:  # always some videos shorter than one 512-frame training item
        return int(rng.integers(spec.min_len, 512))
    return int(np.exp(rng.uniform(np.log(spec.min_len), np.log(spec.max_len))))


def _spans(rng: np.random.Generator, length: int) -> list[tuple[int, int]]:
    n_spans = 1 if length < 400 or rng.random() < 0.5 else 2
    spans, lo = [], 0
    part = length // n_spans
    for j in range(n_spans):
        span = int(rng.uniform(0.15, 0.4) * part)
        span = max(16, min(span, part - 2))
        start = lo + int(rng.integers(0, max(1, part - span)))
        spans.append((start, start + span - 1))
        lo += part
    return spans


class _World:
    """The shared geometry: centroid, normal variation basis and class directions."""

    def __init__(self, spec: SyntheticSpec, rng: np.random.Generator):
        d = spec.dim
        self.centroid = rng.normal(0, 0.4, d)
        k = len(spec.abnormal_classes)
        seed_cols = np.column_stack([self.centroid, rng.normal(size=(d, spec.rank + k))])
        basis, _ = np.linalg.qr(seed_cols)  # first column: the centroid's direction
        self.variation = basis[:, 1 : 1 + spec.rank].T  # (r, D): normal appearance changes
        # Anomalies leave the normal manifold: a class-specific direction plus a move away from
        # the typical scene (against the centroid), both orthogonal to the normal variation.
        away = -self.centroid / np.linalg.norm(self.centroid)  # (QR's first column has either sign)
        self.directions = np.stack([spec.shared * away + np.sqrt(1 - spec.shared**2) * basis[:, 1 + spec.rank + c] for c in range(k)])

    def video(self, spec: SyntheticSpec, rng: np.random.Generator, length: int, cls: int | None, spans) -> np.ndarray:
        t = np.arange(length)[:, None]
        period = rng.uniform(300, 3000, spec.rank)
        phase = rng.uniform(0, 2 * np.pi, spec.rank)
        level = rng.normal(0, 1.0, spec.rank)
        z = level + 0.8 * np.sin(2 * np.pi * t / period + phase)  # (T, r): slow drift
        x = self.centroid + z @ self.variation + rng.normal(0, spec.noise, (length, spec.dim))
        if cls is not None:
            for s, e in spans:
                ramp = np.clip(np.minimum(t[s : e + 1, 0] - s + 1, e + 1 - t[s : e + 1, 0]) / 8.0, 0, 1)
                x[s : e + 1] += rng.uniform(*spec.strength) * ramp[:, None] * self.directions[cls]
        return x.astype(np.float32)


def write_synthetic(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write features, the three video lists, the temporal file and a labels CSV under `root`."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    world = _World(spec, rng)
    names = spec.class_names
    ids = {n: i for i, n in enumerate(names)}
    write_text(root / "labels.csv", "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))

    def make(split: str, per_class: int, n_normal: int) -> tuple[list[str], list[str]]:
        rows_abn, rows_nor, temporal = [], [], []
        jobs = [(c, j) for c in spec.abnormal_classes for j in range(per_class)] + [(NORMAL, j) for j in range(n_normal)]
        for i, (cname, j) in enumerate(jobs):
            length = _length(rng, spec, i)
            stem = f"{cname}_{split}{j:03d}"
            spans = _spans(rng, length) if cname != NORMAL else []
            k = spec.abnormal_classes.index(cname) if cname != NORMAL else None
            x = world.video(spec, rng, length, k, spans)
            with atomic_path(root / "features" / cname / f"{stem}.npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, x)
            row = VideoEntry(f"{cname}/{stem}", 0, length - 1, ids[cname]).line()
            (rows_nor if cname == NORMAL else rows_abn).append(row)
            temporal.append(temporal_line(f"{stem}.mp4", cname, spans))
        return rows_abn + rows_nor if split == "test" else (rows_abn, rows_nor), temporal

    (train_abn, train_nor), _ = make("train", spec.train_abnormal_per_class, spec.train_normal)
    test_rows, temporal = make("test", spec.test_abnormal_per_class, spec.test_normal)
    write_text(root / "Anomaly_Train_Abnormal.txt", "".join(train_abn))
    write_text(root / "Anomaly_Train_Normal.txt", "".join(train_nor))
    write_text(root / "Anomaly_Test.txt", "".join(test_rows))
    write_text(root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "".join(temporal))
    return root
