"""`train --logger`: the numbers of logs/version_N/metrics.csv reach TensorBoard and MLflow too,
read back with each tool's own reader; the choice is in config.json; a missing package is one line."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

from anomalyclip.cli import main
from anomalyclip.training.loggers import build_loggers


def train_args(data, out, *extra):
    return ["train", "--preset", "synthetic", "--data-root", str(data), "--out", str(out), "--num-workers", "0",
            "--epochs", "2", *extra]


def csv_series(version: Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] as the CSV logger wrote them."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(version / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    return series


def assert_same_series(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key
        for (_, a), (_, b) in zip(got[key], want[key]):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (key, a, b)


def test_tensorboard_gets_what_the_csv_gets(tiny_dataset, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(train_args(tiny_dataset, out, "--logger", "tensorboard")) == 0
    assert f"tensorboard --logdir {out / 'logs'}" in capsys.readouterr().out
    version = out / "logs" / "version_0"
    assert len(list(version.glob("events.out.tfevents.*"))) == 1  # beside metrics.csv, one version
    want = csv_series(version)
    for key in ("train/loss", "train/dir_abn", "train/smooth", "lr-AdamW", "test/auc", "test/map"):
        assert key in want, key
    assert len(want["train/loss"]) == 2 and len(want["test/auc"]) == 2  # two epochs
    events = EventAccumulator(str(version))
    events.Reload()
    got = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert_same_series(got, want)
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["train"]["logger"] == "tensorboard"

    # --config runs it again with the same tracker
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again), "--epochs", "1"]) == 0
    assert json.loads((again / "config.json").read_text())["train"]["logger"] == "tensorboard"
    assert list((again / "logs" / "version_0").glob("events.out.tfevents.*"))


def test_mlflow_gets_what_the_csv_gets(tiny_dataset, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset, out, "--logger", "mlflow")) == 0
    store = (out / "mlruns").resolve().as_uri()
    assert store in capsys.readouterr().out
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("anomalyclip")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run/version_0"
    assert run.data.tags["run_folder"] == str(out.resolve())
    want = csv_series(out / "logs" / "version_0")
    got = {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
           for key in run.data.metrics}
    assert_same_series(got, want)
    assert run.data.params["train/logger"] == "mlflow" and run.data.params["train/precision"] == "32"
    assert run.data.params["model/class_names"] == str(["Explosion", "Fighting", "Normal", "Shooting"])


def test_mlflow_follows_the_tracking_uri(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    elsewhere = (tmp_path / "server-store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what a user of a file store sets
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ucf")
    loggers, where = build_loggers("mlflow", tmp_path / "run", {"train": {"lr": 0.5}})
    assert where == f"MLflow: experiment 'ucf' at {elsewhere}"
    loggers[1].log_metrics({"train/loss": 0.25}, step=3)
    loggers[1].finalize("success")
    assert not (tmp_path / "run" / "mlruns").exists()
    client = MlflowClient(tracking_uri=elsewhere)
    (run,) = client.search_runs([client.get_experiment_by_name("ucf").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(3, 0.25)]
    assert run.data.params["train/lr"] == "0.5"


@pytest.mark.parametrize("logger, modules", [("tensorboard", ("tensorboard", "tensorboardX")), ("mlflow", ("mlflow",))])
def test_missing_tracker_is_one_line_naming_the_extra(tiny_dataset, tmp_path, capsys, monkeypatch, logger, modules):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset, out, "--logger", logger)) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--logger {logger} needs the optional package {modules[0]}" in err
    assert f"pip install 'anomalyclip[{logger}]'" in err
    assert not out.exists()  # refused before anything is written


def test_csv_is_the_default_and_alone(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset, out, "--epochs", "1")) == 0
    assert json.loads((out / "config.json").read_text())["train"]["logger"] == "csv"
    assert sorted(p.name for p in (out / "logs" / "version_0").iterdir()) == ["hparams.yaml", "metrics.csv"]
    assert not (out / "mlruns").exists()
