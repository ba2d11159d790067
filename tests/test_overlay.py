"""The overlay's text panel: scaled to the frame, the time shown, class probabilities only
during an alarm."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyclip.video.overlay import OverlayWriter, border_width, clock, render_frame
from media import decode_all

NAMES = ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Normal",
         "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
NORMAL = 7


def probs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(len(NAMES)))


def covered(frame: np.ndarray, out: np.ndarray) -> float:
    """Part of the picture inside the border that the panel changed."""
    b = border_width(*frame.shape[:2])
    inner, ref = out[b:-b, b:-b].astype(int), frame[b:-b, b:-b].astype(int)
    return float((np.abs(inner - ref).sum(-1) > 0).mean())


def test_clock():
    assert clock(0.0) == "0:00.0" and clock(12.34) == "0:12.3" and clock(61.96) == "1:02.0"
    assert clock(3725.0) == "1:02:05.0" and clock(None, 42) == "#42"


@pytest.mark.parametrize("size", [(120, 160), (240, 320), (720, 1280)])
def test_the_panel_covers_a_bounded_part_of_any_frame(size):
    frame = np.full((*size, 3), 120, np.uint8)
    alarm = covered(frame, render_frame(frame, 0.9, probs(0), NAMES, NORMAL, 0.5, time_s=83.2))
    calm = covered(frame, render_frame(frame, 0.1, probs(0), NAMES, NORMAL, 0.5, time_s=83.2))
    assert 0 < calm < alarm <= 0.2  # was about half of a 160x120 frame before the panel was scaled
    assert calm <= 0.05


def test_class_probabilities_show_only_above_the_threshold_and_the_time_always():
    frame = np.full((120, 160, 3), 90, np.uint8)
    below = [render_frame(frame, 0.3, probs(s), NAMES, NORMAL, 0.5, time_s=5.0) for s in (1, 2)]
    assert np.array_equal(below[0], below[1])  # other class probabilities, same picture
    above = [render_frame(frame, 0.7, probs(s), NAMES, NORMAL, 0.5, time_s=5.0) for s in (1, 2)]
    assert not np.array_equal(above[0], above[1])
    later = render_frame(frame, 0.3, probs(1), NAMES, NORMAL, 0.5, time_s=6.0)
    assert not np.array_equal(below[0], later)  # the time is drawn
    assert below[0][1, 80, 2] > 150 and above[0][1, 80, 0] > 150  # blue border, red border


def test_overlay_writer_writes_frame_by_frame(tmp_path):
    frames = [np.full((120, 160, 3), 10 * i, np.uint8) for i in range(6)]
    w = OverlayWriter(tmp_path / "o.mp4", NAMES, NORMAL, 0.5, fps=10)
    for i, f in enumerate(frames):
        w.add(f, 0.9 if i % 2 else 0.1, probs(i), time_s=i / 10)
    assert not (tmp_path / "o.mp4").exists()  # complete only on close
    w.close()
    w.close()  # a second close changes nothing
    got, fps = decode_all(tmp_path / "o.mp4")
    assert got.shape == (6, 120, 160, 3) and fps == 10
    assert [p.name for p in tmp_path.iterdir()] == ["o.mp4"]
