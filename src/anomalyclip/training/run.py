"""One training run into one folder: `config.json` (every value, and the absolute paths of the
files read), `checkpoints/`, `logs/` (metrics.csv per epoch: every loss term, the learning rate,
test metrics; the same to TensorBoard or MLflow with `logger`), `eval_history.json`; resumable from
`checkpoints/last.ckpt`."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor

from anomalyclip.config import RunConfig
from anomalyclip.data.datasets import normal_centroid
from anomalyclip.data.run_data import RunData, load_run_data
from anomalyclip.errors import InputError
from anomalyclip.fileio import write_json
from anomalyclip.model.anomalyclip import AnomalyCLIP
from anomalyclip.training.callbacks import LAST, EpochBar, EpochFiles, progress_callbacks
from anomalyclip.training.checkpoint_io import DurableCheckpointIO
from anomalyclip.training.data import FeatureData
from anomalyclip.training.init_from import model_config_from, transfer
from anomalyclip.training.loggers import build_loggers, require_logger
from anomalyclip.training.module import AnomalyCLIPModule


def trainer_options(cfg: RunConfig) -> dict[str, Any]:
    """The Trainer's settings that follow from the run configuration."""
    t = cfg.train
    evaluate_each = t.eval_every > 0
    return dict(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy="ddp" if t.devices > 1 else "auto",
        use_distributed_sampler=False,
        check_val_every_n_epoch=t.eval_every if evaluate_each else 1,
        **({} if evaluate_each else {"limit_val_batches": 0}),
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_checkpointing=False,  # EpochFiles keeps the checkpoints
        log_every_n_steps=1,
        deterministic=False,
        precision=t.precision,
    )


def _runs_on_cpu(accelerator: str) -> bool:
    """Lightning's choice for "auto": a CUDA GPU, else Apple's MPS, else the CPU."""
    import torch

    if accelerator == "auto":
        mps = getattr(torch.backends, "mps", None)
        return not torch.cuda.is_available() and not (mps is not None and mps.is_available())
    return accelerator == "cpu"


def check_precision(cfg: RunConfig) -> None:
    """Lightning 2.6 turns 16-mixed on the CPU into bf16-mixed with a warning; the run's
    config.json would then name a precision it did not train with, so refuse it instead."""
    if cfg.train.precision == "16-mixed" and _runs_on_cpu(cfg.train.accelerator):
        raise InputError("--precision 16-mixed (float16 autocast with loss scaling) needs a GPU; on the CPU use "
                         "bf16-mixed or 32")


def make_trainer(cfg: RunConfig, out: Path, progress: bool = True, loggers: list | None = None) -> L.Trainer:
    """The run's Trainer: its loggers, the epoch files, the progress display, durable checkpoints."""
    shown = progress_callbacks(progress)
    return L.Trainer(
        default_root_dir=out,
        logger=loggers if loggers is not None else False,
        callbacks=[EpochFiles(out), LearningRateMonitor(logging_interval="epoch"), *shown],
        plugins=[DurableCheckpointIO()],
        enable_progress_bar=any(isinstance(c, EpochBar) for c in shown),
        **trainer_options(cfg),
    )


def build_model(cfg: RunConfig, data: RunData, init_from=None, keep_centroid: bool = False) -> tuple[AnomalyCLIP, dict | None]:
    """The network for the run's classes, fresh or from released weights (`init_from`: a
    `LoadedModel`). Updates `cfg.model` to what was built."""
    if init_from is None:
        cfg.model = dataclasses.replace(cfg.model, class_names=list(data.classes.names), normal_id=data.classes.normal_id)
        return AnomalyCLIP(cfg.model), None
    source = init_from.model
    cfg.model = model_config_from(source.cfg, cfg.model, data.classes)
    model = AnomalyCLIP(cfg.model, clip_text=source.text_encoder.clip).train()
    return model, transfer(source, model, keep_centroid)


def train(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True, init_from=None, keep_centroid: bool = False) -> dict:
    """Train into `out_dir` and return a summary (the final checkpoint, the data, the time)."""
    out = Path(out_dir)
    last = out / "checkpoints" / LAST
    if resume and not last.is_file():
        raise InputError("nothing to resume: no checkpoints/last.ckpt in the run folder", out)
    if not resume and last.is_file():
        raise InputError("the run folder already holds a run; pass --resume to continue it or choose another --out", out)
    cfg.train.check()
    require_logger(cfg.train.logger)
    check_precision(cfg)
    if resume:  # a write killed halfway leaves its hidden temporary file; the checkpoint itself is whole
        for torn in last.parent.glob(".*.tmp*"):
            torn.unlink()
    # Lightning's start-up banners (accelerator availability, logger tips) are noise here.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)  # a resume restores the streams instead
    data = load_run_data(cfg.data)
    cfg.data = cfg.data.resolved()  # recorded as the absolute paths read, in config.json and checkpoints
    dm = FeatureData(cfg, data)
    model, transferred = build_model(cfg, data, init_from, keep_centroid)
    if not resume and not (transferred and keep_centroid):
        model.centroid.copy_(normal_centroid(data.train_normal, data.features, cfg.model.feature_dim))
    out.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(json.dumps(cfg.to_dict()))
    write_json(out / "config.json", recorded)
    # the selector's statistics over the whole batch under DDP, as the authors' config
    # (`sync_batchnorm: True`) has it
    model.selector.synchronised = cfg.train.devices > 1
    module = AnomalyCLIPModule(model, cfg, data.classes)
    loggers, where = build_loggers(cfg.train.logger, out, recorded, cfg.preset)
    trainer = make_trainer(cfg, out, progress, loggers)
    if where and trainer.is_global_zero:
        print(where, flush=True)
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    best = out / "checkpoints" / "best_on_test.ckpt"
    return {
        "last_checkpoint": last,
        "best_checkpoint": best if best.is_file() else None,
        "train_seconds": time.time() - start,
        "data": data,
        "transferred": transferred,
        "global_zero": trainer.is_global_zero,  # under DDP, other ranks stop after fit
    }
