"""What an evaluation leaves on disk: metrics.json, predictions.csv, the figures, and the short
summary table printed at the end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anomalyclip.classes import ClassTable, predict_classes
from anomalyclip.data.formats import VideoEntry
from anomalyclip.fileio import OutputSet, atomic_path, write_json
from anomalyclip.finegrained import DEFAULT_TIOUS
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


def write_eval_outputs(
    out_dir: str | Path, result: EvalResult, entries: list[VideoEntry], classes: ClassTable, run_name: str | None = None
) -> None:
    """metrics.json, predictions.csv and the figures: ROC / PR (frame level), ROC / PR per
    abnormal class, and the confusion matrix with each true class's frame count. Every title
    carries `run_name` (default: the folder's name)."""
    from anomalyclip.plots import plot_confusion, plot_pr, plot_pr_per_class, plot_roc, plot_roc_per_class

    out = Path(out_dir)
    name = out.resolve().name if run_name is None else run_name
    binary = (result.labels != classes.normal_id).astype(int)
    m = result.metrics
    counts = np.bincount(result.labels, minlength=classes.num_classes)
    with OutputSet(out) as files:  # all of them or, on a failure, none (an earlier set stays whole)
        write_json(files.path("metrics.json"), m)
        write_predictions(files.path("predictions.csv"), result, entries, classes)
        plot_roc(files.path("roc.png"), binary, result.scores, m["auc_roc"], run_name=name)
        plot_pr(files.path("pr.png"), binary, result.scores, m["auc_pr"], run_name=name)
        plot_roc_per_class(files.path("roc_per_class.png"), result.probs, result.labels, classes.names, classes.normal_id, run_name=name)
        plot_pr_per_class(files.path("pr_per_class.png"), result.probs, result.labels, classes.names, classes.normal_id, run_name=name)
        plot_confusion(files.path("confusion_matrix.png"), np.asarray(m["confusion_matrix"]), classes.names, counts, run_name=name)


FINE_GRAINED_ROWS = [(f"map_tiou_{t:g}", f"mAP@{t:g}") for t in DEFAULT_TIOUS] + [("map_tiou_avg", "mAP@AVG")]
RULE_WORDS = {"ucf": "UCF-Crime rule, normal class AP 0", "xd": "XD-Violence rule, normal class scored"}


def format_table(metrics: dict) -> str:
    """A short text table of the headline numbers, in percent as papers report them; the
    fine-grained mAP@tIoU rows when the metrics hold them."""
    rows = [
        ("AUC", metrics["auc_roc"]),
        ("AP", metrics["auc_pr"]),
        ("mAUC", metrics["mean_mc_auroc"]),
        ("mAP", metrics["mean_mc_aupr"]),
    ]
    rows += [(label, metrics[key]) for key, label in FINE_GRAINED_ROWS if key in metrics]
    width = len("threshold")
    lines = [f"{'metric':<{width}}  value (%)", f"{'-' * width}  ---------"]
    lines += [f"{k:<{width}}  {'n/a' if v is None else f'{100 * v:9.2f}'}" for k, v in rows]
    lines.append(f"{'threshold':<{width}}  {metrics['optimal_threshold']:.4f}")
    rule = metrics.get("fine_grained_rule")
    if rule:
        lines.append(f"mAP@tIoU: {rule} ({RULE_WORDS.get(rule, 'unknown rule')})")
    return "\n".join(lines)


def summary(metrics: dict, preset: Preset, where: str | Path) -> str:
    """The table, then the number the paper's table leads with for this dataset."""
    value = metrics[preset.headline]
    return f"{format_table(metrics)}\nheadline {preset.headline_name}: {100 * value:.2f}   outputs: {where}"
