"""`anomalyclip stream` end to end: a generated mp4 through a small random CLIP image tower and
a small random export; the JSONL on stdout or in a folder; a real SIGINT leaves every output
complete."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from anomalyclip.cli import main
from anomalyclip.predictor import Predictor
from anomalyclip.video.encoder import ClipImageEncoder, save_random_clip_vision
from conftest import save_tiny_export
from media import decode_all, make_video

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_random_clip_vision(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=1)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return save_tiny_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("in") / "gate.mp4", 70, 160, 120, fps=25, seed=6)


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_stream_to_stdout_equals_offline_with_one_window(capsys, video, clip_dir, export):
    assert main(["stream", "--checkpoint", str(export), "--source", str(video), "--clip", str(clip_dir),
                 "--hop", "512", "--device", "cpu", "--quiet"]) == 0
    captured = capsys.readouterr()
    records = lines_of(captured.out)  # stdout holds only the JSONL
    frames = [r for r in records if r["type"] == "frame"]
    assert [r["frame"] for r in frames] == list(range(70))
    assert records[-1] == {"type": "end", "frames": 70, "events": sum(r["type"] == "event" for r in records),
                           "dropped": 0, "reason": "end of source"}
    # 70 frames, hop 512: one window at the end, the offline scores of an independent decode
    pictures, _ = decode_all(video)
    predictor = Predictor.from_checkpoint(export)
    offline = predictor.predict(ClipImageEncoder(clip_dir, device="cpu").encode(pictures))
    np.testing.assert_allclose([r["score"] for r in frames], offline.scores, rtol=0, atol=1e-5)
    names = predictor.class_names
    for r, p, s, c in zip(frames, offline.probs, offline.scores, offline.pred):
        top = np.argsort(-p, kind="stable")[:3]
        np.testing.assert_allclose([v for _, v in r["top3"]], p[top], atol=1e-5)
        if np.diff(np.sort(p)[::-1][:4]).max() < -1e-4:  # no near-tie among the top 4
            assert [n for n, _ in r["top3"]] == [names[k] for k in top]
        if abs(s - 0.5) > 1e-4:  # clear of the threshold
            assert r["class"] == names[c]
    assert "window 512 frames, hop 512" in captured.err


def test_stream_into_a_folder_writes_every_output(tmp_path, video, clip_dir, export, capsys):
    out = tmp_path / "live"
    argv = ["stream", "--checkpoint", str(export), "--source", str(video), "--clip", str(clip_dir), "--out", str(out),
            "--overlay", "--device", "cpu", "--quiet", "--threshold", "0.45", "--min-event", "0.2", "--merge-gap", "0.2"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"scores.jsonl", "stream.csv", "stream.json", "stream.png", "stream_overlay.mp4"}
    records = lines_of((out / "scores.jsonl").read_text())
    frames = [r for r in records if r["type"] == "frame"]
    events = [{k: v for k, v in r.items() if k != "type"} for r in records if r["type"] == "event"]
    summary = json.loads((out / "stream.json").read_text())
    assert summary["spans"] == events  # the events told live are the files' events
    assert summary["event_rules"] == {"min_event_frames": 5, "merge_gap_frames": 5}  # 0.2 s at 25 fps
    assert summary["threshold"] == 0.45 and summary["threshold_source"] == "option"
    assert summary["stream"]["reason"] == "end of source" and summary["hop"] == 16
    with open(out / "stream.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(frames) == 70
    np.testing.assert_allclose([float(r["score"]) for r in rows], [r["score"] for r in frames], atol=1e-6)
    np.testing.assert_allclose([float(r["time_s"]) for r in rows], np.arange(70) / 25, atol=1e-6)
    got, fps = decode_all(out / "stream_overlay.mp4")
    assert len(got) == 70 and fps == 25
    before = (out / "scores.jsonl").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2  # a second stream never writes over the first one's scores
    assert "already holds a stream" in capsys.readouterr().err
    assert (out / "scores.jsonl").read_bytes() == before


def test_bad_sources_are_one_line_errors(tmp_path, clip_dir, export, capsys):
    missing = tmp_path / "nope.mp4"
    assert main(["stream", "--checkpoint", str(export), "--source", str(missing), "--clip", str(clip_dir)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {missing}: video not found"
    assert main(["stream", "--checkpoint", str(export), "--source", "x.mp4", "--overlay"]) == 2
    assert "--overlay writes a video file" in capsys.readouterr().err


def test_sigint_leaves_a_valid_jsonl_and_complete_files(tmp_path, clip_dir, export):
    video = make_video(tmp_path / "long.mp4", 750, 160, 120, fps=25, seed=7)  # 30 s, read at its own pace
    out = tmp_path / "live"
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomalyclip", "stream", "--checkpoint", str(export), "--source", str(video),
         "--clip", str(clip_dir), "--out", str(out), "--realtime", "--overlay", "--device", "cpu", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    jsonl = out / "scores.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 32:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted:" in err
    text = jsonl.read_text()
    assert text.endswith("\n")
    records = lines_of(text)  # every line parses
    frames = [r for r in records if r["type"] == "frame"]
    n = len(frames)
    assert 32 <= n < 750 and [r["frame"] for r in frames] == list(range(n))
    assert records[-1]["type"] == "end" and records[-1]["reason"] == "interrupted" and records[-1]["frames"] == n
    with open(out / "stream.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == n
    assert json.loads((out / "stream.json").read_text())["num_frames"] == n
    got, _ = decode_all(out / "stream_overlay.mp4")
    assert len(got) == n
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_url_and_options_reach_pyav_as_given(monkeypatch, export, capsys):
    """No camera or stream server here: `av.open` is replaced by one that records its arguments
    and refuses, which is what an unreachable camera does."""
    import av

    seen = []

    def refuse(**kwargs):
        seen.append(kwargs)
        raise OSError("Connection refused")

    monkeypatch.setattr(av, "open", refuse)
    url = "rtsp://10.0.0.7:8554/cam?profile=main&x=a%20b"
    assert main(["stream", "--checkpoint", str(export), "--source", url, "--source-option", "rtsp_transport=tcp",
                 "--source-option", "max_delay=500000"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {url}: cannot open the live source: Connection refused"
    assert seen == [{"file": url, "mode": "r", "options": {"rtsp_transport": "tcp", "max_delay": "500000"},
                     "timeout": (15.0, 15.0)}]
    assert main(["stream", "--checkpoint", str(export), "--source", "/dev/video2", "--source-format", "v4l2",
                 "--source-option", "input_format=mjpeg"]) == 2
    assert seen[-1] == {"file": "/dev/video2", "mode": "r", "format": "v4l2", "options": {"input_format": "mjpeg"}}
    with pytest.raises(SystemExit):
        main(["stream", "--checkpoint", str(export), "--source", url, "--source-option", "no-equals-sign"])
