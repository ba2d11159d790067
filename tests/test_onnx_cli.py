"""`anomalyclip export --format onnx` and an ONNX folder given to `predict` and `stream`: the same
files and numbers as the PyTorch checkpoint it came from, scored by onnxruntime."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from anomalyclip.cli import main
from anomalyclip.errors import InputError
from anomalyclip.predictor import Predictor
from conftest import save_tiny_export

for _name in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_name, reason="the optional extra anomalyclip[onnx] is not installed")

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch.export

CLASSES = ["Explosion", "Fighting", "Normal", "Shooting"]
THRESHOLD = 0.47


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A small random safetensors export (a PyTorch checkpoint) and its ONNX export, made by the CLI."""
    root = tmp_path_factory.mktemp("models")
    torch_dir = save_tiny_export(root / "torch", CLASSES, seed=2, threshold=THRESHOLD)
    onnx_dir = root / "onnx"
    assert main(["export", str(torch_dir), "--format", "onnx", "--out", str(onnx_dir)]) == 0
    return torch_dir, onnx_dir


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """Three videos: shorter than a grid, exactly one, several (s = 3)."""
    folder = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(8)
    for name, t in (("short", 90), ("one_grid", 512), ("long", 1400)):
        base = rng.normal(0, 1, (1, 512))
        drift = np.cumsum(rng.normal(0, 0.05, (t, 512)), axis=0)  # a curve that varies over time
        np.save(folder / f"{name}.npy", (base + drift).astype(np.float32))
    return folder


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_writes_the_onnx_graph_and_the_same_config(folders, capsys):
    torch_dir, onnx_dir = folders
    assert {p.name for p in onnx_dir.iterdir()} == {"model.onnx", "config.json"}
    ours = json.loads((onnx_dir / "config.json").read_text())
    theirs = json.loads((torch_dir / "config.json").read_text())
    assert ours.pop("onnx") == "model.onnx" and isinstance(ours.pop("onnx_opset"), int)
    assert ours.pop("source") == "export" and theirs.pop("source") == "anomalyclip"  # exported from an export
    assert ours == theirs
    # safetensors stays the default format
    again = onnx_dir.parent / "again"
    assert main(["export", str(torch_dir), "--out", str(again)]) == 0
    assert {p.name for p in again.iterdir()} == {"model.safetensors", "config.json"}
    assert "(safetensors;" in capsys.readouterr().out


def test_predict_through_onnx_equals_torch(folders, features, tmp_path, capsys):
    torch_dir, onnx_dir = folders
    outs = {}
    for name, model in (("torch", torch_dir), ("onnx", onnx_dir)):
        outs[name] = tmp_path / name
        assert main(["predict", "--checkpoint", str(model), "--features", str(features), "--fps", "25",
                     "--out", str(outs[name])]) == 0
    printed = capsys.readouterr().out
    assert "scored by onnxruntime" in printed and "scored by torch" in printed
    names = sorted(p.name for p in outs["torch"].iterdir())
    assert names == sorted(p.name for p in outs["onnx"].iterdir())
    assert {n.rsplit(".", 1)[1] for n in names} == {"csv", "json", "png"} and len(names) == 9
    for video in ("short", "one_grid", "long"):
        a, b = read_rows(outs["torch"] / f"{video}.csv"), read_rows(outs["onnx"] / f"{video}.csv")
        assert len(a) == len(b) == np.load(features / f"{video}.npy").shape[0]
        assert list(a[0]) == list(b[0])  # the same columns
        numeric = [c for c in a[0] if c == "score" or c.startswith("p_")]
        x = np.array([[float(r[c]) for c in numeric] for r in a])
        y = np.array([[float(r[c]) for c in numeric] for r in b])
        np.testing.assert_allclose(y, x, atol=1e-5, rtol=0, err_msg=video)
        assert x[:, 0].std() > 1e-3  # the scores vary: a wrong frame order would show
        clear = np.abs(x[:, 0] - THRESHOLD) > 1e-4  # frames not on the threshold get the same class
        assert [r["pred_name"] for r, c in zip(a, clear) if c] == [r["pred_name"] for r, c in zip(b, clear) if c]
        ja = json.loads((outs["torch"] / f"{video}.json").read_text())
        jb = json.loads((outs["onnx"] / f"{video}.json").read_text())
        assert ja["threshold"] == jb["threshold"] == THRESHOLD  # the checkpoint's, carried by config.json
        events = [[(e["start"], e["end"], e["class"]) for e in j["spans"]] for j in (ja, jb)]
        assert events[0] == events[1]


def test_onnx_predictor_matches_the_torch_predictor(folders, features):
    torch_dir, onnx_dir = folders
    ours, ref = Predictor.from_checkpoint(onnx_dir), Predictor.from_checkpoint(torch_dir)
    assert ours.backend == "onnxruntime" and ours.model is None and ours.text_features is None
    assert (ours.class_names, ours.normal_id, ours.feature_dim, ours.frames_per_item) == (
        ref.class_names, ref.normal_id, ref.feature_dim, ref.frames_per_item)
    videos = [np.load(features / f"{v}.npy") for v in ("short", "long")]
    for a, b in zip(ours.predict_many(videos), ref.predict_many(videos)):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5, rtol=0)
    bad = videos[0].copy()
    bad[4, 7] = np.nan
    with pytest.raises(InputError, match="row 4 holds a non-finite value"):  # checked before onnxruntime runs
        ours.predict(bad)


def test_stream_scores_features_through_onnx(folders, features):
    from anomalyclip.streaming.scorer import StreamScorer

    torch_dir, onnx_dir = folders
    x = np.load(features / "long.npy")
    out = {}
    for name, model in (("torch", torch_dir), ("onnx", onnx_dir)):
        scorer = StreamScorer(Predictor.from_checkpoint(model), hop=64)
        parts = [scorer.push(x[i : i + 100]) for i in range(0, len(x), 100)] + [scorer.flush()]
        out[name] = np.concatenate([p.scores for p in parts])
        assert scorer.window == 512 and scorer.forwards == len(x) // 64 + 1
    np.testing.assert_allclose(out["onnx"], out["torch"], atol=1e-5, rtol=0)


def test_stream_cli_takes_an_onnx_folder(folders, tmp_path, capsys):
    from anomalyclip.video.encoder import save_random_clip_vision
    from media import make_video

    _, onnx_dir = folders
    clip = save_random_clip_vision(tmp_path / "clip", seed=1)
    video = make_video(tmp_path / "cam.mp4", 40, 160, 120, fps=25, seed=2)
    assert main(["stream", "--checkpoint", str(onnx_dir), "--source", str(video), "--clip", str(clip), "--hop", "16",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "live")]) == 0
    records = [json.loads(line) for line in (tmp_path / "live" / "scores.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records if r["type"] == "frame"] == list(range(40))
    assert "scored by onnxruntime" in capsys.readouterr().err


def test_onnx_folder_elsewhere_is_one_clear_line(folders, features, tmp_path, capsys):
    _, onnx_dir = folders
    assert main(["export", str(onnx_dir), "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ONNX export holds no PyTorch weights" in err
    assert main(["predict", "--checkpoint", str(onnx_dir), "--features", str(features), "--device", "cuda:0",
                 "--out", str(tmp_path / "p")]) != 0
    err = capsys.readouterr().err  # no GPU here, or onnxruntime's CPU-only scoring: one line either way
    assert err.count("\n") == 1 and ("onnxruntime on the CPU" in err or "no CUDA GPU" in err)


def test_missing_extra_is_one_line_naming_it(folders, features, tmp_path, capsys, monkeypatch):
    torch_dir, onnx_dir = folders
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now fails
    assert main(["export", str(torch_dir), "--format", "onnx", "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'anomalyclip[onnx]'" in err and "onnxscript" in err
    assert not (tmp_path / "o").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["predict", "--checkpoint", str(onnx_dir), "--features", str(features), "--out", str(tmp_path / "p")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime: pip install 'anomalyclip[onnx]'" in err
