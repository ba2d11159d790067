import csv
import json
import math

import numpy as np
import pytest
import torch

from anomalyclip.cli import main
from anomalyclip.presets import preset_config
from anomalyclip.data.datasets import TrainItems, normal_centroid
from anomalyclip.data.formats import read_video_list
from anomalyclip.data.sampling import train_indices
from anomalyclip.training import lr_factor


def test_lr_schedule_warmup_then_cosine():
    assert [lr_factor(e, 5, 50) for e in range(6)] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert lr_factor(5 + 45 // 2, 5, 50) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 45)))
    assert lr_factor(50, 5, 50) == pytest.approx(0.0)
    assert lr_factor(0, 0, 10) == 1.0


def test_centroid_is_mean_of_every_normal_training_frame(tiny_dataset):
    entries = read_video_list(tiny_dataset / "Anomaly_Train_Normal.txt")
    frames = np.concatenate([np.load(tiny_dataset / "features" / f"{e.path}.npy") for e in entries])
    c = normal_centroid(entries, tiny_dataset / "features", 512)
    np.testing.assert_allclose(c.numpy(), frames.astype(np.float64).mean(0), atol=1e-5)


def test_training_item_reads_the_sampled_rows(tiny_dataset):
    entries = read_video_list(tiny_dataset / "Anomaly_Train_Abnormal.txt")
    ds = TrainItems(entries, tiny_dataset / "features", 512)
    for i in (0, 5):
        np.random.seed(11)
        x, y = ds[i]
        np.random.seed(11)
        idx = train_indices(ds.rows[i], 32, 16)
        full = np.load(tiny_dataset / "features" / f"{entries[i].path}.npy")
        assert torch.equal(x, torch.from_numpy(full[idx]))
        assert y == entries[i].label


def test_train_eval_end_to_end_and_resume(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out), "--num-workers", "0"]
    assert main(args + ["--epochs", "8"]) == 0
    printed = capsys.readouterr().out
    assert "AUC" in printed and "mAUC" in printed
    for name in ("config.json", "metrics.json", "predictions.csv", "roc.png", "pr.png", "confusion_matrix.png",
                 "eval_history.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "logs/version_0/metrics.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "mc_auroc", "mc_aupr", "top1_accuracy", "top5_accuracy", "optimal_threshold"):
        assert key in metrics
    assert metrics["auc_roc"] > 0.75  # a random scorer gives 0.5

    # predictions.csv: one row per row of every test feature file, columns as documented.
    test = read_video_list(tiny_dataset / "Anomaly_Test.txt")
    rows = sum(np.load(tiny_dataset / "features" / f"{e.path}.npy", mmap_mode="r").shape[0] for e in test)
    with open(out / "predictions.csv") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    names = ["Explosion", "Fighting", "Normal", "Shooting"]
    assert header == ["video", "frame", "label", "score", "pred"] + [f"p_{n}" for n in names]
    assert len(body) == rows
    assert body[0][0] == test[0].path and body[0][1] == "0"
    assert abs(sum(float(v) for v in body[0][5:]) - 1) < 1e-4

    # Our checkpoints are plain data: a safe load works and carries config, classes, threshold.
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    meta = ckpt["anomalyclip"]
    assert meta["class_names"] == names and meta["normal_id"] == 2 and meta["threshold"] is not None
    assert torch.count_nonzero(ckpt["state_dict"]["model.centroid"]) > 0

    # Resume continues the run to the new epoch count.
    assert main(args + ["--epochs", "9", "--resume"]) == 0
    history = json.loads((out / "eval_history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(9))
    assert (out / "logs/version_0/metrics.csv").is_file() and (out / "logs/version_1/metrics.csv").is_file()


def test_eval_every_zero_evaluates_only_at_the_end(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out),
                 "--num-workers", "0", "--epochs", "2", "--eval-every", "0"]) == 0
    assert not (out / "eval_history.json").exists()  # no evaluation during training
    with open(next((out / "logs").glob("version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert rows and not any(r.get("test/auc") for r in rows) and "train/loss" in rows[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["auc_roc"] <= 1 and "AUC" in capsys.readouterr().out  # the final evaluation ran
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["anomalyclip"]["history"] == []


def test_synthetic_preset_is_complete():
    cfg = preset_config("synthetic", "/data")
    assert cfg.train.batch_size % 2 == 0 and cfg.model.feature_dim == 512
    for name in ("ucfcrime", "shanghaitech", "xdviolence"):
        c = preset_config(name)
        assert c.data.labels.endswith("_labels.csv")
    assert preset_config("shanghaitech").model.concat_features and preset_config("shanghaitech").model.depth == 2
    assert preset_config("xdviolence").model.emb_size == 128
