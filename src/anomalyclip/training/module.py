"""The Lightning wrapper around the plain `AnomalyCLIP`: loss, optimiser, schedule, the test-list
evaluation of each epoch, and what a checkpoint carries besides the weights."""

from __future__ import annotations

import json
import math

import lightning as L
import torch

from anomalyclip.checkpoint.native import META_KEY, model_meta
from anomalyclip.classes import ClassTable
from anomalyclip.config import RunConfig
from anomalyclip.evaluation import Evaluator
from anomalyclip.losses import training_losses
from anomalyclip.model.anomalyclip import AnomalyCLIP
from anomalyclip.training import rng

RNG_KEY = "anomalyclip_rng"
SUMMARY_KEYS = ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold")


def lr_factor(epoch: int, warmup: int, epochs: int) -> float:
    """Linear warm-up from 0 over `warmup` epochs, then cosine to 0 at `epochs` (per epoch)."""
    if epoch < warmup:
        return epoch / warmup
    span = max(1, epochs - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup, span) / span))


class AnomalyCLIPModule(L.LightningModule):
    def __init__(self, model: AnomalyCLIP, cfg: RunConfig, classes: ClassTable):
        super().__init__()
        self.model, self.cfg, self.classes = model, cfg, classes
        self.evaluator = Evaluator(classes)
        self.threshold: float | None = None
        self.history: list[dict] = []  # per evaluated epoch: the headline numbers
        self.best: dict | None = None  # the epoch with the best test AUC: {"epoch", "metrics"}
        self.last_metrics: dict | None = None  # this epoch's evaluation, if it ran
        self.checkpoint_kind = "last"  # what the next saved checkpoint is, for its metadata
        self._text: torch.Tensor | None = None

    def training_step(self, batch, batch_idx):
        (xa, ya), (xn, yn) = batch["abnormal"], batch["normal"]
        x = torch.cat([xa, xn])  # (B, n*l, D), abnormal half first
        y = torch.cat([ya, yn])
        out = self.model(x)  # text features computed once for the whole batch
        terms = training_losses(out, y, self.classes.normal_id, self.cfg.loss, self.model.cfg.num_segments)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log("loss", terms["loss"], prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return terms["loss"]

    def configure_optimizers(self):
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, t.warmup, t.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_train_epoch_start(self):
        self.last_metrics = None

    # -- evaluation on the test list ---------------------------------------------------------
    def on_validation_epoch_start(self):
        self.evaluator.reset()
        self._text = self.model.text_features()

    def validation_step(self, batch, batch_idx):
        # float32 whatever the training precision: the numbers `eval` gets from the checkpoint
        with torch.autocast(self.device.type, enabled=False):
            self.evaluator.score(self.model, batch, self._text)

    def on_validation_epoch_end(self):
        m = self.evaluator.compute().metrics
        self.threshold = m["optimal_threshold"]
        self.log_dict(
            {"test/auc": m["auc_roc"], "test/ap": m["auc_pr"], "test/mauc": m["mean_mc_auroc"] or 0.0, "test/map": m["mean_mc_aupr"] or 0.0},
            prog_bar=True,
        )
        epoch = self.current_epoch + 1  # epochs are counted from 1 in every file and line
        self.history.append({"epoch": epoch, **{k: m[k] for k in SUMMARY_KEYS}})
        self.last_metrics = {**m, "epoch": epoch}
        if self.best is None or m["auc_roc"] > self.best["metrics"]["auc_roc"]:
            self.best = {"epoch": epoch, "metrics": {**m, "epoch": epoch, "checkpoint_kind": "best_on_test"}}

    # -- what a checkpoint carries -----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        meta = model_meta(self.model, self.threshold)
        meta["run_config"] = json.loads(json.dumps(self.cfg.to_dict()))
        meta["history"] = list(self.history)
        meta["best"] = self.best
        meta["epoch"] = self.current_epoch + 1
        meta["checkpoint_kind"] = self.checkpoint_kind
        checkpoint[META_KEY] = meta
        checkpoint[RNG_KEY] = rng.capture()

    def on_load_checkpoint(self, checkpoint):
        meta = checkpoint.get(META_KEY, {})
        self.threshold = meta.get("threshold")
        self.history = list(meta.get("history", []))
        self.best = meta.get("best")
        if RNG_KEY in checkpoint:
            rng.restore(checkpoint[RNG_KEY])
