"""PNG figures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from anomalyclip.fileio import atomic_path  # noqa: E402
from anomalyclip.runs import runs  # noqa: E402


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


def class_colours(class_names: list[str], normal_id: int) -> list[tuple]:
    """A fixed colour per class id (normal light grey), the same in every figure."""
    cmap = matplotlib.colormaps["tab20"] if len(class_names) > 11 else matplotlib.colormaps["tab10"]
    out, k = [], 0
    for c in range(len(class_names)):
        if c == normal_id:
            out.append((0.86, 0.86, 0.86, 1.0))
        else:
            out.append(cmap(k % cmap.N))
            k += 1
    return out


def plot_prediction(
    path: str | Path,
    prediction,  # predictor.Prediction
    class_names: list[str],
    normal_id: int,
    fps: float | None = None,
    gt_spans: list[tuple[int, int]] | None = None,
    title: str = "",
) -> None:
    """Score curve, threshold line, ground-truth spans shaded, predicted classes as a band below."""
    t = prediction.num_frames
    scale = 1.0 / fps if fps else 1.0
    x = np.arange(t) * scale
    colours = class_colours(class_names, normal_id)
    fig, (ax, band) = plt.subplots(
        2, 1, figsize=(11, 4.2), sharex=True, gridspec_kw={"height_ratios": [6, 1], "hspace": 0.06}
    )
    handles = []
    for i, (s, e) in enumerate(gt_spans or []):
        h = ax.axvspan(s * scale, (e + 1) * scale, color="tab:red", alpha=0.15, linewidth=0, label="ground truth" if i == 0 else None)
        if i == 0:
            handles.append(h)
    (line,) = ax.plot(x, prediction.scores, color="tab:blue", linewidth=1.2, label="anomaly score")
    thr = ax.axhline(prediction.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {prediction.threshold:.3g}")
    handles = [line, thr] + handles
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(t, 1) * scale)
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)

    by_class: dict[int, list[tuple[float, float]]] = {}
    starts, lengths = runs(prediction.pred)
    for s, n in zip(starts.tolist(), lengths.tolist()):
        by_class.setdefault(int(prediction.pred[s]), []).append((s * scale, n * scale))
    for c, bars in by_class.items():
        band.broken_barh(bars, (0, 1), facecolors=colours[c], linewidth=0)
    band.set_ylim(0, 1)
    band.set_yticks([])
    band.set_ylabel("class", rotation=0, ha="right", va="center", fontsize=8)
    band.set_xlabel("time (s)" if fps else "frame")
    present = sorted(by_class)
    band.legend(
        handles=[Patch(facecolor=colours[c], label=class_names[c]) for c in present],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncol=min(len(present), 6),
        fontsize=8,
        frameon=False,
        title="predicted class",
        title_fontsize=8,
    )
    _save(fig, path)
