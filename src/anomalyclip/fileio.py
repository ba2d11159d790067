"""Atomic file writes: a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


class StagedFile:
    """A temporary file beside `path` that becomes `path` only on `commit()`; for writes that
    outlive one block (a video written frame by frame)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs get the usual mode
        self.tmp = Path(tmp)

    def commit(self, durable: bool = False) -> None:
        """Rename onto `path`; `durable`: first flush the file, and afterwards its folder, to disk,
        so a crash right after cannot leave a renamed but empty file."""
        if durable:
            _fsync(self.tmp)
        os.replace(self.tmp, self.path)
        if durable:
            _fsync(self.path.parent)

    def discard(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The temporary file is in the destination folder, so the rename never becomes a copy."""
    staged = StagedFile(path)
    try:
        yield staged.tmp
        staged.commit(durable)
    finally:
        staged.discard()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
