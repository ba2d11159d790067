"""Typed configuration: one dataclass per concern (the presets in `presets.py` fill them in).

A run folder stores these as `config.json`; checkpoints carry the model part so they describe
themselves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalyclip.clip_config import DEFAULT_CLIP

LOGGERS = ("csv", "tensorboard", "mlflow")  # where the per-epoch numbers go besides the CSV
PRECISIONS = ("32", "bf16-mixed", "16-mixed")  # Lightning's names: float32, or autocast to that type

@dataclass
class ModelConfig:
    """The network (METHOD §2-6). Class names are in label-id order; `normal_id` indexes them."""

    class_names: list[str] = field(default_factory=list)
    normal_id: int = 0
    n_ctx: int = 8
    feature_dim: int = 512  # D: CLIP image-embedding size
    emb_size: int = 256  # E: temporal model width
    depth: int = 1
    heads: int = 8
    num_segments: int = 32  # n
    seg_length: int = 16  # l
    concat_features: bool = False
    # CLIP text tower: a hub id, a local folder (transformers), an OpenAI `ViT-B-16.pt`, an authors'
    # `last.ckpt`, or "random" (a small random CLIP of the real architecture: the demo and tests).
    clip: str = DEFAULT_CLIP
    random_clip_width: int = 64
    random_clip_layers: int = 2
    # Training-time switches that do not change the function computed.
    # Plain autograd through the temporal model: no second forward of it in the backward pass
    # (the reversible scheme's recomputation), for ~185 MB more at batch 64, E 256, depth 1.
    # True recomputes, for when memory is short. The numbers are the same either way.
    recompute_temporal: bool = False
    truncate_text: bool = True  # run the text transformer only up to the longest EOT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def frames_per_item(self) -> int:
        return self.num_segments * self.seg_length


@dataclass
class LossConfig:
    """Weights of the seven terms (METHOD §8) and the MIL selection (METHOD §7)."""

    num_topk: int = 3
    num_bottomk: int = 3
    segment_drop: float = 0.7  # probability a segment is hidden from top-k / bottom-k
    dir_abn: float = 1.0
    dir_nor: float = 1.0
    topk_abn: float = 1.0
    bottomk_abn: float = 1.0
    topk_nor: float = 1.0
    smooth: float = 8e-4
    sparse: float = 8e-3


@dataclass
class TrainConfig:
    """Optimisation (METHOD §9) and loop settings."""

    lr: float = 1e-5
    epochs: int = 50
    warmup: int = 5
    batch_size: int = 64  # half abnormal, half normal
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.999)  # the paper text says (0.9, 0.98)
    eps: float = 1e-8
    seed: int = 1024
    eval_every: int = 1  # epochs between evaluations on the test list (0: only at the end)
    num_workers: int = 2
    devices: int = 1
    accelerator: str = "auto"
    eval_frames_per_forward: int = 16384  # several test videos are scored per forward up to this
    logger: str = "csv"  # one of LOGGERS: the CSV always, and this tracker too
    precision: str = "32"  # one of PRECISIONS, passed to Lightning's Trainer

    def check(self) -> None:
        """Refuse values that cannot train, one line each, before anything is written."""
        import math

        from anomalyclip.errors import InputError

        rules = [
            ("--epochs", self.epochs, isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("--lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a number > 0"),
            ("--batch-size", self.batch_size, self.batch_size >= 2 and self.batch_size % 2 == 0,
             "even and >= 2 (half abnormal, half normal videos)"),
            ("--devices", self.devices, self.devices >= 1, "an integer >= 1"),
            ("--eval-every", self.eval_every, self.eval_every >= 0, "an integer >= 0 (0: only at the end)"),
            ("--num-workers", self.num_workers, self.num_workers >= 0, "an integer >= 0"),
            ("warm-up", self.warmup, 0 <= self.warmup, "an integer >= 0"),
            ("--logger", self.logger, self.logger in LOGGERS, f"one of {', '.join(LOGGERS)}"),
            ("--precision", self.precision, self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ]
        for flag, value, ok, expected in rules:
            if not ok:
                raise InputError(f"{flag} must be {expected}, got {value}")


@dataclass
class DataConfig:
    """Where the on-disk files are (FORMATS.md). Paths may be relative to `root`."""

    root: str = "."
    features: str = ""
    train_abnormal: str = ""
    train_normal: str = ""
    test_list: str = ""
    temporal: str = ""
    labels: str = ""

    def resolved(self) -> "DataConfig":
        """Every entry as the absolute path `resolve` finds (what a run records)."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "root"]
        paths = {n: str(self.resolve(n).resolve()) if getattr(self, n) else "" for n in names}
        return DataConfig(root=str(Path(self.root).resolve()), **paths)

    def resolve(self, name: str) -> Path:
        """The path of one entry; relative entries are looked up under `root` and its usual
        sub-folders (the three datasets' releases put the lists in slightly different places)."""
        value = getattr(self, name)
        p = Path(value)
        if p.is_absolute():
            return p
        root = Path(self.root)
        candidates = [root / p, root / p.name, root / "Annotations" / p.name]
        if name == "features":
            candidates += [root / "features", root / "Image-Features", root / "Image_Features"]
        for c in candidates:
            if c.exists():
                return c
        return candidates[0]


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            model=model_config_from_dict(d.get("model", {})),
            loss=LossConfig(**d.get("loss", {})),
            train=_train_from_dict(d.get("train", {})),
            data=DataConfig(**d.get("data", {})),
            preset=d.get("preset", ""),
        )


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in d.items() if k in known})


def _train_from_dict(d: dict[str, Any]) -> TrainConfig:
    d = dict(d)
    if "betas" in d:
        d["betas"] = tuple(d["betas"])
    return TrainConfig(**d)
