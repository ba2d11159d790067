"""Files shipped inside the package (labels CSVs, CLIP's BPE vocabulary): nothing is read from
outside it at run time."""

from __future__ import annotations

from pathlib import Path


def asset_path(name: str) -> Path:
    return Path(__file__).parent / name
