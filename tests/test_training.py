import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyclip.cli import main
from anomalyclip.presets import preset_config
from anomalyclip.data.datasets import TrainItems, normal_centroid
from anomalyclip.data.formats import read_video_list
from anomalyclip.data.sampling import train_indices
from anomalyclip.training.module import lr_factor


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
                 "eval_history.json", "checkpoints/last.ckpt", "checkpoints/best_on_test.ckpt", "metrics_best_on_test.json",
                 "logs/version_0/metrics.csv"):
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
    assert [h["epoch"] for h in history] == list(range(1, 10))
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


def test_last_is_the_final_epoch_and_the_best_on_test_is_kept_apart(tiny_dataset, tmp_path, monkeypatch, capsys):
    """With the best test AUC at epoch 1 of 3, last.ckpt still holds epoch 3, metrics.json is the
    final epoch's evaluation, and the best epoch is labelled as chosen on the test set."""
    from anomalyclip import evaluation

    real = evaluation.compute_metrics
    calls = []

    def decreasing_auc(*a, **kw):  # each epoch's evaluation looks worse than the one before
        m = real(*a, **kw)
        calls.append(m["auc_roc"])
        return {**m, "auc_roc": 0.9 - 0.1 * (len(calls) - 1)} if len(calls) <= 3 else m

    monkeypatch.setattr(evaluation, "compute_metrics", decreasing_auc)
    out = tmp_path / "run"
    assert main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out),
                 "--num-workers", "0", "--epochs", "3"]) == 0
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(out / "checkpoints" / "best_on_test.ckpt", weights_only=True)
    assert last["anomalyclip"]["epoch"] == 3 and last["anomalyclip"]["checkpoint_kind"] == "last"
    assert best["anomalyclip"]["epoch"] == 1 and best["anomalyclip"]["checkpoint_kind"] == "best_on_test"
    assert not all(torch.equal(last["state_dict"][k], best["state_dict"][k]) for k in last["state_dict"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(out / "checkpoints" / "last.ckpt") and metrics["checkpoint_kind"] == "last"
    assert metrics["epoch"] == 3 and metrics["auc_roc"] == pytest.approx(calls[3])  # the final evaluation, unpatched
    best_metrics = json.loads((out / "metrics_best_on_test.json").read_text())
    assert best_metrics["epoch"] == 1 and best_metrics["auc_roc"] == pytest.approx(0.9)
    assert best_metrics["checkpoint_kind"] == "best_on_test"
    assert "best epoch on the test set: 1" in capsys.readouterr().out
    with open(next((out / "logs").glob("version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]
    assert lrs == pytest.approx([2e-3 * lr_factor(e, 0, 3) for e in range(3)])  # the rate each epoch trained with


def test_real_presets_use_vit_b16_and_say_how_to_pass_it_offline(tmp_path, capsys):
    """No silent random text tower: `--preset ucfcrime` without `--clip` wants ViT-B/16's; offline
    and not cached, that is one line naming the id and how to pass a local copy."""
    from anomalyclip.clip_config import DEFAULT_CLIP
    from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic
    from anomalyclip.presets import PRESETS

    assert {name: p.run_config().model.clip for name, p in PRESETS.items()} == {
        "ucfcrime": DEFAULT_CLIP, "shanghaitech": DEFAULT_CLIP, "xdviolence": DEFAULT_CLIP, "synthetic": "random"}
    ucf = read_labels_names("ucf_labels.csv")
    spec = SyntheticSpec(seed=1, abnormal_classes=tuple(n for n in ucf if n != "Normal"), train_abnormal_per_class=1,
                         train_normal=13, test_abnormal_per_class=1, test_normal=1, min_len=40, max_len=80)
    root = write_synthetic(tmp_path / "ucf", spec)
    out = tmp_path / "run"
    code = main(["train", "--preset", "ucfcrime", "--data-root", str(root), "--features", str(root / "features"),
                 "--labels", str(root / "labels.csv"), "--out", str(out), "--batch-size", "2"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert repr(DEFAULT_CLIP) in lines[0] and "--clip" in lines[0] and "ViT-B-16.pt" in lines[0]
    assert not out.exists()


def read_labels_names(asset: str) -> list[str]:
    from anomalyclip.assets import asset_path
    from anomalyclip.data.formats import read_labels

    return read_labels(asset_path(asset)).names


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--epochs", "-1"], "--epochs must be an integer >= 1, got -1"),
    (["--lr", "-0.1"], "--lr must be a number > 0, got -0.1"),
    (["--batch-size", "3"], "--batch-size must be even and >= 2"),
    (["--devices", "0"], "--devices must be an integer >= 1, got 0"),
    (["--eval-every", "-2"], "--eval-every must be an integer >= 0"),
])
def test_argument_errors_are_one_line_before_anything_is_written(tiny_dataset, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    code = main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: {message}" or (code == 2 and err.strip().startswith(f"error: {message}"))
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_help_and_argument_errors_import_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom anomalyclip.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['train', '--epochs', 'x']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'lightning', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_init_from_an_authors_checkpoint_starts_from_its_weights(tmp_path, capsys):
    """`--init-from` an authors' last.ckpt (and `--keep-centroid`): the run's model is the released
    one, so its first training step has the released weights' loss."""
    from anomalyclip.checkpoint import load_checkpoint
    from anomalyclip.config import LossConfig
    from anomalyclip.data.run_data import load_run_data
    from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic
    from anomalyclip.losses import training_losses
    from anomalyclip.presets import preset_config
    from anomalyclip.training.run import build_model
    from authors_layout import UCF, hand_made, random_centroid, save_reference

    ref = tmp_path / "authors" / "last.ckpt"
    save_reference(ref, hand_made(UCF, image_encoder=False), random_centroid(UCF["seed"]))
    names = read_labels_names("ucf_labels.csv")
    spec = SyntheticSpec(seed=2, abnormal_classes=tuple(n for n in names if n != "Normal"), train_abnormal_per_class=1,
                         train_normal=13, test_abnormal_per_class=1, test_normal=2, min_len=40, max_len=300)
    root = write_synthetic(tmp_path / "ucf", spec)
    flags = ["--features", str(root / "features"), "--labels", str(root / "labels.csv")]

    cfg = preset_config("ucfcrime", root)
    cfg.data.features, cfg.data.labels = str(root / "features"), str(root / "labels.csv")
    data = load_run_data(cfg.data)
    model, report = build_model(cfg, data, load_checkpoint(ref), keep_centroid=True)
    released = load_checkpoint(ref).model
    assert report["fresh"] == [] and report["new_classes"] == []
    assert model.state_dict().keys() == released.state_dict().keys()
    for k, v in released.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert cfg.model.emb_size == 64 and cfg.model.depth == 1  # the released architecture, not the preset's
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 512, 512, generator=g)
    y = torch.tensor([0, 9, 7, 7])
    keep = torch.rand(4, 32, generator=g) < 0.5
    keep[:, :3] = True
    losses = [training_losses(m.train()(x), y, 7, LossConfig(), 32, keep=keep)["loss"] for m in (model, released)]
    assert losses[0].item() == losses[1].item()

    out = tmp_path / "run"
    assert main(["train", "--preset", "ucfcrime", "--data-root", str(root), *flags, "--init-from", str(ref),
                 "--keep-centroid", "--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--out", str(out)]) == 0
    assert "started from the --init-from weights" in capsys.readouterr().out
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["model"]["emb_size"] == 64 and recorded["model"]["class_names"] == names


def test_a_recorded_run_runs_again_and_eval_reads_the_checkpoints_files(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out),
                 "--num-workers", "0", "--epochs", "1", "--seed", "7"]) == 0
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["train"]["seed"] == 7 and recorded["preset"] == "synthetic"
    for name in ("features", "train_abnormal", "train_normal", "test_list", "temporal", "labels"):
        path = Path(recorded["data"][name])
        assert path.is_absolute() and path.exists() and path.is_relative_to(tiny_dataset.resolve()), name
    assert recorded["data"]["features"] == str((tiny_dataset / "features").resolve())
    assert recorded["data"]["test_list"] == str((tiny_dataset / "Anomaly_Test.txt").resolve())
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again), "--epochs", "2"]) == 0
    rerun = json.loads((again / "config.json").read_text())
    assert rerun["train"].pop("epochs") == 2 and recorded["train"].pop("epochs") == 1
    assert rerun == recorded  # every other value as recorded

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "eval")]) == 0
    said = capsys.readouterr().out
    assert "using the checkpoint's data files" in said and recorded["data"]["test_list"] in said
    a = (tmp_path / "eval" / "predictions.csv").read_text()
    assert a == (out / "predictions.csv").read_text()  # the same checkpoint on the same files
