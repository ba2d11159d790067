import numpy as np
import pytest
import torch

from anomalyclip.data import datasets
from anomalyclip.classes import ClassTable
from anomalyclip.evaluation import Evaluator


def test_compute_orders_videos_by_index_and_numbers_frames_per_video():
    ev = Evaluator(ClassTable(names=["A", "B", "Normal"], normal_id=2))
    g = torch.Generator().manual_seed(0)
    parts = {}
    for index, length in [(2, 5), (0, 3), (1, 4)]:  # arrive out of order, as batches may
        labels = torch.full((length,), 2)
        labels[1] = index % 2
        scores, probs = torch.rand(length, generator=g), torch.rand(length, 3, generator=g)
        parts[index] = (scores, probs, labels)
        ev.update(datasets.TestVideo(index, torch.zeros(length, 4), labels), scores, probs)
    result = ev.compute()
    assert result.video.tolist() == [0] * 3 + [1] * 4 + [2] * 5
    assert result.frame.tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4]
    np.testing.assert_array_equal(result.scores, torch.cat([parts[i][0] for i in range(3)]).numpy())
    np.testing.assert_array_equal(result.probs, torch.cat([parts[i][1] for i in range(3)]).numpy())
    np.testing.assert_array_equal(result.labels, torch.cat([parts[i][2] for i in range(3)]).numpy())
    assert result.metrics["num_frames"] == 12 and result.metrics["class_names"] == ["A", "B", "Normal"]
    with pytest.raises(ValueError, match="no test video"):  # the parts moved into the result
        ev.compute()
