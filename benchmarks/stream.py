"""Live scoring (`anomalyclip stream`): how good the causal window is, and how fast.

    python benchmarks/stream.py [--checkpoint CKPT --data DIR] [--epochs 20] [--cpu-frames 96]

Quality: on the built-in synthetic test set, frame-level AUC, AP, mAUC and mAP of the offline
test mode (every frame sees the whole video) and of the stream mode (`StreamScorer`: the 512
most recent frames, a scoring every hop) from the same checkpoint, for hop 16 and 64. Without
`--checkpoint`, one is trained first with `anomalyclip demo --epochs N` (about a minute on 2
cores). The first-frame delay is the number of frames that must arrive before the first score.

Speed: a randomly initialised ViT-B/16-shaped CLIP image tower (no download) and a UCF-Crime
shaped AnomalyCLIP (14 classes, E = 256): the image tower's time per frame, the scoring part's
time per frame at hop 16 and 64 (and its share of the tower's), frames/s end to end (decode ->
encode -> score through `StreamSession`, a 320x240 H.264 file read as fast as it goes), and the
latency from a frame's arrival to its score (median, 95th percentile) with the file read at its
own pace at 80% and 50% of the end-to-end rate, as a camera at that `--fps`: whether this machine
sustains it in real time (nothing dropped, latency near the wait for the hop, (hop - 1) / 2 / fps
at the median). On the CPU and, when present, on CUDA.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_model, device_words, setup_torch, ucf_model_config  # noqa: E402
from extract import VIT_B16, make_video  # noqa: E402

from anomalyclip.data.datasets import TestVideos  # noqa: E402
from anomalyclip.data.run_data import load_run_data  # noqa: E402
from anomalyclip.events import EventRules, EventTracker  # noqa: E402
from anomalyclip.metrics import compute_metrics  # noqa: E402
from anomalyclip.predictor import Predictor  # noqa: E402
from anomalyclip.presets import preset_config  # noqa: E402
from anomalyclip.streaming import StreamScorer  # noqa: E402
from anomalyclip.streaming.session import StreamSession  # noqa: E402
from anomalyclip.streaming.sources import FrameFeed, VideoSource  # noqa: E402
from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision  # noqa: E402

HOPS = (16, 64)
SRC = Path(__file__).resolve().parents[1] / "src"


# -- quality ---------------------------------------------------------------------------------
def trained_checkpoint(work: Path, epochs: int) -> tuple[Path, Path]:
    """(checkpoint, dataset root) of a demo run in `work`, trained now unless already there."""
    ckpt = work / "checkpoints" / "best.ckpt"
    if not ckpt.exists():
        env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        print(f"training a checkpoint: anomalyclip demo --epochs {epochs} --out {work}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "anomalyclip", "demo", "--epochs", str(epochs), "--out", str(work)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    return ckpt, work / "data"


def stream_scores(predictor: Predictor, features: torch.Tensor, hop: int):
    scorer = StreamScorer(predictor, hop=hop)
    parts = [scorer.push(features), scorer.flush()]  # chunking changes nothing (tests)
    return np.concatenate([p.scores for p in parts]), np.concatenate([p.probs for p in parts])


def quality(ckpt: Path, data_root: Path) -> None:
    data = load_run_data(preset_config("synthetic", data_root).data, need_train=False)
    predictor = Predictor.from_checkpoint(ckpt)
    videos = TestVideos(data.test, data.features, data.temporal, data.classes, predictor.feature_dim)
    modes = {"offline (whole video)": None, **{f"stream, hop {h}": h for h in HOPS}}
    results = {name: ([], []) for name in modes}
    labels = []
    t0 = time.perf_counter()
    for i in range(len(videos)):
        v = videos[i]
        labels.append(v.labels.numpy())
        for name, hop in modes.items():
            if hop is None:
                out = predictor.predict(v.features)
                s, p = out.scores, out.probs
            else:
                s, p = stream_scores(predictor, v.features, hop)
            results[name][0].append(s)
            results[name][1].append(p)
    y = np.concatenate(labels)
    print(f"\nQuality: synthetic test set, {len(videos)} videos, {len(y)} frames, checkpoint {ckpt} "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print("| mode | AUC | AP | mAUC | mAP | first score after |")
    print("|---|---|---|---|---|---|")
    for name, hop in modes.items():
        m = compute_metrics(np.concatenate(results[name][0]), np.concatenate(results[name][1]), y, data.classes.normal_id)
        delay = "the whole video" if hop is None else f"{first_score_delay(predictor, hop)} frames"
        print(f"| {name} | {100 * m['auc_roc']:.2f} | {100 * m['auc_pr']:.2f} | {100 * m['mean_mc_auroc']:.2f} | "
              f"{100 * m['mean_mc_aupr']:.2f} | {delay} |")


def first_score_delay(predictor: Predictor, hop: int) -> int:
    """Frames pushed one at a time until the first score comes out."""
    scorer = StreamScorer(predictor, hop=hop)
    x = torch.randn(1, predictor.feature_dim)
    for n in range(1, scorer.window + 1):
        if scorer.push(x).num_frames:
            return n
    raise AssertionError("no score within one window")


# -- speed -----------------------------------------------------------------------------------
def best_time(fn, device: torch.device, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def video_of(path: Path, frames: int) -> Path:
    """A 320x240 30 fps test video, made once."""
    return path if path.exists() else make_video(path, frames)


def run_session(path: Path, encoder, predictor: Predictor, hop: int, batch: int, realtime: bool, fps: float | None):
    source = VideoSource(path, fps=fps, realtime=realtime)
    tracker = EventTracker(predictor.class_names, predictor.normal_id, predictor.threshold, EventRules(), source.fps)
    session = StreamSession(StreamScorer(predictor, hop=hop, encoder=encoder, encode_batch=batch), tracker, fps=source.fps)
    feed = FrameFeed(source.frames(), capacity=2 * max(hop, batch), drop_oldest=source.live)
    return session.run(feed, threading.Event())


def speed(device: torch.device, frames: int, batch: int, work: Path) -> list[str]:
    rows = []
    predictor = Predictor(build_model(ucf_model_config()).eval(), threshold=0.5, device=device)
    predictor.model.freeze_text_features()
    encoder = ClipImageEncoder("random-vit-b16", device=device, batch_size=batch,
                               model=build_random_clip_vision(seed=0, **VIT_B16))
    video = video_of(work / f"bench_{frames}.mp4", frames)
    pictures = np.stack(list(VideoSource(video).reader.frames()))
    encoder.encode(pictures[:batch])  # warm-up
    tower = best_time(lambda: encoder.encode(pictures[: 2 * batch]), device) / (2 * batch)
    rows.append((device.type, "image tower (preprocess + ViT-B/16), per frame", f"{1000 * tower:.1f} ms", ""))
    feats = torch.randn(512 + 8 * max(HOPS), predictor.feature_dim)
    for hop in HOPS:
        scorer = StreamScorer(predictor, hop=hop)
        scorer.push(feats[:512])  # a full window: the steady state
        per = best_time(lambda: scorer.push(feats[512:]), device, 1) / (feats.shape[0] - 512)
        rows.append((device.type, f"scoring, hop {hop}, per frame", f"{1000 * per:.2f} ms",
                     f"{100 * per / tower:.1f}% of the tower"))
    hop = HOPS[0]
    res = run_session(video, encoder, predictor, hop, batch, False, None)
    e2e = res.prediction.num_frames / res.wall_s
    rows.append((device.type, f"end to end (decode, encode, score), hop {hop}", f"{e2e:.1f} frames/s",
                 f"{res.prediction.num_frames} frames"))
    # read at its own pace: below the end-to-end rate, as a camera at that --fps (on the CPU only
    # hop 16: one hop of 64 frames there lasts a minute)
    runs = [(0.8, h) for h in (HOPS if device.type == "cuda" else HOPS[:1])] + [(0.5, HOPS[0])]
    for share, hop in runs:
        live_fps = min(30.0, round(share * e2e, 1))
        paced = video_of(work / f"bench_paced_{frames}_{live_fps:g}.mp4", int(np.ceil(frames * 30 / live_fps)) + 1)
        res = run_session(paced, encoder, predictor, hop, batch, True, live_fps)
        lat = res.latency
        rows.append((device.type, f"read at its own pace, --fps {live_fps:g} ({100 * share:.0f}% of end to end), hop {hop}",
                     f"latency median {np.median(lat):.2f} s, p95 {np.quantile(lat, 0.95):.2f} s",
                     f"{res.prediction.num_frames} frames, {res.dropped} dropped; waiting for the hop alone: "
                     f"median {(hop - 1) / 2 / live_fps:.2f} s"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a checkpoint trained on the synthetic set (default: train one)")
    ap.add_argument("--data", help="the synthetic dataset root it was trained on (with --checkpoint)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "anomalyclip_bench" / "stream"),
                    help="folder for the trained demo run and the test videos (reused)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the demo training (default: the preset's 20)")
    ap.add_argument("--cpu-frames", type=int, default=96, help="frames of the CPU speed runs (default 96)")
    ap.add_argument("--cuda-frames", type=int, default=1500, help="frames of the CUDA speed runs (default 1500)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    setup_torch("cpu", args.threads, tf32=False)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.skip_quality:
        if args.checkpoint:
            if not args.data:
                ap.error("--checkpoint needs --data (the synthetic dataset root)")
            ckpt, root = Path(args.checkpoint), Path(args.data)
        else:
            ckpt, root = trained_checkpoint(work / f"demo-{args.epochs}ep", args.epochs)
        quality(ckpt, root)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        print(f"speed on {device_words(dev)} ...", file=sys.stderr, flush=True)
        frames, batch = (args.cpu_frames, 16) if dev.type == "cpu" else (args.cuda_frames, 64)
        rows += speed(dev, frames, batch, work)
    print(f"\nSpeed: random ViT-B/16-shaped image tower, UCF-Crime-shaped model; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}\n")
    print("| device | what | figure | note |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
