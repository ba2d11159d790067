"""Every file a run reads, read and checked before any work starts (a bad line fails in
seconds, not hours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anomalyclip.classes import ClassTable
from anomalyclip.config import DataConfig
from anomalyclip.data.formats import Spans, VideoEntry, read_labels, read_temporal, read_video_list
from anomalyclip.errors import InputError


@dataclass
class RunData:
    classes: ClassTable
    features: Path
    train_abnormal: list[VideoEntry]
    train_normal: list[VideoEntry]
    test: list[VideoEntry]
    temporal: dict[str, Spans]


def load_run_data(d: DataConfig, need_train: bool = True) -> RunData:
    classes = read_labels(d.resolve("labels"))
    features = d.resolve("features")
    if not features.is_dir():
        raise InputError("features folder not found", features)
    test = read_video_list(d.resolve("test_list"), classes)
    temporal = read_temporal(d.resolve("temporal"))
    for e in test:  # the release raises KeyError here; scoring it as all normal would bias every metric
        if e.label != classes.normal_id and e.stem not in temporal:
            raise InputError(
                f"abnormal test video {e.stem} (label {e.label}, {classes.names[e.label]}) has no line in the temporal "
                f"annotation file {d.resolve('temporal')}",
                e.source,
            )
    abn, nor = [], []
    if need_train:
        abn = read_video_list(d.resolve("train_abnormal"), classes)
        nor = read_video_list(d.resolve("train_normal"), classes)
        for e in abn:
            if e.label == classes.normal_id:
                raise InputError(f"the abnormal training list holds a normal video (label {e.label})", e.source)
        for e in nor:
            if e.label != classes.normal_id:
                raise InputError(
                    f"the normal training list holds label {e.label} ({classes.names[e.label]}), expected {classes.normal_id}",
                    e.source,
                )
    return RunData(classes, features, abn, nor, test, temporal)
