"""Parsers for the files users already have (FORMATS.md). Every error names file, line and value."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

from anomalyclip.classes import ClassTable, class_of_folder
from anomalyclip.errors import InputError


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    return path


def read_labels(path: str | Path) -> ClassTable:
    """Read a labels CSV (`id,name`). The class order is the names sorted alphabetically."""
    path = _require_file(path, "labels CSV")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["id", "name"]:
        raise InputError(f"expected the header 'id,name', got {','.join(rows[0]) if rows else 'an empty file'!r}", path, 1)
    by_id: dict[int, str] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise InputError(f"expected 'id,name', got {','.join(row)!r}", path, lineno)
        try:
            cid = int(row[0])
        except ValueError:
            raise InputError(f"class id {row[0]!r} is not an integer", path, lineno) from None
        if cid in by_id:
            raise InputError(f"class id {cid} appears twice", path, lineno)
        by_id[cid] = row[1].strip()
    if not by_id:
        raise InputError("no classes listed", path)
    if sorted(by_id) != list(range(len(by_id))):
        raise InputError(f"class ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}", path)
    names = sorted(by_id.values())
    if names != [by_id[i] for i in range(len(by_id))]:
        warnings.warn(
            f"{path}: ids are not in alphabetical order of names; label ids index the sorted names "
            "as in the reference implementation",
            stacklevel=2,
        )
    return ClassTable.from_names(names, path)


@dataclass(frozen=True)
class VideoEntry:
    """One line of a video list: `<relative path> <start_frame> <end_frame> <label id>`."""

    path: str
    start_frame: int
    end_frame: int
    label: int
    source: str = ""  # "file:line", for error messages

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    @property
    def stem(self) -> str:
        return Path(self.path).name

    def line(self) -> str:
        """The entry as a line of a video list (what `read_video_list` reads back)."""
        return f"{self.path} {self.start_frame} {self.end_frame} {self.label}\n"


def read_video_list(path: str | Path, classes: ClassTable | None = None, allow_empty: bool = False) -> list[VideoEntry]:
    path = _require_file(path, "video list")
    entries: list[VideoEntry] = []
    seen: dict[str, str] = {}
    with open(path) as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise InputError(
                    f"expected '<video> <start_frame> <end_frame> <label id>', got {raw.strip()!r}", path, lineno
                )
            try:
                start, end, label = int(fields[1]), int(fields[2]), int(fields[3])
            except ValueError:
                raise InputError(f"start, end and label must be integers, got {raw.strip()!r}", path, lineno) from None
            if end < start or start < 0:
                raise InputError(f"end frame {end} is before start frame {start}", path, lineno)
            if classes is not None and not 0 <= label < classes.num_classes:
                raise InputError(
                    f"label id {label} is not in the labels CSV (ids 0..{classes.num_classes - 1})", path, lineno
                )
            name = fields[0][:-4] if fields[0].endswith(".npy") else fields[0]
            if name in seen:
                raise InputError(f"video {name} is listed twice (also at {seen[name]})", path, lineno)
            seen[name] = f"{path}:{lineno}"
            if classes is not None:
                _check_folder_class(name, label, classes, path, lineno)
            entries.append(VideoEntry(name, start, end, label, f"{path}:{lineno}"))
    if not entries and not allow_empty:
        raise InputError("the video list is empty", path)
    return entries


def _check_folder_class(name: str, label: int, classes: ClassTable, path: Path, lineno: int) -> None:
    """A video under a class folder (`Abuse/Abuse028_x264`) must carry that class's label id."""
    parts = Path(name).parts
    folder_class = class_of_folder(parts[0], classes.names, classes.normal_id) if len(parts) > 1 else None
    if folder_class is not None and folder_class != label:
        raise InputError(
            f"{name} sits in the folder of class {folder_class} ({classes.names[folder_class]}) but its label id "
            f"is {label} ({classes.names[label]}) in the labels CSV",
            path,
            lineno,
        )


Spans = list[tuple[int, int]]


def _parse_int(token: str, path: Path, lineno: int) -> int:
    try:
        return int(float(token)) if "." in token else int(token)
    except ValueError:
        raise InputError(f"frame number {token!r} is not an integer", path, lineno) from None


def read_temporal(path: str | Path) -> dict[str, Spans]:
    """Temporal annotations: video stem -> inclusive (start, end) spans; `-1` pairs dropped.

    Accepts UCF-Crime's layout `<file> <class> s1 e1 s2 e2 ...` and XD-Violence's, which has no
    class column (a numeric second field means no class).
    """
    path = _require_file(path, "temporal annotation file")
    out: dict[str, Spans] = {}
    with open(path) as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields:
                continue
            rest = fields[1:]
            if rest and not _is_number(rest[0]):
                rest = rest[1:]  # class column
            if len(rest) % 2:
                raise InputError(f"start/end frames must come in pairs, got {raw.strip()!r}", path, lineno)
            nums = [_parse_int(t, path, lineno) for t in rest]
            spans: Spans = []
            for s, e in zip(nums[0::2], nums[1::2]):
                if s == -1 and e == -1:
                    continue
                if s < 0 or e < s:
                    raise InputError(f"span {s} {e} is not a valid inclusive frame range", path, lineno)
                spans.append((s, e))
            out[Path(fields[0]).stem] = spans
    return out


def temporal_line(video_file: str, class_name: str, spans: Spans, pairs: int = 2) -> str:
    """One line of a temporal annotation file in UCF-Crime's layout, `-1 -1` filling up to
    `pairs` spans."""
    flat = [v for span in spans for v in span] + [-1, -1] * max(0, pairs - len(spans))
    return f"{video_file}  {class_name}  " + "  ".join(str(v) for v in flat) + "\n"


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
