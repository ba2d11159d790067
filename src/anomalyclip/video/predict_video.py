"""`anomalyclip predict --video`: per-frame scores straight from video files or frame folders.

    anomalyclip predict --checkpoint export/ --video Abuse028_x264.mp4 --overlay --out runs/demo

For each input the frames are decoded and encoded by the CLIP image tower with the extraction
job's own code (`extract.extract_video`: same decoding, preprocessing and encoder as
`anomalyclip extract`), then scored by the loaded model. Written under `--out`, each atomically:

* `<stem>.csv`, `<stem>.json`, `<stem>.png`: as for `--features` (`inference.write_video_outputs`);
* `<stem>.npy`: the extracted features (float32, frames x 512), so the video can be scored again
  with `--features` without extracting it again;
* with `--overlay`, `<stem>_overlay.mp4`: the video with its scores and top classes drawn on it.

Every decoded frame is scored (no sampling), so row `i` of the CSV is frame `i` of the video.
Times use `--fps` if given, else the video's own rate (a frame folder has none).

A bad input (missing, unreadable, corrupt, no frames) is reported as one `error:` line on stderr
naming it; the other videos are still scored and the return value is 1 (0 if all went well).
Bad settings (an unloadable `--clip`, a CLIP model whose feature width is not the checkpoint's)
raise `InputError` before any video is read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from anomalyclip.errors import InputError
from anomalyclip.inference import Predictor, anomalous_spans, write_video_outputs
from anomalyclip.video.extract import DEFAULT_CLIP, VideoJob, extract_video, find_videos

DEFAULT_BATCH_SIZE = 64


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _encoder_device(args: argparse.Namespace, predictor: Predictor):
    """The predictor's device, unless `--device` names one explicitly."""
    device = getattr(args, "device", None)
    if device is None or str(device) == "auto":
        return predictor.device
    return device


def build_encoder(args: argparse.Namespace, predictor: Predictor):
    """The CLIP image tower of `--clip` (default ViT-B/16), checked against the model's feature width."""
    from anomalyclip.video.encoder import ClipImageEncoder

    clip = getattr(args, "clip", None) or DEFAULT_CLIP
    batch_size = int(getattr(args, "batch_size", None) or DEFAULT_BATCH_SIZE)
    encoder = ClipImageEncoder(clip, device=_encoder_device(args, predictor), batch_size=batch_size)
    if encoder.embed_dim != predictor.feature_dim:
        raise InputError(
            f"the CLIP image encoder {encoder.model_id!r} makes {encoder.embed_dim}-d features but the "
            f"checkpoint expects {predictor.feature_dim}-d ones (use the CLIP model it was trained with, --clip)"
        )
    return encoder


def _extract(job: VideoJob, encoder, scratch: Path, frames_fps: float | None) -> tuple[np.ndarray, dict, Path]:
    """Features of one video via the extraction job, written under `scratch`.
    Returns (features, extraction sidecar, the scratch .npy)."""
    sidecar = extract_video(job, encoder, scratch, fps=None, frames_fps=frames_fps)
    npy = job.npy(scratch)
    return np.load(npy), sidecar, npy


def _predict_one(
    job: VideoJob,
    encoder,
    predictor: Predictor,
    out: Path,
    scratch: Path,
    args: argparse.Namespace,
    gt: dict | None,
) -> str:
    """Extract, score and write one video's outputs. Returns the line to print."""
    fps_opt = getattr(args, "fps", None)
    features, sidecar, scratch_npy = _extract(job, encoder, scratch, fps_opt if job.kind == "frames" else None)
    if features.ndim != 2 or features.shape[1] != predictor.feature_dim:
        raise InputError(
            f"extracted features have shape {tuple(features.shape)}, the model expects (frames, {predictor.feature_dim})",
            job.source,
        )
    prediction = predictor.predict(features)
    fps = fps_opt or sidecar.get("fps") or None
    stem = Path(job.rel).name
    spans_gt = None if gt is None else gt.get(stem, [])

    npy = out / (job.rel + ".npy")
    npy.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch_npy, npy)  # same file system (scratch is inside out): atomic

    overlay = out / (job.rel + "_overlay.mp4") if getattr(args, "overlay", False) else None
    extra: dict[str, Any] = {
        "clip_model": encoder.model_id,
        "clip_weights_sha256": encoder.weights_sha256,
        "native_fps": sidecar.get("native_fps"),
        "features": npy.name,
    }
    if overlay is not None:
        extra["overlay"] = overlay.name
    extra["video"] = str(job.source)
    paths = write_video_outputs(
        out,
        job.rel,
        prediction,
        predictor.class_names,
        predictor.normal_id,
        fps,
        spans_gt,
        str(job.source),
        predictor.threshold_source,
        extra,
    )
    written = [paths["csv"].name, paths["json"].name, paths["png"].name, npy.name]
    if overlay is not None:
        from anomalyclip.video.overlay import write_overlay

        write_overlay(
            job.source,
            overlay,
            prediction.scores,
            prediction.probs,
            predictor.class_names,
            predictor.normal_id,
            prediction.threshold,
            fps=fps if job.kind == "frames" else None,  # a file keeps its own rate
        )
        written.append(overlay.name)
    n_spans = len(anomalous_spans(prediction, predictor.class_names, predictor.normal_id))
    where = paths["csv"].parent
    return (
        f"  {job.display}: {prediction.num_frames} frames, max score {float(prediction.scores.max()):.3f}, "
        f"{n_spans} anomalous span(s) -> {where}/{{{','.join(written)}}}"
    )


def predict_on_video(args: argparse.Namespace, predictor: Predictor) -> int:
    """Score every input of `args.video` (see the module docstring). Returns 0, or 1 if any failed."""
    inputs = list(getattr(args, "video", None) or [])
    if not inputs:
        raise InputError("no videos given (--video takes video files or frame folders)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", out)
    gt = None
    if getattr(args, "temporal", None):
        from anomalyclip.data.formats import read_temporal

        gt = read_temporal(args.temporal)

    encoder = build_encoder(args, predictor)
    print(
        f"{len(inputs)} video input(s); CLIP image encoder {encoder.model_id} on {encoder.device}; "
        f"threshold {predictor.threshold:.4g} ({predictor.threshold_source}); classes: {', '.join(predictor.class_names)}",
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    done = 0
    used: dict[str, Path] = {}  # output name -> resolved source
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=out))
    try:
        for item in inputs:
            try:
                jobs = find_videos([item])
            except InputError as e:
                _error(str(e))
                failed.append(str(item))
                continue
            for job in jobs:
                source = job.source.resolve()
                other = used.get(job.rel)
                if other is not None:
                    if other != source:
                        _error(f"{job.source}: its outputs would overwrite those of {other} (same name {job.rel!r}); "
                               "rename one or predict them in separate runs")
                        failed.append(str(job.source))
                    continue
                used[job.rel] = source
                try:
                    line = _predict_one(job, encoder, predictor, out, scratch, args, gt)
                except InputError as e:
                    message = str(e)
                    if str(job.source) not in message:
                        message = f"{job.source}: {message}"
                    _error(message)
                    failed.append(str(job.source))
                    continue
                print(line, flush=True)
                done += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print(f"{done} video(s) scored, {len(failed)} failed", flush=True)
        return 1
    return 0
