"""One training step in float32 vs mixed precision, from the same weights and batch.

UCF-Crime shapes (14 classes, E = 256, depth 1, a ViT-B/16-shaped random text tower). The mixed
step is what `train --precision bf16-mixed` runs: Lightning's MixedPrecision plugin wraps the
training step (text features, forward, MIL selection, the seven losses) in
`torch.autocast(device, dtype)`, and the backward pass runs outside it, into float32 gradients.
On CUDA the 16-mixed step (float16 autocast) is measured too; no loss scaling is applied to one
step's gradients, which only scaling back would undo.

Printed: the loss of each, its absolute and relative deviation from float32, the largest absolute
gradient deviation over every trained tensor, the largest relative one (per tensor, relative to
that tensor's largest float32 gradient), the cosine between the whole gradients, and the step
time (forward + backward; the median of `--steps` after a warm-up, the precisions interleaved).

    python benchmarks/precision.py                  # B = 16 on the CPU, 3 timed steps each
    python benchmarks/precision.py --batch 64 --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_model, device_words, median, setup_torch, timed, ucf_model_config  # noqa: E402
from train_step import make_batch  # noqa: E402

from anomalyclip.config import LossConfig  # noqa: E402
from anomalyclip.losses import training_losses  # noqa: E402

DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def loss_and_grads(model, x, y, keep, precision: str) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward + backward; returns the loss and a copy of every gradient (float32)."""
    model.zero_grad(set_to_none=True)
    dtype = DTYPES.get(precision)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = training_losses(model(x), y, model.cfg.normal_id, LossConfig(), model.cfg.num_segments, keep=keep)["loss"]
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def deviation(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, float]:
    assert ref.keys() == got.keys()
    abs_dev = max(float((got[k] - ref[k]).abs().max()) for k in ref)
    rel_dev = max(float((got[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1e-30)) for k in ref)
    a = torch.cat([ref[k].reshape(-1) for k in ref])  # every gradient as one vector
    b = torch.cat([got[k].reshape(-1) for k in ref])
    cos = float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))
    return dict(abs=abs_dev, rel=rel_dev, cos=cos)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16, help="videos per batch (even)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per precision (after one warm-up)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.batch % 2:
        ap.error("--batch must be even")
    device = setup_torch(args.device, args.threads, tf32=False)
    cfg = ucf_model_config()
    model = build_model(cfg).to(device).train()
    x, y, keep = make_batch(args.batch, cfg, device)
    precisions = ["32", "bf16-mixed"] + (["16-mixed"] if device.type == "cuda" else [])

    results = {p: loss_and_grads(model, x, y, keep, p) for p in precisions}  # the same weights each time
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.steps):
        for p in precisions:
            times[p].append(timed(lambda: loss_and_grads(model, x, y, keep, p), device))

    ref_loss, ref_grads = results["32"]
    print(f"one training step (forward + backward), UCF-Crime shapes: B = {args.batch} x {cfg.frames_per_item} frames, "
          f"E = {cfg.emb_size}, {len(ref_grads)} trained tensors; {device_words(device)}, torch {torch.__version__}")
    print(f"{'precision':<11} {'loss':>10} {'|dloss|':>9} {'rel':>9} {'max|dgrad|':>11} {'max rel':>9} "
          f"{'cos':>10} {'step s':>8} {'speed':>6}")
    t32 = median(times["32"])
    for p in precisions:
        loss, grads = results[p]
        d = deviation(ref_grads, grads)
        t = median(times[p])
        print(f"{p:<11} {loss:>10.5f} {abs(loss - ref_loss):>9.2e} {abs(loss - ref_loss) / abs(ref_loss):>9.2e} "
              f"{d['abs']:>11.2e} {d['rel']:>9.2e} {d['cos']:>10.6f} {t:>8.2f} {t32 / t:>5.2f}x")
    grad_max = max(float(g.abs().max()) for g in ref_grads.values())
    print(f"largest float32 gradient: {grad_max:.3e}; 'max rel': per tensor, |dgrad| over its largest float32 gradient")


if __name__ == "__main__":
    main()
