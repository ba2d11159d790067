import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from anomalyclip.metrics import compute_metrics, predict_classes, youden_threshold


def random_eval(seed=0, n=3000, c=6, normal=2, absent=(5,)):
    rng = np.random.default_rng(seed)
    labels = rng.choice([k for k in range(c) if k not in absent], size=n, p=None)
    labels[rng.random(n) < 0.5] = normal
    scores = np.clip(rng.random(n) * 0.6 + 0.4 * (labels != normal), 0, 1)
    probs = rng.random((n, c))
    probs[np.arange(n), labels] += 0.5
    probs /= probs.sum(1, keepdims=True)
    return scores, probs, labels


def naive_youden(scores, binary):
    best, best_t = -np.inf, None
    for t in sorted(set(scores.tolist()), reverse=True):
        pred = scores >= t
        tpr = (pred & (binary == 1)).sum() / (binary == 1).sum()
        fpr = (pred & (binary == 0)).sum() / (binary == 0).sum()
        if tpr - fpr > best:
            best, best_t = tpr - fpr, t
    return best_t


def test_metrics_against_sklearn_and_naive_loops():
    normal = 2
    scores, probs, labels = random_eval(normal=normal)
    m = compute_metrics(scores, probs, labels, normal)
    binary = (labels != normal).astype(int)
    assert m["auc_roc"] == pytest.approx(roc_auc_score(binary, scores), abs=1e-12)
    assert m["auc_pr"] == pytest.approx(average_precision_score(binary, scores), abs=1e-12)
    assert m["optimal_threshold"] == pytest.approx(naive_youden(scores, binary))
    per_auc = [roc_auc_score(labels == c, probs[:, c]) for c in (0, 1, 3, 4)]
    per_ap = [average_precision_score(labels == c, probs[:, c]) for c in (0, 1, 3, 4)]
    assert m["mc_auroc"][5] is None and m["mc_aupr"][5] is None  # absent class
    assert m["mc_auroc"][0] == pytest.approx(per_auc[0])
    assert m["mean_mc_auroc"] == pytest.approx(np.mean(per_auc))
    assert m["mean_mc_aupr"] == pytest.approx(np.mean(per_ap))

    # Predicted class, top-1 and top-5 by explicit loops.
    thr = m["optimal_threshold"]
    pred, top1_hits, top5_hits = [], {}, {}
    for s, pr, y in zip(scores, probs, labels):
        ranked = [c for c in np.argsort(-pr, kind="stable") if c != normal]
        p = normal if s < thr else ranked[0]
        pred.append(p)
        top5 = [normal] + ranked[:4] if p == normal else ranked[:5]
        top1_hits.setdefault(y, []).append((normal if p == normal else ranked[0]) == y)
        top5_hits.setdefault(y, []).append(y in top5)
    assert predict_classes(scores, probs, normal, thr).tolist() == pred
    for c in (0, 1, 2, 3, 4):
        assert m["top1_accuracy"][c] == pytest.approx(np.mean(top1_hits[c]))
        assert m["top5_accuracy"][c] == pytest.approx(np.mean(top5_hits[c]))
    cm = np.array(m["confusion_matrix"])
    for c in (0, 1, 2, 3, 4):
        row = [(np.array(pred)[labels == c] == j).mean() for j in range(6)]
        assert cm[c] == pytest.approx(row)
    assert cm[5].tolist() == [0] * 6


def test_youden_uses_roc_thresholds():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    binary = np.array([0, 0, 1, 1])
    assert youden_threshold(scores, binary) == pytest.approx(naive_youden(scores, binary))


def test_one_class_only_is_an_error():
    with pytest.raises(ValueError, match="both normal and abnormal"):
        compute_metrics(np.ones(4), np.full((4, 3), 1 / 3), np.zeros(4, dtype=int), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_and_float32_match_sklearn_and_loops(dtype):
    """Scores and probabilities on a coarse grid (many ties), in the dtype evaluation produces."""
    normal, c = 0, 7
    rng = np.random.default_rng(3)
    n = 5000
    labels = rng.integers(0, c, n)
    labels[rng.random(n) < 0.4] = normal
    scores = (np.round(rng.random(n) * 20 + 6 * (labels != normal)) / 26).astype(dtype)
    probs = np.round(rng.random((n, c)) * 8).astype(dtype)  # integer grid: ties between classes
    probs[np.arange(n), labels] += 3
    probs /= probs.sum(1, keepdims=True)
    m = compute_metrics(scores, probs, labels, normal)
    binary = (labels != normal).astype(int)
    assert m["auc_roc"] == pytest.approx(roc_auc_score(binary, scores), abs=1e-12)
    assert m["auc_pr"] == pytest.approx(average_precision_score(binary, scores), abs=1e-12)
    assert m["optimal_threshold"] == pytest.approx(naive_youden(scores, binary))
    for k in range(c):
        assert m["mc_auroc"][k] == pytest.approx(roc_auc_score(labels == k, probs[:, k]), abs=1e-12)
        assert m["mc_aupr"][k] == pytest.approx(average_precision_score(labels == k, probs[:, k]), abs=1e-12)
    pred = predict_classes(scores, probs, normal, m["optimal_threshold"])
    first_abnormal = [next(j for j in np.argsort(-pr, kind="stable") if j != normal) for pr in probs]
    assert pred.tolist() == [normal if s < m["optimal_threshold"] else j for s, j in zip(scores, first_abnormal)]
    for k in range(c):
        hits1, hits5 = [], []
        for p, pr in zip(pred[labels == k], probs[labels == k]):
            ranked = [j for j in np.argsort(-pr, kind="stable") if j != normal]
            top5 = [normal] + ranked[:4] if p == normal else ranked[:5]
            hits1.append(top5[0] == k)
            hits5.append(k in top5)
        assert m["top1_accuracy"][k] == pytest.approx(np.mean(hits1), abs=1e-12)
        assert m["top5_accuracy"][k] == pytest.approx(np.mean(hits5), abs=1e-12)
    expected = confusion_matrix(labels, pred, labels=list(range(c)), normalize="true")
    assert np.abs(np.array(m["confusion_matrix"]) - expected).max() < 1e-12


def test_no_better_than_chance_threshold_is_clamped():
    """Every score ranks normal frames first: the +inf ROC point wins and becomes 1.0."""
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    binary = np.array([0, 0, 1, 1])
    fpr, tpr, thr = roc_curve(binary, scores, drop_intermediate=False)
    assert np.isinf(thr[np.argmax(tpr - fpr)])
    assert youden_threshold(scores, binary) == 1.0


def test_metrics_and_the_class_space_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, anomalyclip.metrics, anomalyclip.classes, anomalyclip.finegrained; "
            "print(sorted(m for m in ('torch', 'transformers', 'lightning', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
