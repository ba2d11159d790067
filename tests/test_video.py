"""Feature extraction from video: decoding, CLIP preprocessing, the encoder, the extraction job
and score overlays. Videos are synthesised with PyAV; the CLIP image tower is a small random
model of the real architecture saved to a local folder (no network)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the hub

import argparse
import hashlib
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import anomalyclip
from anomalyclip.data.formats import read_labels, read_video_list
from anomalyclip.errors import InputError
from anomalyclip.video import decode, preprocess
from anomalyclip.video.encoder import ClipImageEncoder, load_clip_vision, save_random_clip_vision
from anomalyclip.cli import main
from anomalyclip.video.overlay import write_overlay
from anomalyclip.video.runner import run_extract
from media import decode_all, make_video

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UCF_LABELS = Path(anomalyclip.__file__).parent / "assets" / "ucf_labels.csv"


# ---------------------------------------------------------------------- helpers (independent of the package)
def clip_processor(backend: str = "pil"):
    """transformers' CLIP image processor with its default CLIP settings, built directly.

    Without torchvision `CLIPImageProcessor` *is* the PIL backend (`CLIPImageProcessorPil`); with
    torchvision installed it is a tensor backend, so the PIL one is named explicitly when it exists."""
    import transformers

    cls = transformers.CLIPImageProcessor
    if backend == "pil":
        cls = getattr(transformers, "CLIPImageProcessorPil", None) or cls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(
            size={"shortest_edge": 224},
            crop_size={"height": 224, "width": 224},
            do_resize=True,
            do_center_crop=True,
            do_rescale=True,
            do_normalize=True,
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
            resample=Image.Resampling.BICUBIC,
        )


def reference_features(frames: np.ndarray, clip_dir: Path) -> np.ndarray:
    """CLIPImageProcessor + vision transformer + visual projection, called directly."""
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(str(clip_dir), local_files_only=True).eval()
    proc = clip_processor()
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), 64):
            px = proc(images=list(frames[i : i + 64]), return_tensors="pt")["pixel_values"]
            pooled = model.vision_model(pixel_values=px).pooler_output
            out.append(model.visual_projection(pooled).numpy())
    return np.concatenate(out)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos") / "UCF"
    make_video(root / "Abuse" / "Abuse001_x264.mp4", 200, 320, 240, seed=1)
    make_video(root / "Normal_Videos_event" / "Normal_Videos_003_x264.mp4", 120, 180, 320, seed=2)
    make_video(root / "Arrest" / "Arrest002_x264.mp4", 12, 180, 320, seed=3)  # shorter than 16 frames
    (root / "Arrest" / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def extracted(dataset, clip_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    rc = run_extract([dataset], out, clip=clip_dir, batch_size=32, device="cpu", labels=UCF_LABELS)
    return rc, out


# ---------------------------------------------------------------------- preprocessing
def test_preprocess_equals_clip_image_processor(dataset):
    rng = np.random.default_rng(0)
    frames = [decode_all(dataset / "Abuse" / "Abuse001_x264.mp4")[0][::50],  # 320x240
              decode_all(dataset / "Arrest" / "Arrest002_x264.mp4")[0][:3]]  # 180x320
    frames = [f for group in frames for f in group]
    for h, w in [(1080, 1920), (100, 150), (225, 301), (224, 224)]:  # down, up, odd, exact
        frames.append(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    ref = clip_processor()(images=frames, return_tensors="pt")["pixel_values"]

    ours = preprocess.preprocess(frames)
    assert ours.shape == ref.shape == (len(frames), 3, 224, 224) and ours.dtype == torch.float32
    # PIL path: the processor's own resize, so only float rounding may differ
    assert (ours - ref).abs().max().item() <= 1e-6

    # torch path (uint8 antialiased bicubic): within 3 grey levels of the processor
    fast = preprocess.preprocess(frames, preprocess.PreprocessSettings(method="torch"))
    bound = 3 / 255 / min(CLIP_STD)
    assert (fast - ref).abs().max().item() <= bound
    assert (fast - ref).abs().mean().item() < 1e-3
    # whatever backend `CLIPImageProcessor` has here (torchvision's when installed) agrees as closely
    default = clip_processor(backend="default")(images=frames, return_tensors="pt")["pixel_values"]
    assert (ours - default).abs().max().item() <= bound


def test_preprocess_accepts_batches_and_mixed_sizes():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(2, 240, 320, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(320, 180, 3), dtype=np.uint8)
    ref = clip_processor()(images=[a[0], a[1], b], return_tensors="pt")["pixel_values"]
    mixed = preprocess.preprocess([a[0], a[1], b])
    stacked = preprocess.preprocess(torch.from_numpy(a))
    assert torch.allclose(mixed, ref, atol=1e-6, rtol=0)
    assert torch.allclose(stacked, ref[:2], atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="uint8"):
        preprocess.preprocess(a.astype(np.float32))


# ---------------------------------------------------------------------- decoding
def test_decode_native_and_target_fps(dataset):
    path = dataset / "Abuse" / "Abuse001_x264.mp4"
    ref, native = decode_all(path)
    with decode.open_video(path) as r:
        batches = list(r.batches(64))
        assert r.info.fps == r.info.native_fps == native == 25.0
        assert r.frames_read == len(ref)
    assert [len(b) for b in batches] == [64, 64, 64, len(ref) - 192]
    assert np.array_equal(np.concatenate(batches), ref)

    # 25 fps -> 10 fps: the first frame at or after each instant k/10 s, i.e. frame ceil(2.5 k)
    sampled, info = decode.read_frames(path, fps=10)
    expect = [math.ceil(k * native / 10 - 1e-9) for k in range(len(ref)) if math.ceil(k * native / 10 - 1e-9) < len(ref)]
    assert info.fps == 10 and info.native_fps == native
    assert len(sampled) == len(expect)
    assert np.array_equal(sampled, ref[expect])
    # above the native rate every frame comes once
    assert len(decode.read_frames(path, fps=60)[0]) == len(ref)


def test_decode_bad_inputs_raise_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, words in [(bad, "unreadable or corrupt"), (empty, "empty"), (tmp_path / "nope.mp4", "not found")]:
        with pytest.raises(InputError) as e:
            decode.read_frames(path)
        assert str(path) in str(e.value) and words in str(e.value)
    # a frame folder with no readable numbering
    odd = tmp_path / "frames"
    odd.mkdir()
    Image.new("RGB", (8, 8)).save(odd / "000000.jpg")
    Image.new("RGB", (8, 8)).save(odd / "cover.jpg")
    with pytest.raises(InputError, match="cover.jpg"):
        decode.read_frames(odd)


# ---------------------------------------------------------------------- extraction
def test_extracted_features_equal_direct_model(extracted, dataset, clip_dir):
    rc, out = extracted
    assert rc == 0
    for rel in ["Abuse/Abuse001_x264", "Normal_Videos_event/Normal_Videos_003_x264", "Arrest/Arrest002_x264"]:
        frames, native = decode_all(dataset / (rel + ".mp4"))
        feats = np.load(out / (rel + ".npy"))
        assert feats.dtype == np.float32 and feats.shape == (len(frames), 512)
        ref = reference_features(frames, clip_dir)
        assert np.allclose(feats, ref, atol=1e-5, rtol=0)
        # the features do depend on the frame: a shifted comparison fails
        assert not np.allclose(feats[1:], ref[:-1], atol=1e-3)

        side = json.loads((out / (rel + ".json")).read_text())
        assert side["video"] == rel + ".mp4"
        assert side["num_frames"] == len(frames)
        assert side["feature_shape"] == [len(frames), 512]
        assert side["fps"] == side["native_fps"] == native and side["target_fps"] is None
        assert side["clip_model"] == str(clip_dir)
        assert side["clip_weights_sha256"] == hashlib.sha256((clip_dir / "model.safetensors").read_bytes()).hexdigest()
        assert side["preprocessing"]["image_mean"] == list(CLIP_MEAN)
        assert side["preprocessing"]["image_std"] == list(CLIP_STD)
        assert side["preprocessing"]["crop_size"] == side["preprocessing"]["resize_shortest_edge"] == 224
        assert side["anomalyclip_version"] == anomalyclip.__version__
    # nothing else: no temporary files, notes.txt ignored
    assert files_under(out) == {
        "Abuse/Abuse001_x264.npy", "Abuse/Abuse001_x264.json",
        "Normal_Videos_event/Normal_Videos_003_x264.npy", "Normal_Videos_event/Normal_Videos_003_x264.json",
        "Arrest/Arrest002_x264.npy", "Arrest/Arrest002_x264.json",
        "Anomaly_Train_Normal.txt", "Anomaly_Train_Abnormal.txt",
    }


def test_labels_lists(extracted, dataset):
    _, out = extracted
    classes = read_labels(UCF_LABELS)
    expect_abnormal, expect_normal = set(), set()
    for rel, cls in [("Abuse/Abuse001_x264", "Abuse"), ("Arrest/Arrest002_x264", "Arrest"),
                     ("Normal_Videos_event/Normal_Videos_003_x264", "Normal")]:
        n = len(decode_all(dataset / (rel + ".mp4"))[0])
        row = (rel, 0, n - 1, classes.names.index(cls))
        (expect_normal if cls == "Normal" else expect_abnormal).add(row)
    got = {}
    for name in ["Anomaly_Train_Normal.txt", "Anomaly_Train_Abnormal.txt"]:
        got[name] = {(e.path, e.start_frame, e.end_frame, e.label) for e in read_video_list(out / name, classes)}
    assert got["Anomaly_Train_Normal.txt"] == expect_normal
    assert got["Anomaly_Train_Abnormal.txt"] == expect_abnormal
    assert all(label == classes.normal_id for *_, label in expect_normal)


def test_unknown_class_folder_is_an_input_error(tmp_path, clip_dir):
    make_video(tmp_path / "in" / "Zebra" / "z1.mp4", 5, 64, 48)
    with pytest.raises(InputError) as e:
        run_extract([tmp_path / "in"], tmp_path / "out", clip=clip_dir, device="cpu", labels=UCF_LABELS)
    assert "Zebra" in str(e.value) and "Abuse" in str(e.value) and "Vandalism" in str(e.value)
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == set()


def test_frame_folder_input(tmp_path, dataset, clip_dir):
    frames, _ = decode_all(dataset / "Arrest" / "Arrest002_x264.mp4")
    folder = tmp_path / "Arrest" / "Arrest002_x264"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.jpg", quality=90)
    # the folder is given explicitly, so it is written at the top of OUT under its name
    rc = run_extract([folder], tmp_path / "out", clip=clip_dir, batch_size=5, device="cpu")
    assert rc == 0
    feats = np.load(tmp_path / "out" / "Arrest002_x264.npy")
    jpgs = np.stack([np.asarray(Image.open(folder / f"{i:06d}.jpg").convert("RGB")) for i in range(len(frames))])
    assert feats.shape == (len(frames), 512)
    assert np.allclose(feats, reference_features(jpgs, clip_dir), atol=1e-5, rtol=0)
    side = json.loads((tmp_path / "out" / "Arrest002_x264.json").read_text())
    assert side["kind"] == "frames" and side["fps"] is None and side["num_frames"] == len(frames)

    # a scanned tree finds frame folders too, mirroring their relative path
    rc = run_extract([tmp_path / "Arrest"], tmp_path / "out2", clip=clip_dir, device="cpu")
    assert rc == 0 and np.allclose(np.load(tmp_path / "out2" / "Arrest002_x264.npy"), feats, atol=1e-5, rtol=0)


def test_crash_mid_run_leaves_no_partial_files_and_resumes(tmp_path, clip_dir, monkeypatch):
    src = tmp_path / "in"
    make_video(src / "Abuse" / "a.mp4", 20, 96, 64, seed=1)  # 2 batches of 16
    make_video(src / "Abuse" / "b.mp4", 40, 96, 64, seed=2)  # 3 batches
    make_video(src / "Abuse" / "c.mp4", 20, 96, 64, seed=3)  # 2 batches
    out = tmp_path / "out"
    calls = {"n": 0, "crash_at": 4}  # the 2nd batch of b.mp4
    original = ClipImageEncoder.embed

    def embed(self, crops):
        calls["n"] += 1
        if calls["n"] == calls["crash_at"]:
            raise RuntimeError("simulated crash")
        return original(self, crops)

    monkeypatch.setattr(ClipImageEncoder, "embed", embed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_extract([src], out, clip=clip_dir, batch_size=16, device="cpu")
    assert files_under(out) == {"Abuse/a.npy", "Abuse/a.json"}  # no partial b, no temporary files
    first = (out / "Abuse" / "a.npy").stat().st_mtime_ns

    calls.update(n=0, crash_at=-1)
    assert run_extract([src], out, clip=clip_dir, batch_size=16, device="cpu") == 0
    assert calls["n"] == 3 + 2  # only b and c were encoded
    assert (out / "Abuse" / "a.npy").stat().st_mtime_ns == first
    assert files_under(out) == {f"Abuse/{v}.{e}" for v in "abc" for e in ("npy", "json")}
    for v, n in [("a", 20), ("b", 40), ("c", 20)]:
        assert np.load(out / "Abuse" / f"{v}.npy").shape == (n, 512)

    # a third run encodes nothing
    calls["n"] = 0
    assert run_extract([src], out, clip=clip_dir, batch_size=16, device="cpu") == 0
    assert calls["n"] == 0


def test_bad_videos_are_reported_and_the_rest_completes(tmp_path, clip_dir, capsys):
    src = tmp_path / "in"
    make_video(src / "good.mp4", 10, 64, 48)
    (src / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (src / "empty.avi").write_bytes(b"")
    out = tmp_path / "out"
    rc = run_extract([src], out, clip=clip_dir, device="cpu")
    assert rc != 0
    assert files_under(out) == {"good.npy", "good.json"}
    assert np.load(out / "good.npy").shape == (10, 512)
    err = capsys.readouterr().err
    error_lines = [line.strip() for line in err.splitlines() if "error:" in line]
    for name in ["random.mp4", "empty.avi"]:
        assert sum(name in line for line in error_lines) == 1, err
        assert any(line.strip().startswith(str(src / name)) for line in err.splitlines()), err  # final summary
    assert "Traceback" not in err


def test_settings_change_is_not_silently_mixed(tmp_path, clip_dir, capsys):
    src = tmp_path / "in"
    make_video(src / "v.mp4", 6, 64, 48)
    out = tmp_path / "out"
    assert run_extract([src], out, clip=clip_dir, device="cpu") == 0
    other = save_random_clip_vision(tmp_path / "other-clip", seed=7)
    assert run_extract([src], out, clip=other, device="cpu") == 1
    assert "different CLIP model" in capsys.readouterr().err


def test_cli_arguments(tmp_path, clip_dir, monkeypatch):
    from anomalyclip.cli import extract

    parser = argparse.ArgumentParser()
    extract.add_arguments(parser)
    args = parser.parse_args(["--videos", "a", "b", "--out", "o", "--fps", "10", "--device", "cpu",
                              "--batch-size", "8", "--devices", "2", "--labels", "l.csv", "--clip", "some/dir"])
    assert args.videos == ["a", "b"] and args.out == "o" and args.fps == 10.0 and args.device == "cpu"
    assert args.batch_size == 8 and args.devices == 2 and args.labels == "l.csv" and args.clip == "some/dir"
    defaults = parser.parse_args(["--videos", "a", "--out", "o", "--fps", "native"])
    assert defaults.fps is None and defaults.clip == "openai/clip-vit-base-patch16" and defaults.devices == 1
    for bad in (["--fps", "0"], ["--batch-size", "0"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--videos", "a", "--out", "o", *bad])

    make_video(tmp_path / "in" / "v.mp4", 4, 64, 48)
    assert main(["extract", "--videos", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--clip", str(clip_dir), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "out" / "v.npy").shape == (4, 512)
    with pytest.raises(InputError, match="not found"):
        load_clip_vision(str(tmp_path / "missing" / "clip"))


def test_encoder_loading(tmp_path):
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                  patch_size=16, image_size=224, projection_dim=512)
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1, vocab_size=100,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)).eval()
    full.save_pretrained(tmp_path / "full")
    # a whole CLIPModel checkpoint: the image tower and its projection are used, the text tower ignored
    enc = ClipImageEncoder(tmp_path / "full", device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 240, 320, 3), dtype=np.uint8)
    px = clip_processor()(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = full.visual_projection(full.vision_model(pixel_values=px).pooler_output).numpy()
    assert np.allclose(enc.encode(frames), ref, atol=1e-5, rtol=0)
    # an image tower without its projection must not get a random one silently
    CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(tmp_path / "noproj")
    with pytest.raises(InputError, match="lacks weights"):  # names visual_projection (or every key, by version)
        ClipImageEncoder(tmp_path / "noproj", device="cpu")
    with pytest.raises(InputError, match="no config.json"):
        ClipImageEncoder(tmp_path, device="cpu")


def test_two_processes_with_devices(tmp_path, clip_dir):
    """--devices 2 on CPU: two processes, ranks as under torchrun, split the videos; the result
    equals one process's."""
    src = tmp_path / "in"
    make_video(src / "Abuse" / "a.mp4", 9, 96, 64, seed=1)
    make_video(src / "Normal" / "n.mp4", 7, 64, 96, seed=2)
    make_video(src / "Arson" / "r.mp4", 5, 96, 64, seed=3)
    single = tmp_path / "single"
    assert run_extract([src], single, clip=clip_dir, device="cpu", labels=UCF_LABELS) == 0
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from anomalyclip.video.runner import run_extract
        if __name__ == "__main__":
            sys.exit(run_extract([{str(src)!r}], {str(tmp_path / 'out')!r}, clip={str(clip_dir)!r},
                                 device="cpu", devices=2, labels={str(UCF_LABELS)!r}))
    """))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "extract[0]" in res.stderr and "extract[1]" in res.stderr  # both ranks worked
    out = tmp_path / "out"
    assert files_under(out) == files_under(single)
    for p in single.rglob("*.npy"):
        assert np.allclose(np.load(out / p.relative_to(single)), np.load(p), atol=1e-5, rtol=0)
    for name in ["Anomaly_Train_Normal.txt", "Anomaly_Train_Abnormal.txt"]:
        assert (out / name).read_text() == (single / name).read_text()


# ---------------------------------------------------------------------- overlay
def _border_is(pixel: np.ndarray, colour: str) -> bool:
    r, g, b = (int(v) for v in pixel)
    return (r > 150 and b < 110) if colour == "red" else (b > 150 and r < 110)


def test_overlay(tmp_path, dataset):
    src = dataset / "Arrest" / "Arrest002_x264.mp4"
    frames, native = decode_all(src)
    t = len(frames)
    names = read_labels(UCF_LABELS).names
    normal_id = names.index("Normal")
    scores = np.where(np.arange(t) % 3 == 0, 0.9, 0.1)
    probs = np.random.default_rng(0).dirichlet(np.ones(len(names)), size=t)
    out = write_overlay(frames, tmp_path / "ov.mp4", scores, probs, names, normal_id, threshold=0.5, fps=native)
    assert files_under(tmp_path) == {"ov.mp4"}
    got, fps = decode_all(out)
    assert len(got) == t and fps == native
    assert got.shape[1] % 2 == 0 and got.shape[2] % 2 == 0
    for i in range(t):
        colour = "red" if scores[i] >= 0.5 else "blue"
        h, w = got.shape[1:3]
        for y, x in [(1, w // 2), (h // 2, 1), (h - 2, w // 2), (h // 2, w - 2)]:
            assert _border_is(got[i, y, x], colour), (i, y, x, got[i, y, x])
        # the picture inside the border is the input's (away from the text box)
        assert np.abs(got[i, h - 40 : h - 20, 40:-40].astype(int) - frames[i, h - 40 : h - 20, 40:-40]).mean() < 12

    # odd-sized frames (161x121) -> even output size, same frame count
    odd = [np.full((121, 161, 3), 40 * i, np.uint8) for i in range(5)]
    out2 = write_overlay(odd, tmp_path / "odd.mp4", np.full(5, 0.2), np.full((5, len(names)), 1 / len(names)),
                         names, normal_id, threshold=0.5, fps=10)
    got2, fps2 = decode_all(out2)
    assert got2.shape == (5, 122, 162, 3) and fps2 == 10
    assert _border_is(got2[0, 60, 1], "blue")

    with pytest.raises(InputError, match="frames"):
        write_overlay(frames, tmp_path / "bad.mp4", scores[:-1], probs[:-1], names, normal_id, 0.5)
    assert not (tmp_path / "bad.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_extract_at_a_target_fps_end_to_end(tmp_path, dataset, clip_dir):
    """`extract --fps 10` on a 25 fps video: the first frame at or after each k/10 s is encoded
    (frame ceil(2.5 k)), and the features equal the model run on exactly those frames."""
    src = dataset / "Abuse" / "Abuse001_x264.mp4"
    out = tmp_path / "out"
    assert main(["extract", "--videos", str(src), "--out", str(out), "--clip", str(clip_dir), "--device", "cpu", "--fps", "10"]) == 0
    frames, native = decode_all(src)
    keep = sorted({math.ceil(k * native / 10 - 1e-9) for k in range(len(frames))} & set(range(len(frames))))
    feats = np.load(out / "Abuse001_x264.npy")
    assert feats.shape == (len(keep), 512) and len(keep) < len(frames)
    np.testing.assert_allclose(feats, reference_features(frames[keep], clip_dir), atol=1e-5, rtol=0)
    side = json.loads((out / "Abuse001_x264.json").read_text())
    assert side["target_fps"] == 10 and side["fps"] == 10 and side["native_fps"] == native
    assert side["num_frames"] == len(keep)
