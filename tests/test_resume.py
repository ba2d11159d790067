"""A run killed mid-epoch and resumed ends with the uninterrupted run's weights and metrics, bit
for bit: the checkpoint carries every random stream (frame sampling in the loader workers,
shuffling, the segment-drop masks) and a resume restores them instead of seeding again."""

import json
import os
import signal
import subprocess
import sys

import torch

from anomalyclip.cli import main
from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic

SPEC = SyntheticSpec(seed=4, abnormal_classes=("Explosion", "Fighting"), train_abnormal_per_class=3, train_normal=6,
                     test_abnormal_per_class=1, test_normal=2, min_len=60, max_len=700)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    data = write_synthetic(tmp_path / "data", SPEC)
    args = ["train", "--preset", "synthetic", "--data-root", str(data), "--epochs", "3", "--batch-size", "4", "--num-workers", "1"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0

    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "anomalyclip", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # one line per epoch when the output is not a terminal
        if line.startswith("epoch 1/3"):
            proc.send_signal(signal.SIGKILL)  # in the middle of epoch 2
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["anomalyclip"]["epoch"] < 3 and not (killed / "metrics.json").exists()

    assert main(args + ["--out", str(killed), "--resume"]) == 0
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["anomalyclip"]["epoch"] == b["anomalyclip"]["epoch"] == 3
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ma = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    mb = json.loads((killed / "metrics.json").read_text())
    for key in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "optimal_threshold"):
        assert ma[key] == mb[key], key
    history = json.loads((killed / "eval_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
