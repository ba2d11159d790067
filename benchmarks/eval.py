"""End-to-end evaluation on a UCF-Crime-sized test set: naive path vs the optimised path.

End to end = open the test list's feature files, read every video, scores and class
probabilities for every frame, then every metric (AUC, AP, mAUC, mAP, accuracies). Each path runs
in its own subprocess, so the peak RSS (`ru_maxrss`) is that path's alone.

Naive: one test video per forward, text features recomputed for every video by the full 77-token
text transformer. Optimised: what `anomalyclip eval` does: `freeze_text_features` (text features
once, truncated; the text tower dropped), then `evaluation.evaluate` (several videos per forward up
to `--frames-per-forward` padded frames, long videos centred in place).

    python benchmarks/eval.py                       # 290 videos, 1.1 M frames (~2.3 GB of .npy)
    python benchmarks/eval.py --videos 40 --frames 150000
    python benchmarks/eval.py --paths optimised     # what `anomalyclip eval` does, alone
    python benchmarks/eval.py --paths cli           # `anomalyclip eval` itself: peak RSS of the command

The `cli` path runs the command as a user does, in its own process, on the same features written
in the official layout beside them (test list, temporal annotations; the UCF-Crime labels CSV)
with an exported UCF-shaped model (ViT-B/16-shaped random text tower): every output written
(metrics.json, predictions.csv, the figures). It prints the command's peak resident size
(`ru_maxrss` of that child alone, from `wait4`) and its resident size over time (a sampler reads
its `/proc` status every 50 ms).

The optimised path then adds what `anomalyclip eval` adds after scoring: `run_metrics`, the
fine-grained mAP@tIoU (UCF-Crime's rule); its cost is printed as a share of the evaluation time
(the bound is 20%).

The test set (float32 (T, 512) .npy files, realistic spread of lengths, UCF-like labels and
spans) is written once to `--dir` and reused. Floor: FLOPs of the temporal model and selector on
every padded frame (each video is padded to a multiple of 512 frames, METHOD §10) plus one text
forward, over this machine's rates measured here (the two 3x3 convolutions' forward at the
batch of one temporal-model call; a large matrix product).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    build_model,
    conv_rate,
    device_words,
    matmul_rate,
    setup_torch,
    temporal_flops_per_frame,
    text_flops,
    ucf_model_config,
)
from naive import evaluate_naive, optimised_model_config  # noqa: E402

from anomalyclip.data.datasets import TestVideos  # noqa: E402
from anomalyclip.classes import ClassTable, abnormal_ids  # noqa: E402
from anomalyclip.assets import asset_path  # noqa: E402
from anomalyclip.checkpoint.export import save_export  # noqa: E402
from anomalyclip.checkpoint.loaded import LoadedModel  # noqa: E402
from anomalyclip.data.formats import VideoEntry, temporal_line  # noqa: E402
from anomalyclip.model.grid import grids_per_call  # noqa: E402
from anomalyclip import evaluation  # noqa: E402

DEFAULT_DIR = Path(tempfile.gettempdir()) / "anomalyclip_bench" / "ucf_test"
D = 512


# -- the generated test set ----------------------------------------------------------------
def plan(videos: int, frames: int, seed: int = 0) -> dict:
    """Lengths (log-normal spread, as UCF-Crime's test videos: from a few hundred frames to tens of
    thousands), labels (about half abnormal, all 13 abnormal classes) and 1-2 spans per abnormal video."""
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(0.0, 1.0, videos)
    lengths = np.maximum(64, np.round(raw / raw.sum() * frames)).astype(int)
    lengths[np.argmax(lengths)] += frames - int(lengths.sum())  # exact total
    classes = ucf_model_config().class_names
    normal = classes.index("Normal")
    abnormal = abnormal_ids(len(classes), normal)
    items = []
    for i, t in enumerate(lengths.tolist()):
        if i % 2 == 0:
            label = abnormal[(i // 2) % len(abnormal)]
            spans = []
            for part in range(int(rng.integers(1, 3))):
                lo, hi = part * t // 2, (part + 1) * t // 2
                width = max(8, int(rng.uniform(0.1, 0.5) * (hi - lo)))
                s = int(rng.integers(lo, max(lo + 1, hi - width)))
                spans.append((s, min(t - 1, s + width)))
        else:
            label, spans = normal, []
        items.append(dict(name=f"{classes[label]}/video{i:04d}", frames=t, label=label, spans=spans))
    return dict(videos=videos, frames=frames, seed=seed, classes=classes, normal=normal, items=items)


def write_set(folder: Path, videos: int, frames: int) -> dict:
    manifest = folder / "manifest.json"
    want = plan(videos, frames)
    if manifest.is_file():
        have = json.loads(manifest.read_text())
        if have.get("videos") == videos and have.get("frames") == frames and have.get("complete"):
            return have
    need = frames * D * 4
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need * 1.2:
        sys.exit(f"need {need / 1e9:.1f} GB free under {folder}, have {free / 1e9:.1f} GB; use --dir or shrink --frames")
    print(f"writing {videos} feature files, {frames} frames ({need / 1e9:.2f} GB) to {folder} ...", flush=True)
    rng = np.random.default_rng(1)
    centre = rng.normal(0, 0.5, D).astype(np.float32)
    for it in want["items"]:
        path = folder / f"{it['name']}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        x = rng.standard_normal((it["frames"], D), dtype=np.float32)
        x += centre
        np.save(path, x)
    want["complete"] = True
    manifest.write_text(json.dumps(want))
    return want


def dataset(folder: Path, m: dict) -> TestVideos:
    classes = ClassTable(names=m["classes"], normal_id=m["normal"])
    entries = [VideoEntry(it["name"], 0, it["frames"] - 1, it["label"]) for it in m["items"]]
    temporal = {Path(it["name"]).name: [tuple(s) for s in it["spans"]] for it in m["items"]}
    return TestVideos(entries, folder, temporal, classes, D)


def write_official(folder: Path, m: dict) -> dict[str, Path]:
    """The test list and temporal file of the set in UCF-Crime's layout, the features folder being
    `folder` itself; the shipped UCF-Crime labels CSV."""
    files = {"features": folder, "test_list": folder / "Anomaly_Test.txt",
             "temporal": folder / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "labels": asset_path("ucf_labels.csv")}
    entries = [VideoEntry(it["name"], 0, it["frames"] - 1, it["label"]) for it in m["items"]]
    files["test_list"].write_text("".join(e.line() for e in entries))
    files["temporal"].write_text("".join(temporal_line(Path(it["name"]).name + ".mp4", it["name"].split("/")[0], it["spans"])
                                         for it in m["items"]))
    return files


def bench_model(path: str, device: torch.device):
    base = ucf_model_config()
    model = (build_model(base, naive=True) if path == "naive" else build_model(optimised_model_config(base))).to(device).eval()
    with torch.no_grad():  # fixed, non-trivial BatchNorm statistics, the same in every process
        g = torch.Generator().manual_seed(2)
        model.selector.bn.running_mean.copy_(torch.randn(base.num_classes - 1, generator=g) * 0.5)
        model.selector.bn.running_var.copy_(torch.rand(base.num_classes - 1, generator=g) * 2 + 1.0)
    return model


class RssSampler(threading.Thread):
    """The resident size of process `pid` every `every` seconds, while it lives."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                break
            self.samples.append((time.perf_counter() - t0, kb / 1024))
            self.stop.wait(self.every)


def run_cli(folder: Path, m: dict, device: torch.device, frames_per_forward: int, package_src: Path, out: Path) -> dict:
    """`anomalyclip eval` on the set, in a child process; its peak RSS and a coarse RSS timeline."""
    files = write_official(folder, m)
    export = folder / "model_export"
    if not (export / "config.json").is_file():
        save_export(LoadedModel(bench_model("optimised", torch.device("cpu")), 0.5, "anomalyclip"), export)
    cmd = [sys.executable, "-m", "anomalyclip", "eval", "--checkpoint", str(export), "--out", str(out),
           "--frames-per-forward", str(frames_per_forward)]
    for name, path in files.items():
        cmd += ["--" + name.replace("_", "-"), str(path)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join([str(package_src), os.environ.get("PYTHONPATH", "")]))
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "") if device.type == "cuda" else ""
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    sampler = RssSampler(child.pid)
    sampler.start()
    marks = []  # (seconds, first words of each line the command prints)
    for line in child.stdout:
        marks.append((time.perf_counter() - t0, line.rstrip()))
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if status != 0:
        sys.exit(f"anomalyclip eval failed (status {status}):\n" + "\n".join(line for _, line in marks))
    metrics = json.loads((out / "metrics.json").read_text())
    return dict(path="cli", seconds=seconds, rss_mb=usage.ru_maxrss / 1024, samples=sampler.samples, marks=marks,
                metrics={k: metrics[k] for k in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold", "map_tiou_avg")},
                frames=m["frames"], predictions_mb=(out / "predictions.csv").stat().st_size / 2**20)


def print_cli(r: dict, m: dict) -> None:
    samples = r["samples"]
    peak_t, peak = max(samples, key=lambda s: s[1]) if samples else (0.0, 0.0)
    print(f"\nanomalyclip eval (the command, every output written): {len(m['items'])} videos, {m['frames']} frames; "
          f"{r['seconds']:.1f} s, peak RSS {r['rss_mb']:.0f} MB (ru_maxrss; sampled peak {peak:.0f} MB at {peak_t:.1f} s); "
          f"predictions.csv {r['predictions_mb']:.0f} MB")
    print("  resident size over the run (MB, sampled every 50 ms): " + ", ".join(
        f"{t:.0f}s {mb:.0f}" for t, mb in samples[:: max(1, len(samples) // 12)]))
    print("  metrics: " + ", ".join(f"{k} {v:.6f}" for k, v in r["metrics"].items()))


# -- one path, in its own process -----------------------------------------------------------
def run_path(path: str, folder: Path, device: torch.device, frames_per_forward: int, out: Path) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    model = bench_model(path, device)
    # Time the metrics apart from the scoring (the same function, wrapped by a timer).
    metric_seconds = []
    compute_metrics = evaluation.compute_metrics

    def timed_metrics(*a, **kw):
        t = time.perf_counter()
        try:
            return compute_metrics(*a, **kw)
        finally:
            metric_seconds.append(time.perf_counter() - t)

    evaluation.compute_metrics = timed_metrics
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    ds = dataset(folder, m)
    if path == "naive":
        result = evaluate_naive(model, ds)
    else:
        model.freeze_text_features()
        result = evaluation.evaluate(model, ds, frames_per_forward=frames_per_forward, progress=False)
    seconds = time.perf_counter() - t0
    fine_seconds = None
    if path == "optimised":  # what evaluate_test_list adds: the fine-grained mAP@tIoU
        t1 = time.perf_counter()
        fine = evaluation.run_metrics(result, ds.classes, "ucfcrime", "anomalyclip")
        fine_seconds = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(out.with_suffix(".npz"), scores=result.scores, probs=result.probs)
    metrics = {k: result.metrics[k] for k in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold")}
    info = dict(
        path=path,
        seconds=seconds,
        metric_seconds=sum(metric_seconds),
        fine_seconds=fine_seconds,
        map_tiou_avg=fine["map_tiou_avg"] if fine_seconds is not None else None,
        frames=int(len(result.scores)),
        rss_mb=rss,
        rss_before_eval_mb=rss_before,
        gpu_peak_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        metrics=metrics,
    )
    out.write_text(json.dumps(info))


# -- the driver ------------------------------------------------------------------------------
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=290)
    ap.add_argument("--frames", type=int, default=1_100_000, help="total frames of the test set")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the generated test set lives (reused)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--frames-per-forward", type=int, default=16384)
    ap.add_argument("--paths", default="naive,optimised", help="which paths to run, comma-separated: naive, optimised, cli")
    ap.add_argument("--cli-out", type=Path, help="cli: the command's output folder (default: cli_out beside the set)")
    ap.add_argument("--package-src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                    help="cli: the package source the command runs from (default: this checkout's)")
    ap.add_argument("--tf32", action="store_true", help="CUDA: allow TF32")
    ap.add_argument("--run", choices=["naive", "optimised"], help=argparse.SUPPRESS)  # internal: one path
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = setup_torch(args.device, args.threads, args.tf32)
    folder = args.dir / f"v{args.videos}_f{args.frames}"

    if args.run:
        run_path(args.run, folder, device, args.frames_per_forward, args.out)
        return

    m = write_set(folder, args.videos, args.frames)
    padded = sum(-(-it["frames"] // 512) * 512 for it in m["items"])
    paths = args.paths.split(",")
    if "cli" in paths:
        print("running anomalyclip eval ...", flush=True)
        out = args.cli_out or folder / "cli_out"
        r = run_cli(folder, m, device, args.frames_per_forward, args.package_src, out)
        out.with_name(out.name + ".json").write_text(json.dumps(r))
        print_cli(r, m)
        paths.remove("cli")
        if not paths:
            return
    results = {}
    for path in paths:
        out = folder / f"result_{path}.json"
        cmd = [sys.executable, __file__, "--run", path, "--out", str(out), "--videos", str(args.videos), "--frames", str(args.frames),
               "--dir", str(args.dir), "--device", str(device), "--frames-per-forward", str(args.frames_per_forward)]
        cmd += ["--threads", str(args.threads)] + (["--tf32"] if args.tf32 else [])
        print(f"running the {path} path ...", flush=True)
        subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        results[path] = json.loads(out.read_text())

    # Floor from FLOPs and rates measured now, in this process.
    base = ucf_model_config()
    conv_pf, rest_pf = temporal_flops_per_frame(base)
    model = build_model(optimised_model_config(base))
    text = text_flops(model, truncate=True)
    del model
    chunk = grids_per_call(device)
    grids = max(1, min(chunk, args.frames_per_forward // base.frames_per_item))
    conv = conv_rate(device, grids, base.emb_size, backward=False)
    mm = matmul_rate(device)
    floor = padded * conv_pf / conv + (padded * rest_pf + text) / mm

    print(
        f"\nevaluation, end to end (read -> scores and class probabilities -> metrics): {len(m['items'])} videos, "
        f"{m['frames']} frames ({padded} padded to multiples of 512), D = {D}, E = {base.emb_size}, text tower 512 x 12; "
        f"{device_words(device)}"
    )
    print(f"{'path':<10} {'seconds':>8} {'(metrics)':>9} {'frames/s':>9} {'s/2048 fr':>9} {'vs naive':>9} {'/ floor':>8} "
          f"{'peak RSS MB':>12} {'(before eval)':>13}" + ("  GPU peak MB" if device.type == "cuda" else ""))
    t_naive = results.get("naive", {}).get("seconds")
    for name, r in results.items():
        t = r["seconds"]
        ratio = f"{t_naive / t:8.2f}x" if t_naive else f"{'-':>9}"
        gpu = f"  {r['gpu_peak_mb']:11.0f}" if r.get("gpu_peak_mb") is not None else ""
        print(f"{name:<10} {t:8.2f} {r['metric_seconds']:9.2f} {r['frames'] / t:9.0f} {t / r['frames'] * 2048:9.4f} {ratio} {t / floor:7.2f}x "
              f"{r['rss_mb']:12.0f} {r['rss_before_eval_mb']:13.0f}{gpu}")
    print(f"{'floor':<10} {floor:8.2f} {'':9} {m['frames'] / floor:9.0f} {floor / m['frames'] * 2048:9.4f}")
    opt = results.get("optimised")
    if opt and opt.get("fine_seconds") is not None:
        share = 100 * opt["fine_seconds"] / opt["seconds"]
        print(f"fine-grained mAP@tIoU (UCF rule, {len(m['items'])} videos, 14 classes): {opt['fine_seconds']:.2f} s, "
              f"+{share:.1f}% on the optimised evaluation's {opt['seconds']:.2f} s (bound: 20%); "
              f"mAP@tIoU AVG {100 * opt['map_tiou_avg']:.2f}")
    print(f"floor = {padded * conv_pf / 1e12:.2f} TFLOP of 3x3 convolutions at {conv / 1e9:.0f} GFLOP/s (measured forward, "
          f"{grids} grids) + {(padded * rest_pf + text) / 1e12:.3f} TFLOP of the rest at {mm / 1e9:.0f} GFLOP/s (measured matmul)")
    if len(results) == 2:
        a = np.load(folder / "result_naive.npz")
        b = np.load(folder / "result_optimised.npz")
        ds = max(abs(results["naive"]["metrics"][k] - results["optimised"]["metrics"][k]) for k in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr"))
        print(f"exactness: max |score diff| {np.abs(a['scores'] - b['scores']).max():.2e}, max |prob diff| "
              f"{np.abs(a['probs'] - b['probs']).max():.2e}, max |metric diff| {ds:.2e}; "
              f"AUC {results['optimised']['metrics']['auc_roc']:.4f}")


if __name__ == "__main__":
    main()
