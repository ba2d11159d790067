"""`anomalyclip report`: one self-contained HTML page comparing run / eval folders with the paper."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "one self-contained HTML page comparing run or eval folders with the paper's numbers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_OR_EVAL_DIR",
                   help="folders holding metrics.json and predictions.csv (runs of one dataset, shown side by side)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--max-points", type=int, default=2000,
                   help="most points per video curve; longer videos are max-pooled (default 2000)")
    p.add_argument("--no-draw", action="store_true",
                   help="do not draw per-class curves missing from a folder (faster on UCF-Crime)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anomalyclip.errors import InputError
    from anomalyclip.report import build_report

    if args.max_points < 10:
        raise InputError(f"--max-points must be at least 10, got {args.max_points}")
    out = build_report([Path(p) for p in args.runs], Path(args.out), max_points=args.max_points, draw_missing=not args.no_draw)
    print(f"report: {out}")
    return 0
