"""`anomalyclip zeroshot`: the paper's zero-shot CLIP baseline on a test list (nothing trained)."""

from __future__ import annotations

import argparse

from anomalyclip.cli.common import add_data_flags, data_config, out_dir
from anomalyclip.clip_config import ZERO_SHOT_TEMPLATE

NAME = "zeroshot"
HELP = "score a test list with zero-shot CLIP (the paper's baseline row), same outputs as eval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p, train=False)
    p.add_argument("--clip", required=True,
                   help="CLIP checkpoint: a hub id (openai/clip-vit-base-patch16) or a local transformers folder; "
                        "the features must come from its image tower")
    p.add_argument("--template", default=ZERO_SHOT_TEMPLATE,
                   help=f"class prompt, '{{}}' standing for the class name (default {ZERO_SHOT_TEMPLATE!r})")
    p.add_argument("--logit-scale", type=float,
                   help="multiplier of the cosines before the softmax (default: the checkpoint's exp(logit_scale); 100 for a text-only checkpoint)")
    p.add_argument("--out", help="output folder (default runs/zeroshot-<time>)")
    p.add_argument("--frames-per-forward", type=int, default=16384, help="frames scored per forward")


def run(args: argparse.Namespace) -> int:
    from anomalyclip.cli.evaluate import evaluate_into
    from anomalyclip.data.run_data import load_run_data
    from anomalyclip.zeroshot import build_zero_shot

    cfg = data_config(args, train=False)
    data = load_run_data(cfg.data, need_train=False)  # every list checked before CLIP is loaded
    model, info = build_zero_shot(args.clip, data.classes, args.template, args.logit_scale)
    print(f"zero-shot CLIP {info['clip']}: logit scale {info['logit_scale']:.2f} ({info['logit_scale_source']}), "
          f"prompt {info['prompts'][0]!r}, ...")
    out = out_dir(args.out, "zeroshot")
    evaluate_into(out, model, data, args.preset or "", None, args.frames_per_forward, method="zeroshot", extra={"zeroshot": info})
    return 0
