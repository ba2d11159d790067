"""The stream's live output: one JSON object per line, written and flushed as scores become
final, so a reader (`tail -f`, a pipe) sees them at once and an interrupted stream leaves a
file that is valid up to its last line.

Lines, told apart by `type`:
* `frame`: `frame`, `time_s` (null when unknown), `score`, `class` (the predicted class),
  `top3` (the three most probable classes of P as `[name, p]` pairs, most probable first);
* `event`: an anomalous event, when it closes (the keys of `events.describe_event`);
* `end`: the last line: `frames`, `events`, `dropped` (frames a live source lost while the
  scorer was behind), `reason` ("end of source", "interrupted" or "source error").
"""

from __future__ import annotations

import json
from typing import Any, TextIO

import numpy as np

DIGITS = 6  # scores and probabilities are rounded to this many decimals
TOP = 3


class JsonlSink:
    def __init__(self, out: TextIO, class_names: list[str]):
        self.out, self.class_names = out, list(class_names)
        self.lines = 0

    def _write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self.out.write("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
            self.out.flush()
            self.lines += len(records)

    def frames(self, start: int, scores: np.ndarray, probs: np.ndarray, pred: np.ndarray, times: list[float | None]) -> None:
        """Frames `start ..` with their `scores (N,)`, `probs (N, C)`, `pred (N,)`, `times`."""
        order = np.argsort(-probs, axis=1, kind="stable")[:, :TOP]  # (N, top) class ids
        names = self.class_names
        records = []
        for i in range(len(scores)):
            t = times[i]
            records.append(
                {
                    "type": "frame",
                    "frame": start + i,
                    "time_s": None if t is None else round(float(t), DIGITS),
                    "score": round(float(scores[i]), DIGITS),
                    "class": names[int(pred[i])],
                    "top3": [[names[c], round(float(probs[i, c]), DIGITS)] for c in order[i].tolist()],
                }
            )
        self._write(records)

    def events(self, events: list[dict[str, Any]]) -> None:
        self._write([{"type": "event", **e} for e in events])

    def end(self, **summary: Any) -> None:
        self._write([{"type": "end", **summary}])
