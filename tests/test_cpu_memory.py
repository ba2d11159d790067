"""Kept freed memory: a forward of the image tower stops mapping fresh pages for its activations."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from anomalyclip.video.cpu_memory import keep_freed_memory, return_freed_memory
from anomalyclip.video.encoder import build_random_clip_vision

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


def fewest_faults(model, pixels: torch.Tensor, forwards: int = 2) -> int:
    """Fewest minor page faults of one forward, over `forwards` after a warm-up one."""
    counts = []
    with torch.inference_mode():
        for i in range(forwards + 1):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            model(pixel_values=pixels)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts[1:])


def test_kept_memory_spares_the_page_faults_of_each_forward():
    # MLP activations of 32 x 197 x 2048 floats (52 MB): above glibc's largest adaptive threshold
    model = build_random_clip_vision(seed=0, hidden_size=128, num_hidden_layers=2, intermediate_size=2048)
    pixels = torch.randn(32, 3, 224, 224)
    try:
        if not return_freed_memory():
            pytest.skip("not glibc")
        returned = fewest_faults(model, pixels)
        assert returned > 3 * (32 * 197 * 2048 * 4) // resource.getpagesize()  # several activations mapped afresh
        assert keep_freed_memory()
        assert fewest_faults(model, pixels) < returned / 4
    finally:
        keep_freed_memory()
