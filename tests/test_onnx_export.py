"""ONNX export of the scoring path: onnxruntime against `AnomalyCLIP.score_videos`, the folder's
config, the scorer's surface, and the error when the optional extra is missing."""

import importlib
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anomalyclip.checkpoint.native import model_meta
from anomalyclip.errors import InputError
from anomalyclip.model import AnomalyCLIP

from conftest import tiny_model_config

for _name in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_name, reason="the optional extra anomalyclip[onnx] is not installed")

from anomalyclip.checkpoint.onnx_export import OnnxScorer, VideoScoring, _check_frames_axis, export_onnx  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch.export

THRESHOLD = 0.37
LENGTHS = (1, 100, 511, 512, 513, 3000)  # shorter than a grid, exactly one, just over, s = 6


def make_model(concat: bool) -> AnomalyCLIP:
    """A tiny random model with non-trivial BN statistics and centroid (as in test_model)."""
    torch.manual_seed(1 if concat else 0)
    m = AnomalyCLIP(tiny_model_config(concat_features=concat))
    with torch.no_grad():
        m.centroid.normal_(0, 0.3)
        m.selector.bn.running_mean.normal_()
        m.selector.bn.running_var.uniform_(0.5, 2)
    return m.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["centred", "concat"])
def exported(request, tmp_path_factory):
    """Exported once per variant. The concat (ShanghaiTech) one goes the way a Predictor's model
    would: meta taken first, then the text tower dropped, then the export."""
    concat = request.param
    m = make_model(concat)
    out = tmp_path_factory.mktemp("onnx_concat" if concat else "onnx")
    if concat:
        meta = model_meta(m, THRESHOLD)
        meta["source"] = "test"
        m.freeze_text_features()
        m.train()  # the export must score in eval mode and hand the mode back
        assert export_onnx(m, out, meta) == out
        assert m.training
        m.eval()
    else:
        assert export_onnx(m, out) == out
    return SimpleNamespace(model=m, folder=out, scorer=OnnxScorer(out, threads=2), concat=concat)


def test_onnxruntime_matches_score_videos(exported):
    rng = np.random.default_rng(5)
    for t in LENGTHS:
        x = rng.normal(0, 1, (t, 512)).astype(np.float32)
        ref_scores, ref_probs = exported.model.score_videos([torch.from_numpy(x.copy())])[0]
        scores, probs = exported.scorer.score(x)
        assert scores.shape == (t,) and probs.shape == (t, 5)
        assert scores.dtype == np.float32 and probs.dtype == np.float32
        np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-5, rtol=0, err_msg=f"T={t}")
        np.testing.assert_allclose(probs, ref_probs.numpy(), atol=1e-5, rtol=0, err_msg=f"T={t}")
        # The scores are not flat (a broken grid order would still pass a constant): they vary.
        assert t == 1 or scores.std() > 1e-4


def test_scoring_module_in_pytorch_matches_score_videos():
    """The module before export (eager, the scan run by PyTorch) is the same function."""
    m = make_model(True)
    scoring = VideoScoring(m)
    for t in (1, 1300):
        x = torch.randn(t, 512)
        with torch.no_grad():
            scores, probs = scoring(x)
        ref_scores, ref_probs = m.score_videos([x])[0]
        torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=0)
        torch.testing.assert_close(probs, ref_probs, atol=1e-6, rtol=0)


def test_config_describes_the_model(exported):
    meta = json.loads((exported.folder / "config.json").read_text())
    m = exported.model
    assert meta["onnx"] == "model.onnx" and (exported.folder / "model.onnx").is_file()
    assert meta["class_names"] == list(m.cfg.class_names)
    assert meta["normal_id"] == m.cfg.normal_id == 3
    assert meta["threshold"] == (THRESHOLD if exported.concat else None)
    assert meta["model_config"]["concat_features"] is exported.concat
    assert meta["model_config"]["feature_dim"] == 512
    assert not list(exported.folder.glob(".*.tmp*"))  # the atomic write left no temporary behind


def test_graph_has_a_dynamic_frames_axis(exported):
    import onnx

    graph = onnx.load(str(exported.folder / "model.onnx")).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert dims == {"features": ["frames", 512], "scores": ["frames"], "probs": ["frames", 5]}


def test_scorer_surface(exported):
    s = exported.scorer
    assert s.class_names == ["Abuse", "Arrest", "Fighting", "Normal", "Robbery"]
    assert s.normal_id == 3 and s.num_classes == 5 and s.feature_dim == 512 and s.frames_per_item == 512
    assert s.threshold == (THRESHOLD if exported.concat else None)
    assert s.source == "onnx"
    x = np.random.default_rng(0).normal(size=(40, 512))  # float64 is cast, as Predictor does
    scores, probs = s.score(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(probs[:, 3], 1 - scores, atol=1e-6)
    (a, pa), (b, pb) = s.score_videos([x, x[:7]])
    np.testing.assert_array_equal(a, scores)
    assert b.shape == (7,) and pb.shape == (7, 5)
    for bad in (np.zeros((0, 512)), np.zeros((4, 511)), np.zeros(512), np.zeros((4, 512), dtype=np.int64)):
        with pytest.raises(InputError):
            s.score(bad)


def test_scorer_refuses_incomplete_folders(tmp_path, exported):
    with pytest.raises(InputError, match="config.json is missing"):
        OnnxScorer(tmp_path)
    meta = json.loads((exported.folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "onnx"}))
    with pytest.raises(InputError, match="onnx"):
        OnnxScorer(tmp_path)  # a safetensors export's config
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="model.onnx is missing"):
        OnnxScorer(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="onnxruntime cannot load"):
        OnnxScorer(tmp_path)


def test_narrowed_or_fixed_frames_axis_is_refused():
    lin = torch.nn.Linear(3, 2)
    narrowed = torch.export.export(lin, (torch.zeros(5, 3),), dynamic_shapes=({0: torch.export.Dim("t", min=2, max=64)},))
    with pytest.raises(RuntimeError, match="narrowed"):
        _check_frames_axis(SimpleNamespace(exported_program=narrowed))
    fixed = torch.export.export(lin, (torch.zeros(5, 3),))
    with pytest.raises(RuntimeError, match="fixed"):
        _check_frames_axis(SimpleNamespace(exported_program=fixed))
    ok = torch.export.export(lin, (torch.zeros(5, 3),), dynamic_shapes=({0: torch.export.Dim("t", min=1)},))
    _check_frames_axis(SimpleNamespace(exported_program=ok))


def test_missing_extra_fails_only_when_used(monkeypatch, tmp_path, exported):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    import anomalyclip.checkpoint

    name = "anomalyclip.checkpoint.onnx_export"
    monkeypatch.setattr(anomalyclip.checkpoint, "onnx_export", sys.modules[name], raising=False)  # restored after
    monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module(name)  # importing still works
    with pytest.raises(InputError, match=r"pip install 'anomalyclip\[onnx\]'") as e:
        fresh.export_onnx(make_model(False), tmp_path / "out")
    assert "onnx, onnxscript" in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"onnxruntime: pip install 'anomalyclip\[onnx\]'"):
        fresh.OnnxScorer(exported.folder)
