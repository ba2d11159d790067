"""What extraction leaves on disk: per video `<rel>.npy` (float32 `(T, D)`) and a JSON sidecar
written after it (a sidecar marks a finished video), and the training video lists.

A video whose `.npy` and sidecar exist with the same CLIP model, sampling and preprocessing is
finished; a rerun skips it. Every file is written to a temporary file and renamed.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from anomalyclip.classes import ClassTable
from anomalyclip.data.formats import VideoEntry
from anomalyclip.errors import InputError
from anomalyclip.fileio import OutputSet, atomic_path, write_json, write_text
from anomalyclip.video.jobs import VideoJob
from anomalyclip.video.pipeline import EncodedVideo

NORMAL_LIST = "Anomaly_Train_Normal.txt"
ABNORMAL_LIST = "Anomaly_Train_Abnormal.txt"


def read_sidecar(path: Path) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def settings_conflict(old: dict, new: dict) -> str | None:
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
    was, now = str(old.get("precision") or "32"), str(new.get("precision") or "32")  # no key: float32
    if was != now:
        return f"another precision (--precision {was})"
    return None


def sidecar_for(job: VideoJob, video: EncodedVideo, encoder_meta: dict[str, Any], target_fps: float | None) -> dict[str, Any]:
    from anomalyclip import __version__

    info = video.info
    size = (info.width, info.height)
    return {
        "video": job.display,
        "source": str(job.source),
        "kind": job.kind,
        "num_frames": video.num_frames,
        "feature_shape": [video.num_frames, int(video.features.shape[1])],
        "dtype": "float32",
        "fps": info.fps,
        "native_fps": info.native_fps,
        "target_fps": target_fps,
        "frame_size": list(size) if all(size) else None,
        **encoder_meta,
        "anomalyclip_version": __version__,
        "extracted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_video(job: VideoJob, out: Path, features: np.ndarray, sidecar: dict[str, Any]) -> None:
    """The `.npy` and the sidecar as one set, the sidecar (which marks the video finished) moved
    into place last."""
    with OutputSet(out) as files:
        save_npy(files.path(job.rel + ".npy"), features)
        write_json(files.path(job.rel + ".json"), sidecar)


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """The array shape in a `.npy` header; None if it is not one."""
    try:
        return tuple(int(n) for n in np.load(path, mmap_mode="r").shape)  # a memory map: the header alone
    except (OSError, ValueError):
        return None


def finished(job: VideoJob, out: Path, settings: dict[str, Any]) -> str | None:
    """None when the video still has to be extracted (also when its `.npy` does not have the
    shape its sidecar records); "done" when it is; else why its existing outputs conflict with
    `settings`."""
    npy, side = job.npy(out), job.sidecar(out)
    if not (npy.exists() and side.exists()):
        return None
    old = read_sidecar(side)
    if old is None:
        return None
    if old.get("feature_shape") is not None and _npy_shape(npy) != tuple(old["feature_shape"]):
        return None
    why = settings_conflict(old, settings)
    if why is None:
        return "done"
    return f"{side}: already extracted with {why}; delete {npy.name} and {side.name} or use another --out"


def write_lists(jobs: list[VideoJob], label_ids: dict[str, int], classes: ClassTable, out: Path) -> tuple[Path, Path, int, int]:
    """The training lists of the finished videos, the class of each from its folder."""
    normal, abnormal = [], []
    for job in jobs:
        side = read_sidecar(job.sidecar(out))
        if side is None or not isinstance(side.get("num_frames"), int) or side["num_frames"] < 1:
            raise InputError("sidecar is unreadable or has no frame count; delete it and extract again", job.sidecar(out))
        label = label_ids[job.rel]
        row = VideoEntry(job.rel, 0, side["num_frames"] - 1, label).line()
        (normal if label == classes.normal_id else abnormal).append(row)
    write_text(out / NORMAL_LIST, "".join(normal))
    write_text(out / ABNORMAL_LIST, "".join(abnormal))
    return out / NORMAL_LIST, out / ABNORMAL_LIST, len(normal), len(abnormal)
