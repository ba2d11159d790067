"""The `anomalyclip` command line. Each verb is a module here with `add_arguments(parser)` and
`run(args)`; the heavy libraries are imported inside `run`, so `--help` and argument errors
answer at once."""

from __future__ import annotations

import argparse
import sys
import warnings

from anomalyclip.cli import demo, evaluate, export, extract, predict, report, stream, train, zeroshot
from anomalyclip.errors import InputError, output_error

VERBS = (demo, train, evaluate, zeroshot, report, predict, stream, export, extract)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalyclip", description="Detect and name anomalies in video, frame by frame (AnomalyCLIP).")
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        p = sub.add_parser(verb.NAME, help=verb.HELP, description=verb.HELP)
        verb.add_arguments(p)
        p.set_defaults(run=verb.run)
    return parser


def _one_line(e: InputError) -> str:
    """The message itself, also when a data-loader worker wrapped it with its traceback."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("InputError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    try:
        return int(args.run(args) or 0)
    except InputError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a write outside the package's own writers (a logger's file, say)
        print(f"error: {output_error(e.filename or '', e)}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"error: `anomalyclip {args.command}` cannot run in this installation: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
