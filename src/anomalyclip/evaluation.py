"""One evaluator for validation during training and for `anomalyclip eval`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from anomalyclip.data.datasets import FrameBudgetBatches, TestVideo, TestVideos, collate_videos
from anomalyclip.data.formats import ClassTable, VideoEntry
from anomalyclip.fileio import atomic_path, write_json
from anomalyclip.memory import release_free_memory, trim_heap
from anomalyclip.metrics import compute_metrics
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.anomalyclip import predict_classes


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


def video_loader(dataset: TestVideos, frames_per_forward: int, frames_per_grid: int, num_workers: int = 0) -> DataLoader:
    sampler = FrameBudgetBatches(dataset.rows, frames_per_forward, frames_per_grid)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_videos, num_workers=num_workers)


@torch.inference_mode()
def evaluate(model: AnomalyCLIP, dataset: TestVideos, frames_per_forward: int = 16384, progress: bool = True) -> EvalResult:
    """Score every test video (several per forward), text features computed once."""
    model.eval()
    evaluator = Evaluator(dataset.classes)
    text = model.text_features()
    loader = video_loader(dataset, frames_per_forward, model.cfg.frames_per_item)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
        evaluator.score(model, batch, text)
    return evaluator.compute()


def write_predictions(path: str | Path, result: EvalResult, entries: list[VideoEntry], classes: ClassTable) -> None:
    """`predictions.csv`: one row per frame of every test video."""
    pred = predict_classes(result.scores, result.probs, classes.normal_id, result.metrics["optimal_threshold"])
    header = ["video", "frame", "label", "score", "pred"] + [f"p_{n}" for n in classes.names]
    fmt = ["%d", "%d", "%.6f", "%d"] + ["%.6f"] * len(classes.names)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(header) + "\n")
        for i in np.unique(result.video):
            sel = result.video == i
            block = np.column_stack([result.frame[sel], result.labels[sel], result.scores[sel], pred[sel], result.probs[sel]])
            buf = io.StringIO()
            np.savetxt(buf, block, fmt=fmt, delimiter=",")
            prefix = entries[i].path + ","
            f.write("".join(prefix + line for line in buf.getvalue().splitlines(keepends=True)))


def write_eval_outputs(out_dir: str | Path, result: EvalResult, entries: list[VideoEntry], classes: ClassTable) -> None:
    """metrics.json, predictions.csv and the ROC / PR / confusion-matrix plots."""
    from anomalyclip.plots import plot_confusion, plot_pr, plot_roc

    out = Path(out_dir)
    write_json(out / "metrics.json", result.metrics)
    write_predictions(out / "predictions.csv", result, entries, classes)
    binary = (result.labels != classes.normal_id).astype(int)
    plot_roc(out / "roc.png", binary, result.scores, result.metrics["auc_roc"])
    plot_pr(out / "pr.png", binary, result.scores, result.metrics["auc_pr"])
    plot_confusion(out / "confusion_matrix.png", np.asarray(result.metrics["confusion_matrix"]), classes.names)


def format_table(metrics: dict) -> str:
    """A short text table of the headline numbers, in percent as papers report them."""
    rows = [
        ("AUC", metrics["auc_roc"]),
        ("AP", metrics["auc_pr"]),
        ("mAUC", metrics["mean_mc_auroc"]),
        ("mAP", metrics["mean_mc_aupr"]),
    ]
    width = len("threshold")
    lines = [f"{'metric':<{width}}  value (%)", f"{'-' * width}  ---------"]
    lines += [f"{k:<{width}}  {'n/a' if v is None else f'{100 * v:9.2f}'}" for k, v in rows]
    lines.append(f"{'threshold':<{width}}  {metrics['optimal_threshold']:.4f}")
    return "\n".join(lines)
