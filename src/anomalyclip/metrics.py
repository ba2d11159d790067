"""Detection and recognition metrics over all test frames (METHOD §11).

UCF-Crime's test set has 1.1 M frames and every metric needs a ranking of them: the binary AUC,
AP and Youden threshold share one sort of the scores, and each class's AUC and AP share one sort
of its column of probabilities. scikit-learn sorts again for every metric (and once more for the
threshold), twice the work or more; the numbers are the same (`tests/test_metrics.py` compares every value with scikit-learn's).
Top-1 and top-5 accuracy need no sort at all: only the rank of each frame's true class.
The fine-grained detection mAP@tIoU of the CLIP-based peers (FINEGRAINED.md) is public here too;
it lives in `anomalyclip.finegrained`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomalyclip.classes import predict_classes
from anomalyclip.finegrained import DEFAULT_TIOUS, fine_grained_aps, fine_grained_map

__all__ = [
    "DEFAULT_TIOUS", "RankCurve", "compute_metrics", "fine_grained_aps", "fine_grained_map", "true_class_rank",
    "youden_threshold",
]


@dataclass
class RankCurve:
    """Counts of true and false positives at every distinct threshold, highest threshold first:
    the points of the ROC and precision-recall curves (as scikit-learn's `_binary_clf_curve`)."""

    thresholds: np.ndarray  # (M,) distinct scores, descending
    tps: np.ndarray  # (M,) positives with score >= threshold
    fps: np.ndarray  # (M,) negatives with score >= threshold

    @classmethod
    def of(cls, scores: np.ndarray, target: np.ndarray) -> RankCurve:
        order = np.argsort(scores)[::-1]  # ties in any order: only the counts at a tie's end are kept
        ranked = scores[order]
        ends = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]  # last index of each distinct score
        tps = np.cumsum(target[order], dtype=np.int64)[ends]
        return cls(thresholds=ranked[ends], tps=tps, fps=ends + 1 - tps)

    def auc_roc(self) -> float:
        """Trapezoidal area under (FPR, TPR), from (0, 0)."""
        fpr = np.r_[0.0, self.fps / self.fps[-1]]
        tpr = np.r_[0.0, self.tps / self.tps[-1]]
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))

    def average_precision(self) -> float:
        """sum over thresholds of (R_i - R_{i-1}) * P_i, no interpolation (as scikit-learn)."""
        precision = self.tps / (self.tps + self.fps)
        recall = np.r_[0.0, self.tps / self.tps[-1]]
        return float(np.sum(np.diff(recall) * precision))

    def youden(self) -> float:
        """argmax(TPR - FPR) over every distinct score and the +inf point in front, which wins
        only when no score does better than chance; it is clamped to 1.0, a usable score."""
        j = np.r_[0.0, self.tps / self.tps[-1] - self.fps / self.fps[-1]]
        best = int(np.argmax(j))
        return 1.0 if best == 0 else float(min(self.thresholds[best - 1], 1.0))


def youden_threshold(scores: np.ndarray, binary: np.ndarray) -> float:
    """Youden's threshold of `scores` for the 0/1 `binary` targets."""
    return RankCurve.of(np.asarray(scores), np.asarray(binary)).youden()


def true_class_rank(probs: np.ndarray, labels: np.ndarray, normal_id: int) -> np.ndarray:
    """Rank of each abnormal frame's true class among the abnormal classes (0 = most probable),
    ties broken by class id as a stable sort would; -1 for normal frames. One pass per class
    column, so the working memory is a few (N,) vectors whatever the number of classes."""
    p_true = probs[np.arange(len(labels)), labels]  # (N,)
    rank = np.zeros(len(labels), dtype=np.int64)
    for j in range(probs.shape[1]):
        if j != normal_id:
            col = probs[:, j]
            rank += (col > p_true) | ((col == p_true) & (j < labels))
    rank[labels == normal_id] = -1
    return rank


def _per_class(values: dict[int, float], num_classes: int) -> list[float | None]:
    return [values.get(c) for c in range(num_classes)]


def compute_metrics(scores: np.ndarray, probs: np.ndarray, labels: np.ndarray, normal_id: int) -> dict:
    """Everything the reference's `metrics.json` holds, with `None` for classes absent from the test set."""
    scores = np.asarray(scores)
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    binary = labels != normal_id
    if binary.all() or not binary.any():
        raise ValueError("the test frames must contain both normal and abnormal frames to compute AUC")
    curve = RankCurve.of(scores, binary)
    threshold = curve.youden()
    pred = predict_classes(scores, probs, normal_id, threshold)

    counts = np.bincount(labels, minlength=num_classes)
    present = [c for c in range(num_classes) if counts[c] > 0]
    mc_auroc, mc_aupr = {}, {}
    for c in present:
        if counts[c] < len(labels):  # both positives and negatives
            class_curve = RankCurve.of(probs[:, c], labels == c)
            mc_auroc[c] = class_curve.auc_roc()
            mc_aupr[c] = class_curve.average_precision()
    abnormal_present = [c for c in present if c != normal_id and c in mc_auroc]

    # A frame predicted normal ranks the normal class first, then the abnormal classes; a frame
    # predicted abnormal ranks the abnormal classes only (METHOD §11).
    predicted_normal = pred == normal_id
    rank = true_class_rank(probs, labels, normal_id)
    k5 = min(5, num_classes - 1)
    is_normal = ~binary
    top1_hit = np.where(is_normal, predicted_normal, ~predicted_normal & (rank == 0))
    top5_hit = np.where(is_normal, predicted_normal, rank < np.where(predicted_normal, k5 - 1, k5))
    top1_acc = {c: float(top1_hit[labels == c].mean()) for c in present}
    top5_acc = {c: float(top5_hit[labels == c].mean()) for c in present}

    confusion = np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    confusion = confusion / np.maximum(counts, 1)[:, None]  # rows: true class, normalised; absent rows stay 0

    return {
        "auc_roc": curve.auc_roc(),
        "auc_pr": curve.average_precision(),
        "mean_mc_auroc": float(np.mean([mc_auroc[c] for c in abnormal_present])) if abnormal_present else None,
        "mean_mc_aupr": float(np.mean([mc_aupr[c] for c in abnormal_present])) if abnormal_present else None,
        "mc_auroc": _per_class(mc_auroc, num_classes),
        "mc_aupr": _per_class(mc_aupr, num_classes),
        "top1_accuracy": _per_class(top1_acc, num_classes),
        "top5_accuracy": _per_class(top5_acc, num_classes),
        "optimal_threshold": threshold,
        "confusion_matrix": confusion.tolist(),
        "num_frames": int(len(labels)),
        "num_abnormal_frames": int(binary.sum()),
    }
