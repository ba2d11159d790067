import numpy as np
import pytest
import torch

from anomalyclip.classes import ClassTable, abnormal_ids, best_abnormal, normal_index, predict_classes, to_k_space
from anomalyclip.errors import InputError


def test_k_space_drops_the_normal_id_for_ints_arrays_and_tensors():
    normal = 7  # UCF-Crime
    expected = {0: 0, 6: 6, 8: 7, 13: 12}
    for y, k in expected.items():
        assert to_k_space(y, normal) == k
    ys = list(expected)
    assert to_k_space(np.array(ys), normal).tolist() == list(expected.values())
    t = to_k_space(torch.tensor(ys), normal)
    assert t.dtype == torch.int64 and t.tolist() == list(expected.values())


def test_normal_class_and_abnormal_ids():
    assert normal_index(["Abuse", " normal ", "Riot"]) == 1
    for names in (["Abuse", "Riot"], ["Normal", "normal"]):
        with pytest.raises(InputError, match="exactly one class must be named 'Normal'"):
            normal_index(names)
    table = ClassTable.from_names(["Abuse", "Normal", "Riot", "Shooting"])
    assert table.normal_id == 1 and table.abnormal_ids == abnormal_ids(4, 1) == [0, 2, 3]


@pytest.mark.parametrize("normal", [0, 2, 4])
def test_best_abnormal_and_predicted_classes_equal_a_loop(normal):
    rng = np.random.default_rng(normal)
    probs = np.round(rng.random((400, 5)) * 4) / 4  # a coarse grid: many ties
    scores = rng.random(400)
    for row, p, s in zip(best_abnormal(probs, normal), probs, scores):
        candidates = [c for c in range(5) if c != normal]
        assert row == max(candidates, key=lambda c: (p[c], -c))  # highest, then the lower id
    pred = predict_classes(scores, probs, normal, 0.5)
    assert pred.dtype == np.int64
    assert np.array_equal(pred == normal, scores < 0.5)
