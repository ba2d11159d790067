"""Command-line entry of `anomalyclip report`; argparse only here, the work imported in `run`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_EVAL_DIR",
                        help="folders holding metrics.json and predictions.csv (runs of one dataset, shown side by side)")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--max-points", type=int, default=2000,
                        help="most points per video curve; longer videos are max-pooled (default 2000)")
    parser.add_argument("--no-draw", action="store_true",
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


def main(argv: list[str] | None = None) -> int:
    """Standalone use until the `report` verb is registered: python -m anomalyclip.report.cli."""
    import sys

    from anomalyclip.errors import InputError

    parser = argparse.ArgumentParser(prog="anomalyclip report", description=__doc__)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
