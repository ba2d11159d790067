"""Which videos an extraction job covers: video files and frame folders found under the inputs,
where each one's outputs go, and the class of a video from its folder's name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from anomalyclip.classes import ClassTable, class_of_folder
from anomalyclip.errors import InputError
from anomalyclip.video.decode import VIDEO_EXTENSIONS, is_frame_folder


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


def label_for_folder(folder: str, classes: ClassTable, where: Path | None = None) -> int:
    """Class id of a video's class folder (`classes.class_of_folder`)."""
    label = class_of_folder(folder, classes.names, classes.normal_id)
    if label is None:
        raise InputError(
            f"folder {folder!r} is not a class of the labels CSV; known classes: {', '.join(classes.names)} "
            "(normal videos may also sit in a folder whose name starts with 'Normal')",
            where,
        )
    return label
