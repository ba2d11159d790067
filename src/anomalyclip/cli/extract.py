"""`anomalyclip extract`: CLIP features from video files (one float32 `(T, 512)` .npy per video).

    anomalyclip extract --videos UCF_Crimes/Videos --out features/ucf --labels ucf_labels.csv

* Inputs: folders (scanned recursively for `*.mp4 *.avi *.mkv *.mov *.webm` files and frame
  folders), or explicit files / frame folders. Output paths mirror the input's relative path:
  `Videos/Abuse/Abuse028_x264.mp4` -> `OUT/Abuse/Abuse028_x264.npy` and `.json`. An explicit
  file or frame folder is written at the top of OUT under its own name.
* Resumable: a finished video (its `.npy` and sidecar, same CLIP model, sampling and
  preprocessing) is skipped; an interruption loses at most the video in progress.
* `--labels CSV` also writes `OUT/Anomaly_Train_Normal.txt` and `OUT/Anomaly_Train_Abnormal.txt`,
  the class of a video being its parent folder's name.
* `--devices N` runs N processes on this machine; `torchrun --nnodes M --nproc-per-node G -m
  anomalyclip extract ...` runs M x G over several. Each process extracts its share of the
  videos, balanced by frame count, and writes its own files; rank 0 writes the lists at the end.
* `--precision bf16|16` runs the image tower in bfloat16 / float16 (faster on GPUs; the features
  drift from the float32 ones, see the README); the default 32 matches released features.
* A video that decodes short of the frame count its header declares (a file cut short) fails
  with one line and writes nothing, unless `--allow-short` keeps the frames decoded.
"""

from __future__ import annotations

import argparse

from anomalyclip.cli.common import positive_int
from anomalyclip.clip_config import DEFAULT_CLIP
from anomalyclip.errors import InputError
from anomalyclip.video.decode import VIDEO_EXTENSIONS, parse_fps
from anomalyclip.video.precision import PRECISIONS

NAME = "extract"
HELP = "CLIP features from video files"


def _fps_arg(text: str) -> float | None:
    try:
        return parse_fps(text, allow_native=True)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", nargs="+", required=True, metavar="PATH",
                   help="video files, frame folders (000000.jpg ...) or folders to scan recursively for "
                        f"{' '.join('*' + e for e in VIDEO_EXTENSIONS)} and frame folders")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder; OUT/<relative path>.npy (float32, T x 512) and .json per video")
    p.add_argument("--clip", default=DEFAULT_CLIP, metavar="ID_OR_DIR",
                   help=f"CLIP image encoder: a hub id or a save_pretrained folder (default: {DEFAULT_CLIP})")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="frames per encoder batch (default: 64)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--fps", type=_fps_arg, default=None, metavar="native|N",
                   help="'native' (every frame, default) or a target rate sampled by timestamp")
    p.add_argument("--devices", type=positive_int, default=1, metavar="N",
                   help="processes on this machine (one GPU each with cuda), each taking a share of the videos "
                        "(default: 1; under torchrun leave it at 1: torchrun starts the processes)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="32",
                   help="number format of the image tower: 32 (float32, default: matches released features), "
                        "bf16 or 16 (float16, CUDA only); features are saved as float32 either way")
    p.add_argument("--allow-short", action="store_true",
                   help="keep the frames of a video that decodes short of its declared frame count "
                        "(a file cut short) instead of failing it; its sidecar records both counts")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="labels CSV (id,name): also write Anomaly_Train_Normal.txt and "
                        "Anomaly_Train_Abnormal.txt, class = parent folder name")


def run(args: argparse.Namespace) -> int:
    from anomalyclip.video.runner import run_extract

    return run_extract(
        videos=args.videos, out=args.out, clip=args.clip, batch_size=args.batch_size, device=args.device,
        fps=args.fps, devices=args.devices, labels=args.labels, precision=args.precision,
        allow_short=args.allow_short,
    )
