"""Feature-extraction speed against its FLOP floor: decoding, preprocessing and the CLIP ViT-B/16
image tower, on the CPU and on CUDA when present.

    python benchmarks/extract.py [--clip ID_OR_DIR] [--cuda-frames 1024] [--compile] [--json FILE]

Prints, in one run:
* the measured fp32 matmul rate (GFLOP/s) of each device: a large square product and one at the
  tower's own shapes (the MLP's first layer at batch 16);
* the tower's FLOPs per frame counted from its architecture (`anomalyclip.video.flops`), next to
  what `torch.utils.flop_counter.FlopCounterMode` counts in a real forward;
* the floor in frames/s (the better matmul rate / FLOPs per frame) and every encode rate as a
  multiple of the floor's time ("x floor": 1.00 is the floor, 1.25 is 25 % slower), the matmul
  rate measured again beside each row, so that a busy machine does not skew the multiple;
* encode rates at batch 1, 16 and 64 (and `--cuda-batch-size` on CUDA) with the defaults, then
  the variants tried at batch 16 (attention implementation, threads, autograd mode, memory layout
  of the pixels, freed CPU memory returned to the kernel, precision; `--compile` adds
  torch.compile and its warm-up time);
* decode and preprocessing rates, and the whole pipeline (`encode_video`: decode, preprocess
  and encode overlapping) against encode alone on the same frames;
* how far bf16 / fp16 features are from fp32 ones (cosine similarity min / mean, max abs diff).

The tower is a randomly initialised ViT-B/16 (no download) unless `--clip` names a real one.
On a 2-core CPU the whole run takes a few minutes: each ViT-B/16 frame is 35 GFLOP.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SQUARE, best_of  # noqa: E402
from _common import matmul_rate as common_matmul_rate  # noqa: E402

from anomalyclip.video.decode import open_video
from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision, load_clip_vision
from anomalyclip.video.flops import floor_frames_per_second, tower_flops
from anomalyclip.video.pipeline import encode_video
from anomalyclip.video.cpu_memory import keep_freed_memory, return_freed_memory
from anomalyclip.video.preprocess import PreprocessSettings, normalize, preprocess

VIT_B16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               patch_size=16, image_size=224, projection_dim=512)


@dataclass
class Row:
    stage: str
    device: str
    what: str
    batch: int | None
    frames: int
    fps: float
    x_floor: float | None  # floor fps / fps: the time as a multiple of the floor's


def make_video(path: Path, frames: int, width: int = 320, height: int = 240, fps: int = 30) -> Path:
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx * yy) % 256], -1).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = base.copy()
            cx, cy = (i * 5) % width, (i * 3) % height
            img[max(0, cy - 25) : cy + 25, max(0, cx - 25) : cx + 25] = (255, (7 * i) % 256, 40)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def matmul_rate(device: torch.device, m: int, k: int, n: int, dtype=torch.float32, repeats: int = 3) -> float:
    """FLOP/s of an (m, k) @ (k, n) product, several per timed call (the tower's shapes are small)."""
    return common_matmul_rate(device, repeats, (m, k, n), dtype, inner=3 if device.type == "cpu" else 20)


def tokens_of(cfg) -> int:
    return (cfg.image_size // cfg.patch_size) ** 2 + 1  # patches and the class token


def matmul_rates(device: torch.device, cfg, repeats: int = 3) -> tuple[float, float]:
    """fp32 FLOP/s of a large square product and of the MLP's first layer at batch 16."""
    n = SQUARE[device.type]
    square = matmul_rate(device, n, n, n, repeats=repeats)
    return square, matmul_rate(device, 16 * tokens_of(cfg), cfg.hidden_size, cfg.intermediate_size, repeats=repeats)


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def deviation(ref: np.ndarray, other: np.ndarray) -> str:
    a, b = torch.from_numpy(ref).double(), torch.from_numpy(other).double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return (f"cosine min {cos.min().item():.6f} mean {cos.mean().item():.6f}, "
            f"max abs diff {(a - b).abs().max().item():.3g} (fp32 features: max abs {a.abs().max().item():.3g})")


def counted_flops(model) -> int:
    """FLOPs of one frame as FlopCounterMode counts them (eager attention: its products are bmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    px = torch.zeros(1, 3, model.config.image_size, model.config.image_size, device=model.device, dtype=model.dtype)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(pixel_values=px)
    finally:
        model.set_attn_implementation(before)
    return int(counter.get_total_flops())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=None, metavar="ID_OR_DIR", help="a real CLIP (default: random ViT-B/16)")
    ap.add_argument("--layers", type=int, default=12, help="layers of the random tower (default 12; fewer: a quick look)")
    ap.add_argument("--decode-frames", type=int, default=300)
    ap.add_argument("--cuda-frames", type=int, default=1024, help="frames encoded per CUDA measurement (default 1024)")
    ap.add_argument("--cuda-batch-size", type=int, default=256, help="largest CUDA batch tried (default 256)")
    ap.add_argument("--cpu-pipeline-frames", type=int, default=128,
                    help="frames of the video run through the CPU pipeline (default 128: two batches of 64)")
    ap.add_argument("--no-cpu-variants", action="store_true", help="skip the CPU variants (attention, threads, ...)")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile (its warm-up takes minutes on a CPU)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write every row to this JSON file")
    args = ap.parse_args()

    rows: list[Row] = []

    def row(stage: str, device: torch.device, what: str, batch: int | None, frames: int, seconds: float,
            floor: float | None = None) -> Row:
        fps = frames / seconds
        r = Row(stage, device.type, what, batch, frames, fps, None if floor is None else floor / fps)
        rows.append(r)
        x = "" if r.x_floor is None else f"  x{r.x_floor:.2f} floor"
        print(f"  {stage:<10} {device.type:<5} {what:<48} {fps:10.2f} frames/s{x}", flush=True)
        return r

    cpu = torch.device("cpu")
    devices = [cpu] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads ({os.cpu_count()} CPUs, load "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}), CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)

    if args.clip is None:
        shape = {**VIT_B16, "num_hidden_layers": args.layers}
        model = build_random_clip_vision(seed=0, **shape)
        label = "random ViT-B/16" + ("" if args.layers == 12 else f" with {args.layers} layers")
    else:
        model, label, _ = load_clip_vision(args.clip, "cpu")
    cfg = model.config
    parts = tower_flops(cfg)
    flops = parts.total
    print(f"\n{label}: {flops / 1e9:.2f} GFLOP per frame counted from the architecture "
          f"(patch embedding {parts.patch_embedding / 1e9:.2f}, QKV {parts.qkv_projections / 1e9:.2f}, "
          f"QK^T+AV {parts.attention_products / 1e9:.2f}, out proj {parts.out_projections / 1e9:.2f}, "
          f"MLP {parts.mlp / 1e9:.2f}, projection {parts.final_projection / 1e9:.4f}); "
          f"FlopCounterMode counts {counted_flops(model) / 1e9:.2f}", flush=True)

    floors: dict[str, float] = {}
    print("\nmatmul rate, fp32:", flush=True)
    for dev in devices:
        square, shaped = matmul_rates(dev, cfg)
        floors[dev.type] = floor_frames_per_second(flops, max(square, shaped))
        print(f"  {dev.type:<5} {SQUARE[dev.type]}^3: {square / 1e9:8.1f} GFLOP/s; the MLP's first layer at batch 16 "
              f"({16 * tokens_of(cfg)}x{cfg.hidden_size} @ {cfg.hidden_size}x{cfg.intermediate_size}): "
              f"{shaped / 1e9:8.1f} GFLOP/s -> floor {floors[dev.type]:.2f} frames/s", flush=True)
    print(flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench_320x240.mp4", args.decode_frames)

        def decode() -> list[np.ndarray]:
            with open_video(video) as r:
                return list(r.frames())

        frames = np.stack(decode())
        row("decode", cpu, "PyAV 320x240 H.264 -> RGB", None, len(frames), best_of(decode, cpu, 3))
        for method in ("pil", "torch"):
            s = PreprocessSettings(method=method)
            preprocess(frames[:8], s)
            row("preprocess", cpu, f"{method}: 320x240 -> 3x224x224", None, len(frames),
                best_of(lambda: preprocess(frames, s), cpu, 2))

        for dev in devices:
            def floor_now(dev=dev) -> float:
                return floor_frames_per_second(flops, max(matmul_rates(dev, cfg, repeats=2)))

            model = bench_device(dev, model, label, frames, floor_now, Path(tmp), args, row)

    print()
    print("| stage | device | what | batch | frames | frames/s | x floor |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        x = "" if r.x_floor is None else f"{r.x_floor:.2f}"
        print(f"| {r.stage} | {r.device} | {r.what} | {r.batch or ''} | {r.frames} | {r.fps:.2f} | {x} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"flops_per_frame": flops, "floors_fps": floors,
                                               "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


def bench_device(dev: torch.device, model, label: str, frames: np.ndarray, floor, tmp: Path, args, row):
    """Every encode row of one device; returns the fp32 model, back on the CPU. `floor()` measures
    the floor again right after each row, so that a row's "x floor" holds however busy the
    machine was at that moment."""
    on_cpu = dev.type == "cpu"
    model = model.to(dev)
    enc = ClipImageEncoder(label, device=dev, model=model)  # the defaults
    plan = [(1, 4, 2), (16, 16, 2), (64, 64, 1)] if on_cpu else \
        [(1, 64, 3), (16, args.cuda_frames, 3), (64, args.cuda_frames, 3), (args.cuda_batch_size, args.cuda_frames, 3)]
    crops = enc.prepare(frames[np.arange(max(n for _, n, _ in plan)) % len(frames)])
    for batch, n, reps in plan:
        enc.batch_size = batch
        enc.embed(crops[: min(batch, 16)])  # warm up
        row("encode", dev, f"defaults ({enc.precision}, {enc.model.config._attn_implementation})", batch, n,
            best_of(lambda: enc.embed(crops[:n]), dev, reps), floor())

    # departures from the defaults, batch 16, each warmed up on 2 frames
    enc.batch_size = 16
    n = 16 if on_cpu else args.cuda_frames
    reps = 1 if on_cpu else 3
    if not (on_cpu and args.no_cpu_variants):
        for name, ctx, call in variants(enc, on_cpu):
            with ctx:
                call(crops[:2])
                row("variant", dev, name, 16, n, best_of(lambda: call(crops[:n]), dev, reps), floor())

    # precisions: rate, floor at that precision's matmul rate, deviation of the features from fp32
    ref = enc.embed(crops[:n])
    cfg = model.config
    for precision in ("bf16",) if on_cpu else ("bf16", "16"):
        low = ClipImageEncoder(label, device=dev, batch_size=16, model=copy.deepcopy(model), precision=precision)
        low.embed(crops[:2])
        feats = None

        def run_low():
            nonlocal feats
            feats = low.embed(crops[:n])

        fps = row("variant", dev, f"precision {precision} (x floor: the fp32 floor)", 16, n, best_of(run_low, dev, reps),
                  floor()).fps
        rate = matmul_rate(dev, 16 * tokens_of(cfg), cfg.hidden_size, cfg.intermediate_size, dtype=low.dtype)
        low_floor = floor_frames_per_second(tower_flops(cfg).total, rate)
        print(f"    {precision}: MLP matmul at batch 16 {rate / 1e9:.1f} GFLOP/s -> floor {low_floor:.2f} frames/s, "
              f"x{low_floor / fps:.2f} of it; vs fp32 over {n} frames of the test video: {deviation(ref, feats)}",
              flush=True)
        del low

    if args.compile:
        compiled = torch.compile(model)
        px = enc_pixels(enc, crops[:16])
        with torch.inference_mode():
            t = time.perf_counter()
            out = compiled(pixel_values=px).image_embeds.float().cpu().numpy()
            warm = time.perf_counter() - t
            row("variant", dev, "torch.compile", 16, 16,
                best_of(lambda: compiled(pixel_values=px).image_embeds.cpu(), dev, reps), floor())
        print(f"    torch.compile: warm-up {warm:.1f} s, max abs diff to eager {np.abs(out - ref[:16]).max():.3g}",
              flush=True)

    # the whole pipeline on a video, against encode alone on the same frames
    enc.batch_size = 64 if on_cpu else args.cuda_batch_size
    n = args.cpu_pipeline_frames if on_cpu else args.cuda_frames
    long_video = make_video(tmp / f"long_{dev.type}.mp4", n)
    with open_video(long_video) as r:
        long_crops = enc.prepare(np.stack(list(r.frames())))
    reps = 1 if on_cpu else 2
    alone = row("encode", dev, "encode only, the pipeline's frames", enc.batch_size, n,
                best_of(lambda: enc.embed(long_crops), dev, reps), floor())
    whole = row("pipeline", dev, "encode_video: decode + preprocess + encode", enc.batch_size, n,
                best_of(lambda: encode_video(long_video, enc), dev, reps), floor())
    print(f"    pipeline / encode only: {whole.fps / alone.fps:.1%}", flush=True)
    return model.cpu()


def enc_pixels(enc: ClipImageEncoder, crops: torch.Tensor) -> torch.Tensor:
    return normalize(crops, enc.settings, device=enc.device, dtype=enc.dtype)


def forward_all(enc: ClipImageEncoder, crops: torch.Tensor, grad_mode=torch.inference_mode,
                layout=torch.contiguous_format) -> None:
    """`enc.embed` spelled out, with another autograd mode or memory layout of the pixels."""
    with grad_mode():
        for i in range(0, crops.shape[0], 16):
            px = enc_pixels(enc, crops[i : i + 16]).contiguous(memory_format=layout)
            enc.model(pixel_values=px).image_embeds.float().cpu()


@contextlib.contextmanager
def attention(model, implementation: str):
    before = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@contextlib.contextmanager
def freed_memory_returned():
    return_freed_memory()
    try:
        yield
    finally:
        keep_freed_memory()


def variants(enc: ClipImageEncoder, on_cpu: bool):
    """(name, context, call(crops)) of the defaults and of each departure from them."""
    default = contextlib.nullcontext()
    out = [("defaults, again (beside the variants)", default, enc.embed),
           ("attention eager", attention(enc.model, "eager"), enc.embed),
           ("no_grad instead of inference_mode", default, lambda c: forward_all(enc, c, grad_mode=torch.no_grad)),
           ("channels_last pixels", default, lambda c: forward_all(enc, c, layout=torch.channels_last))]
    if on_cpu:
        n = torch.get_num_threads()
        if n > 1:
            out.append((f"{n // 2} of {n} threads", threads(n // 2), enc.embed))
        out.append(("freed memory returned to the OS (glibc default)", freed_memory_returned(), enc.embed))
    return out


if __name__ == "__main__":
    sys.exit(main())
