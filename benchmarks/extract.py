"""Feature-extraction speed: decoding, preprocessing and the CLIP ViT-B/16 image tower.

    python benchmarks/extract.py [--batch-size 16] [--cpu-frames 16] [--cuda-frames 1024]

Prints one table row per measurement, in frames per second (best of a few repeats):
* decode: PyAV, a generated 320x240 H.264 mp4 (`--decode-frames` frames), RGB arrays out;
* preprocess: resize + centre crop + normalise, PIL path (exact) and torch path;
* encode: a randomly initialised CLIPVisionModelWithProjection shaped like ViT-B/16 (hidden 768,
  12 layers, 12 heads, patch 16, 224 px, projection 512, MLP 3072; no download), model only and
  end to end (preprocessing included), on the CPU and, when available, on CUDA;
* pipeline (CUDA only): the extraction of one video (decode + preprocess + encode + write).
The CPU encode is kept short: a ViT-B/16 runs at a few frames/s on a small CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import torch

from anomalyclip.video.decode import open_video
from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision
from anomalyclip.video.preprocess import PreprocessSettings, preprocess

VIT_B16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               patch_size=16, image_size=224, projection_dim=512)


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Best (shortest) time of `repeats` calls: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16, help="encoder batch size on the CPU (default 16)")
    ap.add_argument("--cuda-batch-size", type=int, default=128, help="encoder batch size on CUDA (default 128)")
    ap.add_argument("--decode-frames", type=int, default=300)
    ap.add_argument("--cpu-frames", type=int, default=16, help="frames encoded on the CPU (default 16)")
    ap.add_argument("--cuda-frames", type=int, default=1024, help="frames encoded on CUDA (default 1024)")
    args = ap.parse_args()

    rows: list[tuple[str, str, str, int, float]] = []

    def row(stage: str, device: str, detail: str, frames: int, seconds: float) -> None:
        rows.append((stage, device, detail, frames, frames / seconds))
        print(f"  {stage:<10} {device:<5} {detail:<38} {frames / seconds:10.1f} frames/s", file=sys.stderr)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench_320x240.mp4", args.decode_frames)
        cpu = torch.device("cpu")

        # decode
        def decode() -> list[np.ndarray]:
            with open_video(video) as r:
                return list(r.frames())

        decode()  # warm up
        frames = None

        def run_decode():
            nonlocal frames
            frames = decode()

        row("decode", "cpu", "PyAV 320x240 H.264 -> RGB", args.decode_frames, timed(run_decode, cpu, 3))
        frames = np.stack(frames)

        # preprocess
        for method in ("pil", "torch"):
            s = PreprocessSettings(method=method)
            preprocess(frames[:8], s)
            row("preprocess", "cpu", f"{method}: 320x240 -> 3x224x224", len(frames),
                timed(lambda: preprocess(frames, s), cpu, 2))

        # encode, ViT-B/16 shaped
        model = build_random_clip_vision(seed=0, **VIT_B16)
        devices = [cpu] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for dev in devices:
            n = args.cpu_frames if dev.type == "cpu" else args.cuda_frames
            bs = args.batch_size if dev.type == "cpu" else args.cuda_batch_size
            enc = ClipImageEncoder("random-vit-b16", device=dev, batch_size=bs, model=model)
            batch = frames[np.arange(n) % len(frames)]
            crops = enc.prepare(batch)
            enc.embed(crops[: min(bs, n)])  # warm up
            reps = 2 if dev.type == "cpu" else 3
            row("encode", dev.type, f"ViT-B/16 model only, batch {bs}", n, timed(lambda: enc.embed(crops), dev, reps))
            row("encode", dev.type, f"ViT-B/16 + preprocessing, batch {bs}", n,
                timed(lambda: enc.encode(batch), dev, reps))
            if dev.type == "cuda":
                from anomalyclip.video.pipeline import encode_video

                long_video = make_video(Path(tmp) / "long.mp4", n)
                t = timed(lambda: encode_video(long_video, enc), dev)
                row("pipeline", dev.type, f"encode_video, batch {bs}", n, t)
            model = model.cpu()

    print()
    print(f"| {'stage':<10} | {'device':<6} | {'what':<38} | {'frames':>6} | {'frames/s':>9} |")
    print(f"|{'-' * 12}|{'-' * 8}|{'-' * 40}|{'-' * 8}|{'-' * 11}|")
    for stage, dev, detail, n, fps in rows:
        print(f"| {stage:<10} | {dev:<6} | {detail:<38} | {n:>6} | {fps:>9.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
