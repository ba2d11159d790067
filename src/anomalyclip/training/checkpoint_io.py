"""Lightning checkpoints written and read the way the rest of the package does it: written to a
temporary file in the destination folder, flushed to disk and renamed over the old one (a full
disk or a kill mid-write leaves the previous `last.ckpt` whole), and read back through the safe
loader (`weights_only`, size checks) on resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from anomalyclip.checkpoint.safe_load import load_torch_file
from anomalyclip.fileio import atomic_path


class DurableCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(Path(path), durable=True) as tmp, open(tmp, "wb") as f:
            try:
                torch.save(checkpoint, f)  # through a file object a full disk is an OSError, not torch's RuntimeError
            except RuntimeError as e:
                # ... except when the first write fails: the zip writer's closing check then raises
                # over that OSError ("unexpected pos"); the disk's error is the one to report
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None
                raise

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_torch_file(path, trust=False)
