"""The figures' content, read back from the matplotlib objects: what a reader of the PNG sees."""

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalyclip.metrics import compute_metrics
from anomalyclip.plots import (
    cell_text,
    plot_confusion,
    plot_prediction,
    plot_pr,
    plot_pr_per_class,
    plot_roc,
    plot_roc_per_class,
)
from anomalyclip.predictor import Prediction

UCF = ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Normal",
       "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
NORMAL = 7
ABSENT = 4  # Burglary: no frame of it in the test set


@pytest.fixture(scope="module")
def frames():
    """Frames of 12 abnormal classes (one absent) and many normal ones; probabilities that
    favour the true class a little, so every curve is different and none is perfect."""
    rng = np.random.default_rng(0)
    present = [c for c in range(len(UCF)) if c not in (NORMAL, ABSENT)]
    labels = np.concatenate([np.full(rng.integers(30, 300), c) for c in present] + [np.full(4000, NORMAL)])
    logits = rng.normal(size=(len(labels), len(UCF)))
    logits[np.arange(len(labels)), labels] += rng.uniform(0.3, 2.0, size=len(UCF))[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = 1 - probs[:, NORMAL]
    return probs, labels, scores


def _png_ok(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200


def _legend_texts(fig):
    (ax,) = [a for a in fig.axes if a.get_legend() is not None]
    return [t.get_text() for t in ax.get_legend().get_texts()], ax


def _legend_outside(fig, ax):
    renderer = FigureCanvasAgg(fig).get_renderer()  # the saved figure is closed: a fresh Agg canvas
    legend, axes = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.x0 >= axes.x1, "the legend must sit right of the axes, not on the curves"


def test_roc_per_class_legend_holds_sklearn_aucs(tmp_path, frames):
    probs, labels, _ = frames
    fig = plot_roc_per_class(tmp_path / "roc_per_class.png", probs, labels, UCF, NORMAL, run_name="seed-1")
    _png_ok(tmp_path / "roc_per_class.png")
    texts, ax = _legend_texts(fig)
    expected = {UCF[c]: roc_auc_score(labels == c, probs[:, c]) for c in range(len(UCF)) if c not in (NORMAL, ABSENT)}
    assert len(texts) == len(expected) == 12
    for text in texts:
        name, value = text.split()
        assert float(value) == pytest.approx(100 * expected[name], abs=0.005)
    assert "Normal" not in " ".join(texts) and "Burglary" not in " ".join(texts)
    assert "seed-1" in ax.get_title()
    _legend_outside(fig, ax)


def test_per_class_values_are_metrics_json_values(tmp_path, frames):
    """The legend's numbers are the ones metrics.json reports (mc_auroc / mc_aupr)."""
    probs, labels, scores = frames
    m = compute_metrics(scores, probs, labels, NORMAL)
    roc_texts, _ = _legend_texts(plot_roc_per_class(tmp_path / "a.png", probs, labels, UCF, NORMAL))
    pr_texts, _ = _legend_texts(plot_pr_per_class(tmp_path / "b.png", probs, labels, UCF, NORMAL))
    for text in roc_texts:
        name, value = text.split()
        assert value == f"{100 * m['mc_auroc'][UCF.index(name)]:.2f}"
    for text in pr_texts[:-1]:
        name, value = text.split()[:2]
        assert value == f"{100 * m['mc_aupr'][UCF.index(name)]:.2f}"


def test_pr_per_class_ap_and_prevalence_lines(tmp_path, frames):
    probs, labels, _ = frames
    fig = plot_pr_per_class(tmp_path / "pr_per_class.png", probs, labels, UCF, NORMAL, run_name="zero-shot")
    _png_ok(tmp_path / "pr_per_class.png")
    texts, ax = _legend_texts(fig)
    class_texts = texts[:-1]
    assert len(class_texts) == 12 and "prevalence" in texts[-1]
    assert "prevalence" in ax.get_legend().get_title().get_text() and "positives / N" in ax.get_legend().get_title().get_text()
    for text in class_texts:
        name, ap = text.split()[:2]
        c = UCF.index(name)
        assert float(ap) == pytest.approx(100 * average_precision_score(labels == c, probs[:, c]), abs=0.005)
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    for c in range(len(UCF)):
        if c in (NORMAL, ABSENT):
            assert f"prevalence:{UCF[c]}" not in lines
            continue
        y = np.asarray(lines[f"prevalence:{UCF[c]}"].get_ydata(), dtype=float)
        assert np.allclose(y, (labels == c).sum() / len(labels))
        assert lines[f"prevalence:{UCF[c]}"].get_linestyle() == "--"
    assert "zero-shot" in ax.get_title()
    _legend_outside(fig, ax)


def test_binary_curves_carry_the_run_name(tmp_path, frames):
    _, labels, scores = frames
    binary = (labels != NORMAL).astype(int)
    roc = plot_roc(tmp_path / "roc.png", binary, scores, roc_auc_score(binary, scores), run_name="run A")
    pr = plot_pr(tmp_path / "pr.png", binary, scores, average_precision_score(binary, scores), run_name="run A")
    for fig in (roc, pr):
        assert "run A" in fig.axes[0].get_title()
    prevalence = [ln for ln in pr.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(prevalence[0].get_ydata(), binary.mean())
    _png_ok(tmp_path / "roc.png")
    _png_ok(tmp_path / "pr.png")


def test_cell_text_rules():
    assert cell_text(0.0) == ""
    assert cell_text(0.004) == "<1" and cell_text(0.99) == "<1"
    assert cell_text(1.0) == "1" and cell_text(42.4) == "42" and cell_text(99.49) == "99"
    assert cell_text(99.7) == ">99" and cell_text(100.0) == "100"


def test_confusion_text_and_colour_bar_share_the_percent_scale(tmp_path):
    names = ["Abuse", "Arrest", "Normal", "Robbery"]
    counts = np.array([1234, 56, 987654, 0])
    matrix = np.array([
        [0.62, 0.003, 0.377, 0.0],
        [0.0, 0.5, 0.25, 0.25],
        [0.0004, 0.0, 0.9996, 0.0],
        [0.0, 0.0, 0.0, 0.0],  # absent class: an empty row
    ])
    fig = plot_confusion(tmp_path / "cm.png", matrix, names, counts, run_name="best on test")
    _png_ok(tmp_path / "cm.png")
    ax, bar_ax = fig.axes
    image = ax.get_images()[0]
    assert image.get_clim() == (0, 100)
    assert bar_ax.get_ylim() == pytest.approx((0, 100))
    assert "%" in bar_ax.get_ylabel()
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    for i in range(4):
        for j in range(4):
            if matrix[i, j] > 0:
                assert cells.get((i, j)), f"non-zero cell ({i}, {j}) has no text"
                assert cells[(i, j)] == cell_text(100 * matrix[i, j])
            else:
                assert (i, j) not in cells
    texts = [float(v) for v in cells.values() if re.fullmatch(r"\d+", v)]
    assert max(texts) <= 100 and max(texts) > 1  # percent, like the colour bar
    assert cells[(0, 1)] == "<1" and cells[(2, 2)] == ">99" and cells[(0, 0)] == "62"
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["Abuse (n=1,234)", "Arrest (n=56)", "Normal (n=987,654)", "Robbery (n=0)"]
    assert "best on test" in ax.get_title()


def test_confusion_without_counts_keeps_plain_names(tmp_path):
    fig = plot_confusion(tmp_path / "cm.png", np.eye(3), ["a", "Normal", "b"])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "Normal", "b"]


def test_prediction_figure_has_the_class_probability_panel(tmp_path):
    """Score, p(c | a) of the top classes and the class band share one time axis; each legend
    sits beside its panel; the curves are the conditional probabilities P[:, c] / sum_abnormal P."""
    rng = np.random.default_rng(1)
    t, fps = 400, 25.0
    scores = np.clip(0.2 + 0.7 * (np.arange(t) > 250) + 0.05 * rng.standard_normal(t), 0.01, 0.99).astype(np.float32)
    cond = rng.dirichlet(np.ones(len(UCF) - 1) * 0.3, size=t)  # p(c | a) over the 13 abnormal classes
    cond[250:, 6] += 3.0  # Fighting (id 6, before the normal id 7: abnormal column 6) dominates the anomaly
    cond /= cond.sum(1, keepdims=True)
    probs = np.insert(cond * scores[:, None], NORMAL, 1 - scores, axis=1).astype(np.float32)
    pred = np.where(scores >= 0.5, 6, NORMAL)
    events = [{"start": 251, "end": 399}]
    fig = plot_prediction(tmp_path / "p.png", Prediction(scores, probs, pred, 0.5), UCF, NORMAL, fps=fps,
                          gt_spans=[(260, 390)], spans=events)
    _png_ok(tmp_path / "p.png")
    score_ax, class_ax, band = fig.axes
    assert score_ax.get_shared_x_axes().joined(score_ax, class_ax) and score_ax.get_shared_x_axes().joined(score_ax, band)
    lines = [line for line in class_ax.get_lines() if (line.get_gid() or "").startswith("class:")]
    assert 1 <= len(lines) <= 3
    mass = probs[:, [c for c in range(len(UCF)) if c != NORMAL]].sum(0)
    top = [c for c in range(len(UCF)) if c != NORMAL][int(mass.argmax())]
    assert lines[0].get_gid() == f"class:{UCF[top]}" == "class:Fighting"
    for line in lines:
        c = UCF.index(line.get_gid().split(":", 1)[1])
        expected = probs[:, c] / (probs.sum(1) - probs[:, NORMAL])
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-5)
        np.testing.assert_allclose(line.get_xdata(), np.arange(t) / fps)
    (score_line,) = [line for line in score_ax.get_lines() if line.get_label() == "anomaly score"]
    np.testing.assert_allclose(score_line.get_ydata(), scores)
    assert [p.get_gid() for p in score_ax.patches if (p.get_gid() or "").startswith("event:")] == ["event:251-399"]
    for ax in (score_ax, class_ax):
        _legend_outside(fig, ax)
