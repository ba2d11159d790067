"""One rule for a `--device` value, used by prediction, extraction and the benchmarks."""

from __future__ import annotations

from anomalyclip.errors import InputError


def resolve_device(device=None):
    """`None` or "auto": CUDA when available, else the CPU; "cpu", "cuda" or "cuda:N" as given,
    refused with one line when no GPU is there."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r} (use cpu, cuda, cuda:N or auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
    return dev
