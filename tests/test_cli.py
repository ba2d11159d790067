"""Bad input ends in one clear error naming file, line and value, and nothing half-written."""

import shutil

import numpy as np
import pytest
import torch

from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.cli import main
from anomalyclip.config import ModelConfig
from anomalyclip.checkpoint.export import save_export
from anomalyclip.model import AnomalyCLIP


@pytest.fixture()
def data(tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=["Explosion", "Fighting", "Normal", "Shooting"], normal_id=2, emb_size=32, random_clip_layers=1))
    out = tmp_path_factory.mktemp("export")
    save_export(LoadedModel(model.eval(), 0.5, "anomalyclip"), out)
    return out


def run_eval(data, ckpt, out, capsys):
    code = main(["eval", "--checkpoint", str(ckpt), "--preset", "synthetic", "--data-root", str(data), "--out", str(out)])
    return code, capsys.readouterr().err


def assert_nothing_written(out):
    assert not out.exists() or not any(out.iterdir())


def first_test_video(data):
    line = (data / "Anomaly_Test.txt").read_text().splitlines()[0]
    return data / "features" / (line.split()[0] + ".npy")


def test_eval_works_on_good_data(data, exported, tmp_path, capsys, monkeypatch):
    """metrics.json names the dataset, the method and the fine-grained rule, and its mAP@tIoU
    equals the metric on predictions.csv's frames; every figure is written, the confusion
    matrix with each true class's frame count, every title with the run's name."""
    import json

    from anomalyclip import plots
    from anomalyclip.metrics import fine_grained_map

    calls = {}
    for name in ("plot_roc", "plot_pr", "plot_roc_per_class", "plot_pr_per_class", "plot_confusion"):
        def record(*a, _name=name, _fn=getattr(plots, name), **kw):
            calls[_name] = (a, kw)
            return _fn(*a, **kw)
        monkeypatch.setattr(plots, name, record)
    out = tmp_path / "run-17"
    assert main(["eval", "--checkpoint", str(exported), "--preset", "synthetic", "--data-root", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mAP@AVG" in printed and "mAP@tIoU: ucf" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert (m["dataset"], m["method"], m["fine_grained_rule"]) == ("synthetic", "anomalyclip", "ucf")
    rows = np.loadtxt(out / "predictions.csv", delimiter=",", skiprows=1, usecols=range(1, 9))
    videos = np.loadtxt(out / "predictions.csv", delimiter=",", skiprows=1, usecols=0, dtype=str)
    _, video = np.unique(videos, return_inverse=True)  # contiguous blocks: any distinct id per video works
    fine = fine_grained_map(rows[:, 4:], rows[:, 1].astype(int), video, 2)
    assert {k: m[k] for k in fine} == pytest.approx(fine, abs=1e-4)  # predictions.csv: six decimals
    assert m["map_tiou_0.1"] > 0
    for name in ("roc.png", "pr.png", "roc_per_class.png", "pr_per_class.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 1000, name
    assert all(kw["run_name"] == "run-17" for _, kw in calls.values()) and len(calls) == 5
    counts = calls["plot_confusion"][0][3]
    assert list(counts) == list(np.bincount(rows[:, 1].astype(int), minlength=4))


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (lambda d, f: f.unlink(), "feature file not found"),
        (lambda d, f: f.write_bytes(b"not a numpy file"), "not a readable .npy"),
        (lambda d, f: np.save(f, np.zeros((40, 256), np.float32)), "feature width is 256, the model expects 512"),
        (lambda d, f: np.save(f, np.where(np.arange(40)[:, None] == 5, np.nan, 1.0).astype(np.float32) * np.ones((40, 512), np.float32)), "row 5 holds a non-finite value (nan)"),
    ],
)
def test_bad_feature_files(data, exported, tmp_path, capsys, corrupt, expected):
    f = first_test_video(data)
    corrupt(data, f)
    out = tmp_path / "out"
    code, err = run_eval(data, exported, out, capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert str(f) in errors[0] and expected in errors[0]
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Explosion/Explosion_test000 0 12\n", "Anomaly_Test.txt:1: expected '<video> <start_frame> <end_frame> <label id>'"),
        ("Explosion/Explosion_test000 0 12 9\n", "Anomaly_Test.txt:1: label id 9 is not in the labels CSV"),
        ("\n", "Anomaly_Test.txt: the video list is empty"),
    ],
)
def test_bad_test_list(data, exported, tmp_path, capsys, text, expected):
    (data / "Anomaly_Test.txt").write_text(text)
    out = tmp_path / "out"
    code, err = run_eval(data, exported, out, capsys)
    assert code == 2 and expected in err
    assert_nothing_written(out)


def test_bad_temporal_line(data, exported, tmp_path, capsys):
    path = data / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    path.write_text(path.read_text() + "Broken.mp4 Fighting 10\n")
    code, err = run_eval(data, exported, tmp_path / "out", capsys)
    n = len(path.read_text().splitlines())
    assert code == 2 and f"{path}:{n}: start/end frames must come in pairs" in err


def test_train_rejects_nan_training_item_with_one_line(data, tmp_path, capsys):
    line = (data / "Anomaly_Train_Abnormal.txt").read_text().splitlines()[0]
    f = data / "features" / (line.split()[0] + ".npy")
    x = np.load(f)
    x[:] = np.nan
    np.save(f, x)
    out = tmp_path / "run"
    code = main(["train", "--preset", "synthetic", "--data-root", str(data), "--out", str(out), "--epochs", "1", "--num-workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(f) in errors[0] and "non-finite value (nan)" in errors[0]
    assert not (out / "metrics.json").exists()


def test_train_rejects_normal_label_in_abnormal_list(data, tmp_path, capsys):
    path = data / "Anomaly_Train_Abnormal.txt"
    normal_line = (data / "Anomaly_Train_Normal.txt").read_text().splitlines()[0]
    path.write_text(normal_line + "\n" + path.read_text())
    out = tmp_path / "run"
    code = main(["train", "--preset", "synthetic", "--data-root", str(data), "--out", str(out), "--epochs", "1"])
    assert code == 2 and f"{path}:1: the abnormal training list holds a normal video" in capsys.readouterr().err
    assert not out.exists()


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_list_faults_name_the_lines(data, exported, tmp_path, capsys):
    test_list = data / "Anomaly_Test.txt"
    original = test_list.read_text()
    lines = original.splitlines()
    # a video listed twice
    test_list.write_text("\n".join(lines + [lines[2]]) + "\n")
    code, err = run_eval(data, exported, tmp_path / "o1", capsys)
    twice = lines[2].split()[0]
    assert code == 2 and f"{test_list}:{len(lines) + 1}: video {twice} is listed twice (also at {test_list}:3)" in err
    # a path whose class folder disagrees with its label id
    path, start, end, label = lines[0].split()
    other = 1 if int(label) != 1 else 0
    test_list.write_text("\n".join([f"{path} {start} {end} {other}"] + lines[1:]) + "\n")
    assert main(["eval", "--checkpoint", str(exported), "--preset", "synthetic", "--data-root", str(data),
                 "--out", str(tmp_path / "o2")]) == 2
    line = one_error(capsys)
    assert f"{test_list}:1" in line and "sits in the folder of class" in line and "but its label id" in line
    # an abnormal test video without its temporal annotation (the release raises KeyError here)
    test_list.write_text(original)
    temporal = data / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    stem = path.split("/")[1]
    temporal.write_text("".join(t + "\n" for t in temporal.read_text().splitlines() if not t.startswith(stem + ".")))
    assert main(["eval", "--checkpoint", str(exported), "--preset", "synthetic", "--data-root", str(data),
                 "--out", str(tmp_path / "o3")]) == 2
    line = one_error(capsys)
    assert f"{test_list}:1" in line and f"abnormal test video {stem}" in line and str(temporal) in line
    for name in ("o1", "o2", "o3"):
        assert not (tmp_path / name).exists()


def test_data_root_and_preset_messages(data, exported, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(exported), "--preset", "synthetic", "--data-root", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 2
    assert one_error(capsys) == f"error: {tmp_path / 'nope'}: --data-root: no such folder"
    assert main(["eval", "--checkpoint", str(exported), "--preset", "synthetic", "--out", str(tmp_path / "o")]) == 2
    assert "--preset synthetic needs --data-root" in one_error(capsys)


def test_eval_of_an_authors_checkpoint_equals_our_own(data, tmp_path, capsys):
    """The same weights as the authors' `last.ckpt` (+ ncentroid.pt) and as our export give the
    same metrics through the same `eval` flags."""
    import json

    from authors_layout import to_reference_state_dict

    torch.manual_seed(1)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=["Explosion", "Fighting", "Normal", "Shooting"], normal_id=2, emb_size=32, random_clip_layers=1))
    model.centroid.normal_(0, 0.3)
    with torch.no_grad():
        model.selector.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    ref = tmp_path / "authors" / "checkpoints" / "last.ckpt"
    ref.parent.mkdir(parents=True)
    torch.save({"state_dict": to_reference_state_dict(model), "epoch": 49}, ref)
    torch.save(model.centroid.clone(), ref.parent / "ncentroid.pt")
    ours = tmp_path / "ours"
    save_export(LoadedModel(model, None, "anomalyclip"), ours)
    flags = ["--features", str(data / "features"), "--test-list", str(data / "Anomaly_Test.txt"),
             "--temporal", str(data / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"), "--labels", str(data / "labels.csv")]
    assert main(["eval", "--checkpoint", str(ref), "--out", str(tmp_path / "e1")] + flags) == 0
    assert main(["eval", "--checkpoint", str(ours), "--out", str(tmp_path / "e2")] + flags) == 0
    m1 = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    for key in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold"):
        assert m1[key] == pytest.approx(m2[key], abs=1e-6), key
    p1 = np.loadtxt(tmp_path / "e1" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(1, 9))
    p2 = np.loadtxt(tmp_path / "e2" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(1, 9))
    np.testing.assert_allclose(p1, p2, atol=1e-5)


def test_eval_refuses_a_checkpoint_trained_on_other_classes(data, tmp_path, capsys):
    torch.manual_seed(0)
    other = AnomalyCLIP(ModelConfig(clip="random", class_names=["Explosion", "Normal", "Riot", "Shooting"], normal_id=1, emb_size=32, random_clip_layers=1))
    save_export(LoadedModel(other.eval(), 0.5, "anomalyclip"), tmp_path / "other")
    out = tmp_path / "out"
    code, err = run_eval(data, tmp_path / "other", out, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert str(data / "labels.csv") in errors[0]
    assert "['Explosion', 'Normal', 'Riot', 'Shooting'] differ from the labels CSV's ['Explosion', 'Fighting', 'Normal', 'Shooting']" in errors[0]
    assert_nothing_written(out)


XD_NAMES = ["Abuse", "Car_accident", "Explosion", "Fighting", "Normal", "Riot", "Shooting"]


def test_a_dataset_in_the_release_layout_is_found_by_its_preset(tmp_path, capsys):
    """XD-Violence's release keeps the features in `Image-Features/` and every list, the temporal
    file included, under `Annotations/`: `--preset xdviolence --data-root` finds them, with the
    shipped labels table, and scores exactly as naming each file does."""
    from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic

    spec = SyntheticSpec(seed=5, abnormal_classes=tuple(n for n in XD_NAMES if n != "Normal"), train_abnormal_per_class=1,
                         train_normal=2, test_abnormal_per_class=1, test_normal=3, min_len=40, max_len=400)
    flat = write_synthetic(tmp_path / "flat", spec)
    root = tmp_path / "XD-Violence"
    (root / "Annotations").mkdir(parents=True)
    shutil.copytree(flat / "features", root / "Image-Features")
    for name in ("Anomaly_Train_Abnormal.txt", "Anomaly_Train_Normal.txt", "Anomaly_Test.txt",
                 "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"):
        shutil.copy(flat / name, root / "Annotations" / name)
    torch.manual_seed(0)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=XD_NAMES, normal_id=4, emb_size=32, random_clip_layers=1))
    save_export(LoadedModel(model.eval(), 0.5, "anomalyclip"), tmp_path / "model")
    assert main(["eval", "--checkpoint", str(tmp_path / "model"), "--preset", "xdviolence", "--data-root", str(root),
                 "--out", str(tmp_path / "by-preset")]) == 0
    assert "headline AP" in capsys.readouterr().out  # XD-Violence reports AP first
    assert main(["eval", "--checkpoint", str(tmp_path / "model"), "--features", str(flat / "features"),
                 "--test-list", str(flat / "Anomaly_Test.txt"), "--labels", str(flat / "labels.csv"),
                 "--temporal", str(flat / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"),
                 "--out", str(tmp_path / "by-flags")]) == 0
    a = (tmp_path / "by-preset" / "predictions.csv").read_text()
    assert a == (tmp_path / "by-flags" / "predictions.csv").read_text() and len(a.splitlines()) > 100
    # the XD-Violence rule (normal class scored) either way: the class table names the dataset
    import json

    for run in ("by-preset", "by-flags"):
        m = json.loads((tmp_path / run / "metrics.json").read_text())
        assert (m["dataset"], m["fine_grained_rule"]) == ("xdviolence", "xd"), run
