"""Giving freed memory back to the OS during long evaluations (glibc only; elsewhere a no-op)."""

from __future__ import annotations

import ctypes
import functools
import os
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim_heap() -> None:
    """Return the free pages of glibc's heap to the OS now. Changes no number."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
        _resident_after_trim[0] = resident_bytes()


_TRIM_AFTER_GROWTH = 64 * 2**20
_resident_after_trim = [0]


def release_free_memory() -> None:
    """`trim_heap` once the resident size has grown by 64 MB since the last trim. glibc keeps
    freed blocks of up to 32 MB in its heap, and the resident size of a long evaluation
    (UCF-Crime's test set) creeps up by about 1 GB otherwise; trimming after every forward
    instead costs ~5% in page faults."""
    if _malloc_trim() is not None and resident_bytes() > _resident_after_trim[0] + _TRIM_AFTER_GROWTH:
        trim_heap()
