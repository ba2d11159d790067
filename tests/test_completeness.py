"""A video cut short: refused with one line naming the counts, or kept with --allow-short."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from anomalyclip.cli import main
from anomalyclip.video.completeness import TOLERATED_MISSING, FrameCount
from anomalyclip.video.encoder import save_random_clip_vision
from anomalyclip.video.runner import run_extract
from media import make_video, truncate

FASTSTART = {"movflags": "faststart"}


def count_frames(path: Path) -> tuple[int, int]:
    """(frames PyAV decodes before the data ends, frames the container declares), independently
    of the package."""
    decoded = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        try:
            for _ in c.decode(stream):
                decoded += 1
        except av.error.InvalidDataError:  # the cut packet; a threaded decoder drops it silently
            pass
        return decoded, stream.frames


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_random_clip_vision(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=3)


@pytest.fixture()
def collection(tmp_path) -> tuple[Path, int]:
    src = tmp_path / "in"
    make_video(src / "good.mp4", 12, 64, 48, seed=1)
    cut = truncate(make_video(src / "cut.mp4", 100, 64, 48, seed=2, container_options=FASTSTART), 0.6)
    decoded, declared = count_frames(cut)
    assert declared == 100 and 0 < decoded < 100 - TOLERATED_MISSING  # opens, decodes silently short
    return src, decoded


def test_a_truncated_video_is_refused_and_the_rest_completes(collection, clip_dir, tmp_path, capsys):
    src, decoded = collection
    out = tmp_path / "out"
    assert run_extract([src], out, clip=clip_dir, device="cpu") == 1
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["good.json", "good.npy"]
    assert np.load(out / "good.npy").shape == (12, 512)
    err = capsys.readouterr().err
    expected = f"decoded {decoded} of the 100 frames its header declares"
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and str(src / "cut.mp4") in error_lines[0] and expected in error_lines[0], err
    assert any(line.strip().startswith(f"{src / 'cut.mp4'}: {expected}") for line in err.splitlines()), err  # summary
    assert "Traceback" not in err


def test_allow_short_keeps_the_decoded_frames_and_says_so(collection, clip_dir, tmp_path, capsys):
    src, decoded = collection
    out = tmp_path / "out"
    assert main(["extract", "--videos", str(src), "--out", str(out), "--clip", str(clip_dir), "--device", "cpu",
                 "--allow-short"]) == 0
    assert np.load(out / "cut.npy").shape == (decoded, 512)
    side = json.loads((out / "cut.json").read_text())
    assert side["num_frames"] == decoded
    assert side["short_video"] == {"frames_decoded": decoded, "frames_expected": 100}
    assert "short_video" not in json.loads((out / "good.json").read_text())
    err = capsys.readouterr().err
    assert f"cut.mp4: kept {decoded} of 100 declared frames (--allow-short)" in err


def test_a_complete_faststart_video_and_a_container_without_a_count_pass(clip_dir, tmp_path):
    src = tmp_path / "in"
    make_video(src / "whole.mp4", 30, 64, 48, container_options=FASTSTART)
    mkv = truncate(make_video(src / "cut.mkv", 100, 64, 48), 0.6)  # Matroska declares no frame count
    decoded, declared = count_frames(mkv)
    assert declared == 0 and 0 < decoded < 100
    out = tmp_path / "out"
    assert run_extract([src], out, clip=clip_dir, device="cpu") == 0
    assert np.load(out / "whole.npy").shape == (30, 512)
    assert np.load(out / "cut.npy").shape == (decoded, 512)


def test_the_shortfall_rule():
    assert not FrameCount(100, 100).short and not FrameCount(101, 100).short
    assert not FrameCount(100 - TOLERATED_MISSING, 100).short
    assert FrameCount(100 - TOLERATED_MISSING - 1, 100).short
    assert not FrameCount(3, None).short
