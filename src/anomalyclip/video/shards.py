"""Which rank extracts which video: the videos still to do, spread over all ranks so that each
encodes about as many frames as the others.

Every rank computes the plan by itself from the same inputs, so nobody has to hand it out: the
frame counts come from the container headers (no decoding), and videos are placed longest
first, each on the least-loaded rank, ties broken by output path and rank number, so the order
in which the videos were found does not matter. The largest load is at most the mean plus the
longest video.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from anomalyclip.errors import InputError
from anomalyclip.video import store
from anomalyclip.video.decode import list_frame_files
from anomalyclip.video.jobs import VideoJob


def _file_header(path: Path) -> tuple[int, float | None]:
    """(frames, seconds) as the container declares them; (0, None) when it cannot be read."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0, None
            stream = container.streams.video[0]
            seconds = None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            rate = stream.average_rate or stream.guessed_rate
            if stream.frames:
                frames = int(stream.frames)
            else:  # mkv, webm: no count in the header; the duration times the rate
                frames = round(seconds * float(rate)) if seconds and rate else 0
            return frames, seconds
    except (av.error.FFmpegError, OSError, ValueError):
        return 0, None


def header_frames(job: VideoJob, fps: float | None = None, frames_fps: float | None = None) -> int:
    """About how many frames extraction will encode for `job`, without decoding it: the
    header's count, or at a target `fps` the duration times that rate. 0 for a video that cannot
    be read (the rank that gets it reports the error)."""
    if job.kind == "frames":
        try:
            frames = len(list_frame_files(job.source))
        except (InputError, OSError):
            return 0
        seconds = frames / frames_fps if frames_fps else None
    else:
        frames, seconds = _file_header(job.source)
    if fps is None or seconds is None:
        return frames
    sampled = math.ceil(seconds * fps - 1e-9)
    return min(frames, sampled) if frames else sampled


def balanced_plan(weights: Mapping[str, int], ranks: int) -> list[list[str]]:
    """The names of `weights` shared over `ranks`: heaviest first (then by name), each to the
    least-loaded rank (then the lowest rank). Each share lists its names in the order placed."""
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1, got {ranks}")
    shares: list[list[str]] = [[] for _ in range(ranks)]
    loads = [(0, r) for r in range(ranks)]  # a heap of (load, rank)
    for name in sorted(weights, key=lambda n: (-weights[n], n)):
        load, r = heapq.heappop(loads)
        shares[r].append(name)
        heapq.heappush(loads, (load + weights[name], r))
    return shares


@dataclass
class Plan:
    """What a job does: the videos each rank extracts (output paths, in name order as one
    process takes them), the frames that makes per rank, and the videos it leaves alone."""

    shares: list[list[str]]
    frames: list[int]
    skipped: int = 0  # finished by an earlier run
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (video, why it cannot be reused)

    def digest(self) -> str:
        """The same on every rank exactly when the ranks agree on the plan."""
        text = json.dumps([self.shares, self.skipped, self.conflicts], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def plan_extraction(
    jobs: Sequence[VideoJob],
    out: Path,
    settings: dict[str, Any],
    ranks: int,
    fps: float | None = None,
    frames_fps: float | None = None,
) -> Plan:
    """Skip the videos already extracted under `out` with `settings` (`store.finished`), set
    aside those extracted with other settings, and share the rest over `ranks`."""
    pending: dict[str, int] = {}
    skipped = 0
    conflicts: list[tuple[str, str]] = []
    for job in jobs:
        state = store.finished(job, out, settings)
        if state == "done":
            skipped += 1
        elif state is not None:
            conflicts.append((job.display, state))
        else:
            pending[job.rel] = header_frames(job, fps, frames_fps)
    shares = [sorted(share) for share in balanced_plan(pending, ranks)]
    return Plan(shares, [sum(pending[n] for n in share) for share in shares], skipped, conflicts)
