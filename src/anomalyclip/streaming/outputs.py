"""The files of one stream under `--out DIR`: `scores.jsonl` (written as it goes), with
`--overlay` `stream_overlay.mp4` (frame by frame, complete on close), and when the stream ends
`stream.csv`, `stream.json`, `stream.png` through the same `PredictionWriter` as `predict`.
Without a folder the JSONL goes to stdout and nothing else is written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from anomalyclip.errors import InputError
from anomalyclip.writers import PredictionWriter, VideoMeta, Written

NAME = "stream"
JSONL = "scores.jsonl"


class StreamOutputs:
    """`writer`: the `PredictionWriter` of the final files (its `out_dir` is `--out`), or None
    for the JSONL on stdout only. `threshold` and `fps` are the overlay's."""

    def __init__(self, writer: PredictionWriter | None, overlay: bool, threshold: float, fps: float | None):
        self.writer = writer
        self.overlay = None
        self._file: TextIO | None = None
        if writer is None:
            if overlay:
                raise InputError("--overlay writes a video file: give --out DIR")
            self.jsonl: TextIO = sys.stdout
            return
        out = writer.out_dir
        if out.exists() and not out.is_dir():
            raise InputError("--out must be a folder", out)
        out.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(out / JSONL, "x", encoding="utf-8")  # never over a finished stream's scores
        except FileExistsError:
            raise InputError("the folder already holds a stream's scores; choose another --out", out / JSONL) from None
        self.jsonl = self._file
        if overlay:
            from anomalyclip.video.overlay import OverlayWriter

            self.overlay = OverlayWriter(out / f"{NAME}_overlay.mp4", writer.class_names, writer.normal_id, threshold, fps)

    @property
    def out_dir(self) -> Path | None:
        return None if self.writer is None else self.writer.out_dir

    def finish(self, result, meta: dict[str, Any], fps: float | None, source: str) -> Written | None:
        """Close the JSONL and the overlay; write the per-stream files (if any frame was scored)."""
        scored = result.prediction.num_frames > 0
        try:
            if self.overlay is not None:
                self.overlay.close(ok=scored)
                if scored:
                    meta = {**meta, "overlay": f"{NAME}_overlay.mp4"}
            if self.writer is None or not scored:
                return None
            extra = {"jsonl": JSONL, **meta}
            return self.writer.write(VideoMeta(NAME, source, fps, extra=extra, times=result.times), result.prediction)
        finally:
            self.close()

    def close(self) -> None:
        if self.overlay is not None:
            self.overlay.close(ok=False)  # nothing left to do after a successful close
        if self._file is not None:
            self._file.close()
            self._file = None
