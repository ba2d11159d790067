"""Faults made for real, through the command line: a full disk (a small tmpfs), a read-only
folder, an `--out` that is a file, a kill while a checkpoint is written, a zip bomb, NaN weights,
a tampered export. Each ends in one `error:` line naming the culprit and a non-zero exit, and
what an earlier run wrote stays byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from anomalyclip.checkpoint.export import save_export
from anomalyclip.checkpoint.loaded import LoadedModel
from anomalyclip.cli import main
from anomalyclip.config import ModelConfig
from anomalyclip.model.anomalyclip import AnomalyCLIP

CLASSES = ["Explosion", "Fighting", "Normal", "Shooting"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) by its sha256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of a given size at tmp_path/disk (root only); `fill(left)` leaves `left` bytes free."""
    mounted = []

    def make(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(disk)
        return disk

    yield make
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, left: int) -> None:
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - left))


def remount_read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=CLASSES, normal_id=2, emb_size=32, random_clip_layers=1))
    return save_export(LoadedModel(model.eval(), 0.5, "anomalyclip"), tmp_path_factory.mktemp("export") / "model")


def eval_args(data: Path, ckpt: Path, out: Path) -> list[str]:
    return ["eval", "--checkpoint", str(ckpt), "--preset", "synthetic", "--data-root", str(data), "--out", str(out)]


# ---------------------------------------------------------------------- writing files
def test_a_full_disk_leaves_the_earlier_evaluation_whole(tiny_dataset, exported, small_disk, capsys):
    disk = small_disk("8m")
    out = disk / "eval"
    assert main(eval_args(tiny_dataset, exported, out)) == 0
    before = snapshot(out)
    assert {"metrics.json", "predictions.csv", "roc.png"} <= set(before)
    fill(disk, 64 * 1024)  # room for metrics.json, not for predictions.csv
    assert main(eval_args(tiny_dataset, exported, out)) == 2
    line = one_error(capsys)
    assert f"{out / 'predictions.csv'}: cannot write: no space left on the device" in line and ".staging" not in line
    assert snapshot(out) == before  # neither a new metrics.json nor a staging folder


def test_a_full_disk_while_training_keeps_the_last_checkpoint(tiny_dataset, small_disk, capsys):
    disk = small_disk("96m")  # a checkpoint of the demo's model is about 21 MB
    run = disk / "run"
    args = ["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(run), "--num-workers", "0"]
    assert main(args + ["--epochs", "1", "--eval-every", "0"]) == 0
    last = run / "checkpoints" / "last.ckpt"
    kept = last.read_bytes()
    fill(disk, 32 * 1024)
    assert main(args + ["--epochs", "2", "--eval-every", "0", "--resume"]) == 2
    line = one_error(capsys)
    assert "no space left on the device" in line and str(run) in line
    assert last.read_bytes() == kept and torch.load(last, weights_only=True)["anomalyclip"]["epoch"] == 1
    assert not [p for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt"]  # no temporary file left


@pytest.mark.parametrize("verb", ["eval", "predict", "export", "demo", "train", "extract"])
def test_a_read_only_folder_is_one_line_from_every_verb(verb, tiny_dataset, exported, small_disk, tmp_path, capsys):
    disk = small_disk("1m")
    remount_read_only(disk)
    out = disk / "out"
    argv = {
        "eval": eval_args(tiny_dataset, exported, out),
        "predict": ["predict", "--checkpoint", str(exported), "--features", str(tiny_dataset / "features"), "--out", str(out)],
        "export": ["export", str(exported), "--out", str(out)],
        "demo": ["demo", "--out", str(out), "--epochs", "1"],
        "train": ["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out), "--epochs", "1"],
        "extract": ["extract", "--videos", str(make_clip(tmp_path)), "--out", str(out), "--clip", str(tiny_clip(tmp_path))],
    }[verb]
    assert main(argv) == 2
    line = one_error(capsys)
    assert "read-only" in line and str(disk) in line


@pytest.mark.parametrize("verb", ["eval", "predict", "export", "train", "extract"])
def test_an_out_that_is_a_file_is_one_line(verb, tiny_dataset, exported, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    argv = {
        "eval": eval_args(tiny_dataset, exported, out),
        "predict": ["predict", "--checkpoint", str(exported), "--features", str(tiny_dataset / "features"), "--out", str(out)],
        "export": ["export", str(exported), "--out", str(out)],
        "train": ["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(out), "--epochs", "1"],
        "extract": ["extract", "--videos", str(make_clip(tmp_path)), "--out", str(out), "--clip", str(tiny_clip(tmp_path))],
    }[verb]
    assert main(argv) == 2
    line = one_error(capsys)
    assert str(out) in line
    assert out.read_text() == "not a folder"


def make_clip(tmp_path: Path) -> Path:
    from media import make_video

    return make_video(tmp_path / "videos" / "cam.mp4", 6, 64, 48)


def tiny_clip(tmp_path: Path) -> Path:
    from anomalyclip.video.encoder import save_random_clip_vision

    return save_random_clip_vision(tmp_path / "clip", seed=0)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tiny_dataset, tmp_path):
    """The second checkpoint write stops halfway (SIGKILL): last.ckpt is the first one, whole;
    `--resume` then cleans the temporary file and completes the run."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        from anomalyclip.training import checkpoint_io
        saves = []
        real = torch.save
        def save(obj, f, *a, **k):
            saves.append(f)
            if len(saves) == 2:  # part of the second checkpoint, then die
                f.write(b"PK" + b"x" * 4096)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, f, *a, **k)
        checkpoint_io.torch.save = save
        from anomalyclip.cli import main
        sys.exit(main({json.dumps(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(run),
                                   "--epochs", "3", "--eval-every", "0", "--num-workers", "0"])}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["anomalyclip"]["epoch"] == 1  # the first save, whole
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # the torn temporary file
    assert main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--out", str(run),
                 "--epochs", "3", "--eval-every", "0", "--num-workers", "0", "--resume"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(last, weights_only=True)["anomalyclip"]["epoch"] == 3


def test_outputs_keep_the_usual_file_mode(tiny_dataset, exported, tmp_path):
    umask = os.umask(0o022)
    try:
        export = tmp_path / "export"
        assert main(["export", str(exported), "--out", str(export)]) == 0
        assert main(eval_args(tiny_dataset, export, tmp_path / "eval")) == 0
    finally:
        os.umask(umask)
    for p in list(export.iterdir()) + list((tmp_path / "eval").iterdir()):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


# ---------------------------------------------------------------------- reading checkpoints and exports
def test_hostile_and_broken_checkpoints_are_one_line(tiny_dataset, exported, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(eval_args(tiny_dataset, exported, out)) == 0
    before = snapshot(out)
    native = tmp_path / "ours.ckpt"
    model_sd = {f"model.{k}": v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(exported / "model.safetensors")).items()}
    meta = json.loads((exported / "config.json").read_text())
    torch.save({"state_dict": model_sd, "anomalyclip": meta}, native)

    # a zip bomb: the archive re-zipped with a deflated record that inflates to 200 MB of zeros
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(native) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        with dst.open(src.infolist()[0].filename.split("/")[0] + "/padding", "w") as f:
            for _ in range(200):
                f.write(bytes(1 << 20))
    assert bomb.stat().st_size < 2 * native.stat().st_size + (1 << 20)
    assert main(eval_args(tiny_dataset, bomb, out)) == 2
    line = one_error(capsys)
    assert str(bomb) in line and "zip bomb" in line

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(5000))
    assert main(eval_args(tiny_dataset, garbage, out)) == 2
    line = one_error(capsys)
    assert str(garbage) in line and "not a readable checkpoint" in line and "--trust-checkpoint" not in line

    nan = tmp_path / "nan.ckpt"
    poisoned = dict(model_sd)
    key = next(k for k in poisoned if k.startswith("model.temporal.") and poisoned[k].is_floating_point())
    poisoned[key] = poisoned[key].clone().fill_(float("nan"))
    torch.save({"state_dict": poisoned, "anomalyclip": meta}, nan)
    assert main(eval_args(tiny_dataset, nan, out)) == 2
    line = one_error(capsys)
    assert str(nan) in line and key[len("model."):] in line and "NaN" in line
    assert snapshot(out) == before


@pytest.mark.parametrize("tamper, expected", [
    (lambda m: m.update(format_version=99), "format_version 99"),
    (lambda m: m.update(treshold=0.3), 'unknown key "treshold"'),
    (lambda m: m.update(normal_id=1), "normal_id 1 names class"),
    (lambda m: m.update(class_names=m["class_names"] + ["Riot"]), "class"),
])
def test_a_tampered_export_is_refused_in_one_line(tiny_dataset, exported, tmp_path, capsys, tamper, expected):
    folder = tmp_path / "tampered"
    shutil.copytree(exported, folder)
    meta = json.loads((folder / "config.json").read_text())
    tamper(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "eval"
    assert main(eval_args(tiny_dataset, folder, out)) == 2
    line = one_error(capsys)
    assert str(folder / "config.json") in line and expected in line
    assert not out.exists()


def test_a_clip_of_another_width_is_one_line_in_train(tiny_dataset, tmp_path, capsys):
    from transformers import CLIPTextModelWithProjection

    from anomalyclip.model.clip_text import random_text_config

    CLIPTextModelWithProjection(random_text_config(64, 1, 256)).save_pretrained(tmp_path / "clip256")
    out = tmp_path / "run"
    assert main(["train", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--clip", str(tmp_path / "clip256"),
                 "--out", str(out), "--epochs", "1"]) == 2
    line = one_error(capsys)
    assert "256-d features but the video features are 512-d" in line and str(tmp_path / "clip256") in line
    assert not out.exists()
