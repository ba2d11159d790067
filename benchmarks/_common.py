"""Shared pieces of the benchmarks: the UCF-Crime model shapes, FLOP counts, measured rates."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anomalyclip.assets import asset_path
from anomalyclip.config import ModelConfig
from anomalyclip.data.formats import read_labels
from anomalyclip.devices import resolve_device
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.clip_text import build_text_model, random_text_config

# The naive path (the authors' way of computing the same numbers) is the tests' reference.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive import naive_model  # noqa: E402

# The authors' UCF-Crime setting: 14 classes (normal 7), E = 256, depth 1, ViT-B/16 text tower.
TEXT_WIDTH, TEXT_LAYERS, FEATURE_DIM = 512, 12, 512


def ucf_model_config(**kw) -> ModelConfig:
    classes = read_labels(asset_path("ucf_labels.csv"))
    base = dict(class_names=list(classes.names), normal_id=classes.normal_id, emb_size=256, depth=1, feature_dim=FEATURE_DIM)
    base.update(kw)
    return ModelConfig(**base)


def build_model(cfg: ModelConfig, seed: int = 0, naive: bool = False) -> AnomalyCLIP:
    """A ViT-B/16-shaped random text tower (width 512, 12 layers, 8 heads, 77 tokens, 49408 vocab);
    `naive`: the naive path's model (the same weights for the same seed)."""
    torch.manual_seed(seed)
    build = naive_model if naive else AnomalyCLIP
    model = build(cfg, clip_text=build_text_model(random_text_config(TEXT_WIDTH, TEXT_LAYERS, FEATURE_DIM)))
    with torch.no_grad():
        model.centroid.normal_(0, 0.3)
    return model


def setup_torch(device_name: str, threads: int, tf32: bool) -> torch.device:
    """Thread count (0: torch's default), the device, and TF32 on CUDA only when asked for."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def device_words(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# -- FLOP counts (multiply-add = 2) ----------------------------------------------------------
def temporal_flops_per_frame(cfg: ModelConfig) -> tuple[float, float]:
    """Forward FLOPs per grid frame of the temporal model + selector: (3x3 convolutions, the rest)."""
    e, n, l = cfg.emb_size, cfg.num_segments, cfg.seg_length
    k = cfg.num_classes - 1
    in_dim = cfg.feature_dim + (k if cfg.concat_features else 0)
    conv = cfg.depth * 2 * 2 * (2 * 9 * e * 4 * e)  # per layer two feed-forwards of two 3x3 convs
    attn = cfg.depth * sum(2 * e * 4 * e + 4 * axis * e for axis in (n, l))  # q, kv, out; QK^T and AV
    rest = 2 * in_dim * e + attn + 2 * e + 2 * cfg.feature_dim * k  # projection, attention, head, selector
    return float(conv), float(rest)


def text_flops(model: AnomalyCLIP, truncate: bool = True) -> float:
    """Forward FLOPs of the text tower for all class prompts (truncated after the longest EOT)."""
    tc = model.text_encoder.clip.config
    w, layers, c = tc.hidden_size, tc.num_hidden_layers, model.cfg.num_classes
    length = int(model.prompt_learner.eot_index.max()) + 1 if truncate else tc.max_position_embeddings
    per_layer = c * length * (2 * w * 3 * w + 2 * w * w + 2 * 2 * w * tc.intermediate_size) + c * 4 * length * length * w
    return float(layers * per_layer + 2 * c * w * tc.projection_dim)


# -- measured rates --------------------------------------------------------------------------
def best_of(fn, device: torch.device, repeats: int = 1) -> float:
    """Shortest time of `repeats` calls: the least disturbed by other work on the machine."""
    return min(timed(fn, device) for _ in range(repeats))


def _best(fn, device: torch.device, reps: int) -> float:
    fn()  # warm-up
    return best_of(fn, device, reps)


SQUARE = {"cpu": 2048, "cuda": 8192}  # a product large enough to reach the device's matmul rate


def matmul_rate(device: torch.device, reps: int = 5, shape: tuple[int, int, int] | None = None,
                dtype: torch.dtype = torch.float32, inner: int = 1) -> float:
    """FLOP/s of an (m, k) @ (k, n) product (default: a large square one), best of `reps` after a
    warm-up; `inner` products per timed call, for shapes too small to time one by one."""
    m, k, n = shape or (SQUARE[device.type],) * 3
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)

    def run():
        for _ in range(inner):
            a @ b

    return inner * 2 * m * k * n / _best(run, device, reps)


def conv_rate(device: torch.device, grids: int, emb: int, backward: bool, reps: int = 3, n: int = 32, l: int = 16) -> float:
    """FLOP/s of the temporal model's two 3x3 convolutions (E -> 4E -> E) on `grids` grids, in the
    faster of the two memory layouts; with `backward`, forward + input and weight gradients (3x)."""
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(grids, emb, n, l, device=device).contiguous(memory_format=fmt)
        w1 = (torch.randn(4 * emb, emb, 3, 3, device=device) * 0.02).requires_grad_(backward)
        w2 = (torch.randn(emb, 4 * emb, 3, 3, device=device) * 0.02).requires_grad_(backward)
        x.requires_grad_(backward)

        def run():
            with torch.set_grad_enabled(backward):
                y = F.conv2d(F.conv2d(x, w1, padding=1), w2, padding=1)
                if backward:
                    torch.autograd.grad(y, (x, w1, w2), torch.ones_like(y))

        flops = 2 * (2 * 9 * emb * 4 * emb) * grids * n * l * (3 if backward else 1)
        best = max(best, flops / _best(run, device, reps))
    return best
