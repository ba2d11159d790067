"""One exception type for bad user input, so the CLI can print one line instead of a traceback."""

from __future__ import annotations

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
