"""One full training step at the authors' UCF-Crime shapes: naive path vs the optimised path.

A step = text features, forward, MIL selection, the seven losses, backward, AdamW step.
Naive: full 77-token text transformer, selection looped over videos, reversible recomputation.
Optimised: the package defaults (text truncated after the longest EOT, vectorised selection,
plain autograd in the temporal model: `recompute_temporal=False`).

    python benchmarks/train_step.py                 # B = 64, 3 timed steps per path
    python benchmarks/train_step.py --batch 16 --steps 2
    python benchmarks/train_step.py --profile       # also print torch.profiler tables

The floor: FLOPs of the step (temporal model's convolutions, attention and linear layers,
selector, text tower, x3 for forward + backward) over this machine's rates measured here (a large
matrix product; the temporal model's two 3x3 convolutions, forward + backward, at the same batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    build_model,
    conv_rate,
    device_words,
    matmul_rate,
    median,
    setup_torch,
    temporal_flops_per_frame,
    text_flops,
    timed,
    ucf_model_config,
)
from naive import optimised_model_config, select_segments_loop  # noqa: E402

from anomalyclip.config import LossConfig  # noqa: E402
from anomalyclip.losses import select_segments, training_losses  # noqa: E402


class Path_:
    """One path: a model, its optimiser (as `training.py` builds it) and its selection function."""

    def __init__(self, name: str, model, select, device):
        self.name, self.model, self.select = name, model.to(device).train(), select
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.2)

    def loss(self, x, y, keep):
        m = self.model
        out = m(x)  # text features computed once for the batch
        return training_losses(out, y, m.cfg.normal_id, LossConfig(), m.cfg.num_segments, keep=keep, select=self.select)["loss"]

    def step(self, x, y, keep):
        loss = self.loss(x, y, keep)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def make_batch(b: int, cfg, device, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.frames_per_item, cfg.feature_dim, generator=g)
    abnormal = [c for c in range(cfg.num_classes) if c != cfg.normal_id]
    ya = torch.tensor(abnormal)[torch.randint(0, len(abnormal), (b // 2,), generator=g)]
    y = torch.cat([ya, torch.full((b // 2,), cfg.normal_id)])
    keep = torch.bernoulli(torch.full((b, cfg.num_segments), 1 - LossConfig().segment_drop), generator=g).bool()
    return x.to(device), y.to(device), keep.to(device)


def exactness(naive: Path_, fast: Path_, x, y, keep) -> dict:
    """Loss and gradients of both paths from the same weights, batch and mask (no optimiser step)."""
    out = {}
    grads = {}
    for p in (naive, fast):
        p.opt.zero_grad(set_to_none=True)
        loss = p.loss(x, y, keep)
        loss.backward()
        out[p.name] = loss.detach()
        grads[p.name] = {n: q.grad.detach().clone() for n, q in p.model.named_parameters() if q.requires_grad}
        p.opt.zero_grad(set_to_none=True)
    gn, gf = grads[naive.name], grads[fast.name]
    assert gn.keys() == gf.keys()
    return dict(
        loss=float(out[naive.name]),
        loss_diff=float((out[naive.name] - out[fast.name]).abs()),
        grad_diff=max(float((gn[k] - gf[k]).abs().max()) for k in gn),
        grad_max=max(float(gn[k].abs().max()) for k in gn),
        tensors=len(gn),
    )


def profile_step(p: Path_, x, y, keep, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with profile(activities=acts) as prof:
        p.step(x, y, keep)
        if x.is_cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if x.is_cuda else "self_cpu_time_total"
    print(f"\n--- profile of one {p.name} step ---")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per path (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=64, help="videos per batch (even)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 in matmuls and convolutions")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step of each path")
    args = ap.parse_args(argv)
    if args.batch % 2:
        ap.error("--batch must be even")
    device = setup_torch(args.device, args.threads, args.tf32)

    base = ucf_model_config()
    naive = Path_("naive", build_model(base, naive=True), select_segments_loop, device)
    fast_model = build_model(optimised_model_config(base))
    fast_model.load_state_dict(naive.model.state_dict())
    fast = Path_("optimised", fast_model, select_segments, device)
    x, y, keep = make_batch(args.batch, base, device)

    ex = exactness(naive, fast, x, y, keep)

    # Rates first (same batch), then the steps, naive and optimised interleaved so that any drift
    # in the machine's load affects both alike.
    mm = matmul_rate(device)
    conv = conv_rate(device, args.batch if device.type == "cuda" else min(args.batch, 16), base.emb_size, backward=True)
    times = {naive.name: [], fast.name: []}
    for p in (naive, fast):
        p.step(x, y, keep)  # warm-up
    for _ in range(args.steps):
        for p in (naive, fast):
            times[p.name].append(timed(lambda: p.step(x, y, keep), device))

    frames = args.batch * base.frames_per_item
    conv_pf, rest_pf = temporal_flops_per_frame(base)
    text = text_flops(fast.model, truncate=True)
    conv_flops, rest_flops = 3 * conv_pf * frames, 3 * (rest_pf * frames + text)
    floor = conv_flops / conv + rest_flops / mm

    tlen = int(fast.model.prompt_learner.eot_index.max()) + 1
    print(
        f"\ntraining step at the UCF-Crime shapes: B = {args.batch} x {base.frames_per_item} frames x D = {base.feature_dim}, "
        f"{base.num_classes} classes, E = {base.emb_size}, depth {base.depth}, text tower 512 x 12 layers "
        f"(77 -> {tlen} tokens); {device_words(device)}; {args.steps} timed steps per path"
    )
    print(f"{'path':<10} {'median s':>9} {'min s':>8} {'steps/s':>8} {'vs naive':>9} {'/ floor':>8}")
    t_naive = median(times[naive.name])
    for name, ts in times.items():
        t = median(ts)
        print(f"{name:<10} {t:9.3f} {min(ts):8.3f} {1 / t:8.3f} {t_naive / t:8.2f}x {t / floor:7.2f}x")
    print(f"{'floor':<10} {floor:9.3f}")
    print(
        f"floor = {conv_flops / 1e12:.3f} TFLOP of 3x3 convolutions at {conv / 1e9:.0f} GFLOP/s (measured, forward + backward)"
        f" + {rest_flops / 1e12:.3f} TFLOP of attention, linear layers and text tower at {mm / 1e9:.0f} GFLOP/s (measured matmul);"
        f" forward FLOPs x3"
    )
    print(
        f"exactness (same weights, batch and mask): loss {ex['loss']:.6f}, |loss diff| {ex['loss_diff']:.2e}, "
        f"max |grad diff| {ex['grad_diff']:.2e} (max |grad| {ex['grad_max']:.2e}) over {ex['tensors']} tensors"
    )
    if args.profile:
        profile_step(fast, x, y, keep)
        profile_step(naive, x, y, keep)


if __name__ == "__main__":
    main()
