"""safe_load: every fault is made for real (files written, archives rebuilt, configs tampered)."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from anomalyclip.checkpoint import safe_load, validate
from anomalyclip.checkpoint.safe_load import load_torch_file
from anomalyclip.checkpoint.validate import check_finite, validate_export_config
from anomalyclip.errors import InputError

NAMES = ["Abuse", "Arrest", "Fighting", "Normal", "Robbery"]


class CustomHyperParameters:
    """A user class pickled into a checkpoint, as Lightning does with hyper-parameter objects."""

    def __init__(self, lr: float):
        self.lr = lr


def one_line_naming(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    return msg


def same(a, b) -> bool:
    """Deep equality with tensors compared by value, dtype and shape."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def ours_checkpoint() -> dict:
    return {
        "state_dict": {"model.prompt_learner.ctx": torch.randn(5, 8, 16), "model.centroid": torch.randn(32)},
        "anomalyclip": {"format_version": 1, "class_names": NAMES, "normal_id": 3, "threshold": None},
    }


def lightning_checkpoint(hparams=None) -> dict:
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(
            [("net.prompt_learner.ctx", torch.randn(5, 8, 16)), ("net.selector_model.bn_layer.num_batches_tracked", torch.tensor(7))]
        ),
        "optimizer_states": [
            {"state": {0: {"step": torch.tensor(120.0), "exp_avg": torch.zeros(5, 8, 16)}},
             "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0]}]}
        ],  # fmt: skip
        "lr_schedulers": [{"last_epoch": 3, "_step_count": 4}],
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 4}}}},
    }
    if hparams is not None:
        ckpt["hyper_parameters"] = hparams
    return ckpt


def save(obj, path: Path, **kw) -> Path:
    torch.save(obj, path, **kw)
    return path


def rezip(src: Path, dst: Path, compression=zipfile.ZIP_STORED, change=None) -> Path:
    """Rewrite a torch archive entry by entry, optionally changing entries' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if change is not None:
                data = change(info.filename, data)
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def entry_offset(path: Path, suffix: str) -> int:
    """Where an entry's bytes start in the file (after its local header)."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n, m = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + n + m


def forbid_torch_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("torch.load must not be reached")

    monkeypatch.setattr(safe_load.torch, "load", refuse)


# ------------------------------------------------------------------------------------------
# load_torch_file: genuine files
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [ours_checkpoint, lightning_checkpoint], ids=["ours", "lightning"])
def test_genuine_checkpoints_load_unchanged(tmp_path, make):
    ckpt = make()
    assert same(load_torch_file(save(ckpt, tmp_path / "last.ckpt")), ckpt)


def test_deflated_and_legacy_checkpoints_load_unchanged(tmp_path):
    """Torch reads re-zipped (deflated) archives and its pre-zip format; the size checks admit both."""
    ckpt = lightning_checkpoint()
    stored = save(ckpt, tmp_path / "stored.ckpt")
    assert same(load_torch_file(rezip(stored, tmp_path / "deflated.ckpt", zipfile.ZIP_DEFLATED)), ckpt)
    legacy = save(ckpt, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert same(load_torch_file(legacy), ckpt)
    centroid = torch.randn(512)
    assert torch.equal(load_torch_file(save(centroid, tmp_path / "ncentroid.pt")), centroid)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found") as err:
        load_torch_file(tmp_path / "nope.ckpt")
    one_line_naming(err, tmp_path / "nope.ckpt")


# ------------------------------------------------------------------------------------------
# load_torch_file: zip bombs and forged sizes, refused before torch reads anything
# ------------------------------------------------------------------------------------------
def write_bomb(src: Path, dst: Path, zeros: int) -> Path:
    """A real checkpoint re-zipped deflated, its tensor record replaced by `zeros` zero bytes
    streamed in 1 MiB chunks (it compresses about 200:1 at level 1)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                with zout.open(info.filename, "w", force_zip64=True) as out:
                    for _ in range(zeros // len(chunk)):
                        out.write(chunk)
            else:
                zout.writestr(info.filename, zin.read(info))
    return dst


@pytest.mark.parametrize("trust", [False, True])
def test_zip_bomb_refused_before_inflating(tmp_path, monkeypatch, trust):
    real = save({"state_dict": {"w": torch.randn(1000)}}, tmp_path / "real.ckpt")
    zeros = safe_load.INFLATION_MARGIN + 32 * 2**20
    bomb = write_bomb(real, tmp_path / "bomb.ckpt", zeros)
    size = os.path.getsize(bomb)
    assert size < zeros / 100  # it really is a bomb
    forbid_torch_load(monkeypatch)
    with pytest.raises(InputError, match="zip bomb") as err:
        load_torch_file(bomb, trust=trust)
    with zipfile.ZipFile(bomb) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    msg = one_line_naming(err, bomb)
    assert f"declares {declared} bytes uncompressed in a {size}-byte file" in msg


def test_archive_understating_its_size_is_not_read_past_it(tmp_path):
    """Torch allocates what the central directory declares; a lie there is refused, not inflated."""
    src = save({"w": torch.zeros(100_000)}, tmp_path / "zeros.ckpt")
    lie = rezip(src, tmp_path / "lie.ckpt", zipfile.ZIP_DEFLATED)
    data = bytearray(lie.read_bytes())
    with zipfile.ZipFile(lie) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    struct.pack_into("<I", data, info.header_offset + 22, 1000)  # local header: uncompressed size
    cd = data.find(b"PK\x01\x02")
    while cd != -1:  # central directory record of the same entry
        n = struct.unpack_from("<H", data, cd + 28)[0]
        if bytes(data[cd + 46 : cd + 46 + n]).endswith(b"/data/0"):
            struct.pack_into("<I", data, cd + 24, 1000)
        cd = data.find(b"PK\x01\x02", cd + 4)
    lie.write_bytes(bytes(data))
    with pytest.raises(InputError, match="not a readable checkpoint") as err:
        load_torch_file(lie)
    assert "--trust-checkpoint" not in one_line_naming(err, lie)


def write_legacy_with_storage(path: Path, numel: int, data_bytes: int) -> Path:
    """torch's pre-zip layout by hand: magic, version, sys info, pickle, keys, then one storage."""
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is marker else None

    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    Pickler(buf, protocol=2).dump({"w": marker})
    pickle.dump(["0"], buf, protocol=2)
    buf.write(numel.to_bytes(8, "little") + bytes(data_bytes))
    path.write_bytes(buf.getvalue())
    return path


def test_legacy_file_declaring_huge_storage_refused_before_allocation(tmp_path, monkeypatch):
    forged = write_legacy_with_storage(tmp_path / "forged.pt", numel=10**11, data_bytes=64)
    forbid_torch_load(monkeypatch)
    for trust in (False, True):
        with pytest.raises(InputError, match="declares 400000000000 bytes of tensors") as err:
            load_torch_file(forged, trust=trust)
        assert "--trust-checkpoint" not in one_line_naming(err, forged)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_hand_written_legacy_file_is_understood(tmp_path):
    """The hand-built layout above is the one torch reads (so the forged test is meaningful)."""
    good = write_legacy_with_storage(tmp_path / "good.pt", numel=4, data_bytes=16)
    loaded = load_torch_file(good)
    assert loaded["w"].size() == 4


# ------------------------------------------------------------------------------------------
# load_torch_file: "needs trust" versus "unreadable"
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hparams, named",
    [(argparse.Namespace(lr=1e-5, preset="ucf"), "argparse.Namespace"), (CustomHyperParameters(1e-5), "CustomHyperParameters")],
    ids=["namespace", "custom-class"],
)
def test_python_objects_get_the_trust_advice(tmp_path, hparams, named):
    ckpt = lightning_checkpoint(hparams)
    path = save(ckpt, tmp_path / "last.ckpt")
    with pytest.raises(InputError, match="pass --trust-checkpoint") as err:
        load_torch_file(path)
    msg = one_line_naming(err, path)
    assert named in msg and "not a readable" not in msg
    loaded = load_torch_file(path, trust=True)
    assert vars(loaded.pop("hyper_parameters")) == vars(ckpt.pop("hyper_parameters"))
    assert same(loaded, ckpt)


def needs_trust(tmp_path: Path) -> Path:
    return save(lightning_checkpoint(argparse.Namespace(lr=1e-5)), tmp_path / "src.ckpt")


def garbage(tmp_path: Path) -> Path:
    p = tmp_path / "garbage.ckpt"
    p.write_bytes(os.urandom(8192))
    return p


def zip_garbage(tmp_path: Path) -> Path:
    p = tmp_path / "zipgarbage.ckpt"
    p.write_bytes(b"PK\x03\x04" + os.urandom(8192))
    return p


def empty(tmp_path: Path) -> Path:
    p = tmp_path / "empty.ckpt"
    p.write_bytes(b"")
    return p


def text_file(tmp_path: Path) -> Path:
    p = tmp_path / "notes.ckpt"
    p.write_text("epoch 3\nval_auc 0.86\n")
    return p


def truncated(tmp_path: Path) -> Path:
    data = needs_trust(tmp_path).read_bytes()
    p = tmp_path / "truncated.ckpt"
    p.write_bytes(data[: len(data) // 2])
    return p


def truncated_after_pickle(tmp_path: Path) -> Path:
    """Cut just past data.pkl: the pickle (with its Namespace) is whole, the rest is gone."""
    src = needs_trust(tmp_path)
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    p = tmp_path / "cut.ckpt"
    p.write_bytes(src.read_bytes()[: entry_offset(src, "data.pkl") + info.file_size + 10])
    return p


def corrupt_pickle(tmp_path: Path) -> Path:
    """A consistent archive (good CRCs) whose data.pkl is mangled in the middle."""

    def mangle(name, data):
        if not name.endswith("data.pkl"):
            return data
        mid = len(data) // 2
        return data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 24]) + data[mid + 24 :]

    return rezip(needs_trust(tmp_path), tmp_path / "corrupt_pkl.ckpt", change=mangle)


def cut_pickle(tmp_path: Path) -> Path:
    """data.pkl stops before its end: it names the Namespace but never completes."""
    return rezip(
        needs_trust(tmp_path),
        tmp_path / "cut_pkl.ckpt",
        change=lambda n, d: d[: int(len(d) * 0.8)] if n.endswith("data.pkl") else d,
    )


def bit_rot(tmp_path: Path) -> Path:
    """A tensor record damaged in place: torch itself does not check CRCs."""
    src = needs_trust(tmp_path)
    data = bytearray(src.read_bytes())
    data[entry_offset(src, "/data/0") + 5] ^= 0xFF
    p = tmp_path / "bitrot.ckpt"
    p.write_bytes(bytes(data))
    return p


def missing_record(tmp_path: Path) -> Path:
    return rezip(needs_trust(tmp_path), tmp_path / "missing.ckpt", change=lambda n, d: None if n.endswith("/data/1") else d)


def truncated_legacy(tmp_path: Path) -> Path:
    data = save(lightning_checkpoint(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False).read_bytes()
    p = tmp_path / "legacy_cut.pt"
    p.write_bytes(data[: len(data) - 100])
    return p


BROKEN = [garbage, zip_garbage, empty, text_file, truncated, truncated_after_pickle, corrupt_pickle, cut_pickle,
          bit_rot, missing_record, truncated_legacy]  # fmt: skip


@pytest.mark.parametrize("make", BROKEN, ids=[f.__name__ for f in BROKEN])
def test_broken_files_are_unreadable_never_trust_worthy(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        load_torch_file(path)
    msg = one_line_naming(err, path)
    assert "not a readable checkpoint" in msg
    assert "--trust-checkpoint" not in msg


@pytest.mark.parametrize("make", [garbage, truncated, corrupt_pickle], ids=["garbage", "truncated", "corrupt_pickle"])
def test_broken_files_fail_in_one_line_with_trust_too(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        load_torch_file(path, trust=True)
    one_line_naming(err, path)


# ------------------------------------------------------------------------------------------
# check_finite
# ------------------------------------------------------------------------------------------
def test_finite_state_dicts_pass():
    big_half = torch.full((100_000,), 60000.0, dtype=torch.float16)  # its sum overflows float16
    sd = {"a": torch.randn(4, 4), "half": big_half, "ints": torch.arange(5), "flag": torch.tensor(True),
          "empty": torch.empty(0), "bf16": torch.randn(8).bfloat16(), "f8": torch.randn(8).to(torch.float8_e4m3fn),
          "not_a_tensor": 3}  # fmt: skip
    check_finite(sd, "x.ckpt")


@pytest.mark.parametrize(
    "bad, counts",
    [
        (torch.tensor([1.0, float("nan"), 2.0, float("nan")]), "2 NaN and 0 infinite values out of 4"),
        (torch.tensor([1.0, float("inf"), -float("inf")]), "0 NaN and 2 infinite values out of 3"),
        (torch.tensor([1.0, float("nan")], dtype=torch.bfloat16), "1 NaN and 0 infinite values out of 2"),
        (torch.tensor([complex(1, float("nan"))]), "1 NaN and 0 infinite values out of 1"),
        (torch.tensor([1.0, float("nan")]).to(torch.float8_e4m3fn), "1 NaN and 0 infinite values out of 2"),
    ],
    ids=["nan", "inf", "bf16", "complex", "float8"],
)
def test_non_finite_checkpoint_refused_naming_first_key(tmp_path, bad, counts):
    sd = OrderedDict(
        [("model.ok", torch.randn(3)), ("model.temporal.projection.weight", bad), ("model.later", torch.tensor([math.nan]))]
    )
    path = save({"state_dict": sd}, tmp_path / "nan.ckpt")
    loaded = load_torch_file(path)["state_dict"]
    with pytest.raises(InputError) as err:
        check_finite(loaded, path)
    msg = one_line_naming(err, path)
    assert "tensor model.temporal.projection.weight has " + counts in msg
    assert "model.later" not in msg


def test_non_finite_found_in_a_non_contiguous_tensor():
    t = torch.randn(64, 64)
    t[5, 7] = float("nan")
    with pytest.raises(InputError, match="1 NaN"):
        check_finite({"w": t.T}, "x.ckpt")


def test_key_with_a_newline_stays_one_line():
    with pytest.raises(InputError) as err:
        check_finite({"evil\nkey": torch.tensor([math.inf])}, "x.ckpt")
    assert "\n" not in str(err.value) and "evil\\nkey" in str(err.value)


# ------------------------------------------------------------------------------------------
# validate_export_config
# ------------------------------------------------------------------------------------------
def genuine_meta() -> dict:
    return {
        "format_version": 1,
        "model_config": {"class_names": list(NAMES), "normal_id": 3, "n_ctx": 8, "emb_size": 32, "clip": "random"},
        "text_config": {"hidden_size": 64, "num_hidden_layers": 1},
        "class_names": list(NAMES),
        "normal_id": 3,
        "threshold": 0.42,
        "source": "anomalyclip",
    }


def weights(classes: int = 5, bn: int | None = None) -> dict:
    return {"prompt_learner.ctx": torch.zeros(classes, 8, 64), "selector.bn.running_mean": torch.zeros(classes - 1 if bn is None else bn)}


def written(tmp_path: Path, meta) -> tuple[object, Path]:
    """Write `meta` as config.json and read it back, as the loader would (json keeps NaN)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(meta))
    return json.loads(path.read_text()), path


def test_genuine_export_config_passes(tmp_path):
    meta, path = written(tmp_path, genuine_meta())
    validate_export_config(meta, path, weights())
    for threshold in (None, 0, 1, 0.5):
        validate_export_config({**meta, "threshold": threshold}, path)
    sht = [n.lower() for n in NAMES]
    validate_export_config({**meta, "class_names": sht, "model_config": {**meta["model_config"], "class_names": sht}}, path)
    no_source = dict(meta)
    del no_source["source"]
    validate_export_config(no_source, path)


def tamper(key, value):
    def change(meta):
        meta[key] = value

    return change


def tamper_model_config(key, value):
    def change(meta):
        meta["model_config"][key] = value

    return change


def drop(key):
    return lambda meta: meta.pop(key)


def both_class_names(value):
    def change(meta):
        meta["class_names"] = value
        meta["model_config"]["class_names"] = value

    return change


TAMPERED = [
    ("version_2", tamper("format_version", 2), ["format_version 2 is not supported"]),
    ("version_string", tamper("format_version", "1"), ['format_version "1"']),
    ("version_bool", tamper("format_version", True), ["format_version true"]),
    ("extra_key", tamper("treshold", 0.3), ['unknown key "treshold"', "0.3"]),
    ("missing_key", drop("normal_id"), ['missing key "normal_id"']),
    ("not_a_dict", lambda meta: meta.clear() or meta.update({"x": 1}), ['unknown key "x"']),
    ("model_config_list", tamper("model_config", [1]), ["model_config must be a JSON object", "[1]"]),
    ("text_config_null", tamper("text_config", None), ["text_config must be a JSON object", "null"]),
    ("source_int", tamper("source", 3), ["source must be a string", "3"]),
    ("names_string", both_class_names("Abuse,Normal"), ["class_names must be a list", '"Abuse,Normal"']),
    ("names_one", both_class_names(["Normal"]), ["class_names must be a list of at least 2", '["Normal"]']),
    ("names_int", tamper("class_names", ["Abuse", 7, "Fighting", "Normal", "Robbery"]), ["class_names[1] must be a non-empty string", "7"]),
    ("names_dup", tamper("class_names", ["Abuse", "Arrest", "abuse", "Normal", "Robbery"]), ['class_names[2] "abuse" repeats class_names[0]']),
    ("normal_id_range", tamper("normal_id", 5), ["normal_id 5 is out of range for 5 classes"]),
    ("normal_id_negative", tamper("normal_id", -1), ["normal_id -1 is out of range"]),
    ("normal_id_float", tamper("normal_id", 3.0), ["normal_id must be an integer", "3.0"]),
    ("normal_id_bool", tamper("normal_id", True), ["normal_id must be an integer", "true"]),
    ("normal_id_not_normal", tamper("normal_id", 2), ['normal_id 2 names class "Fighting", not the Normal class', "class 3"]),
    ("count_disagrees", tamper("class_names", NAMES[:4]), ["model_config.class_names has 5 classes but class_names has 4"]),
    ("names_disagree", tamper("class_names", ["Abuse", "Arson", "Fighting", "Normal", "Robbery"]),
     ['model_config.class_names[1] "Arrest" differs from class_names[1] "Arson"']),
    ("cfg_normal_id", tamper_model_config("normal_id", 0), ["model_config.normal_id 0 differs from normal_id 3"]),
    ("cfg_no_names", lambda meta: meta["model_config"].pop("class_names"), ["model_config must hold class_names"]),
    ("threshold_nan", tamper("threshold", math.nan), ["threshold must be null or a number in [0, 1]", "NaN"]),
    ("threshold_inf", tamper("threshold", math.inf), ["threshold", "Infinity"]),
    ("threshold_big", tamper("threshold", 1.5), ["threshold", "1.5"]),
    ("threshold_negative", tamper("threshold", -0.1), ["threshold", "-0.1"]),
    ("threshold_string", tamper("threshold", "0.5"), ["threshold", '"0.5"']),
    ("threshold_bool", tamper("threshold", False), ["threshold", "false"]),
    ("threshold_huge_int", tamper("threshold", 10**400), ["threshold", "1000000000"]),
]  # fmt: skip


@pytest.mark.parametrize("change, expected", [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_tampered_export_config_refused(tmp_path, change, expected):
    meta = genuine_meta()
    change(meta)
    meta, path = written(tmp_path, meta)
    with pytest.raises(InputError) as err:
        validate_export_config(meta, path, weights())
    msg = one_line_naming(err, path)
    for part in expected:
        assert part in msg, msg


def test_non_object_config_refused(tmp_path):
    meta, path = written(tmp_path, [genuine_meta()])
    with pytest.raises(InputError, match="must hold a JSON object") as err:
        validate_export_config(meta, path)
    one_line_naming(err, path)


@pytest.mark.parametrize(
    "sd, expected",
    [
        (weights(classes=4), "class_names has 5 classes but the weights' prompt_learner.ctx has 4 rows (expected 5)"),
        (weights(bn=5), "the weights' selector.bn.running_mean has 5 entries (expected 4)"),
        ({"prompt_learner.ctx": torch.zeros(5, 8, 64)}, "the weights have no selector.bn.running_mean tensor"),
    ],
    ids=["ctx_rows", "bn_entries", "bn_missing"],
)
def test_config_disagreeing_with_weights_refused(tmp_path, sd, expected):
    meta, path = written(tmp_path, genuine_meta())
    with pytest.raises(InputError) as err:
        validate_export_config(meta, path, sd)
    assert expected in one_line_naming(err, path)


def test_a_real_export_validates_and_its_keys_are_the_known_ones(tmp_path):
    """Ties EXPORT_* to what `model_meta` + `save_export` really write (and to FORMAT_VERSION)."""
    from safetensors.torch import load_file

    from anomalyclip.checkpoint.export import CONFIG_NAME, WEIGHTS_NAME, save_export
    from anomalyclip.checkpoint.loaded import LoadedModel
    from anomalyclip.checkpoint.native import FORMAT_VERSION
    from anomalyclip.model import AnomalyCLIP
    from conftest import tiny_model_config

    out = save_export(LoadedModel(AnomalyCLIP(tiny_model_config()), 0.25, "anomalyclip"), tmp_path / "export")
    meta = json.loads((out / CONFIG_NAME).read_text())
    assert set(validate.EXPORT_REQUIRED_KEYS) <= set(meta) <= set(validate.EXPORT_REQUIRED_KEYS + validate.EXPORT_OPTIONAL_KEYS)
    assert FORMAT_VERSION in validate.EXPORT_FORMAT_VERSIONS
    sd = load_file(str(out / WEIGHTS_NAME))
    validate_export_config(meta, out / CONFIG_NAME, sd)
    check_finite(sd, out / WEIGHTS_NAME)


def test_other_pickle_protocol_is_not_sent_to_trust_without_cause(tmp_path):
    """Protocol 4 with only tensors: torch's safe loader refuses its opcodes, but it names no Python
    objects, so it is not told to trust; with a Namespace inside it is."""
    plain = save({"w": torch.randn(3)}, tmp_path / "p4.ckpt", pickle_protocol=4)
    with pytest.warns(UserWarning), pytest.raises(InputError, match="not a readable checkpoint for a safe load") as err:
        load_torch_file(plain)
    assert "--trust-checkpoint" not in one_line_naming(err, plain)
    objects = save({"w": torch.randn(3), "hp": argparse.Namespace(a=1)}, tmp_path / "p4ns.ckpt", pickle_protocol=4)
    with pytest.warns(UserWarning), pytest.raises(InputError, match=r"\(argparse.Namespace\); if you trust") as err:
        load_torch_file(objects)
    one_line_naming(err, objects)


def test_trust_advice_survives_new_dtypes(tmp_path):
    """float8 and uint16 are saved as untyped byte storages; their records still check out."""
    ckpt = {"f8": torch.randn(3).to(torch.float8_e4m3fn), "u16": torch.zeros(3, dtype=torch.uint16), "hp": argparse.Namespace(a=1)}
    path = save(ckpt, tmp_path / "new.ckpt")
    with pytest.raises(InputError, match="pass --trust-checkpoint") as err:
        load_torch_file(path)
    one_line_naming(err, path)


def test_export_weights_read_piece_by_piece_equal_the_file(tmp_path, monkeypatch):
    """The export is read a few tensors (or a slice of one tensor's rows) at a time: the model
    ends with exactly the file's tensors, and a non-finite value, a missing key or a wrong shape
    anywhere is one line naming the file and the key."""
    from safetensors.torch import load_file, save_file

    from anomalyclip.checkpoint import export
    from anomalyclip.checkpoint.loaded import LoadedModel
    from anomalyclip.model import AnomalyCLIP
    from conftest import tiny_model_config

    torch.manual_seed(0)
    model = AnomalyCLIP(tiny_model_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # every weight moved off its initialisation
    out = export.save_export(LoadedModel(model.eval(), 0.25, "anomalyclip"), tmp_path / "export")
    weights = out / export.WEIGHTS_NAME
    sd = load_file(str(weights))
    big = max(sd, key=lambda k: sd[k].numel())
    monkeypatch.setattr(export, "_READ_BYTES", sd[big].numel() * 4 // 7)  # the largest in 7-8 slices
    loaded = export.load_export(out).model.state_dict()
    assert loaded.keys() == sd.keys()
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k
    shapes = {k: torch.empty(v.shape, device="meta") for k, v in sd.items()}
    pieces = export._pieces(shapes)
    whole = [key for piece in pieces for key, rows in piece if rows is None]
    sliced = {key: [] for piece in pieces for key, rows in piece if rows is not None}
    for piece in pieces:
        for key, rows in piece:
            if rows is not None:
                assert len(piece) == 1  # a slice is mapped alone
                sliced[key].append(rows)
    assert sorted(whole) == sorted(k for k in sd if k not in sliced)  # every other key once, whole
    assert big in sliced and len(sliced[big]) >= 7
    for key, parts in sliced.items():  # the slices cover the rows in order
        assert [r.start for r in parts] == [0] + [r.stop for r in parts[:-1]] and parts[-1].stop == sd[key].shape[0]
    bad = dict(sd)
    bad[big] = sd[big].clone()
    bad[big][sd[big].shape[0] // 2].view(-1)[0] = float("nan")  # inside a middle slice
    save_file(bad, str(weights))
    with pytest.raises(InputError, match=f"{big}.*1 NaN") as err:
        export.load_export(out)
    one_line_naming(err, weights)
    small = next(k for k in sd if sd[k].dim() == 1 and k != big)
    for tampered, words in (({k: v for k, v in sd.items() if k != small}, f"missing {small}"),
                            ({**sd, small: torch.zeros(sd[small].numel() + 1)}, f"{small} has shape")):
        save_file(tampered, str(weights))
        with pytest.raises(InputError, match="do not match config.json: " + words) as err:
            export.load_export(out)
        one_line_naming(err, weights)
