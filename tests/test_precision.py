"""`train --precision`: the value reaches Lightning's Trainer and its autocast, config.json keeps
it, `--config` brings it back; float16 autocast on the CPU is refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from anomalyclip.cli import main
from anomalyclip.config import RunConfig, TrainConfig
from anomalyclip.errors import InputError
from anomalyclip.training.module import AnomalyCLIPModule
from anomalyclip.training.run import check_precision, make_trainer


def train_args(data, out, *extra):
    return ["train", "--preset", "synthetic", "--data-root", str(data), "--out", str(out), "--num-workers", "0",
            "--epochs", "1", *extra]


@pytest.mark.parametrize("flag, lightning", [("32", "32-true"), ("bf16-mixed", "bf16-mixed")])
def test_the_flag_reaches_the_trainer(tmp_path, flag, lightning):
    cfg = RunConfig(train=TrainConfig(precision=flag, accelerator="cpu"))
    trainer = make_trainer(cfg, tmp_path, progress=False)
    assert trainer.precision == lightning


@pytest.fixture()
def autocast_seen(monkeypatch):
    """What autocast was on during each training step, recorded from inside the step."""
    seen = []
    step = AnomalyCLIPModule.training_step

    def recording(self, batch, batch_idx):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(AnomalyCLIPModule, "training_step", recording)
    return seen


def test_bf16_mixed_trains_under_autocast_and_is_kept(tiny_dataset, tmp_path, autocast_seen):
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset, out, "--precision", "bf16-mixed")) == 0
    assert autocast_seen and set(autocast_seen) == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == "bf16-mixed"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["auc_roc"] <= 1  # the run and its evaluation completed

    autocast_seen.clear()
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert set(autocast_seen) == {torch.bfloat16}
    assert json.loads((again / "config.json").read_text())["train"]["precision"] == "bf16-mixed"

    autocast_seen.clear()
    plain = tmp_path / "plain"  # the default: float32, no autocast
    assert main(train_args(tiny_dataset, plain)) == 0
    assert autocast_seen and set(autocast_seen) == {None}
    assert json.loads((plain / "config.json").read_text())["train"]["precision"] == "32"


def test_16_mixed_on_the_cpu_is_refused(tiny_dataset, tmp_path, capsys):
    # what Lightning itself does with it: bf16 instead, which config.json would misname
    with pytest.warns(UserWarning, match="bf16-mixed"):
        lightning = make_trainer(RunConfig(train=TrainConfig(precision="16-mixed", accelerator="cpu")), tmp_path, False)
    assert lightning.precision == "bf16-mixed"
    with pytest.raises(InputError, match="16-mixed .* needs a GPU"):
        check_precision(RunConfig(train=TrainConfig(precision="16-mixed", accelerator="cpu")))
    check_precision(RunConfig(train=TrainConfig(precision="bf16-mixed", accelerator="cpu")))
    if not torch.cuda.is_available():
        out = tmp_path / "run"
        assert main(train_args(tiny_dataset, out, "--precision", "16-mixed")) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "needs a GPU" in err and "bf16-mixed" in err
        assert not out.exists()


def test_an_unknown_precision_in_a_config_is_one_line(tmp_path):
    with pytest.raises(InputError, match="--precision must be one of 32, bf16-mixed, 16-mixed, got 64"):
        TrainConfig(precision="64").check()
