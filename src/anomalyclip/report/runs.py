"""Read a run or eval folder (metrics.json, predictions.csv, PNGs, config.json) into plain arrays.

Every problem with a folder ends in one InputError naming the file, so `anomalyclip report`
prints one line instead of a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.presets import preset_of_classes

FIXED_COLUMNS = ["video", "frame", "label", "score", "pred"]
FIGURES = ("roc.png", "pr.png", "roc_per_class.png", "pr_per_class.png", "confusion_matrix.png")
_CHUNK = 200_000  # rows parsed at once: a bounded copy of the text, 1.1 M rows on UCF-Crime


@dataclass
class Frames:
    """predictions.csv as arrays, one row per test frame, videos contiguous in file order."""

    videos: list[str]
    starts: np.ndarray  # (V + 1,) row where each video begins, then N
    labels: np.ndarray  # (N,) int
    scores: np.ndarray  # (N,) float32
    probs: np.ndarray  # (N, C) float32


@dataclass
class Run:
    path: Path
    name: str
    metrics: dict
    config: dict | None
    frames: Frames
    class_names: list[str]
    normal_id: int
    dataset: str | None
    dataset_inferred: bool
    method: str | None
    checkpoint_kind: str | None
    checkpoint_kind_inferred: bool
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    drawn: set[str] = field(default_factory=set)  # figures the report drew itself

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.frames.labels, minlength=len(self.class_names))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    return data


def _check_metrics(m: dict, path: Path) -> list[str]:
    names = m.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError("no 'class_names' list", path)
    for key in ("auc_roc", "auc_pr", "optimal_threshold"):
        if not isinstance(m.get(key), (int, float)):
            raise InputError(f"'{key}' is missing or not a number", path)
    for key in ("mc_auroc", "mc_aupr", "top1_accuracy", "top5_accuracy"):
        v = m.get(key)
        if v is not None and (not isinstance(v, list) or len(v) != len(names)):
            raise InputError(f"'{key}' must hold one value per class ({len(names)})", path)
    return names


def _bad_line(lines: list[str], width: int, first_line: int) -> tuple[int, str]:
    """The first line of a chunk numpy refused, and why, for the error message."""
    for k, line in enumerate(lines):
        fields = line.split(",")
        if len(fields) != width:
            return first_line + k, f"{len(fields) + 1} fields, the header has {width + 1}"
        try:
            [float(f) for f in fields]
        except ValueError:
            return first_line + k, "a field is not a number"
    return first_line, "unreadable"


def read_predictions(path: Path, class_names: list[str]) -> Frames:
    """Parse predictions.csv in chunks: the video column split off in Python, the numbers by
    numpy's C parser."""
    if not path.is_file():
        raise InputError("predictions.csv not found", path)
    header_expected = FIXED_COLUMNS + [f"p_{n}" for n in class_names]
    width = len(header_expected) - 1
    videos: list[str] = []
    starts: list[int] = []
    labels, scores, probs = [], [], []
    seen: set[str] = set()
    total = 0

    def flush(names: list[str], rest: list[str], first_line: int) -> None:
        nonlocal total
        try:
            block = np.loadtxt(rest, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError:
            line, why = _bad_line(rest, width, first_line)
            raise InputError(f"corrupt row: {why}", path, line) from None
        if block.shape[1] != width:
            raise InputError(f"rows have {block.shape[1] + 1} fields, the header has {width + 1}", path, first_line)
        if not np.isfinite(block).all():
            raise InputError("a score or probability is not a finite number", path, first_line + int(np.nonzero(~np.isfinite(block).all(1))[0][0]))
        lab = block[:, 1]
        if (lab != np.round(lab)).any() or lab.min() < 0 or lab.max() >= len(class_names):
            bad = int(np.nonzero((lab != np.round(lab)) | (lab < 0) | (lab >= len(class_names)))[0][0])
            raise InputError(f"label {lab[bad]:g} is not a class id 0..{len(class_names) - 1}", path, first_line + bad)
        for k, name in enumerate(names):
            if not videos or name != videos[-1]:
                if name in seen:
                    raise InputError(f"the frames of video {name!r} are not contiguous", path, first_line + k)
                seen.add(name)
                videos.append(name)
                starts.append(total + k)
        labels.append(lab.astype(np.int64))
        scores.append(block[:, 2].astype(np.float32))
        probs.append(block[:, 4:].astype(np.float32))
        total += len(block)

    try:
        with open(path, newline="") as f:
            header = f.readline().rstrip("\r\n").split(",")
            if header != header_expected:
                raise InputError(
                    f"header is not '{','.join(header_expected)}' (the class table of metrics.json)", path, 1
                )
            names: list[str] = []
            rest: list[str] = []
            first = 2
            for lineno, line in enumerate(f, start=2):
                name, sep, tail = line.rstrip("\r\n").partition(",")
                if not sep:
                    if not name.strip():
                        continue
                    raise InputError("corrupt row: no fields after the video name", path, lineno)
                names.append(name)
                rest.append(tail)
                if len(rest) >= _CHUNK:
                    flush(names, rest, first)
                    names, rest, first = [], [], lineno + 1
            if rest:
                flush(names, rest, first)
    except UnicodeDecodeError:
        raise InputError("not a text file", path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e}", path) from None
    if total == 0:
        raise InputError("no frame rows", path)
    return Frames(
        videos=videos,
        starts=np.asarray(starts + [total], dtype=np.int64),
        labels=np.concatenate(labels),
        scores=np.concatenate(scores),
        probs=np.concatenate(probs),
    )


def dataset_of(metrics: dict, config: dict | None, class_names: list[str]) -> tuple[str | None, bool]:
    """metrics' `dataset`, else config's `preset`, else the preset whose shipped class table the
    names are (the second value says it was inferred)."""
    if metrics.get("dataset"):
        return str(metrics["dataset"]), False
    if config and config.get("preset"):
        return str(config["preset"]), False
    found = preset_of_classes(class_names)
    return (found.name, True) if found else (None, False)


def checkpoint_kind_of(metrics: dict) -> tuple[str | None, bool]:
    """metrics' `checkpoint_kind`, else read off the checkpoint's file name (this package's
    `best.ckpt` is the one selected on the test set, `last.ckpt` the final epoch)."""
    if metrics.get("checkpoint_kind") in ("last", "best_on_test"):
        return metrics["checkpoint_kind"], False
    stem = Path(str(metrics.get("checkpoint") or "")).stem
    if stem.startswith("last"):
        return "last", True
    if stem.startswith("best"):
        return "best_on_test", True
    return None, False


def read_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise InputError("not a folder (give a run or eval folder holding metrics.json)", path)
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise InputError("no metrics.json: not a run or eval folder", path)
    metrics = _read_json(metrics_path)
    class_names = _check_metrics(metrics, metrics_path)
    config = _read_json(path / "config.json") if (path / "config.json").is_file() else None
    normal = [i for i, n in enumerate(class_names) if n.lower() == "normal"]
    model_cfg = (config or {}).get("model") or {}
    normal_id = model_cfg.get("normal_id", normal[0] if len(normal) == 1 else None)
    if not isinstance(normal_id, int) or not 0 <= normal_id < len(class_names):
        raise InputError("cannot tell the normal class: exactly one class must be named 'Normal'", metrics_path)
    frames = read_predictions(path / "predictions.csv", class_names)
    n = metrics.get("num_frames")
    if isinstance(n, int) and n != len(frames.labels):
        raise InputError(f"holds {len(frames.labels):,} frames, metrics.json says {n:,} (truncated?)", path / "predictions.csv")
    dataset, inferred = dataset_of(metrics, config, class_names)
    kind, kind_inferred = checkpoint_kind_of(metrics)
    if metrics.get("method") == "zeroshot" and "checkpoint_kind" not in metrics:
        kind, kind_inferred = None, False  # nothing trained: no epoch to choose
    figures = {name: (path / name).read_bytes() for name in FIGURES if (path / name).is_file()}
    return Run(
        path=path, name=path.resolve().name, metrics=metrics, config=config, frames=frames,
        class_names=class_names, normal_id=normal_id, dataset=dataset, dataset_inferred=inferred,
        method=metrics.get("method"), checkpoint_kind=kind, checkpoint_kind_inferred=kind_inferred,
        figures=figures,
    )


def check_comparable(runs: list[Run]) -> None:
    """Runs side by side must share one class table and dataset: the per-class table and the
    video browser are indexed by it. Refused, naming the first run that differs."""
    first = runs[0]
    for run in runs[1:]:
        if run.class_names != first.class_names:
            raise InputError(
                f"its class table {run.class_names} differs from {first.path}'s {first.class_names}; "
                "report runs of one dataset together", run.path / "metrics.json")
        if run.dataset and first.dataset and run.dataset != first.dataset:
            raise InputError(f"dataset {run.dataset!r} differs from {first.path}'s {first.dataset!r}", run.path)


def unique_names(runs: list[Run]) -> None:
    """Column names: the folder name, with its parents added until the names differ."""
    for depth in range(1, 6):
        names = ["/".join(r.path.resolve().parts[-depth:]) for r in runs]
        if len(set(names)) == len(names):
            break
    for r, n in zip(runs, names):
        r.name = n
    if len(set(names)) != len(names):  # the same folder twice
        for k, r in enumerate(runs):
            r.name = f"{names[k]} #{k + 1}"
