"""PNG figures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from anomalyclip.fileio import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_roc(path: str | Path, binary: np.ndarray, scores: np.ndarray, auc: float) -> None:
    fpr, tpr, _ = roc_curve(binary, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {100 * auc:.2f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (frame level)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_pr(path: str | Path, binary: np.ndarray, scores: np.ndarray, ap: float) -> None:
    precision, recall, _ = precision_recall_curve(binary, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.step(recall, precision, where="post", color="tab:red", label=f"AP {100 * ap:.2f}")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (frame level)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    _save(fig, path)


def plot_confusion(path: str | Path, matrix: np.ndarray, names: list[str]) -> None:
    c = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * c, 0.8 + 0.6 * c))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), names, rotation=90)
    ax.set_yticks(range(c), names)
    ax.set(xlabel="Predicted", ylabel="True", title="Confusion matrix (normalised by true class)")
    for i in range(c):
        for j in range(c):
            if matrix[i, j] > 0.005:
                ax.text(j, i, f"{100 * matrix[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)
