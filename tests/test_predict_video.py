"""`anomalyclip predict --video`: decode + CLIP features + scores + outputs, straight from a video.

The video is synthesised with PyAV, the CLIP image tower is a small random model of the real
architecture and the AnomalyCLIP checkpoint a small random export (no network)."""

from __future__ import annotations

import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import pytest

from anomalyclip.cli import main
from anomalyclip.predictor import Predictor
from anomalyclip.video.encoder import ClipImageEncoder, save_random_clip_vision
from conftest import save_tiny_export
from media import decode_all, make_video

CLASSES = ["Explosion", "Fighting", "Normal", "Shooting"]
FRAMES, WIDTH, HEIGHT, FPS = 80, 160, 120, 25


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_random_clip_vision(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_export(tmp_path_factory.mktemp("export"), CLASSES)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("in") / "street_cam.mp4", FRAMES, WIDTH, HEIGHT, fps=FPS, seed=4)


@pytest.fixture(scope="module")
def predicted(video, clip_dir, ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "out"
    argv = ["predict", "--checkpoint", str(ckpt), "--video", str(video), "--clip", str(clip_dir),
            "--out", str(out), "--overlay", "--device", "cpu"]
    return main(argv), out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_on_video_writes_all_outputs(predicted, video, clip_dir, ckpt):
    rc, out = predicted
    assert rc == 0
    stem = video.stem
    assert {p.name for p in out.iterdir()} == {
        f"{stem}.csv", f"{stem}.json", f"{stem}.png", f"{stem}.npy", f"{stem}_overlay.mp4"
    }  # no scratch folder or temporary file left behind

    # independent features: every frame decoded with PyAV, encoded directly
    frames, native_fps = decode_all(video)
    assert len(frames) == FRAMES and native_fps == FPS
    feats = ClipImageEncoder(clip_dir, device="cpu").encode(frames)
    expected = Predictor.from_checkpoint(ckpt, device="cpu").predict(feats)

    rows = read_csv(out / f"{stem}.csv")
    assert len(rows) == len(frames)
    assert [int(r["frame"]) for r in rows] == list(range(len(frames)))
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(float(rows[-1]["time_s"]), (len(frames) - 1) / FPS, atol=1e-6)  # native fps
    clear = np.abs(expected.scores - expected.threshold) > 1e-5  # classes agree away from the threshold
    assert np.array_equal(np.array([int(r["pred"]) for r in rows])[clear], expected.pred[clear])

    saved = np.load(out / f"{stem}.npy")
    assert saved.dtype == np.float32 and saved.shape == (FRAMES, 512)
    np.testing.assert_allclose(saved, feats, rtol=0, atol=1e-4)

    summary = json.loads((out / f"{stem}.json").read_text())
    assert summary["num_frames"] == FRAMES and summary["fps"] == pytest.approx(FPS)
    assert summary["clip_model"] == str(clip_dir) and summary["video"] == str(video)
    assert summary["class_names"] == CLASSES and summary["normal_id"] == 2
    assert summary["max_score"] == pytest.approx(float(expected.scores.max()), abs=1e-5)
    assert (out / f"{stem}.png").stat().st_size > 0

    with av.open(str(out / f"{stem}_overlay.mp4")) as c:
        n = sum(1 for _ in c.decode(c.streams.video[0]))
    assert n == len(frames)


def test_saved_features_score_the_same_with_features_flag(predicted, ckpt, video, tmp_path):
    rc, out = predicted
    again = tmp_path / "again"
    assert main(["predict", "--checkpoint", str(ckpt), "--features", str(out / f"{video.stem}.npy"),
                 "--out", str(again), "--fps", str(FPS), "--device", "cpu"]) == 0
    first, second = read_csv(out / f"{video.stem}.csv"), read_csv(again / f"{video.stem}.csv")
    assert [r["score"] for r in first] == [r["score"] for r in second]


def test_bad_video_is_reported_and_the_others_are_scored(tmp_path, clip_dir, ckpt, capsys):
    good = make_video(tmp_path / "in" / "good.mp4", 12, 64, 48, seed=2)
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(bad), str(good), "--clip", str(clip_dir),
               "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(bad) in errors[0], captured.err
    assert "Traceback" not in captured.err
    assert {p.name for p in out.iterdir()} == {"good.csv", "good.json", "good.png", "good.npy"}
    assert len(read_csv(out / "good.csv")) == 12
    assert "good.mp4: 12 frames" in captured.out


def test_clip_width_mismatch_is_one_clear_error(tmp_path, ckpt, video, capsys):
    narrow = save_random_clip_vision(tmp_path / "clip256", seed=0, projection_dim=256)
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), "--video", str(video), "--clip", str(narrow),
               "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "256-d features but the checkpoint expects 512-d" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
