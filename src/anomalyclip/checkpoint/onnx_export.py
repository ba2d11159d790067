"""ONNX export of one video's test-mode scoring (METHOD §3-6, §10), and an onnxruntime scorer.

The exported graph maps raw CLIP features `(T, D)`, any T >= 1, to the anomaly scores `(T,)` and
class probabilities `(T, C)` that `AnomalyCLIP.score_videos` gives. The text features are frozen in
as a constant, so scoring needs neither the CLIP text tower nor PyTorch. The folder written holds
`model.onnx` and the same `config.json` as the safetensors export, plus `"onnx": "model.onnx"`.

`onnx` and `onnxscript` (to export) and `onnxruntime` (to score) are the optional extra
`anomalyclip[onnx]`; this module imports them only when it exports or loads.

Exporter: `torch.onnx.export(..., dynamo=True)` with a dynamic `frames` axis. The TorchScript
exporter still runs on torch 2.13 but is deprecated, and it traces Python control flow on the
example's sizes into constants (the temporal model branches on its number of grids).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch._higher_order_ops.scan import scan  # a prototype API; the exporter maps it to ONNX Scan

from anomalyclip.checkpoint.validate import validate_export_config
from anomalyclip.errors import InputError
from anomalyclip.fileio import atomic_path, write_json

if TYPE_CHECKING:
    from anomalyclip.model import AnomalyCLIP

ONNX_NAME = "model.onnx"
CONFIG_NAME = "config.json"  # the same file name as the safetensors export's
ONNX_KEY = "onnx"  # config.json key naming the ONNX file: marks a folder as an ONNX export
# torchlib (the exporter's op library) is written against opset 18: exporting at it needs no
# version conversion, and onnxruntime has run it since 1.14.
OPSET = 18
INPUT_NAME = "features"
OUTPUT_NAMES = ("scores", "probs")
FRAMES_AXIS = "frames"
INSTALL_HINT = "pip install 'anomalyclip[onnx]'"
EXPORT_PACKAGES = ("onnx", "onnxscript")  # torch's dynamo exporter needs both
SCORE_PACKAGES = ("onnxruntime",)


def is_onnx_export(path: str | Path) -> bool:
    """A folder whose `config.json` names an ONNX file (what `export_onnx` writes)."""
    cfg_path = Path(path) / CONFIG_NAME
    if not cfg_path.is_file():
        return False
    try:
        meta = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # not ours to judge here: the loader names what is wrong with it
    return isinstance(meta, dict) and ONNX_KEY in meta


def require_onnx(packages: Sequence[str]) -> None:
    """One clear error, naming the extra to install, instead of an ImportError deep in torch."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError as e:
            # Installed but broken (a dependency of its own missing, or shadowed): say why.
            missing.append(name if e.name in (None, name) else f"{name} (importing it failed: {e})")
    if missing:
        raise InputError(f"ONNX support needs the optional package(s) {', '.join(missing)}: {INSTALL_HINT}")


# ------------------------------------------------------------------------------------------
# the graph
# ------------------------------------------------------------------------------------------
class VideoScoring(nn.Module):
    """`AnomalyCLIP.score_videos([features])` for one video, written for export with a dynamic T.

    Every size derived from T stays symbolic (a SymInt under export, or a tensor), so nothing
    about the example video is baked into the graph. The temporal model runs one 512-frame grid
    per step of a `scan`: its batch is then the constant 1, whatever branches it takes on its
    batch size (it splits large batches into pieces on CPU), and a video of any length runs
    through the same graph. Puts `model` in eval mode (running BN statistics, METHOD §4).
    """

    def __init__(self, model: "AnomalyCLIP"):
        super().__init__()
        self.model = model.eval()  # its unused parameters (the text tower) do not reach the graph
        with torch.no_grad():
            text = model.text_features().detach().clone()  # (C, D), constant at inference
        self.register_buffer("text", text, persistent=False)
        self.eval()

    def _grid_step(self, carry: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One scan step: `grid (n*l, F)` -> scores `(n*l,)`; the carry is unused (scan needs one)."""
        return carry.clone(), self.model.temporal(grid[None])[0]  # (1, n*l, F) -> (1, n*l) -> (n*l,)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        n, l = m.cfg.num_segments, m.cfg.seg_length
        nl = n * l
        t = features.shape[0]  # a SymInt under export
        dev = features.device
        t_tensor = torch.full((), t, dtype=torch.long, device=dev)  # T as a tensor: ONNX has no Mod by a symbol
        s = (t + nl - 1) // nl  # grids: T' = s * n*l padded frames (METHOD §10)
        s_tensor = (t_tensor + nl - 1) // nl
        centred = features - m.centroid  # (T, D)
        sim = m.similarity(centred, self.text)  # (T, K), running BN statistics
        inp = m.temporal_input(centred, sim)  # (T, F)
        # Slot q of the grids, grid-major: grid q // nl, segment (q % nl) // l, frame q % l. Chunk
        # k goes to grid k mod s at segment k // s, so the slot holds chunk segment*s + grid of the
        # padded video, whose frame pos is row pos mod T (wrap-around). Elementwise on one flat
        # range: no broadcast against an axis of size s, which export would specialise on s == 1.
        q = torch.arange(s * nl, device=dev)  # (s*n*l,)
        grid, within = q // nl, torch.remainder(q, nl)
        pos = ((within // l) * s_tensor + grid) * l + torch.remainder(within, l)  # (s*n*l,)
        grids = inp[torch.remainder(pos, t_tensor)].reshape(s, nl, inp.shape[1])  # (s*n*l, F) -> (s, n*l, F)
        _, grid_scores = scan(self._grid_step, torch.zeros((), device=dev), grids)  # (s, n*l)
        # Back to frame order and cut to T in one gather: frame j is in chunk k = j // l, at slot
        # (k mod s) * n*l + (k // s) * l + j mod l.
        j = torch.arange(t, device=dev)  # (T,)
        k = j // l
        slot = torch.remainder(k, s_tensor) * nl + (k // s_tensor) * l + torch.remainder(j, l)
        scores = grid_scores.reshape(-1)[slot]  # (s, n*l) -> (s*n*l,) -> (T,)
        return scores, m.class_probs(sim, scores)


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a warning per torchvision op it cannot register; we never use them."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _example_length(model: "AnomalyCLIP") -> int:
    """An example T of three grids, not a multiple of a chunk: no size in it is 0, 1 or a boundary."""
    return 2 * model.cfg.frames_per_item + 3 * model.cfg.seg_length + 5


def _check_frames_axis(program: Any) -> None:
    """The exporter quietly narrows a dynamic axis when tracing hits a guard on it; refuse a graph
    that would not take every T >= 1."""
    ep = program.exported_program
    user_inputs = ep.graph_signature.user_inputs  # placeholder names of the forward's arguments
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    size = node.meta["val"].shape[0]
    if not isinstance(size, torch.SymInt):
        raise RuntimeError(f"ONNX export fixed the frame count to {size}; the graph must take any T")
    vr = ep.range_constraints.get(size.node.expr)
    if vr is None:  # a refinement that rewrote T as an expression of another symbol
        raise RuntimeError(f"ONNX export tied the frame count to {size.node.expr}; the graph must take any T >= 1")
    if vr.lower > 1 or vr.upper < sys.maxsize:  # sympy-style bounds; no upper bound is int_oo
        raise RuntimeError(f"ONNX export narrowed the frame count to [{vr.lower}, {vr.upper}]; the graph must take any T >= 1")


def export_onnx(model: "AnomalyCLIP", out_dir: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `out_dir/model.onnx` (atomically) and then `out_dir/config.json`; returns `out_dir`.

    `meta` is `checkpoint.native.model_meta(model, threshold)` (plus `"source"` if known); it must be
    taken before `freeze_text_features()`, which drops what it describes. Without it, it is taken
    here (threshold unknown). The model's text tower is left as it is, and so is its train/eval
    mode once the export is done.
    """
    require_onnx(EXPORT_PACKAGES)
    if meta is None:
        from anomalyclip.checkpoint.native import model_meta

        meta = model_meta(model)
    cfg = model.cfg
    if list(meta.get("class_names", [])) != list(cfg.class_names) or meta.get("normal_id") != cfg.normal_id:
        raise ValueError("meta does not describe this model (class names or normal id differ)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the export destination exists and is not a folder", out_dir)

    was_training = model.training
    try:
        scoring = VideoScoring(model)
        # (T, D) on the model's device; the values play no part in the graph.
        example = torch.zeros(_example_length(model), cfg.feature_dim, device=model.centroid.device)
        frames = torch.export.Dim(FRAMES_AXIS, min=1)
        # no_grad: the exporter's passes rerun the scan body, whose autograd path it cannot trace.
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                scoring,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: frames},),
                opset_version=OPSET,
                external_data=False,  # one self-contained file (the weights are tens of MB)
                verbose=False,
            )
    finally:
        model.train(was_training)
    _check_frames_axis(program)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / ONNX_NAME) as tmp:
        program.save(str(tmp), external_data=False)
    config = dict(meta)
    config[ONNX_KEY] = ONNX_NAME
    config["onnx_opset"] = OPSET
    write_json(out_dir / CONFIG_NAME, config)
    return out_dir


# ------------------------------------------------------------------------------------------
# scoring with onnxruntime
# ------------------------------------------------------------------------------------------
class OnnxScorer:
    """An exported folder scored by onnxruntime on CPU: what `Predictor` needs from a model.

    `score(features (T, D))` -> `(scores (T,), probs (T, C))` as float32 numpy arrays; the same
    numbers as `AnomalyCLIP.score_videos` to float rounding. `threads` fixes onnxruntime's
    intra-op threads (0: its default, one per core). It is a `scoring.Scoring`."""

    source = "onnx"
    name = "onnxruntime"
    batches = False  # the graph takes one video
    device = torch.device("cpu")  # where the input goes: onnxruntime reads host memory

    def __init__(self, path: str | Path, threads: int = 0):
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file():
            raise InputError(f"not an exported model folder: {CONFIG_NAME} is missing", path)
        try:
            meta = json.loads(cfg_path.read_text())
            onnx_name = meta[ONNX_KEY]
            class_names = [str(c) for c in meta["class_names"]]
            normal_id = int(meta["normal_id"])
            model_cfg = meta["model_config"]
            feature_dim = int(model_cfg["feature_dim"])
            frames_per_item = int(model_cfg["num_segments"]) * int(model_cfg["seg_length"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise InputError(f"not an ONNX export configuration (no valid {e} entry)", cfg_path) from None
        validate_export_config(meta, cfg_path)  # the checks the safetensors export's config gets
        onnx_path = path / str(onnx_name)
        if not onnx_path.is_file():
            raise InputError(f"not an exported model folder: {onnx_path.name} is missing", path)
        require_onnx(SCORE_PACKAGES)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a bad file
            raise InputError(f"onnxruntime cannot load this model: {str(e).splitlines()[0]}", onnx_path) from None
        self.path = path
        self.meta = meta
        self.class_names: list[str] = class_names
        self.normal_id: int = normal_id
        threshold = meta.get("threshold")
        self.threshold: float | None = None if threshold is None else float(threshold)
        self.feature_dim: int = feature_dim
        self.frames_per_item: int = frames_per_item

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One video's raw CLIP features `(T, D)` -> `(scores (T,), probs (T, C))`, float32."""
        arr = np.asarray(features)
        if arr.dtype.kind != "f":
            raise InputError(f"features must be floating point, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != self.feature_dim:
            raise InputError(f"features must have shape (frames >= 1, {self.feature_dim}), got {arr.shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        scores, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: arr})
        return scores, probs

    def score_videos(self, videos: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """`score` per video: the graph takes one video, so there is nothing to batch."""
        return [self.score(v) for v in videos]
