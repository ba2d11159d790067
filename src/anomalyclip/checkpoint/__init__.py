"""Loading and saving models: our Lightning checkpoints, exported folders of plain data, and
the authors' released `last.ckpt` files, behind one `load_checkpoint`.

Names load on first use, so a format module never imports this dispatcher back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoadedModel", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "load_checkpoint":
        from anomalyclip.checkpoint.loader import load_checkpoint

        return load_checkpoint
    if name == "LoadedModel":
        from anomalyclip.checkpoint.loaded import LoadedModel

        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
