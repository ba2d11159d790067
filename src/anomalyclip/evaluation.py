"""One evaluator for validation during training, `anomalyclip eval` and `anomalyclip zeroshot`.

Any video scorer works: AnomalyCLIP, or the zero-shot CLIP baseline (`anomalyclip.zeroshot`).
A scorer has `text_features()`, `freeze_text_features()`, `score_videos(videos, text_features,
overwrite_input)`, `feature_dim` and `frames_per_grid` (the padding unit of a video), and is an
`nn.Module`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from anomalyclip.classes import ClassTable
from anomalyclip.data.datasets import TestVideo, TestVideos
from anomalyclip.data.run_data import RunData
from anomalyclip.memory import release_free_memory, trim_heap
from anomalyclip.metrics import compute_metrics, fine_grained_map
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.grid import group_by_budget
from anomalyclip.presets import DEFAULT_PRESET, run_preset

METHODS = ("anomalyclip", "zeroshot")  # the `method` of metrics.json


@dataclass
class EvalResult:
    metrics: dict
    scores: np.ndarray  # (N,) all frames of all videos, in test-list order
    probs: np.ndarray  # (N, C)
    labels: np.ndarray  # (N,)
    video: np.ndarray  # (N,) index into the test list
    frame: np.ndarray  # (N,) row of the video's feature file


class Evaluator:
    """Accumulates per-video scores and class probabilities, then computes every metric once.

    Given `rows` (each test video's frame count, in test-list order) the result's arrays are
    allocated up front and every video is written straight into its place: the frames are held
    once, in three blocks, instead of as thousands of small arrays that scatter through the heap
    between the forwards' temporaries (1.1 M frames on UCF-Crime). Without `rows` (a validation
    epoch, which may see any subset of the videos) the parts are kept and joined at the end."""

    def __init__(self, classes: ClassTable, rows: list[int] | None = None):
        self.classes = classes
        self.rows = None if rows is None else [int(t) for t in rows]
        self.reset()

    def reset(self) -> None:
        self._parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._filled: np.ndarray | None = None
        if self.rows is not None:
            total = sum(self.rows)
            self._starts = np.cumsum([0] + self.rows)
            self._scores = np.empty(total, dtype=np.float32)
            self._probs = np.empty((total, self.classes.num_classes), dtype=np.float32)
            self._labels = np.empty(total, dtype=np.int64)
            self._filled = np.zeros(len(self.rows), dtype=bool)

    def update(self, video: TestVideo, scores: torch.Tensor, probs: torch.Tensor) -> None:
        if self._filled is None:
            self._parts[video.index] = (scores.float().cpu().numpy(), probs.float().cpu().numpy(), video.labels.numpy())
            return
        i = video.index
        a, b = self._starts[i], self._starts[i + 1]
        if len(scores) != b - a:
            raise ValueError(f"video {i}: {len(scores)} scores for its {b - a} rows")
        self._scores[a:b], self._probs[a:b] = scores.float().cpu().numpy(), probs.float().cpu().numpy()
        self._labels[a:b] = video.labels.numpy()
        self._filled[i] = True

    def score(self, model: AnomalyCLIP, batch: list[TestVideo], text_features: torch.Tensor) -> None:
        outputs = model.score_videos([v.features for v in batch], text_features, overwrite_input=True)
        for v, (p, probs) in zip(batch, outputs):
            self.update(v, p, probs)
        del outputs
        release_free_memory()

    def compute(self) -> EvalResult:
        """Every frame in test-list order, then the metrics; the evaluator is empty afterwards."""
        if self._filled is not None:
            if not self._filled.all():
                raise ValueError(f"{int((~self._filled).sum())} of {len(self._filled)} test videos were not scored")
            order, lengths = list(range(len(self.rows))), self.rows
            scores, probs, labels = self._scores, self._probs, self._labels
            self._filled = self._scores = self._probs = self._labels = None  # empty until `reset`
        else:
            scores, probs, labels, order, lengths = self._join_parts()
        video = np.repeat(np.asarray(order), lengths)
        frame = np.arange(len(scores)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        metrics = compute_metrics(scores, probs, labels, self.classes.normal_id)
        metrics["class_names"] = list(self.classes.names)
        return EvalResult(metrics, scores, probs, labels, video, frame)

    def _join_parts(self):
        """The parts move into the result one video at a time, so the frames are held once, not twice."""
        if not self._parts:
            raise ValueError("no test video was scored")
        order = sorted(self._parts)
        lengths = [len(self._parts[i][0]) for i in order]
        total, num_classes = sum(lengths), self._parts[order[0]][1].shape[1]
        scores = np.empty(total, dtype=np.float32)
        probs = np.empty((total, num_classes), dtype=np.float32)
        labels = np.empty(total, dtype=np.int64)
        start = 0
        for i, length in zip(order, lengths):
            s, p, y = self._parts.pop(i)
            scores[start : start + length], probs[start : start + length], labels[start : start + length] = s, p, y
            start += length
        trim_heap()  # the parts' memory, scattered through the heap
        return scores, probs, labels, order, lengths


class FrameBudgetBatches(Sampler[list[int]]):
    """Consecutive test videos grouped so each forward holds about `budget` padded frames."""

    def __init__(self, rows: list[int], budget: int, frames_per_grid: int = 512):
        self.batches = group_by_budget(rows, budget, frames_per_grid)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _as_list(items: list[TestVideo]) -> list[TestVideo]:
    return items


def video_loader(dataset: TestVideos, frames_per_forward: int, frames_per_grid: int, num_workers: int = 0) -> DataLoader:
    sampler = FrameBudgetBatches(dataset.rows, frames_per_forward, frames_per_grid)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_as_list, num_workers=num_workers)


@torch.inference_mode()
def evaluate(model: AnomalyCLIP, dataset: TestVideos, frames_per_forward: int = 16384, progress: bool = True) -> EvalResult:
    """Score every test video (several per forward), text features computed once."""
    model.eval()
    evaluator = Evaluator(dataset.classes, dataset.rows)
    text = model.text_features()
    loader = video_loader(dataset, frames_per_forward, model.frames_per_grid)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=None if progress else True):  # None: on a terminal only
        evaluator.score(model, batch, text)
    return evaluator.compute()


def evaluate_test_list(
    model: AnomalyCLIP,
    data: RunData,
    frames_per_forward: int = 16384,
    progress: bool = True,
    *,
    preset: str | None = None,
    method: str = "anomalyclip",
) -> EvalResult:
    """A model on a run's test list, for inference only: the text features are computed once and
    the text tower dropped (`freeze_text_features`). The metrics also hold what `run_metrics`
    adds: the dataset, the method and the fine-grained mAP@tIoU."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    dataset = TestVideos(data.test, data.features, data.temporal, data.classes, model.feature_dim)
    model.freeze_text_features()
    trim_heap()  # the text tower's memory
    result = evaluate(model, dataset, frames_per_forward, progress)
    result.metrics.update(run_metrics(result, data.classes, preset, method))
    return result


def run_metrics(result: EvalResult, classes: ClassTable, preset: str | None, method: str) -> dict:
    """What a final evaluation adds to metrics.json (validation epochs skip it):
    - `dataset`: the preset named, else the one whose shipped labels table the classes are, else None;
    - `method`: "anomalyclip" or "zeroshot";
    - `map_tiou_0.1` ... `map_tiou_0.5`, `map_tiou_avg`: fine-grained detection mAP (fractions),
      under the dataset's normal-class rule, named in `fine_grained_rule` ("xd" for XD-Violence,
      "ucf" for the others and for an unknown dataset; FINEGRAINED.md)."""
    found = run_preset(preset, classes.names)
    rules = found or DEFAULT_PRESET
    fine = fine_grained_map(
        result.probs, result.labels, result.video, classes.normal_id, include_normal=rules.fine_grained_scores_normal
    )
    return {"dataset": found.name if found else None, "method": method, **fine, "fine_grained_rule": rules.fine_grained_rule}
