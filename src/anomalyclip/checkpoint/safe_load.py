"""Reading a torch checkpoint file as data: `weights_only=True` unless the user trusts it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from anomalyclip.errors import InputError


def torch_load(path: str | Path, trust: bool = False) -> Any:
    """`torch.load` that refuses pickled code unless the user passed `--trust-checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise InputError(f"cannot read checkpoint: {e}", path) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise InputError(
            "this checkpoint holds pickled Python objects that a safe load refuses "
            f"({first}); if you trust its source, pass --trust-checkpoint to load it fully",
            path,
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable PyTorch checkpoint: {e}", path) from None
