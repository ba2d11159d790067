"""`anomalyclip predict`: per-frame scores, classes, spans and plots for feature files or videos."""

from __future__ import annotations

import argparse

from anomalyclip.cli.common import add_checkpoint_flags, add_event_flags, event_rules, out_dir, positive_int
from anomalyclip.errors import InputError

NAME = "predict"
HELP = "per-frame scores, classes and plots for videos"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="our .ckpt, an exported folder (safetensors, or ONNX: scored by onnxruntime), or the authors' last.ckpt")
    p.add_argument("--features", nargs="+", metavar="PATH", help="per-video .npy feature files (T, D) or folders of them (recursive)")
    p.add_argument("--video", nargs="+", metavar="FILE", help="video files or frame folders: features are extracted first")
    p.add_argument("--labels", help="labels CSV (id,name) for an authors' checkpoint whose class count is not a shipped table's")
    add_checkpoint_flags(p)
    p.add_argument("--fps", type=float, help="frames per second of the features (or of a frame folder): adds times in seconds")
    p.add_argument("--threshold", type=float, help="anomaly threshold (default: the checkpoint's, else 0.5)")
    add_event_flags(p)
    p.add_argument("--temporal", help="temporal annotation file: ground-truth spans shaded in the plots")
    p.add_argument("--out", help="output folder (default runs/predict-<time>)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--clip", help="CLIP image tower for --video: a hub id or a local transformers folder")
    p.add_argument("--batch-size", type=positive_int, default=64, help="frames per image-tower batch with --video")
    p.add_argument("--overlay", action="store_true", help="with --video: also write the video with the scores drawn on it")


def run(args: argparse.Namespace) -> int:
    from anomalyclip.data.features import collect_feature_files, load_features
    from anomalyclip.data.formats import read_temporal
    from anomalyclip.predictor import Predictor, check_threshold
    from anomalyclip.video.decode import parse_fps
    from anomalyclip.writers import PredictionWriter, VideoMeta

    if not args.features and not args.video:
        raise InputError("nothing to predict: give --features (.npy files or folders) or --video")
    fps = parse_fps(args.fps)
    threshold = None if args.threshold is None else check_threshold(args.threshold)
    rules = event_rules(args)
    items = collect_feature_files(args.features) if args.features else []
    gt = read_temporal(args.temporal) if args.temporal else None
    out = out_dir(args.out, "predict")
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", out)

    predictor = Predictor.from_checkpoint(
        args.checkpoint, trust=args.trust_checkpoint, labels=args.labels, centroid=args.centroid, device=args.device
    )
    if threshold is not None:
        predictor.threshold, predictor.threshold_source = threshold, "option"
    writer = PredictionWriter(out, predictor.class_names, predictor.normal_id, predictor.threshold_source, rules)
    described = (f"scored by {predictor.backend}; threshold {predictor.threshold:.4g} ({predictor.threshold_source}); "
                 f"classes: {', '.join(predictor.class_names)}")
    if items:
        print(f"{len(items)} feature file(s); {described}")
    for path, name in items:
        prediction = predictor.predict(load_features(path, predictor.feature_dim))
        spans_gt = None if gt is None else gt.get(path.stem, [])
        written = writer.write(VideoMeta(name, str(path), fps, spans_gt), prediction)
        print(f"  {name}: {prediction.num_frames} frames, max score {prediction.scores.max():.3f}, {len(written.spans)} event(s)")
    rc = 0
    if args.video:
        from anomalyclip.video.predict import build_encoder, predict_videos

        encoder = build_encoder(predictor, args.clip, None if args.device == "auto" else args.device, args.batch_size)
        print(f"{len(args.video)} video input(s); CLIP image encoder {encoder.model_id} on {encoder.device}; {described}", flush=True)
        rc = predict_videos(args.video, predictor, encoder, writer, fps, args.overlay, gt)
    print(f"outputs: {out}")
    return rc
