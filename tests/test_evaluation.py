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


def test_videos_written_in_place_give_what_the_parts_give():
    """With the videos' row counts known the evaluator writes each video into arrays allocated up
    front; the arrays and every metric equal those of the parts joined at the end."""
    classes = ClassTable(names=["A", "B", "C", "Normal"], normal_id=3)
    g = torch.Generator().manual_seed(1)
    lengths = [7, 1, 30, 12, 5]
    videos = []
    for index, t in enumerate(lengths):
        labels = torch.full((t,), 3)
        labels[: t // 2] = index % 3  # about half of each video abnormal
        videos.append((datasets.TestVideo(index, torch.zeros(t, 4), labels), torch.rand(t, generator=g), torch.rand(t, 4, generator=g)))
    parts, placed = Evaluator(classes), Evaluator(classes, rows=lengths)
    for i in (3, 0, 4, 1, 2):  # out of order, as batches may come
        parts.update(*videos[i])
        placed.update(*videos[i])
    a, b = parts.compute(), placed.compute()
    for name in ("scores", "probs", "labels", "video", "frame"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.metrics == b.metrics and b.metrics["num_frames"] == sum(lengths)
    with pytest.raises(ValueError, match="no test video"):  # empty afterwards
        placed.compute()
    placed.reset()
    for i in (0, 1, 2, 4):
        placed.update(*videos[i])
    with pytest.raises(ValueError, match="1 of 5 test videos were not scored"):
        placed.compute()
    video, scores, probs = videos[2]
    with pytest.raises(ValueError, match="video 2: 29 scores for its 30 rows"):
        placed.update(video, scores[:29], probs[:29])


XD = ["Abuse", "Car_accident", "Explosion", "Fighting", "Normal", "Riot", "Shooting"]


def _result(names: list[str], normal_id: int, seed: int = 0):
    """An evaluation of 8 videos (4 normal) whose probabilities follow the labels, with noise."""
    rng = np.random.default_rng(seed)
    ev = Evaluator(ClassTable(names=names, normal_id=normal_id))
    abnormal = [c for c in range(len(names)) if c != normal_id]
    for index in range(8):
        t = int(rng.integers(60, 200))
        labels = np.full(t, normal_id)
        if index % 2 == 0:
            s = int(rng.integers(0, t // 2))
            labels[s : s + t // 3] = abnormal[index // 2 % len(abnormal)]
        logits = rng.normal(scale=0.3, size=(t, len(names)))  # mild noise: long runs above the thresholds
        logits[np.arange(t), labels] += 2.0
        if index % 2:
            logits[: t // 8, normal_id] -= 3.0  # a dip: the normal run covers 7/8 of a normal video
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        video = datasets.TestVideo(index, torch.zeros(t, 4), torch.from_numpy(labels))
        ev.update(video, torch.from_numpy(1 - probs[:, normal_id]), torch.from_numpy(probs))
    return ev.compute()


def test_run_metrics_pick_the_datasets_fine_grained_rule():
    """XD-Violence (named, or recognised by its class table) scores the normal class; the other
    presets and unknown class tables give it AP 0 (FINEGRAINED.md)."""
    from anomalyclip.evaluation import run_metrics
    from anomalyclip.metrics import fine_grained_map

    result = _result(XD, 4)
    classes = ClassTable(names=XD, normal_id=4)
    xd = fine_grained_map(result.probs, result.labels, result.video, 4, include_normal=True)
    ucf = fine_grained_map(result.probs, result.labels, result.video, 4, include_normal=False)
    assert xd["map_tiou_avg"] != ucf["map_tiou_avg"]  # the rule matters on these frames
    for preset, dataset in (("xdviolence", "xdviolence"), (None, "xdviolence")):
        m = run_metrics(result, classes, preset, "anomalyclip")
        assert m == {"dataset": dataset, "method": "anomalyclip", **xd, "fine_grained_rule": "xd"}
    m = run_metrics(result, classes, "ucfcrime", "zeroshot")  # the preset named wins
    assert m == {"dataset": "ucfcrime", "method": "zeroshot", **ucf, "fine_grained_rule": "ucf"}
    renamed = ClassTable(names=[n + "x" if n != "Normal" else n for n in XD], normal_id=4)
    m = run_metrics(result, renamed, None, "anomalyclip")
    assert m == {"dataset": None, "method": "anomalyclip", **ucf, "fine_grained_rule": "ucf"}
