"""`anomalyclip predict --video`: per-frame scores straight from video files or frame folders.

Each input is decoded once and encoded by the CLIP image tower with the extraction pipeline
(same decoding, preprocessing and encoder as `anomalyclip extract`); the features go to the
predictor in memory. Written under the output folder, each atomically:

* `<stem>.csv`, `<stem>.json`, `<stem>.png`: as for `--features` (`writers.PredictionWriter`);
* `<stem>.npy`: the extracted features (float32, frames x D), to score again with `--features`;
* with `overlay`, `<stem>_overlay.mp4`: the video with its scores and top classes drawn on it,
  from the frames kept during the one decode (`frames.FrameStore`).

Every decoded frame is scored (no sampling), so row `i` of the CSV is frame `i` of the video.
Times use `fps` if given, else the video's own rate (a frame folder has none).

A bad input (missing, unreadable, corrupt, no frames) is reported as one `error:` line on stderr
naming it; the other videos are still scored and the return value is 1 (0 if all went well).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from anomalyclip.clip_config import DEFAULT_CLIP
from anomalyclip.data.formats import Spans
from anomalyclip.errors import InputError
from anomalyclip.fileio import OutputSet
from anomalyclip.predictor import Predictor
from anomalyclip.video.jobs import VideoJob, find_videos
from anomalyclip.writers import PredictionWriter, VideoMeta


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def build_encoder(predictor: Predictor, clip: str | None = None, device=None, batch_size: int = 64):
    """The CLIP image tower of `clip` (default ViT-B/16) on the predictor's device unless one is
    named, checked against the model's feature width."""
    from anomalyclip.video.encoder import ClipImageEncoder

    encoder = ClipImageEncoder(clip or DEFAULT_CLIP, device=device or predictor.device, batch_size=batch_size)
    if encoder.embed_dim != predictor.feature_dim:
        raise InputError(
            f"the CLIP image encoder {encoder.model_id!r} makes {encoder.embed_dim}-d features but the "
            f"checkpoint expects {predictor.feature_dim}-d ones (use the CLIP model it was trained with, --clip)"
        )
    return encoder


def predict_video(
    job: VideoJob,
    encoder,
    predictor: Predictor,
    writer: PredictionWriter,
    fps: float | None = None,
    overlay: bool = False,
    gt: dict[str, Spans] | None = None,
) -> str:
    """Decode, encode, score and write one video. Returns the line to print."""
    from anomalyclip.video.frames import FrameStore
    from anomalyclip.video.overlay import write_overlay
    from anomalyclip.video.pipeline import encode_video
    from anomalyclip.video.store import save_npy

    out = writer.out_dir
    with FrameStore(out) as kept, OutputSet(out) as files:  # the video's files appear together
        video = encode_video(job.source, encoder, frames_fps=fps if job.kind == "frames" else None, keep=kept if overlay else None)
        prediction = predictor.predict(video.features)
        rate = fps or video.info.fps or None
        npy = out / (job.rel + ".npy")
        save_npy(files.path(job.rel + ".npy"), video.features)
        overlay_path = out / (job.rel + "_overlay.mp4") if overlay else None
        extra = {
            "clip_model": encoder.model_id,
            "clip_weights_sha256": encoder.weights_sha256,
            "native_fps": video.info.native_fps,
            "features": npy.name,
            **({"overlay": overlay_path.name} if overlay_path else {}),
            "video": str(job.source),
        }
        stem = Path(job.rel).name
        meta = VideoMeta(job.rel, str(job.source), rate, None if gt is None else gt.get(stem, []), extra)
        written = writer.write(meta, prediction, files)
        names = [p.name for p in written.paths.values()] + [npy.name]
        if overlay_path is not None:
            # a file keeps its own rate; a frame folder has only the one given
            write_overlay(
                kept, files.path(job.rel + "_overlay.mp4"), prediction.scores, prediction.probs, predictor.class_names, predictor.normal_id,
                prediction.threshold, fps=(fps if job.kind == "frames" else video.info.native_fps),
            )
            names.append(overlay_path.name)
    where = written.paths["csv"].parent
    return (
        f"  {job.display}: {prediction.num_frames} frames, max score {float(prediction.scores.max()):.3f}, "
        f"{len(written.spans)} event(s) -> {where}/{{{','.join(names)}}}"
    )


def predict_videos(
    inputs: Sequence[str | Path],
    predictor: Predictor,
    encoder,
    writer: PredictionWriter,
    fps: float | None = None,
    overlay: bool = False,
    gt: dict[str, Spans] | None = None,
) -> int:
    """Score every input (see the module docstring). Returns 0, or 1 if any failed."""
    if not inputs:
        raise InputError("no videos given (--video takes video files or frame folders)")
    writer.out_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    done = 0
    used: dict[str, Path] = {}  # output name -> resolved source
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
                line = predict_video(job, encoder, predictor, writer, fps, overlay, gt)
            except InputError as e:
                message = str(e)
                if str(job.source) not in message:
                    message = f"{job.source}: {message}"
                _error(message)
                failed.append(str(job.source))
                continue
            print(line, flush=True)
            done += 1
    if failed:
        print(f"{done} video(s) scored, {len(failed)} failed", flush=True)
        return 1
    return 0
