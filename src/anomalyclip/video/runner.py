"""The extraction job: videos -> `store` files, skipping finished ones, one process or several
(ranks of torchrun, or `--devices G` on one machine: `world`, `launch`), each rank extracting
its frame-balanced share (`shards`) and writing its own files.

A bad video (missing, empty, unreadable, corrupt) is reported as one `error:` line; the job goes
on with the rest and exits with status 1 at the end, listing the failed videos. With a labels
CSV the training lists are written once all ranks are done, leaving the failed videos out.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from anomalyclip.classes import ClassTable
from anomalyclip.clip_config import DEFAULT_CLIP
from anomalyclip.errors import InputError
from anomalyclip.video.decode import parse_fps
from anomalyclip.video import completeness, store
from anomalyclip.video.jobs import VideoJob, find_videos, label_for_folder
from anomalyclip.video.precision import tower_dtype
from anomalyclip.video.world import Group, World

# ranks finish their shares at different times and meet at a barrier: allow for a long imbalance
# (a process killed outright, e.g. by the OOM killer, makes the others wait this long)
_DDP_TIMEOUT = timedelta(hours=24)


@dataclass
class ExtractOptions:
    out: Path
    clip: str
    batch_size: int
    device: str
    fps: float | None
    frames_fps: float | None
    preprocess: str
    precision: str = "32"
    allow_short: bool = False


@dataclass
class ShardResult:
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, message)
    done: int = 0
    skipped: int = 0


def _echo(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


class _Progress:
    """A bar over videos with the frame rate of the encoding itself (skipped videos excluded)."""

    def __init__(self, total: int, rank: int, world: int):
        from tqdm import tqdm

        desc = "extract" if world == 1 else f"extract[{rank}]"
        self.bar = tqdm(total=total, desc=desc, unit="video", position=rank, dynamic_ncols=True, file=sys.stderr)
        self.frames = 0
        self.busy = 0.0
        self.done = 0

    def show(self, frames: int, busy: float) -> None:
        rate = f"{frames / busy:.1f}" if busy > 0 and frames else "-"
        self.bar.set_postfix({"done": self.done, "frames": frames, "frames/s": rate}, refresh=False)

    def tick(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _extract_one(job: VideoJob, encoder, opt: ExtractOptions, progress: _Progress) -> None:
    from anomalyclip.video.pipeline import encode_video

    start = time.perf_counter()
    seen = 0

    def on_frames(n: int) -> None:
        nonlocal seen
        seen += n
        progress.show(progress.frames + seen, progress.busy + time.perf_counter() - start)

    try:
        video = encode_video(job.source, encoder, fps=opt.fps, frames_fps=opt.frames_fps, on_frames=on_frames)
        count = completeness.FrameCount(video.frames_decoded, video.info.declared_frames)
        short = completeness.check_frame_count(job.source, count, opt.allow_short)
        if short:
            _echo(f"warning: {job.source}: {count.describe()}; kept them (--allow-short)")
        sidecar = {**store.sidecar_for(job, video, encoder.metadata(), opt.fps), **short}
        store.write_video(job, opt.out, video.features, sidecar)
        progress.frames += seen
        progress.done += 1
    finally:
        progress.busy += time.perf_counter() - start


def extract_shard(
    jobs: list[VideoJob], encoder, opt: ExtractOptions, rank: int = 0, world: int = 1, result: ShardResult | None = None
) -> ShardResult:
    """Extract `jobs` one by one into `result`; bad videos are recorded and the rest go on."""
    settings = _settings(encoder, opt)
    result = ShardResult() if result is None else result
    progress = _Progress(len(jobs), rank, world)
    try:
        for job in jobs:
            state = store.finished(job, opt.out, settings)
            if state == "done":
                result.skipped += 1
            elif state is not None:
                _echo(f"error: {state}")
                result.failed.append((job.display, state))
            else:
                try:
                    _extract_one(job, encoder, opt, progress)
                    result.done += 1
                except InputError as e:
                    _echo(f"error: {e}")
                    result.failed.append((job.display, str(e)))
            progress.show(progress.frames, progress.busy)
            progress.tick()
    finally:
        progress.close()
    return result


def _settings(encoder, opt: ExtractOptions) -> dict[str, Any]:
    """What a finished video's sidecar must match to be reused (`store.settings_conflict`)."""
    return {
        "clip_model": encoder.model_id,
        "clip_weights_sha256": encoder.weights_sha256,
        "target_fps": opt.fps,
        "preprocessing": encoder.settings.to_dict(),
        "precision": encoder.precision,
    }


def _gather(group: Group, result: ShardResult) -> ShardResult:
    parts: list[ShardResult] = group.all_gather(result)
    return ShardResult([f for p in parts for f in p.failed], sum(p.done for p in parts), sum(p.skipped for p in parts))


def _report(jobs: list[VideoJob], result: ShardResult, label_ids, classes: ClassTable | None, opt: ExtractOptions) -> None:
    failed = list(result.failed)
    named = {name for name, _ in failed}
    for j in jobs:  # videos of a process that stopped
        if j.display not in named and not (j.npy(opt.out).exists() and j.sidecar(opt.out).exists()):
            failed.append((j.display, f"{j.source}: no features were written"))
    result.failed = failed
    named = {name for name, _ in failed}
    if classes is not None:
        normal, abnormal, n_nor, n_abn = store.write_lists([j for j in jobs if j.display not in named], label_ids, classes, opt.out)
        _echo(f"wrote {normal} ({n_nor} videos) and {abnormal} ({n_abn} videos)")
    _echo(f"extracted {result.done} video(s), skipped {result.skipped} already extracted, {len(failed)} failed; features in {opt.out}")
    kept = completeness.short_kept((j.display, store.read_sidecar(j.sidecar(opt.out))) for j in jobs if j.display not in named)
    if kept:
        _echo(f"{len(kept)} short video(s) kept as decoded:")
        for line in kept:
            _echo(f"  {line}")
    if failed:
        _echo(f"{len(failed)} video(s) failed:")
        for _, msg in sorted(failed):
            _echo(f"  {msg}")
        if classes is not None:
            _echo("the video lists leave the failed videos out")


def _plan(jobs: list[VideoJob], encoder, opt: ExtractOptions, group: Group):
    """The same plan on every rank, checked: no rank writes before all have planned."""
    from anomalyclip.fileio import remove_staging
    from anomalyclip.video.shards import plan_extraction

    world = group.world
    plan = plan_extraction(jobs, opt.out, _settings(encoder, opt), world.size, opt.fps, opt.frames_fps)
    if world.rank == 0:
        remove_staging(opt.out)  # left by a process killed mid-write; nobody writes yet
        for _, why in plan.conflicts:
            _echo(f"error: {why}")
        todo = sum(len(s) for s in plan.shares)
        spread = f" over {world.size} processes, {min(plan.frames)}-{max(plan.frames)} frames each" if world.size > 1 else ""
        _echo(f"{todo} video(s) to extract{spread}; {plan.skipped} already extracted")
    if len(set(group.all_gather(plan.digest()))) > 1:
        raise InputError(
            "the processes do not see the same videos and outputs: give every node the same --videos and "
            "--out paths on a shared file system"
        )
    return plan


def _run_rank(jobs: list[VideoJob], label_ids, classes: ClassTable | None, opt: ExtractOptions, world: World | None = None) -> int:
    """One rank's whole job (the only one, or one of torchrun's): plan, extract its share, meet
    the others; rank 0 then reports and writes the lists."""
    import torch

    from anomalyclip.video.encoder import ClipImageEncoder
    from anomalyclip.video.world import process_group

    world = world or World.from_env() or World()  # --devices' processes find theirs in the environment
    build = partial(ClipImageEncoder, opt.clip, batch_size=opt.batch_size, preprocess=opt.preprocess, precision=opt.precision)
    device = world.device(opt.device)
    with process_group(world, device, _DDP_TIMEOUT) as group:
        if group.joined and device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
        with group.rank_zero_first():  # a hub download happens once
            encoder = build(device=device)
        plan = _plan(jobs, encoder, opt, group)
        by_rel = {j.rel: j for j in jobs}
        crash: Exception | None = None
        result = ShardResult()
        try:
            extract_shard([by_rel[r] for r in plan.shares[world.rank]], encoder, opt, world.rank, world.size, result)
        except Exception as e:  # still meet the other ranks, then fail
            if not group.joined:
                raise
            crash = e
            result.failed.append((f"rank {world.rank}", f"process {world.rank} stopped: {type(e).__name__}: {e}"))
        result = _gather(group, result)
        result.failed.extend(plan.conflicts)
        result.skipped += plan.skipped
        if world.rank == 0:
            _report(jobs, result, label_ids, classes, opt)
        group.barrier()  # the lists are written before any rank ends
    if crash is not None:
        raise crash
    return 1 if result.failed else 0


def run_extract(
    videos: Sequence[str | Path],
    out: str | Path,
    clip: str | Path = DEFAULT_CLIP,
    batch_size: int = 64,
    device: str | None = None,
    fps: float | str | None = None,
    devices: int = 1,
    labels: str | Path | None = None,
    *,
    frames_fps: float | None = None,
    preprocess: str = "pil",
    precision: str = "32",
    allow_short: bool = False,
) -> int:
    """Extract features of `videos` into `out`. Returns the exit status: 0, or 1 if any video failed.

    `device`: "cpu" / "cuda" / None (cuda if available). `fps`: None or "native" (every frame) or a
    target rate. `devices`: number of processes on this machine (with cuda, one GPU each); under
    torchrun (RANK and WORLD_SIZE set) this process is one of its ranks and `devices` must be 1.
    `labels`: a labels CSV to also write the training video lists. `frames_fps`: the rate of frame
    folders, if known. `precision`: the image tower's ("32", "bf16", "16"; `precision.py`).
    `allow_short`: keep the frames of a video that decodes short of its declared frame count
    (`completeness.py`) instead of failing it. Bad arguments, an unknown class folder or no videos
    at all raise InputError before anything is extracted.
    """
    from anomalyclip.data.formats import read_labels
    from anomalyclip.devices import resolve_device

    if int(batch_size) < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if int(devices) < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
    devices = int(devices)
    world = World.from_env()
    if world is not None and devices > 1:
        raise InputError("--devices starts processes on one machine; under torchrun give --nproc-per-node instead")
    fps = parse_fps(fps, "--fps", allow_native=True)
    dev = resolve_device(device)
    tower_dtype(precision, dev)
    if dev.type == "cuda" and devices > _cuda_count():
        raise InputError(f"--devices {devices} asked for, but only {_cuda_count()} CUDA GPU(s) are visible")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", out)
    jobs = find_videos(videos)
    classes = label_ids = None
    if labels is not None:
        classes = read_labels(labels)
        label_ids = {j.rel: label_for_folder(j.class_folder, classes, j.source.parent) for j in jobs}
    out.mkdir(parents=True, exist_ok=True)
    opt = ExtractOptions(out, str(clip), int(batch_size), dev.type, fps, frames_fps, preprocess, str(precision), bool(allow_short))
    if devices == 1 or world is not None:
        return _run_rank(jobs, label_ids, classes, opt, world)
    from anomalyclip.video.launch import run_local_ranks

    return run_local_ranks(devices, _run_rank, (jobs, label_ids, classes, opt))


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
