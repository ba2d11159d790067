"""`anomalyclip stream`: live scores for a file, URL or capture device, with bounded latency."""

from __future__ import annotations

import argparse
import sys

from anomalyclip.cli.common import add_checkpoint_flags, add_event_flags, event_rules, positive_int
from anomalyclip.errors import InputError

NAME = "stream"
HELP = "score a video while it arrives (file, rtsp/http URL, /dev/video device): JSONL as it goes"


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="our .ckpt, an exported folder (safetensors, or ONNX: scored by onnxruntime), or the authors' last.ckpt")
    p.add_argument("--source", required=True,
                   help="a video file, a URL (rtsp://, http://, ...) or a V4L2 device (/dev/video0), opened by PyAV")
    p.add_argument("--clip", help="CLIP image tower: a hub id or a local transformers folder (default ViT-B/16)")
    p.add_argument("--fps", type=float, help="resample the source to this rate (default: every frame)")
    p.add_argument("--hop", type=positive_int, default=16,
                   help="frames between two scorings of the 512-frame window; the newest HOP frames get their scores "
                        "(default 16)")
    p.add_argument("--threshold", type=float, help="anomaly threshold (default: the checkpoint's, else 0.5)")
    add_event_flags(p)
    p.add_argument("--out", help="folder for scores.jsonl, the stream's CSV / JSON / PNG and the overlay "
                                 "(default: the JSONL on stdout, nothing else written)")
    p.add_argument("--overlay", action="store_true", help="also write the annotated video as it goes (needs --out)")
    p.add_argument("--realtime", action="store_true",
                   help="read a file at its own pace (frames released at their timestamps), as a camera delivers them")
    p.add_argument("--source-format", help="FFmpeg input format (v4l2 is chosen for /dev/video*)")
    p.add_argument("--source-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg input option, passed to PyAV unchanged (repeatable): rtsp_transport=tcp, video_size=640x480")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="image-tower micro-batch: frames are encoded once this many wait or a hop is complete (default 16)")
    p.add_argument("--labels", help="labels CSV (id,name) for an authors' checkpoint whose class count is not a shipped table's")
    add_checkpoint_flags(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # stdout may carry the JSONL


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from anomalyclip.events import EventTracker
    from anomalyclip.predictor import Predictor, check_threshold
    from anomalyclip.streaming.jsonl import JsonlSink
    from anomalyclip.streaming.outputs import StreamOutputs
    from anomalyclip.streaming.scorer import StreamScorer
    from anomalyclip.streaming.session import INTERRUPTED, StopOnSignal, StreamSession
    from anomalyclip.streaming.sources import FrameFeed, VideoSource
    from anomalyclip.video.decode import parse_fps
    from anomalyclip.video.predict import build_encoder
    from anomalyclip.writers import PredictionWriter

    fps = parse_fps(args.fps)
    threshold = None if args.threshold is None else check_threshold(args.threshold)
    rules = event_rules(args)
    if args.overlay and not args.out:
        raise InputError("--overlay writes a video file: give --out DIR")
    source = VideoSource(args.source, fps=fps, realtime=args.realtime, format=args.source_format,
                         options=dict(args.source_option) or None)  # a bad source fails before the model loads
    rate = source.fps
    predictor = Predictor.from_checkpoint(
        args.checkpoint, trust=args.trust_checkpoint, labels=args.labels, centroid=args.centroid, device=args.device
    )
    if threshold is not None:
        predictor.threshold, predictor.threshold_source = threshold, "option"
    encoder = build_encoder(predictor, args.clip, None if args.device == "auto" else args.device, args.batch_size)
    scorer = StreamScorer(predictor, hop=args.hop, encoder=encoder, encode_batch=args.batch_size)
    names, normal = predictor.class_names, predictor.normal_id
    min_frames, gap = rules.frames(rate)
    _say(f"stream {args.source} ({'live' if source.live else 'file'}, {f'{rate:g} fps' if rate else 'rate unknown'}); "
         f"window {scorer.window} frames, hop {scorer.hop}, scored by {predictor.backend}; "
         f"CLIP image encoder {encoder.model_id} on {encoder.device}; "
         f"threshold {predictor.threshold:.4g} ({predictor.threshold_source}); events: >= {min_frames} frames, "
         f"gaps <= {gap} frames merge")
    writer = PredictionWriter(args.out, names, normal, predictor.threshold_source, rules) if args.out else None
    outputs = StreamOutputs(writer, args.overlay, predictor.threshold, rate)
    known = source.info.declared_frames if not source.live and fps is None else None  # a file's own frame count
    bar = tqdm(total=known, desc="stream", unit="frame", file=sys.stderr, dynamic_ncols=True, disable=args.quiet,
               mininterval=0.5)
    try:
        sink = JsonlSink(outputs.jsonl, names)
        tracker = EventTracker(names, normal, predictor.threshold, rules, rate)
        session = StreamSession(scorer, tracker, sink, outputs.overlay, rate, on_frames=bar.update)
        with StopOnSignal() as stop:
            feed = FrameFeed(source.frames(), 2 * max(args.hop, args.batch_size), drop_oldest=source.live)
            result = session.run(feed, stop.event)
        bar.close()
        summary = {"frames": result.prediction.num_frames, "events": len(result.events), "dropped": result.dropped,
                   "reason": result.reason}
        sink.end(**summary)
        outputs.finish(result, {"clip_model": encoder.model_id, "hop": scorer.hop, "window": scorer.window,
                                "live": source.live, "stream": summary, "latency_s": result.latency_summary()},
                       rate, str(args.source))
    finally:
        bar.close()
        outputs.close()
    n = result.prediction.num_frames
    _say(f"{result.reason}: {n} frames scored ({n / max(result.wall_s, 1e-9):.1f} frames/s), {len(result.events)} "
         f"event(s), {result.dropped} frame(s) dropped" + (f"; outputs: {args.out}" if args.out else ""))
    if result.error is not None:
        raise result.error  # after every output is complete
    return 130 if result.reason == INTERRUPTED else 0
