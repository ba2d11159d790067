"""The number format the image tower runs in (`extract --precision`).

"32" (the default) is float32 throughout: the features match the released ones. "bf16" and "16"
convert the whole tower (weights and pixels) to bfloat16 / float16; the features come back as
float32 either way. Half precision ("16") is refused on the CPU: PyTorch's CPU float16 kernels
are slow, and bfloat16 is the CPU's reduced format (fast where the CPU has AVX512-BF16 or AMX).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalyclip.errors import InputError

if TYPE_CHECKING:
    import torch

# names only, so that the command line lists them without importing torch
PRECISIONS = {"32": "float32", "bf16": "bfloat16", "16": "float16"}


def tower_dtype(precision: str, device: "torch.device") -> "torch.dtype":
    """The dtype of the tower for `precision` on `device`; InputError for what cannot run there."""
    import torch

    key = str(precision)
    if key not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if key == "16" and device.type == "cpu":
        raise InputError("--precision 16 (float16) runs on CUDA only; on the CPU use --precision bf16 or 32")
    return getattr(torch, PRECISIONS[key])
