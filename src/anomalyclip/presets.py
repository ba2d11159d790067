"""The dataset presets in one typed table: each release's file layout, its labels table, the
paper's hyper-parameters (METHOD §9), and how its results are reported (headline metric,
fine-grained rule)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalyclip.assets import asset_path
from anomalyclip.config import DataConfig, RunConfig
from anomalyclip.errors import InputError
from anomalyclip.published import PublishedRow, published_for


@dataclass(frozen=True)
class DataLayout:
    """File names of one dataset's release, relative to its root (`DataConfig.resolve` also
    looks in the usual sub-folders)."""

    features: str
    train_abnormal: str = "Anomaly_Train_Abnormal.txt"
    train_normal: str = "Anomaly_Train_Normal.txt"
    test_list: str = "Anomaly_Test.txt"
    temporal: str = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    labels: str = ""  # empty: the preset's shipped labels table


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    labels_asset: str | None  # shipped labels CSV; None: the dataset brings its own
    layout: DataLayout
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    headline: str = "auc_roc"  # the metric the paper's table leads with
    fine_grained_scores_normal: bool = False  # FINEGRAINED.md: the XD-Violence rule

    @property
    def published(self) -> list[PublishedRow]:
        """The paper's numbers for this dataset (and the peers' where they report it)."""
        return published_for(self.name)

    @property
    def fine_grained_rule(self) -> str:
        """The name metrics.json gives the fine-grained mAP rule (FINEGRAINED.md): "xd" scores
        the normal class against whole normal videos, "ucf" gives it AP 0 (still in the mean)."""
        return "xd" if self.fine_grained_scores_normal else "ucf"

    @property
    def headline_name(self) -> str:
        return {"auc_roc": "AUC", "auc_pr": "AP"}[self.headline]

    def run_config(self, root: str | Path = ".") -> RunConfig:
        """A full RunConfig; the class names are read later from the labels CSV."""
        cfg = RunConfig(preset=self.name)
        cfg.model = dataclasses.replace(cfg.model, **self.model)
        cfg.train = dataclasses.replace(cfg.train, **self.train)
        cfg.data = DataConfig(root=str(root), **dataclasses.asdict(self.layout))
        if self.labels_asset and not cfg.data.labels:
            cfg.data.labels = str(asset_path(self.labels_asset))
        return cfg


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "ucfcrime",
            "UCF-Crime",
            "ucf_labels.csv",
            DataLayout(
                features="Image-Features",
                train_abnormal="Annotations/Anomaly_Train_Abnormal.txt",
                train_normal="Annotations/Anomaly_Train_Normal.txt",
                test_list="Annotations/Anomaly_Test.txt",
            ),
            model=dict(emb_size=256, depth=1, concat_features=False),
            train=dict(lr=1e-5, epochs=50, warmup=5),
        ),
        Preset(
            "shanghaitech",
            "ShanghaiTech",
            "sht_labels.csv",
            DataLayout(features="features"),
            model=dict(emb_size=256, depth=2, concat_features=True),
            train=dict(lr=5e-4, epochs=100, warmup=10),
        ),
        Preset(
            "xdviolence",
            "XD-Violence",
            "xd_labels.csv",
            DataLayout(
                features="Image-Features",
                train_abnormal="Annotations/Anomaly_Train_Abnormal.txt",
                train_normal="Annotations/Anomaly_Train_Normal.txt",
                test_list="Annotations/Anomaly_Test.txt",
                temporal="Annotations/Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
            ),
            model=dict(emb_size=128, depth=1, concat_features=False),
            train=dict(lr=5e-6, epochs=50, warmup=5),
            headline="auc_pr",
            fine_grained_scores_normal=True,
        ),
        # The built-in synthetic dataset: small enough to train on 2 CPU cores in minutes, on a
        # small random CLIP text tower (the real presets use ViT-B/16's, `ModelConfig.clip`).
        Preset(
            "synthetic",
            "synthetic demo",
            None,
            DataLayout(features="features", labels="labels.csv"),
            model=dict(emb_size=64, depth=1, concat_features=False, clip="random", random_clip_width=64),
            train=dict(lr=2e-3, epochs=20, warmup=0, batch_size=8, weight_decay=0.01),
        ),
    )
}

DEFAULT_PRESET = PRESETS["ucfcrime"]  # reporting rules for runs that name no preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def preset_for(name: str | None) -> Preset:
    """The preset of a run, or the default reporting rules when it names none."""
    return PRESETS.get(name or "", DEFAULT_PRESET)


def preset_of_classes(class_names) -> Preset | None:
    """The preset whose shipped labels table holds exactly these class names (any case), or None:
    how a run that names no preset (the authors' checkpoint on their files) finds its dataset."""
    from anomalyclip.data.formats import read_labels

    wanted = [str(n).strip().lower() for n in class_names]
    for p in PRESETS.values():
        if p.labels_asset and [n.lower() for n in read_labels(asset_path(p.labels_asset)).names] == wanted:
            return p
    return None


def run_preset(name: str | None, class_names) -> Preset | None:
    """A run's dataset: the preset it names, else the one its class table belongs to."""
    return PRESETS.get(name or "") or preset_of_classes(class_names)


def preset_config(name: str, root: str | Path = ".") -> RunConfig:
    return get_preset(name).run_config(root)
