"""Whether a video file decoded to its end. A file cut short (an interrupted copy or download)
may still open and decode without an error when its index (the mp4 `moov` atom) sits at the
start: the header then promises more frames than the data holds, and the features would
silently miss the end of the video, misaligned with annotations counted in frames.

A container's frame count can be off by a frame or two for complete files (edit lists, a last
frame flagged for discarding), so up to `TOLERATED_MISSING` missing frames pass. Without a count
in the container there is nothing to compare with: the video is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from anomalyclip.errors import InputError

TOLERATED_MISSING = 2
SIDECAR_KEY = "short_video"  # present in a sidecar only for a short video kept with --allow-short


@dataclass(frozen=True)
class FrameCount:
    decoded: int
    expected: int | None  # the container's claim, None when it makes none

    @property
    def short(self) -> bool:
        return self.expected is not None and self.expected - self.decoded > TOLERATED_MISSING

    def describe(self) -> str:
        return f"decoded {self.decoded} of the {self.expected} frames its header declares"


def check_frame_count(source: str | Path, count: FrameCount, allow_short: bool) -> dict:
    """Sidecar fields for a decoded video: `{}` when complete, the counts when it is short and
    `allow_short`; a short video otherwise raises InputError naming the file and the counts."""
    if not count.short:
        return {}
    if not allow_short:
        raise InputError(f"{count.describe()} (cut short?); nothing written for it "
                         "(--allow-short keeps the frames decoded)", source)
    return {SIDECAR_KEY: {"frames_decoded": count.decoded, "frames_expected": count.expected}}


def short_kept(sidecars: Iterable[tuple[str, dict | None]]) -> list[str]:
    """One line per `(video, sidecar)` whose sidecar records a short video kept."""
    lines = []
    for name, side in sidecars:
        short = (side or {}).get(SIDECAR_KEY)
        if isinstance(short, dict):
            lines.append(f"{name}: kept {short.get('frames_decoded')} of {short.get('frames_expected')} "
                         "declared frames (--allow-short)")
    return lines
