"""Writing files so that nothing is half-written: each file goes to a temporary name in its own
folder and is renamed into place once complete; the files of one command form a set that
appears together (`OutputSet`). An `OSError` (a full disk, a read-only folder, a file in the
way) becomes one `InputError` naming the destination."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from anomalyclip.errors import InputError, output_error


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(folder, e) from None


def usual_mode(path: str | Path, directory: bool = False) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)  # mkstemp/mkdtemp make owner-only ones


class StagedFile:
    """A temporary file beside `path` that becomes `path` only on `commit()`; for writes that
    outlive one block (a video written frame by frame)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _mkdir(self.path.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent)
        except OSError as e:
            raise output_error(self.path, e) from None
        os.close(fd)
        usual_mode(tmp)
        self.tmp = Path(tmp)

    def commit(self, durable: bool = False) -> None:
        """Rename onto `path`; `durable`: first flush the file, and afterwards its folder, to disk,
        so a crash right after cannot leave a renamed but empty file."""
        try:
            if durable:
                _fsync(self.tmp)
            os.replace(self.tmp, self.path)
            if durable:
                _fsync(self.path.parent)
        except OSError as e:
            raise output_error(self.path, e) from None

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
    except OSError as e:
        raise output_error(path, e) from None
    finally:
        staged.discard()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


STAGING_PREFIX = ".staging-"


def remove_staging(folder: str | Path) -> int:
    """Remove the staging folders an `OutputSet` left in `folder` when its process was killed
    (it removes its own otherwise). Only safe while nothing else writes into `folder`.
    Returns how many were removed."""
    found = [p for p in Path(folder).glob(STAGING_PREFIX + "*") if p.is_dir()]
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return len(found)


class OutputSet:
    """Files that belong together (an evaluation's metrics, predictions and figures; one video's
    outputs), written into a hidden staging folder inside `folder` and moved into place, in the
    order they were named, only once every one is written. A failure removes the staging
    folder: whatever an earlier run left in `folder` stays as it was.

    >>> with OutputSet(out) as files:                        # doctest: +SKIP
    ...     write_json(files.path("metrics.json"), metrics)
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.root: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> OutputSet:
        if self.folder.exists() and not self.folder.is_dir():
            raise output_error(self.folder, FileExistsError(17, "exists"))
        _mkdir(self.folder)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        except OSError as e:
            raise output_error(self.folder, e) from None
        return self

    def path(self, name: str) -> Path:
        """Where to write the file that will be `folder/name` (`name` may hold sub-folders)."""
        if name not in self._names:
            self._names.append(name)
        p = self.root / name
        _mkdir(p.parent)
        return p

    def target(self, name: str) -> Path:
        return self.folder / name

    def _commit(self) -> None:
        for name in self._names:
            staged, target = self.root / name, self.folder / name
            if staged.exists():
                _mkdir(target.parent)
                try:
                    os.replace(staged, target)
                except OSError as e:
                    raise output_error(target, e) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
        if isinstance(exc, InputError) and str(self.root) in str(exc):  # name the destination, not the staging
            raise InputError(str(exc).replace(str(self.root), str(self.folder))) from None
