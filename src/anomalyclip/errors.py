"""One exception type for what the user can fix (a file, a line in it, a value, a folder that
cannot be written), so the CLI prints one line instead of a traceback."""

from __future__ import annotations

import errno
from pathlib import Path


class InputError(Exception):
    """Bad user input: a file, a line in it, or a value that cannot be used.

    The message always names where the problem is so the user can fix it without reading code.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


_WHY = {
    errno.ENOSPC: "no space left on the device (free some, or choose another --out)",
    errno.EDQUOT: "disk quota exceeded (free some space, or choose another --out)",
    errno.EROFS: "the file system is read-only (choose another --out)",
    errno.EACCES: "permission denied (choose another --out)",
    errno.EPERM: "permission denied (choose another --out)",
    errno.EEXIST: "a file of that name is in the way (choose another --out)",
    errno.ENOTDIR: "part of the path is a file, not a folder (choose another --out)",
    errno.EISDIR: "a folder of that name is in the way (choose another --out)",
}


def output_error(path: str | Path, e: OSError) -> InputError:
    """An `OSError` while writing `path` as the one line the CLI prints, naming the destination
    rather than the temporary file it was being written to."""
    return InputError(f"cannot write: {_WHY.get(e.errno, e.strerror or str(e))}", path)
