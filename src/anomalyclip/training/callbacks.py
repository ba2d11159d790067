"""What a training run shows and keeps each epoch: `checkpoints/last.ckpt` (always the epoch just
finished), `checkpoints/best_on_test.ckpt` with `metrics_best_on_test.json` (the epoch with the
best test AUC, kept apart and named for what it is: chosen on the test set), `eval_history.json`,
one line per epoch when the output is not a terminal, and a progress bar counting epochs from 1."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from anomalyclip.fileio import write_json

LAST = "last.ckpt"
BEST_ON_TEST = "best_on_test.ckpt"
BEST_METRICS = "metrics_best_on_test.json"


class EpochFiles(L.Callback):
    """Saved at the end of each training epoch (after its evaluation), as Lightning's own
    checkpointing does, so a resume continues with the next epoch."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.ckpt_dir = self.out / "checkpoints"

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        epoch = trainer.current_epoch + 1
        new_best = module.best is not None and module.best["epoch"] == epoch and module.last_metrics is not None
        if new_best:
            module.checkpoint_kind = "best_on_test"
            trainer.save_checkpoint(self.ckpt_dir / BEST_ON_TEST, weights_only=False)
        module.checkpoint_kind = "last"
        trainer.save_checkpoint(self.ckpt_dir / LAST, weights_only=False)
        if trainer.is_global_zero:
            if module.last_metrics is not None:
                write_json(self.out / "eval_history.json", module.history)
            if new_best:
                write_json(self.out / BEST_METRICS, {**module.best["metrics"], "checkpoint": str(self.ckpt_dir / BEST_ON_TEST)})


class EpochLines(L.Callback):
    """One line per epoch on stdout (losses, learning rate, test metrics, time) for logs and
    pipes, where a progress bar prints nothing for minutes."""

    def on_train_epoch_start(self, trainer: L.Trainer, module) -> None:
        self._start = time.perf_counter()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this epoch trains with

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if "train/loss" in m:
            parts.append(f"loss {float(m['train/loss']):.4f}")
        parts.append(f"lr {self._lr:.3g}")
        if module.last_metrics is not None:
            lm = module.last_metrics
            parts.append("test " + " ".join(
                f"{name} {'n/a' if lm[key] is None else f'{100 * lm[key]:.2f}'}"
                for name, key in (("AUC", "auc_roc"), ("AP", "auc_pr"), ("mAUC", "mean_mc_auroc"), ("mAP", "mean_mc_aupr"))
            ))
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        print("  ".join(parts), flush=True)


class EpochBar(TQDMProgressBar):
    """Lightning's bar, with epochs counted from 1 and no logger version in the metrics."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer: L.Trainer, module) -> dict:
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return metrics


def progress_callbacks(progress: bool) -> list[L.Callback]:
    """A bar on a terminal; plain lines elsewhere."""
    if not progress:
        return []
    return [EpochBar()] if sys.stderr.isatty() else [EpochLines()]
