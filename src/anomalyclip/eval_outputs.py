"""What an evaluation leaves on disk: metrics.json, predictions.csv, the figures, and the short
summary table printed at the end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anomalyclip.classes import ClassTable, predict_classes
from anomalyclip.data.formats import VideoEntry
from anomalyclip.fileio import atomic_path, write_json
from anomalyclip.presets import Preset

if TYPE_CHECKING:
    from anomalyclip.evaluation import EvalResult


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


def summary(metrics: dict, preset: Preset, where: str | Path) -> str:
    """The table, then the number the paper's table leads with for this dataset."""
    value = metrics[preset.headline]
    return f"{format_table(metrics)}\nheadline {preset.headline_name}: {100 * value:.2f}   outputs: {where}"
