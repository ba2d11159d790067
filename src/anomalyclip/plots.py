"""PNG figures people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from anomalyclip.classes import abnormal_ids  # noqa: E402
from anomalyclip.fileio import atomic_path  # noqa: E402
from anomalyclip.metrics import RankCurve  # noqa: E402
from anomalyclip.runs import runs  # noqa: E402


def _save(fig, path: str | Path):
    """Write the PNG atomically and close the figure; the closed figure is returned so callers
    (and tests) can still read its artists."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return fig


def _titled(what: str, run_name: str) -> str:
    return f"{what} - {run_name}" if run_name else what


def plot_roc(path: str | Path, binary: np.ndarray, scores: np.ndarray, auc: float, *, run_name: str = ""):
    fpr, tpr, _ = roc_curve(binary, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {100 * auc:.2f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_titled("ROC (frame level)", run_name), fontsize=10)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(path: str | Path, binary: np.ndarray, scores: np.ndarray, ap: float, *, run_name: str = ""):
    precision, recall, _ = precision_recall_curve(binary, scores)
    prevalence = float(np.mean(binary))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.step(recall, precision, where="post", color="tab:red", label=f"AP {100 * ap:.2f}")
    ax.axhline(prevalence, color="grey", linestyle="--", linewidth=1, label=f"prevalence {100 * prevalence:.2f}% (random ranking)")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_titled("Precision-recall (frame level)", run_name), fontsize=10)
    ax.legend(loc="lower left")
    return _save(fig, path)


# -- one curve per abnormal class ----------------------------------------------------------------
def _present_abnormal(labels: np.ndarray, num_classes: int, normal_id: int) -> list[int]:
    """Abnormal classes with both positives and negatives among the frames: the classes that
    metrics.json's mc_auroc / mc_aupr hold a value for."""
    counts = np.bincount(labels, minlength=num_classes)
    return [c for c in abnormal_ids(num_classes, normal_id) if 0 < counts[c] < len(labels)]


def _outside_legend(ax, title: str) -> None:
    """Legend right of the axes: 13-17 classes would otherwise cover the curves."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
              title=title, title_fontsize=8, frameon=False)


def _thin(*curves: np.ndarray, points: int = 2000) -> np.ndarray:
    """Indices of a curve's points that draw it at figure resolution: where any of the given
    monotonic coordinates crosses one of `points` grid steps, plus the first points (the top of
    the ranking, where precision jumps). 1.1 M frames otherwise make 1.1 M-point lines."""
    n = len(curves[0])
    if n <= 4 * points:
        return np.arange(n)
    grid = np.linspace(0, 1, points)
    keep = [np.arange(min(n, 200)), [n - 1]] + [np.searchsorted(c, grid).clip(0, n - 1) for c in curves]
    return np.unique(np.concatenate(keep))


def _class_curves(probs: np.ndarray, labels: np.ndarray, classes: list[int]):
    """(class, curve) for each class: one sort of its probability column gives the ROC and PR
    points and the AUC / AP with metrics.json's definitions."""
    for c in classes:
        yield c, RankCurve.of(probs[:, c], labels == c)


def plot_roc_per_class(
    path: str | Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str], normal_id: int, *, run_name: str = ""
):
    """One-vs-rest ROC of P[:, c] against label == c for each abnormal class in the test set
    (METHOD §11 recognition), its AUC in the legend."""
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=np.int64)
    colours = class_colours(class_names, normal_id)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, curve in _class_curves(probs, labels, _present_abnormal(labels, len(class_names), normal_id)):
        fpr, tpr = np.r_[0.0, curve.fps / curve.fps[-1]], np.r_[0.0, curve.tps / curve.tps[-1]]
        keep = _thin(fpr, tpr)
        (line,) = ax.plot(fpr[keep], tpr[keep], color=colours[c], linewidth=1.2,
                          label=f"{class_names[c]}  {100 * curve.auc_roc():.2f}")
        line.set_gid(f"roc:{class_names[c]}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_titled("ROC per class (one vs rest)", run_name), fontsize=10)
    _outside_legend(ax, "class  AUC (%)")
    return _save(fig, path)


def plot_pr_per_class(
    path: str | Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str], normal_id: int, *, run_name: str = ""
):
    """One-vs-rest precision-recall per abnormal class, its AP in the legend, and its prevalence
    (positives / N: the precision, and the AP, of a random ranking) as a dashed line: with
    classes of 0.1 % of the frames an AP of 5 % can be 50 times chance."""
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=np.int64)
    colours = class_colours(class_names, normal_id)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, curve in _class_curves(probs, labels, _present_abnormal(labels, len(class_names), normal_id)):
        tps, fps = curve.tps, curve.fps
        precision = tps / (tps + fps)
        recall = tps / tps[-1]
        ap = curve.average_precision()  # step-wise, as scikit-learn
        keep = _thin(recall)
        prevalence = float(tps[-1] / len(labels))
        # "pre": precision P_i holds over (R_{i-1}, R_i], the step whose area is the AP
        (line,) = ax.step(np.r_[0.0, recall[keep]], np.r_[precision[0], precision[keep]], where="pre", color=colours[c],
                          linewidth=1.2, label=f"{class_names[c]}  {100 * ap:.2f}  ({100 * prevalence:.2g}%)")
        line.set_gid(f"pr:{class_names[c]}")
        base = ax.axhline(prevalence, color=colours[c], linestyle="--", linewidth=0.8)
        base.set_gid(f"prevalence:{class_names[c]}")
    ax.plot([], [], color="grey", linestyle="--", linewidth=0.8, label="dashed: prevalence")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_titled("Precision-recall per class (one vs rest)", run_name), fontsize=10)
    _outside_legend(ax, "class  AP (%)  (prevalence =\npositives / N, dashed)")
    return _save(fig, path)


# -- confusion matrix ------------------------------------------------------------------------
def cell_text(percent: float) -> str:
    """A confusion-matrix cell in percent: zero blank, small non-zero values "<1" (never blank),
    values just short of 100 ">99" (never rounded up to a full row)."""
    if percent <= 0:
        return ""
    if percent < 1:
        return "<1"
    if 99.5 <= percent < 100:
        return ">99"
    return f"{percent:.0f}"


def plot_confusion(
    path: str | Path, matrix: np.ndarray, names: list[str], counts=None, *, run_name: str = ""
):
    """Rows: true class, normalised; cells and colour bar both in percent of the true class's
    frames; each row label carries its frame count when `counts` (frames per class) is given."""
    c = len(names)
    percent = 100 * np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 0.6 * c, 0.8 + 0.6 * c))
    im = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    rows = list(names) if counts is None else [f"{n} (n={int(k):,})" for n, k in zip(names, counts)]
    ax.set_xticks(range(c), names, rotation=90)
    ax.set_yticks(range(c), rows)
    ax.set(xlabel="Predicted", ylabel="True")
    ax.set_title(_titled("Confusion matrix (% of the true class's frames)", run_name), fontsize=10)
    for i in range(c):
        for j in range(c):
            text = cell_text(percent[i, j])
            if text:
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if percent[i, j] > 50 else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("% of the true class's frames (blank cell: 0)")
    return _save(fig, path)


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


def conditional_class_probs(probs: np.ndarray, normal_id: int) -> np.ndarray:
    """`p(c | a) (T, K)`: the abnormal columns of `P (T, C)` renormalised per frame (P's abnormal
    part is `p(c | a) * score`, METHOD §6); a frame whose abnormal part is all zero gets a
    uniform row."""
    abn = np.delete(np.asarray(probs, dtype=np.float64), normal_id, axis=1)  # (T, K)
    total = abn.sum(axis=1, keepdims=True)
    return np.divide(abn, total, out=np.full_like(abn, 1.0 / abn.shape[1]), where=total > 0)


def top_abnormal_classes(probs: np.ndarray, normal_id: int, k: int = 3) -> list[int]:
    """The `k` abnormal class ids holding the most probability mass `sum_t P[t, c]` (the
    classes that matter where the score is high), most first."""
    ids = abnormal_ids(probs.shape[1], normal_id)
    mass = np.asarray(probs, dtype=np.float64)[:, ids].sum(axis=0)
    order = sorted(range(len(ids)), key=lambda j: (-mass[j], ids[j]))
    return [ids[j] for j in order[:k]]


def _legend_right(ax, **kw) -> None:
    """A legend beside the axes, so it never covers a curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, frameon=False, **kw)


def plot_prediction(
    path: str | Path,
    prediction,  # predictor.Prediction
    class_names: list[str],
    normal_id: int,
    fps: float | None = None,
    gt_spans: list[tuple[int, int]] | None = None,
    title: str = "",
    spans: list[dict] | None = None,
    times: np.ndarray | None = None,
    top_classes: int = 3,
):
    """Three panels on one time axis: the score with the threshold, the detected events
    (`spans`, a dark bar along the bottom) and the ground truth (shaded); p(c | a) of the `top_classes` most
    probable abnormal classes, as the authors' visualiser shows; the predicted class as a band.
    Legends sit beside the panels. `times (T,)`: the frames' own times in seconds."""
    t = prediction.num_frames
    timed = times is not None or bool(fps)
    x = np.asarray(times, dtype=np.float64) if times is not None else np.arange(t) * (1.0 / fps if fps else 1.0)
    step = float(np.median(np.diff(x))) if t > 1 else (1.0 / fps if fps else 1.0)
    edges = np.r_[x, x[-1] + step] if t else np.zeros(1)  # frame i covers [edges[i], edges[i + 1])
    colours = class_colours(class_names, normal_id)
    fig, (ax, cax, band) = plt.subplots(
        3, 1, figsize=(11, 5.6), sharex=True, gridspec_kw={"height_ratios": [5, 3, 0.8], "hspace": 0.08}
    )
    handles = []
    shown = [(max(0, int(s)), min(t - 1, int(e))) for s, e in gt_spans or []]
    for i, (s, e) in enumerate([(s, e) for s, e in shown if s <= e]):
        h = ax.axvspan(edges[s], edges[e + 1], color="tab:red", alpha=0.15, linewidth=0)
        if i == 0:
            h.set_label("ground truth")
            handles.append(h)
    for i, span in enumerate(spans or []):
        h = ax.axvspan(edges[span["start"]], edges[span["end"] + 1], ymin=0.0, ymax=0.06, color="black", alpha=0.7, linewidth=0)
        h.set_gid(f"event:{span['start']}-{span['end']}")
        if i == 0:
            h.set_label("detected event")
            handles.append(h)
    (line,) = ax.plot(x, prediction.scores, color="tab:blue", linewidth=1.2, label="anomaly score")
    thr = ax.axhline(prediction.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {prediction.threshold:.3g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title, fontsize=10)
    _legend_right(ax, handles=[line, thr] + handles)

    cond = conditional_class_probs(prediction.probs, normal_id)  # (T, K)
    k_of = {c: j for j, c in enumerate(abnormal_ids(len(class_names), normal_id))}
    for c in top_abnormal_classes(prediction.probs, normal_id, top_classes):
        (curve,) = cax.plot(x, cond[:, k_of[c]], color=colours[c], linewidth=1.0, label=class_names[c])
        curve.set_gid(f"class:{class_names[c]}")
    cax.set_ylim(-0.02, 1.02)
    cax.set_ylabel("p(class | anomaly)", fontsize=9)
    _legend_right(cax, title="top classes", title_fontsize=8)

    by_class: dict[int, list[tuple[float, float]]] = {}
    starts, lengths = runs(prediction.pred)
    for s, n in zip(starts.tolist(), lengths.tolist()):
        by_class.setdefault(int(prediction.pred[s]), []).append((edges[s], edges[s + n] - edges[s]))
    for c, bars in by_class.items():
        band.broken_barh(bars, (0, 1), facecolors=colours[c], linewidth=0)
    band.set_ylim(0, 1)
    band.set_yticks([])
    band.set_ylabel("class", rotation=0, ha="right", va="center", fontsize=8)
    band.set_xlabel("time (s)" if timed else "frame")
    present = sorted(by_class)
    band.legend(
        handles=[Patch(facecolor=colours[c], label=class_names[c]) for c in present],
        loc="upper center",
        bbox_to_anchor=(0.5, -1.25),
        ncol=min(len(present), 6),
        fontsize=8,
        frameon=False,
        title="predicted class",
        title_fontsize=8,
    )
    return _save(fig, path)
