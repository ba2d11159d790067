"""Per-frame prediction: the Predictor API and the `predict` job's CSV / JSON / PNG outputs."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch

from anomalyclip.checkpoint import load_checkpoint
from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.errors import InputError
from anomalyclip.checkpoint.export import save_export
from anomalyclip.cli import main
from anomalyclip.data.features import collect_feature_files
from anomalyclip.predictor import Predictor

from anomalyclip.events import EventRules
from authors_layout import UCF, class_table, hand_made, random_centroid, save_reference
from naive import naive_events

D = 512


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An authors'-layout UCF-like checkpoint with ncentroid.pt beside it."""
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    save_reference(path, hand_made(UCF, image_encoder=False), random_centroid(UCF["seed"]))
    return path


@pytest.fixture(scope="module")
def predictor(ckpt):
    return Predictor.from_checkpoint(ckpt)


def _features(seed: int, t: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, D)).astype(np.float32)


def _run(argv: list[str]) -> int:
    return main(["predict", *argv])


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# ------------------------------------------------------------------------------------------
# Python API
# ------------------------------------------------------------------------------------------
def test_predictor_equals_the_model(ckpt, predictor):
    names, normal = class_table(UCF)
    assert predictor.class_names == names and predictor.normal_id == normal
    assert predictor.threshold == 0.5 and predictor.threshold_source == "default"  # the release stores none
    model = load_checkpoint(ckpt).model
    feats = [_features(1, 100), _features(2, 1300)]
    with torch.no_grad():
        ref = model.score_videos([torch.from_numpy(f) for f in feats], model.text_features())
    many = predictor.predict_many(feats)
    for f, (s, p), out in zip(feats, ref, many):
        one = predictor.predict(f)
        np.testing.assert_allclose(out.scores, s.numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(out.probs, p.numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(one.scores, out.scores, atol=1e-6, rtol=0)
        assert out.scores.shape == (len(f),) and out.probs.shape == (len(f), 14) and out.pred.shape == (len(f),)
        np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
        abn = np.delete(out.probs, normal, axis=1).argmax(axis=1)
        expected = np.where(out.scores < 0.5, normal, np.where(abn >= normal, abn + 1, abn))
        assert np.array_equal(out.pred, expected)
    # Tensors and float16 arrays work too; a threshold can be given per call.
    t16 = predictor.predict(torch.from_numpy(feats[0]).half(), threshold=0.0)
    assert (t16.pred != normal).all() and t16.threshold == 0.0


def test_videos_spread_over_several_forwards_keep_their_own_scores(predictor):
    """With a small frame budget the videos go through several forwards; each video's result
    must be the one it gets alone (a mix-up of order across forwards would fail here)."""
    lengths = [700, 30, 300, 1500, 90, 512]  # padded 1024, 512, 512, 1536, 512, 512
    feats = [_features(20 + i, t) for i, t in enumerate(lengths)]
    many = predictor.predict_many(feats, frames_per_forward=1024)  # 4 forwards
    assert [p.num_frames for p in many] == lengths
    for f, p in zip(feats, many):
        alone = predictor.predict(f)
        np.testing.assert_allclose(p.scores, alone.scores, atol=1e-6, rtol=0)
        np.testing.assert_allclose(p.probs, alone.probs, atol=1e-6, rtol=0)
    assert not np.allclose(many[0].scores[:30], many[1].scores, atol=1e-3)  # the videos do differ


def test_text_features_are_computed_once(ckpt):
    p = Predictor.from_checkpoint(ckpt)

    def fail():
        raise AssertionError("text features recomputed")

    p.model.text_features = fail
    p.predict(_features(3, 700))
    p.predict_many([_features(4, 50), _features(5, 2000)], frames_per_forward=512)


def test_predict_rejects_bad_features(predictor):
    with pytest.raises(InputError, match=r"\(frames >= 1, 512\)"):
        predictor.predict(np.zeros((10, 100), np.float32))
    with pytest.raises(InputError, match="row 3"):
        bad = _features(6, 10)
        bad[3, 5] = np.nan
        predictor.predict(bad)
    with pytest.raises(InputError, match="floating point"):
        predictor.predict(np.zeros((10, D), np.int64))


def test_stored_threshold_is_used(tmp_path, ckpt):
    loaded = load_checkpoint(ckpt)
    save_export(LoadedModel(loaded.model, 0.37, "anomalyclip"), tmp_path / "exp")
    p = Predictor.from_checkpoint(tmp_path / "exp")
    assert p.threshold == pytest.approx(0.37) and p.threshold_source == "checkpoint"


# ------------------------------------------------------------------------------------------
# the predict job
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    (root / "Abuse").mkdir()
    np.save(root / "Abuse" / "Abuse028_x264.npy", _features(10, 300))  # T < 512
    np.save(root / "Normal_Videos_003_x264.npy", _features(11, 1300).astype(np.float16))  # T > 512
    return root


def _check_video_outputs(out, name, t, names, normal, threshold, fps=None, rules=EventRules()):
    header, rows = _read_csv(out / f"{name}.csv")
    expected = ["frame"] + (["time_s"] if fps else []) + ["score", "pred", "pred_name"] + [f"p_{n}" for n in names]
    assert header == expected
    assert len(rows) == t
    col = {h: i for i, h in enumerate(header)}
    frames = np.array([int(r[col["frame"]]) for r in rows])
    assert np.array_equal(frames, np.arange(t))
    if fps:
        np.testing.assert_allclose([float(r[col["time_s"]]) for r in rows], np.arange(t) / fps, atol=1e-6)
    scores = np.array([r[col["score"]] for r in rows], dtype=np.float32)
    pred = np.array([int(r[col["pred"]]) for r in rows])
    probs = np.array([[r[col[f"p_{n}"]] for n in names] for r in rows], dtype=np.float32)
    assert all(r[col["pred_name"]] == names[p] for r, p in zip(rows, pred))
    abnormal = ~(scores < np.float32(threshold))
    assert np.array_equal(pred != normal, abnormal)

    summary = json.loads((out / f"{name}.json").read_text())
    assert summary["num_frames"] == t and summary["threshold"] == pytest.approx(threshold)
    spans = summary["spans"]
    low, gap = rules.frames(fps)
    assert summary["event_rules"] == {"min_event_frames": low, "merge_gap_frames": gap}
    expected = naive_events(scores, probs, np.float32(threshold), normal, low, gap)
    assert [(s["start"], s["end"]) for s in spans] == [(e["start"], e["end"]) for e in expected]
    for s, e in zip(spans, expected):
        assert s["mean_score"] == pytest.approx(e["mean_score"], abs=1e-6)
        assert s["peak_score"] == pytest.approx(e["peak_score"], abs=1e-6)
        assert s["class"] == names[e["class_id"]]
        if fps:
            assert s["start_s"] == pytest.approx(s["start"] / fps, abs=1e-6)
            assert s["end_s"] == pytest.approx(s["end"] / fps, abs=1e-6)
        else:
            assert "start_s" not in s
    png = (out / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return scores, summary


def test_main_predict_writes_three_files_per_video(tmp_path, ckpt, feature_dir):
    names, normal = class_table(UCF)
    temporal = tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    temporal.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1\nNormal_Videos_003_x264.mp4 Normal -1 -1 -1 -1\n")
    out = tmp_path / "out"
    assert _run(["--checkpoint", str(ckpt), "--features", str(feature_dir), "--out", str(out), "--fps", "30",
                 "--temporal", str(temporal), "--device", "cpu"]) == 0
    s1, j1 = _check_video_outputs(out, "Abuse028_x264", 300, names, normal, 0.5, fps=30)
    _check_video_outputs(out, "Normal_Videos_003_x264", 1300, names, normal, 0.5, fps=30)
    assert j1["ground_truth"] == [{"start": 165, "end": 240}] and j1["threshold_source"] == "default"
    assert not list(out.rglob(".*tmp*"))

    # --threshold overrides; choose one that splits the scores so spans exist.
    thr = float(np.median(s1))
    out2 = tmp_path / "out2"
    assert _run(["--checkpoint", str(ckpt), "--features", str(feature_dir / "Abuse" / "Abuse028_x264.npy"),
                 "--out", str(out2), "--threshold", repr(thr), "--device", "cpu", "--min-event", "3", "--merge-gap", "2"]) == 0
    s2, j2 = _check_video_outputs(out2, "Abuse028_x264", 300, names, normal, thr, rules=EventRules(3, 2))
    assert j2["threshold_source"] == "option" and len(j2["spans"]) >= 1 and "ground_truth" not in j2
    np.testing.assert_array_equal(s1, s2)
    assert not (out2 / "Normal_Videos_003_x264.csv").exists()


def test_same_stem_keeps_the_sub_folder(tmp_path, ckpt):
    for sub, t in (("cam1", 40), ("cam2", 600)):
        (tmp_path / "feats" / sub).mkdir(parents=True)
        np.save(tmp_path / "feats" / sub / "clip.npy", _features(t, t))
    np.save(tmp_path / "feats" / "other.npy", _features(7, 20))
    items = collect_feature_files([tmp_path / "feats"])
    assert sorted(name for _, name in items) == ["cam1/clip", "cam2/clip", "other"]
    out = tmp_path / "out"
    assert _run(["--checkpoint", str(ckpt), "--features", str(tmp_path / "feats"), "--out", str(out), "--device", "cpu"]) == 0
    names, normal = class_table(UCF)
    _check_video_outputs(out, "cam1/clip", 40, names, normal, 0.5)
    _check_video_outputs(out, "cam2/clip", 600, names, normal, 0.5)
    assert (out / "other.json").is_file()


def _error_line(argv: list[str], capsys) -> str:
    """The one `error:` line a bad `predict` prints (exit status 2, no traceback)."""
    assert _run(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_predict_input_errors(tmp_path, ckpt, capsys):
    assert "--features" in _error_line(["--checkpoint", str(ckpt)], capsys)
    assert "not found" in _error_line(["--checkpoint", str(ckpt), "--features", str(tmp_path / "missing.npy")], capsys)
    (tmp_path / "empty").mkdir()
    assert "no .npy" in _error_line(["--checkpoint", str(ckpt), "--features", str(tmp_path / "empty")], capsys)
    np.save(tmp_path / "narrow.npy", np.zeros((5, 100), np.float32))
    line = _error_line(["--checkpoint", str(ckpt), "--features", str(tmp_path / "narrow.npy"), "--out", str(tmp_path / "o")], capsys)
    assert "narrow.npy" in line and "feature width is 100, the model expects 512" in line
    np.save(tmp_path / "ok.npy", _features(1, 5))
    assert "--threshold" in _error_line(["--checkpoint", str(ckpt), "--features", str(tmp_path / "ok.npy"), "--threshold", "1.5"], capsys)
    assert "--fps" in _error_line(["--checkpoint", str(ckpt), "--features", str(tmp_path / "ok.npy"), "--fps", "0"], capsys)


def test_a_verb_whose_module_cannot_be_imported_fails_loudly(tmp_path, ckpt, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "anomalyclip.video.predict", None)  # as if the file were missing
    assert _run(["--checkpoint", str(ckpt), "--video", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "error: `anomalyclip predict` cannot run in this installation" in err and "Traceback" not in err
