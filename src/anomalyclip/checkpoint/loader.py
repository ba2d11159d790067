"""One `load_checkpoint` for every format: an exported folder, our own `.ckpt`, or the
authors' released `last.ckpt`, told apart by what the file holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomalyclip.checkpoint.export import load_export
from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.checkpoint.native import META_KEY, load_native
from anomalyclip.checkpoint.reference import PREFIX, import_reference_checkpoint
from anomalyclip.checkpoint.safe_load import load_torch_file
from anomalyclip.errors import InputError


def load_checkpoint(path: str | Path, trust: bool = False, **import_options: Any) -> LoadedModel:
    """`import_options` (`labels`, `centroid`, `class_names`) serve the authors' files, which
    carry neither their class names nor their centroid; `None` values are ignored."""
    path = Path(path)
    if path.is_dir():
        return load_export(path)
    ckpt = load_torch_file(path, trust)
    if not isinstance(ckpt, dict):
        raise InputError("not a checkpoint dictionary", path)
    if META_KEY in ckpt:
        return load_native(ckpt, path)
    sd = ckpt.get("state_dict", ckpt)
    if isinstance(sd, dict) and any(str(k).startswith(PREFIX) for k in sd):
        options = {k: v for k, v in import_options.items() if v is not None}
        return import_reference_checkpoint(path, sd, **options)
    raise InputError("not an anomalyclip checkpoint nor a reference AnomalyCLIP checkpoint", path)
