"""`--precision`: the tower runs in the format asked for, bf16 features stay close to fp32 ones,
32 is what extraction always gave, and float16 is refused on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyclip.cli import main
from anomalyclip.errors import InputError
from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision, save_random_clip_vision
from anomalyclip.video.precision import tower_dtype
from media import decode_all, make_video


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> np.ndarray:
    return decode_all(make_video(tmp_path_factory.mktemp("v") / "v.mp4", 24, 160, 120, seed=4))[0]


def test_tower_dtypes_and_what_is_refused():
    cpu = torch.device("cpu")
    assert tower_dtype("32", cpu) is torch.float32 and tower_dtype("bf16", cpu) is torch.bfloat16
    assert tower_dtype("16", torch.device("cuda")) is torch.float16
    with pytest.raises(InputError, match="CUDA only"):
        tower_dtype("16", cpu)
    with pytest.raises(InputError, match="must be one of 32, bf16, 16"):
        tower_dtype("64", cpu)


def test_bf16_tower_is_close_and_32_is_unchanged(frames):
    plain = ClipImageEncoder("tiny", device="cpu", model=build_random_clip_vision(seed=5)).encode(frames)
    same = ClipImageEncoder("tiny", device="cpu", model=build_random_clip_vision(seed=5), precision="32").encode(frames)
    assert np.array_equal(plain, same)
    low = ClipImageEncoder("tiny", device="cpu", model=build_random_clip_vision(seed=5), precision="bf16")
    assert {p.dtype for p in low.model.parameters()} == {torch.bfloat16}
    feats = low.encode(frames)
    assert feats.dtype == np.float32 and feats.shape == plain.shape
    assert cosine(feats, plain).min() > 0.99
    assert not np.array_equal(feats, plain)  # it did run in another format
    assert low.metadata()["precision"] == "bf16"


def test_the_flag_reaches_the_tower(tmp_path, frames, monkeypatch, capsys):
    clip = save_random_clip_vision(tmp_path / "clip", seed=6)
    make_video(tmp_path / "in" / "v.mp4", 10, 64, 48)
    seen = []
    embed = ClipImageEncoder.embed

    def spy(self, crops):
        seen.append(next(self.model.parameters()).dtype)
        return embed(self, crops)

    monkeypatch.setattr(ClipImageEncoder, "embed", spy)
    args = ["extract", "--videos", str(tmp_path / "in"), "--clip", str(clip), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "f32")]) == 0
    assert set(seen) == {torch.float32}
    seen.clear()
    assert main([*args, "--out", str(tmp_path / "bf16"), "--precision", "bf16"]) == 0
    assert set(seen) == {torch.bfloat16}
    side = json.loads((tmp_path / "bf16" / "v.json").read_text())
    assert side["precision"] == "bf16" and side["dtype"] == "float32"
    assert json.loads((tmp_path / "f32" / "v.json").read_text())["precision"] == "32"
    a, b = np.load(tmp_path / "f32" / "v.npy"), np.load(tmp_path / "bf16" / "v.npy")
    assert b.dtype == np.float32 and cosine(a, b).min() > 0.99

    # features of another precision are not mixed into a folder
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bf16")]) == 1
    assert "another precision (--precision bf16)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "f16"), "--precision", "16"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: --precision 16 (float16) runs on CUDA only; on the CPU use --precision bf16 or 32"]
    assert not Path(tmp_path / "f16").exists()
