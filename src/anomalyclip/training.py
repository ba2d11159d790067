"""Training with Lightning: a thin wrapper around the plain `AnomalyCLIP` module."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, DistributedSampler

from anomalyclip.checkpoint.native import META_KEY, model_meta
from anomalyclip.classes import ClassTable
from anomalyclip.config import RunConfig
from anomalyclip.data.datasets import TestVideos, TrainItems, normal_centroid
from anomalyclip.data.run_data import RunData, load_run_data
from anomalyclip.errors import InputError
from anomalyclip.evaluation import Evaluator, video_loader
from anomalyclip.fileio import write_json
from anomalyclip.losses import training_losses
from anomalyclip.model.anomalyclip import AnomalyCLIP


def lr_factor(epoch: int, warmup: int, epochs: int) -> float:
    """Linear warm-up from 0 over `warmup` epochs, then cosine to 0 at `epochs` (per epoch)."""
    if epoch < warmup:
        return epoch / warmup
    span = max(1, epochs - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup, span) / span))


class AnomalyCLIPModule(L.LightningModule):
    """Loss, optimiser, schedule and evaluation hooks around a plain `AnomalyCLIP`."""

    def __init__(self, model: AnomalyCLIP, cfg: RunConfig, classes: ClassTable, out_dir: str | Path | None = None):
        super().__init__()
        self.model, self.cfg, self.classes = model, cfg, classes
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.evaluator = Evaluator(classes)
        self.threshold: float | None = None
        self.history: list[dict] = []
        self._text: torch.Tensor | None = None

    def training_step(self, batch, batch_idx):
        (xa, ya), (xn, yn) = batch["abnormal"], batch["normal"]
        x = torch.cat([xa, xn])  # (B, n*l, D), abnormal half first
        y = torch.cat([ya, yn])
        out = self.model(x)  # text features computed once for the whole batch
        terms = training_losses(out, y, self.classes.normal_id, self.cfg.loss, self.model.cfg.num_segments)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, batch_size=x.shape[0])
        self.log("loss", terms["loss"], prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return terms["loss"]

    def configure_optimizers(self):
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, t.warmup, t.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # -- evaluation on the test list ---------------------------------------------------------
    def on_validation_epoch_start(self):
        self.evaluator.reset()
        self._text = self.model.text_features()

    def validation_step(self, batch, batch_idx):
        self.evaluator.score(self.model, batch, self._text)

    def on_validation_epoch_end(self):
        result = self.evaluator.compute()
        m = result.metrics
        self.threshold = m["optimal_threshold"]
        self.log_dict(
            {"test/auc": m["auc_roc"], "test/ap": m["auc_pr"], "test/mauc": m["mean_mc_auroc"] or 0.0, "test/map": m["mean_mc_aupr"] or 0.0},
            prog_bar=True,
        )
        self.history.append({"epoch": self.current_epoch, **{k: m[k] for k in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold")}})
        if self.out_dir is not None and self.trainer.is_global_zero:
            write_json(self.out_dir / "eval_history.json", self.history)

    # -- self-describing checkpoints ---------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        checkpoint[META_KEY] = model_meta(self.model, self.threshold)
        checkpoint[META_KEY]["run_config"] = json.loads(json.dumps(self.cfg.to_dict()))
        checkpoint[META_KEY]["history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint):
        meta = checkpoint.get(META_KEY, {})
        self.threshold = meta.get("threshold")
        self.history = list(meta.get("history", []))


class FeatureData(L.LightningDataModule):
    """Two shuffled training loaders (abnormal, normal) cycled to the longer; the test videos."""

    def __init__(self, cfg: RunConfig, data: RunData):
        super().__init__()
        self.cfg, self.data = cfg, data
        m = cfg.model
        self.abnormal = TrainItems(data.train_abnormal, data.features, m.feature_dim, m.num_segments, m.seg_length)
        self.normal = TrainItems(data.train_normal, data.features, m.feature_dim, m.num_segments, m.seg_length)
        self.test = TestVideos(data.test, data.features, data.temporal, data.classes, m.feature_dim)
        half = cfg.train.batch_size // 2
        if cfg.train.batch_size % 2 or half < 1:
            raise InputError(f"batch size must be even and at least 2, got {cfg.train.batch_size}")
        for name, ds in (("abnormal", self.abnormal), ("normal", self.normal)):
            if len(ds) < half:
                raise InputError(
                    f"the {name} training list has {len(ds)} videos, fewer than half a batch ({half}); lower --batch-size"
                )

    def _loader(self, ds: TrainItems) -> DataLoader:
        t = self.cfg.train
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = DistributedSampler(ds, shuffle=True, seed=t.seed, drop_last=True) if world > 1 else None
        return DataLoader(
            ds,
            batch_size=t.batch_size // 2,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            num_workers=t.num_workers,
            persistent_workers=t.num_workers > 0,
        )

    def train_dataloader(self):
        return {"abnormal": self._loader(self.abnormal), "normal": self._loader(self.normal)}

    def val_dataloader(self):
        return video_loader(self.test, self.cfg.train.eval_frames_per_forward, self.cfg.model.frames_per_item)


def prepare_model(cfg: RunConfig, data: RunData) -> AnomalyCLIP:
    cfg.model = dataclasses.replace(cfg.model, class_names=list(data.classes.names), normal_id=data.classes.normal_id)
    return AnomalyCLIP(cfg.model)


def train(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train into `out_dir` (config.json, checkpoints/, logs/, eval_history.json) and return a summary."""
    out = Path(out_dir)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise InputError("nothing to resume: no checkpoints/last.ckpt in the run folder", out)
    if not resume and last.is_file():
        raise InputError("the run folder already holds a run; pass --resume to continue it or choose another --out", out)
    # Lightning's start-up banners (accelerator availability, logger tips) are noise here.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = load_run_data(cfg.data)
    dm = FeatureData(cfg, data)
    model = prepare_model(cfg, data)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", json.loads(json.dumps(cfg.to_dict())))
    if not resume:
        model.centroid.copy_(normal_centroid(data.train_normal, data.features, cfg.model.feature_dim))
    module = AnomalyCLIPModule(model, cfg, data.classes, out)

    t = cfg.train
    evaluate_each = t.eval_every > 0
    ckpt_cb = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="test/auc" if evaluate_each else None,
        mode="max",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy="ddp" if t.devices > 1 else "auto",
        use_distributed_sampler=False,
        logger=CSVLogger(out, name="logs"),  # logs/version_N: a resumed run never overwrites
        callbacks=[ckpt_cb],
        check_val_every_n_epoch=t.eval_every if evaluate_each else 1,
        **({} if evaluate_each else {"limit_val_batches": 0}),
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=False,
    )
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    best = ckpt_cb.best_model_path or str(last)
    return {
        "best_checkpoint": best,
        "last_checkpoint": str(last),
        "train_seconds": time.time() - start,
        "data": data,
        "global_zero": trainer.is_global_zero,  # under DDP, other ranks stop after fit
    }
