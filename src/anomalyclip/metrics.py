"""Detection and recognition metrics over all test frames (METHOD §11), via scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from anomalyclip.model.anomalyclip import predict_classes


def youden_threshold(scores: np.ndarray, binary: np.ndarray) -> float:
    """argmax(TPR - FPR) over the ROC's thresholds (every distinct score, none dropped)."""
    fpr, tpr, thr = roc_curve(binary, scores, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    return float(min(thr[best], 1.0))  # the first ROC threshold is +inf: clamp to a usable score


def _ranked_classes(probs: np.ndarray, normal_id: int, predicted_normal: np.ndarray, k: int) -> np.ndarray:
    """Top-k class ids per frame; a frame predicted normal ranks the normal class first."""
    abn = np.delete(probs, normal_id, axis=1)
    k = min(k, abn.shape[1])
    order = np.argsort(-abn, axis=1, kind="stable")[:, :k]
    order = np.where(order >= normal_id, order + 1, order)
    with_normal = np.concatenate([np.full((len(order), 1), normal_id), order[:, : k - 1]], axis=1)
    return np.where(predicted_normal[:, None], with_normal, order)


def _per_class(values: dict[int, float], num_classes: int) -> list[float | None]:
    return [values.get(c) for c in range(num_classes)]


def compute_metrics(scores: np.ndarray, probs: np.ndarray, labels: np.ndarray, normal_id: int) -> dict:
    """Everything the reference's `metrics.json` holds, with `None` for classes absent from the test set."""
    scores = np.asarray(scores, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    binary = (labels != normal_id).astype(int)
    if binary.min() == binary.max():
        raise ValueError("the test frames must contain both normal and abnormal frames to compute AUC")
    threshold = youden_threshold(scores, binary)
    pred = predict_classes(scores, probs, normal_id, threshold)

    present = [c for c in range(num_classes) if (labels == c).any()]
    mc_auroc, mc_aupr = {}, {}
    for c in present:
        target = (labels == c).astype(int)
        if target.min() != target.max():
            mc_auroc[c] = float(roc_auc_score(target, probs[:, c]))
            mc_aupr[c] = float(average_precision_score(target, probs[:, c]))
    abnormal_present = [c for c in present if c != normal_id and c in mc_auroc]

    predicted_normal = pred == normal_id
    top1 = _ranked_classes(probs, normal_id, predicted_normal, 1)[:, 0]
    top5 = _ranked_classes(probs, normal_id, predicted_normal, 5)
    top1_acc = {c: float((top1[labels == c] == c).mean()) for c in present}
    top5_acc = {c: float((top5[labels == c] == c).any(axis=1).mean()) for c in present}

    return {
        "auc_roc": float(roc_auc_score(binary, scores)),
        "auc_pr": float(average_precision_score(binary, scores)),
        "mean_mc_auroc": float(np.mean([mc_auroc[c] for c in abnormal_present])) if abnormal_present else None,
        "mean_mc_aupr": float(np.mean([mc_aupr[c] for c in abnormal_present])) if abnormal_present else None,
        "mc_auroc": _per_class(mc_auroc, num_classes),
        "mc_aupr": _per_class(mc_aupr, num_classes),
        "top1_accuracy": _per_class(top1_acc, num_classes),
        "top5_accuracy": _per_class(top5_acc, num_classes),
        "optimal_threshold": threshold,
        "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(num_classes)), normalize="true").tolist(),
        "num_frames": int(len(labels)),
        "num_abnormal_frames": int(binary.sum()),
    }


def headline(metrics: dict, preset: str) -> tuple[str, float]:
    """The number a paper table reports for this dataset: AP for XD-Violence, else AUC."""
    return ("AP", metrics["auc_pr"]) if preset == "xdviolence" else ("AUC", metrics["auc_roc"])
