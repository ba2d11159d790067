"""Where a run's per-epoch numbers go: `logs/version_N/metrics.csv` always, and with `--logger
tensorboard` or `--logger mlflow` the same numbers to that tracker too, as Lightning loggers side
by side (every loss term, the learning rate, the test metrics: each logged value reaches each).

TensorBoard writes its event file beside the CSV, in the same `logs/version_N` (`tensorboard
--logdir RUN/logs`). MLflow logs to `MLFLOW_TRACKING_URI` when it is set, else to a file store in
the run folder, `RUN/mlruns`; MLflow 3 keeps file stores in maintenance mode and refuses them
unless `MLFLOW_ALLOW_FILE_STORE` is set, which is set for that default only. Both packages are
optional extras, checked before anything is written.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from anomalyclip.config import LOGGERS
from anomalyclip.errors import InputError

LOG_FOLDER = "logs"
MLFLOW_FOLDER = "mlruns"
MLFLOW_EXPERIMENT = "anomalyclip"  # unless MLFLOW_EXPERIMENT_NAME names another
# logger -> (modules that can serve it, the extra that installs one)
_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "mlflow": (("mlflow",), "mlflow")}


def require_logger(name: str) -> None:
    """One line naming the extra when the tracker's package is missing (or an unknown name)."""
    if name not in LOGGERS:
        raise InputError(f"--logger must be one of {', '.join(LOGGERS)}, got {name!r}")
    if name not in _PACKAGES:
        return
    modules, extra = _PACKAGES[name]
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
            return
        except ImportError as e:
            failures.append(module if e.name in (None, module) else f"{module} (importing it failed: {e})")
    raise InputError(f"--logger {name} needs the optional package {failures[0]}: pip install 'anomalyclip[{extra}]'")


def mlflow_tracking_uri(out: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else the run folder's own file store (allowed for MLflow 3)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (Path(out).resolve() / MLFLOW_FOLDER).as_uri()


def build_loggers(name: str, out: Path, config: dict[str, Any], preset: str = "") -> tuple[list, str | None]:
    """The CSV logger, then the tracker `name` (unless csv) logging into the same version; and one
    line saying where the tracker's numbers are (None for csv). `config`: the run's config.json."""
    from lightning.pytorch.loggers import CSVLogger

    require_logger(name)
    out = Path(out)
    csv = CSVLogger(out, name=LOG_FOLDER)  # logs/version_N: a resumed run never overwrites
    loggers: list = [csv]
    where = None
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out, name=LOG_FOLDER, version=csv.version, default_hp_metric=False))
        where = f"TensorBoard: tensorboard --logdir {out / LOG_FOLDER}"
    elif name == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        uri = mlflow_tracking_uri(out)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", MLFLOW_EXPERIMENT)
        loggers.append(MLFlowLogger(
            experiment_name=experiment,
            run_name=f"{out.resolve().name}/version_{csv.version}",
            tracking_uri=uri,
            tags={"run_folder": str(out.resolve()), "preset": preset or "none"},
        ))
        where = f"MLflow: experiment {experiment!r} at {uri}"
    for logger in loggers:  # each writes the same hparams.yaml, whichever comes last
        logger.log_hyperparams(config)
    return loggers, where
