"""The feature-extraction job: videos -> one float32 (T, 512) `.npy` per video + a JSON sidecar.

    anomalyclip extract --videos UCF_Crimes/Videos --out features/ucf --labels ucf_labels.csv

* Inputs: folders (scanned recursively for `*.mp4 *.avi *.mkv *.mov *.webm` files and frame
  folders), or explicit files / frame folders. Output paths mirror the input's relative path:
  `Videos/Abuse/Abuse028_x264.mp4` -> `OUT/Abuse/Abuse028_x264.npy` and `.json`. An explicit
  file or frame folder is written at the top of OUT under its own name.
* Resumable: a video whose `.npy` and sidecar both exist (and whose sidecar records the same
  CLIP model, sampling and preprocessing) is skipped. Each file is written to a temporary file
  and renamed, the `.npy` first and the sidecar last, so a sidecar marks a finished video and an
  interruption loses at most the video in progress.
* A bad video (missing, empty, unreadable, corrupt) is reported as one `error:` line; the job
  goes on with the rest and exits with status 1 at the end, listing the failed videos.
* `--labels CSV` also writes `OUT/Anomaly_Train_Normal.txt` and `OUT/Anomaly_Train_Abnormal.txt`
  (`<relative path> 0 <T-1> <label id>`), the class of a video being its parent folder's name.
* `--devices N` runs N processes with Lightning Fabric (DDP); rank r takes videos[r::N].
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.fileio import atomic_path, write_json, write_text
from anomalyclip.video.decode import VIDEO_EXTENSIONS, is_frame_folder, open_video

DEFAULT_CLIP = "openai/clip-vit-base-patch16"  # same as encoder.DEFAULT_CLIP (not imported: keeps --help light)
NORMAL_LIST = "Anomaly_Train_Normal.txt"
ABNORMAL_LIST = "Anomaly_Train_Abnormal.txt"
# ranks finish their shards at different times and meet at a barrier: allow for a long imbalance
# (a process killed outright, e.g. by the OOM killer, makes the others wait this long)
_DDP_TIMEOUT = timedelta(hours=24)


# ---------------------------------------------------------------------- finding videos
@dataclass(frozen=True)
class VideoJob:
    """One video to extract: its source and where its outputs go (relative to OUT)."""

    source: Path
    rel: str  # POSIX relative path without extension, e.g. "Abuse/Abuse028_x264"
    kind: str  # "file" or "frames"

    @property
    def display(self) -> str:
        """The input's relative name, e.g. `Abuse/Abuse028_x264.mp4` (frame folders end in `/`)."""
        return self.rel + (self.source.suffix if self.kind == "file" else "/")

    def npy(self, out: Path) -> Path:
        return out / (self.rel + ".npy")

    def sidecar(self, out: Path) -> Path:
        return out / (self.rel + ".json")

    @property
    def class_folder(self) -> str:
        return self.source.resolve().parent.name


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _scan_folder(root: Path) -> list[VideoJob]:
    jobs: list[VideoJob] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        keep = []
        for d in dirnames:
            sub = here / d
            if is_frame_folder(sub):
                jobs.append(VideoJob(sub, PurePosixPath(sub.relative_to(root)).as_posix(), "frames"))
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = here / name
            if not _hidden(name) and p.suffix.lower() in VIDEO_EXTENSIONS:
                rel = PurePosixPath(p.relative_to(root)).with_suffix("").as_posix()
                jobs.append(VideoJob(p, rel, "file"))
    return jobs


def find_videos(inputs: Sequence[str | Path]) -> list[VideoJob]:
    """Expand `--videos` into jobs sorted by output path; duplicate output paths are an error."""
    if not inputs:
        raise InputError("no videos given (--videos takes files, frame folders or folders to scan)")
    jobs: list[VideoJob] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_file():
            jobs.append(VideoJob(p, p.stem, "file"))
        elif p.is_dir():
            if is_frame_folder(p):
                jobs.append(VideoJob(p, p.resolve().name, "frames"))
                continue
            found = _scan_folder(p)
            if not found:
                raise InputError(
                    f"no video files ({' '.join('*' + e for e in VIDEO_EXTENSIONS)}) or frame folders found", p
                )
            jobs.extend(found)
        else:
            raise InputError("video file or folder not found", p)
    by_rel: dict[str, VideoJob] = {}
    for job in jobs:
        other = by_rel.get(job.rel)
        if other is not None and other.source.resolve() != job.source.resolve():
            raise InputError(
                f"two inputs would write the same feature file {job.rel}.npy: {other.source} and {job.source}"
            )
        by_rel[job.rel] = job
    return [by_rel[k] for k in sorted(by_rel)]


# ---------------------------------------------------------------------- labels
def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def label_for_folder(folder: str, classes, where: Path | None = None) -> int:
    """Class id of a class folder: its name matched case-insensitively (spaces, `_` and `-`
    equivalent) against the class names; otherwise a name starting with `normal` or holding the
    word `normal` (`Normal_Videos_event`, `Training_Normal_Videos_Anomaly`) is the normal class."""
    key = _norm_name(folder)
    for i, name in enumerate(classes.names):
        if _norm_name(name) == key:
            return i
    if key.startswith("normal") or "normal" in re.split(r"[^a-z]+", key):
        return classes.normal_id
    raise InputError(
        f"folder {folder!r} is not a class of the labels CSV; known classes: {', '.join(classes.names)} "
        "(normal videos may also sit in a folder whose name starts with 'Normal')",
        where,
    )


# ---------------------------------------------------------------------- helpers
def parse_fps(value: Any) -> float | None:
    """`None` / `"native"` -> None (every frame); a positive number -> that target rate."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "native":
            return None
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"--fps must be 'native' or a positive number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--fps must be 'native' or a positive number, got {value!r}")
    return value


def _prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Produce `items` in a background thread, `depth` ahead (decoding and resizing on the CPU
    overlap the encoder). Exceptions reach the consumer; closing the generator stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((False, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="extract-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _read_sidecar(path: Path) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _settings_conflict(old: dict, new: dict) -> str | None:
    """Why an existing sidecar's features cannot be reused with the current settings, or None."""
    if old.get("clip_weights_sha256") and new.get("clip_weights_sha256"):
        if old["clip_weights_sha256"] != new["clip_weights_sha256"]:
            return f"a different CLIP model ({old.get('clip_model')}, weights sha256 {old['clip_weights_sha256'][:12]}...)"
    elif old.get("clip_model") != new.get("clip_model"):
        return f"a different CLIP model ({old.get('clip_model')})"
    if old.get("target_fps") != new.get("target_fps"):
        was = old.get("target_fps") or "native"
        return f"another frame sampling (--fps {was})"
    if (old.get("preprocessing") or {}).get("method") != new["preprocessing"]["method"]:
        return "another preprocessing"
    return None


# ---------------------------------------------------------------------- one video
def extract_video(
    job: VideoJob,
    encoder,
    out: Path,
    fps: float | None = None,
    frames_fps: float | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> dict:
    """Extract one video and write its `.npy` then its sidecar, each atomically. Returns the sidecar."""
    from anomalyclip import __version__

    feats: list[np.ndarray] = []
    with open_video(job.source, fps=fps, frames_fps=frames_fps) as reader:
        info = reader.info
        # three stages in parallel: decode (thread) -> resize + crop (thread + pool) -> encode (here);
        # the closings stop both threads, outer first, before the reader closes
        with contextlib.closing(_prefetch(reader.batches(encoder.batch_size), depth=1)) as decoded, \
                contextlib.closing(_prefetch(encoder.prepare(b) for b in decoded)) as batches:
            for crops in batches:
                feats.append(encoder.embed(crops))
                if on_frames is not None:
                    on_frames(int(crops.shape[0]))
        num_frames = reader.frames_read
        size = (info.width, info.height)
    features = np.concatenate(feats).astype(np.float32, copy=False)
    if features.shape != (num_frames, encoder.embed_dim):
        raise RuntimeError(f"{job.source}: got features {features.shape} for {num_frames} frames")
    meta = encoder.metadata()
    sidecar = {
        "video": job.display,
        "source": str(job.source),
        "kind": job.kind,
        "num_frames": num_frames,
        "feature_shape": [num_frames, encoder.embed_dim],
        "dtype": "float32",
        "fps": info.fps,
        "native_fps": info.native_fps,
        "target_fps": fps,
        "frame_size": list(size) if all(size) else None,
        **meta,
        "anomalyclip_version": __version__,
        "extracted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    npy = job.npy(out)
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, features)
    write_json(job.sidecar(out), sidecar)
    return sidecar


# ---------------------------------------------------------------------- the job
@dataclass
class _Options:
    out: Path
    clip: str
    batch_size: int
    device: str
    fps: float | None
    frames_fps: float | None
    preprocess: str
    labels: Path | None


def _echo(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _run_rank(jobs: list[VideoJob], label_ids: dict[str, int] | None, classes, opt: _Options, fabric=None) -> int:
    import torch
    from tqdm import tqdm

    from anomalyclip.video.encoder import ClipImageEncoder

    rank = fabric.global_rank if fabric is not None else 0
    world = fabric.world_size if fabric is not None else 1
    device = opt.device
    if fabric is not None:
        device = fabric.device
        if device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        with fabric.rank_zero_first():  # a hub download happens once
            encoder = ClipImageEncoder(opt.clip, device=device, batch_size=opt.batch_size, preprocess=opt.preprocess)
    else:
        encoder = ClipImageEncoder(opt.clip, device=device, batch_size=opt.batch_size, preprocess=opt.preprocess)
    current = {
        "clip_model": encoder.model_id,
        "clip_weights_sha256": encoder.weights_sha256,
        "target_fps": opt.fps,
        "preprocessing": encoder.settings.to_dict(),
    }

    mine = jobs[rank::world]
    failed: list[tuple[str, str]] = []
    done = skipped = frames_total = 0
    busy = 0.0
    desc = "extract" if world == 1 else f"extract[{rank}]"
    bar = tqdm(total=len(mine), desc=desc, unit="video", position=rank, dynamic_ncols=True, file=sys.stderr)

    def rate() -> str:
        return f"{frames_total / busy:.1f}" if busy > 0 and frames_total else "-"

    crash: Exception | None = None
    try:
        for job in mine:
            npy, side = job.npy(opt.out), job.sidecar(opt.out)
            if npy.exists() and side.exists():
                old = _read_sidecar(side)
                if old is not None:
                    why = _settings_conflict(old, current)
                    if why is None:
                        skipped += 1
                        bar.update(1)
                        continue
                    msg = (f"{side}: already extracted with {why}; delete {npy.name} and {side.name} "
                           "or use another --out")
                    _echo(f"error: {msg}")
                    failed.append((job.display, msg))
                    bar.update(1)
                    continue
            start = time.perf_counter()
            video_frames = 0

            def on_frames(n: int, _start=start) -> None:
                nonlocal video_frames
                video_frames += n
                elapsed = busy + time.perf_counter() - _start
                bar.set_postfix(
                    {"done": done, "frames": frames_total + video_frames,
                     "frames/s": f"{(frames_total + video_frames) / elapsed:.1f}" if elapsed > 0 else "-"},
                    refresh=False,
                )

            try:
                extract_video(job, encoder, opt.out, fps=opt.fps, frames_fps=opt.frames_fps, on_frames=on_frames)
            except InputError as e:
                _echo(f"error: {e}")
                failed.append((job.display, str(e)))
            else:
                done += 1
                frames_total += video_frames
            finally:
                busy += time.perf_counter() - start
            bar.set_postfix({"done": done, "frames": frames_total, "frames/s": rate()}, refresh=False)
            bar.update(1)
    except Exception as e:
        if fabric is None:
            raise
        # still meet the other ranks at the barrier (they would wait for this one until the
        # timeout), then fail
        crash = e
        failed.append((f"rank {rank}", f"process {rank} stopped: {type(e).__name__}: {e}"))
    finally:
        bar.close()

    if fabric is not None:
        fabric.barrier()
        import torch.distributed as dist

        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (failed, done, skipped))
        failed = [f for part in gathered for f in part[0]]
        done = sum(part[1] for part in gathered)
        skipped = sum(part[2] for part in gathered)
    failed_names = {name for name, _ in failed}
    incomplete = [j for j in jobs if j.display not in failed_names
                  and not (j.npy(opt.out).exists() and j.sidecar(opt.out).exists())]
    for j in incomplete:  # videos of a process that stopped
        failed.append((j.display, f"{j.source}: no features were written"))

    if rank == 0:
        ok = [j for j in jobs if j.display not in {n for n, _ in failed}]
        if classes is not None:
            _write_lists(ok, label_ids, classes, opt.out)
        _echo(f"extracted {done} video(s), skipped {skipped} already extracted, {len(failed)} failed; "
              f"features in {opt.out}")
        if failed:
            _echo(f"{len(failed)} video(s) failed:")
            for _, msg in sorted(failed):
                _echo(f"  {msg}")
            if classes is not None:
                _echo("the video lists leave the failed videos out")
    if crash is not None:
        raise crash
    return 1 if failed else 0


def _write_lists(jobs: list[VideoJob], label_ids: dict[str, int], classes, out: Path) -> None:
    normal, abnormal = [], []
    for job in jobs:
        side = _read_sidecar(job.sidecar(out))
        if side is None or not isinstance(side.get("num_frames"), int) or side["num_frames"] < 1:
            raise InputError("sidecar is unreadable or has no frame count; delete it and extract again",
                             job.sidecar(out))
        label = label_ids[job.rel]
        row = f"{job.rel} 0 {side['num_frames'] - 1} {label}\n"
        (normal if label == classes.normal_id else abnormal).append(row)
    write_text(out / NORMAL_LIST, "".join(normal))
    write_text(out / ABNORMAL_LIST, "".join(abnormal))
    _echo(f"wrote {out / NORMAL_LIST} ({len(normal)} videos) and {out / ABNORMAL_LIST} ({len(abnormal)} videos)")


def _fabric_entry(fabric, jobs, label_ids, classes, opt) -> int:
    return _run_rank(jobs, label_ids, classes, opt, fabric=fabric)


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
) -> int:
    """Extract features of `videos` into `out`. Returns the exit status: 0, or 1 if any video failed.

    `device`: "cpu" / "cuda" / None (cuda if available). `fps`: None or "native" (every frame) or a
    target rate. `devices`: number of processes (Lightning Fabric DDP; with cuda, one GPU each).
    `labels`: a labels CSV to also write the training video lists. `frames_fps`: the rate of frame
    folders, if known. Bad arguments, an unknown class folder or no videos at all raise InputError
    before anything is extracted.
    """
    from anomalyclip.data.formats import read_labels
    from anomalyclip.video.encoder import resolve_device

    if int(batch_size) < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if int(devices) < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
    devices = int(devices)
    fps = parse_fps(fps)
    dev = resolve_device(device)
    if dev.type == "cuda" and devices > torch_cuda_count():
        raise InputError(f"--devices {devices} asked for, but only {torch_cuda_count()} CUDA GPU(s) are visible")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", out)
    jobs = find_videos(videos)
    classes = label_ids = None
    if labels is not None:
        classes = read_labels(labels)
        label_ids = {j.rel: label_for_folder(j.class_folder, classes, j.source.parent) for j in jobs}
    out.mkdir(parents=True, exist_ok=True)
    opt = _Options(out=out, clip=str(clip), batch_size=int(batch_size), device=dev.type, fps=fps,
                   frames_fps=frames_fps, preprocess=preprocess, labels=Path(labels) if labels else None)
    if devices == 1:
        return _run_rank(jobs, label_ids, classes, opt)

    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    fabric = Fabric(accelerator=dev.type, devices=devices, strategy=DDPStrategy(timeout=_DDP_TIMEOUT))
    return fabric.launch(partial(_fabric_entry, jobs=jobs, label_ids=label_ids, classes=classes, opt=opt))


def torch_cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------- CLI glue
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fps_arg(text: str) -> float | None:
    try:
        return parse_fps(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_extract_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `extract` subcommand's flags to `parser`."""
    parser.add_argument("--videos", nargs="+", required=True, metavar="PATH",
                        help="video files, frame folders (000000.jpg ...) or folders to scan recursively for "
                             f"{' '.join('*' + e for e in VIDEO_EXTENSIONS)} and frame folders")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder; OUT/<relative path>.npy (float32, T x 512) and .json per video")
    parser.add_argument("--clip", default=DEFAULT_CLIP, metavar="ID_OR_DIR",
                        help=f"CLIP image encoder: a hub id or a save_pretrained folder (default: {DEFAULT_CLIP})")
    parser.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                        help="frames per encoder batch (default: 64)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda if available, else cpu")
    parser.add_argument("--fps", type=_fps_arg, default=None, metavar="native|N",
                        help="'native' (every frame, default) or a target rate sampled by timestamp")
    parser.add_argument("--devices", type=_positive_int, default=1, metavar="N",
                        help="processes (one GPU each with cuda); rank r takes videos r, r+N, ... (default: 1)")
    parser.add_argument("--labels", default=None, metavar="CSV",
                        help="labels CSV (id,name): also write Anomaly_Train_Normal.txt and "
                             "Anomaly_Train_Abnormal.txt, class = parent folder name")
    return parser


def main_extract(args: argparse.Namespace) -> int:
    """Run the `extract` subcommand from parsed arguments; returns the exit status (InputError propagates)."""
    return run_extract(
        videos=args.videos,
        out=args.out,
        clip=args.clip,
        batch_size=args.batch_size,
        device=args.device,
        fps=args.fps,
        devices=args.devices,
        labels=args.labels,
    )
