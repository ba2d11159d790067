"""Scoring one video: onnxruntime on the exported graph vs PyTorch's `score_videos`, on CPU.

UCF-Crime shapes (14 classes, normal 7, E = 256, depth 1, D = 512), random weights. The model is
exported once with `anomalyclip.checkpoint.onnx_export.export_onnx`; PyTorch then scores with the text
features computed once (as `Predictor` does), onnxruntime with them frozen into the graph. Both
run on the same thread count (default 2). Per length: frames/s of each (best of `--reps` after a
warm-up) and the largest absolute difference of their scores and probabilities.

    python benchmarks/onnx.py
    python benchmarks/onnx.py --lengths 512,4096,20000 --threads 2 --reps 3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# This file is named onnx.py, and Python puts its folder first on the path, where `import onnx`
# (done by onnxscript and torch's exporter) would find this file: take the folder off the path
# and load the shared helpers by file name.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_bench_common", _HERE / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
build_model, ucf_model_config = _common.build_model, _common.ucf_model_config

from anomalyclip.checkpoint.onnx_export import ONNX_NAME, OnnxScorer, export_onnx  # noqa: E402


def best_time(fn, reps: int) -> float:
    fn()  # warm-up: first-call allocations, onnxruntime's lazy kernels
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="512,4096,20000", help="video lengths in frames, comma-separated")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of torch and of onnxruntime")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per length and runtime (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",") if v]
    torch.set_num_threads(args.threads)

    model = build_model(ucf_model_config(), args.seed).eval()
    with torch.no_grad():
        model.selector.bn.running_mean.normal_()
        model.selector.bn.running_var.uniform_(0.5, 2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = export_onnx(model, tmp)
        export_s = time.perf_counter() - t0
        size_mb = (Path(folder) / ONNX_NAME).stat().st_size / 2**20
        scorer = OnnxScorer(folder, threads=args.threads)
        model.freeze_text_features()
        text = model.text_features()
        print(
            f"UCF-Crime shapes (C={model.cfg.num_classes}, E={model.cfg.emb_size}, depth {model.cfg.depth}, "
            f"D={model.cfg.feature_dim}); {args.threads} threads; torch {torch.__version__}, "
            f"onnxruntime {__import__('onnxruntime').__version__}"
        )
        print(f"export {export_s:.1f} s, {ONNX_NAME} {size_mb:.1f} MB")
        print(f"{'frames':>8} {'torch f/s':>10} {'onnx f/s':>10} {'onnx/torch':>10} {'max|dscore|':>12} {'max|dprob|':>11}")
        rng = np.random.default_rng(args.seed)
        for t in lengths:
            x = rng.normal(0, 1, (t, model.cfg.feature_dim)).astype(np.float32)
            xt = torch.from_numpy(x)
            ref = model.score_videos([xt], text)[0]
            out = scorer.score(x)
            d_score = float(np.abs(out[0] - ref[0].numpy()).max())
            d_prob = float(np.abs(out[1] - ref[1].numpy()).max())
            t_torch = best_time(lambda: model.score_videos([xt], text), args.reps)
            t_onnx = best_time(lambda: scorer.score(x), args.reps)
            print(
                f"{t:>8} {t / t_torch:>10.0f} {t / t_onnx:>10.0f} {t_torch / t_onnx:>10.2f} "
                f"{d_score:>12.2e} {d_prob:>11.2e}"
            )


if __name__ == "__main__":
    main()
