"""One evaluator for validation during training and for `anomalyclip eval`."""

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
from anomalyclip.metrics import compute_metrics
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.grid import group_by_budget


@dataclass
class EvalResult:
    metrics: dict
    scores: np.ndarray  # (N,) all frames of all videos, in test-list order
    probs: np.ndarray  # (N, C)
    labels: np.ndarray  # (N,)
    video: np.ndarray  # (N,) index into the test list
    frame: np.ndarray  # (N,) row of the video's feature file


class Evaluator:
    """Accumulates per-video scores and class probabilities, then computes every metric once."""

    def __init__(self, classes: ClassTable):
        self.classes = classes
        self.reset()

    def reset(self) -> None:
        self._parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, video: TestVideo, scores: torch.Tensor, probs: torch.Tensor) -> None:
        self._parts[video.index] = (scores.float().cpu().numpy(), probs.float().cpu().numpy(), video.labels.numpy())

    def score(self, model: AnomalyCLIP, batch: list[TestVideo], text_features: torch.Tensor) -> None:
        outputs = model.score_videos([v.features for v in batch], text_features, overwrite_input=True)
        for v, (p, probs) in zip(batch, outputs):
            self.update(v, p, probs)
        del outputs
        release_free_memory()

    def compute(self) -> EvalResult:
        """Every frame in test-list order, then the metrics. The parts move into the result one
        video at a time, so the frames are held once, not twice (1.1 M frames on UCF-Crime); the
        evaluator is empty afterwards."""
        if not self._parts:
            raise ValueError("no test video was scored")
        order = sorted(self._parts)
        lengths = [len(self._parts[i][0]) for i in order]
        total, num_classes = sum(lengths), self._parts[order[0]][1].shape[1]
        scores = np.empty(total, dtype=np.float32)
        probs = np.empty((total, num_classes), dtype=np.float32)
        labels = np.empty(total, dtype=np.int64)
        video = np.repeat(np.asarray(order), lengths)
        frame = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        start = 0
        for i, length in zip(order, lengths):
            s, p, y = self._parts.pop(i)
            scores[start : start + length], probs[start : start + length], labels[start : start + length] = s, p, y
            start += length
        trim_heap()  # the parts' memory, scattered through the heap
        metrics = compute_metrics(scores, probs, labels, self.classes.normal_id)
        metrics["class_names"] = list(self.classes.names)
        return EvalResult(metrics, scores, probs, labels, video, frame)


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
    evaluator = Evaluator(dataset.classes)
    text = model.text_features()
    loader = video_loader(dataset, frames_per_forward, model.cfg.frames_per_item)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=None if progress else True):  # None: on a terminal only
        evaluator.score(model, batch, text)
    return evaluator.compute()


def evaluate_test_list(model: AnomalyCLIP, data: RunData, frames_per_forward: int = 16384, progress: bool = True) -> EvalResult:
    """A model on a run's test list, for inference only: the text features are computed once and
    the text tower dropped (`freeze_text_features`)."""
    dataset = TestVideos(data.test, data.features, data.temporal, data.classes, model.cfg.feature_dim)
    model.freeze_text_features()
    trim_heap()  # the text tower's memory
    return evaluate(model, dataset, frames_per_forward, progress)

