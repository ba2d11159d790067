"""The authors' released checkpoints: architecture from shapes, key mapping, the inverse, export.

Authors'-layout checkpoints are built in `authors_layout.py` from hand-made tensors in
OpenAI-CLIP / axial-attention layout (and from our own modules via `to_reference_state_dict`).
The text tower and the whole inference are checked against reference forwards written there,
independent of `anomalyclip.model`.
"""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch
import torch.nn.functional as F

from authors_layout import (
    CTX_LEN,
    D,
    E,
    EOT,
    N_CTX,
    SETUPS,
    UCF,
    W,
    layer_norm,
    axial_module,
    class_table,
    hand_made,
    openai_transformer,
    openai_vit,
    random_centroid,
    reference_predict,
    reference_text_features,
    save_reference,
    to_reference_state_dict,
)
from anomalyclip.checkpoint import load_checkpoint
from anomalyclip.checkpoint.export import load_export
from anomalyclip.checkpoint.openai_layout import map_openai_vision_keys
from anomalyclip.checkpoint.reference import import_reference_checkpoint
from anomalyclip.cli import main
from anomalyclip.config import ModelConfig
from anomalyclip.errors import InputError
from anomalyclip.model import AnomalyCLIP


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hand_made_files(tmp_path_factory):
    """{"ucf"/"sht": (ckpt path, net state dict, centroid)} with ncentroid.pt beside each file."""
    out = {}
    for name, setup in SETUPS.items():
        sd = hand_made(setup)
        centroid = random_centroid(setup["seed"])
        path = tmp_path_factory.mktemp(f"ref-{name}") / "checkpoints" / "last.ckpt"
        save_reference(path, sd, centroid)
        out[name] = (path, sd, centroid)
    return out


@pytest.fixture(scope="module")
def loaded(hand_made_files):
    """The hand-made files loaded once: {"ucf"/"sht": AnomalyCLIP}."""
    return {name: load_checkpoint(path).model for name, (path, _, _) in hand_made_files.items()}


def our_model(setup: dict, seed: int) -> AnomalyCLIP:
    names, normal = class_table(setup)
    torch.manual_seed(seed)
    cfg = ModelConfig(clip="random", 
        class_names=names, normal_id=normal, emb_size=E, depth=setup["depth"], concat_features=setup["concat"],
        random_clip_width=W, random_clip_layers=setup["layers"],
    )
    m = AnomalyCLIP(cfg)
    with torch.no_grad():
        m.selector.bn.running_mean.normal_(0, 0.3)
        m.selector.bn.running_var.uniform_(0.5, 1.5)
        m.centroid.copy_(random_centroid(seed))
        m.temporal.classifier.linear.weight.normal_(0, 0.3)
        m.prompt_learner.ctx.normal_(0, 0.05)
    return m.eval()


def videos(seed: int, lengths=(100, 1300)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t, D, generator=g) for t in lengths]


def assert_same_predictions(a: AnomalyCLIP, b: AnomalyCLIP, vids, atol=1e-5):
    with torch.no_grad():
        ra = a.score_videos(vids, a.text_features())
        rb = b.score_videos(vids, b.text_features())
    for (sa, pa), (sb, pb) in zip(ra, rb):
        assert sa.shape == sb.shape and pa.shape == pb.shape
        torch.testing.assert_close(sa, sb, atol=atol, rtol=0)
        torch.testing.assert_close(pa, pb, atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ucf", "sht"])
def test_architecture_is_inferred_from_shapes(hand_made_files, name):
    path, _, centroid = hand_made_files[name]
    setup = SETUPS[name]
    loaded = load_checkpoint(path)
    assert loaded.source == "reference" and loaded.threshold is None
    cfg = loaded.model.cfg
    names, normal = class_table(setup)
    assert cfg.class_names == names and cfg.normal_id == normal
    assert (cfg.n_ctx, cfg.feature_dim, cfg.emb_size, cfg.depth, cfg.heads) == (8, D, E, setup["depth"], 8)
    assert (cfg.num_segments, cfg.seg_length, cfg.concat_features) == (32, 16, setup["concat"])
    tc = loaded.model.text_encoder.clip.config
    assert (tc.hidden_size, tc.num_hidden_layers, tc.num_attention_heads, tc.hidden_act) == (W, setup["layers"], 1, "quick_gelu")
    assert tc.max_position_embeddings == CTX_LEN and tc.projection_dim == D and tc.layer_norm_eps == 1e-5
    torch.testing.assert_close(loaded.model.centroid, centroid, atol=0, rtol=0)
    assert not loaded.model.training


@pytest.mark.parametrize("name", ["ucf", "sht"])
def test_text_tower_computes_openai_clip(hand_made_files, loaded, name):
    _, sd, _ = hand_made_files[name]
    model = loaded[name]
    with torch.no_grad():
        ours = model.text_features()
    ref = reference_text_features(sd, SETUPS[name]["layers"])
    assert ours.shape == (len(class_table(SETUPS[name])[0]), D)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    # The EOT rows are the ones our tokenizer picks too.
    ref_eot = (sd["net.prompt_learner.token_suffix"] == sd["net.token_embedding.weight"][EOT]).all(-1).float().argmax(1) + 1 + N_CTX
    assert torch.equal(model.prompt_learner.eot_index, ref_eot)


@pytest.mark.parametrize("name", ["ucf", "sht"])
def test_predictions_match_the_release_forward(hand_made_files, loaded, name):
    _, sd, centroid = hand_made_files[name]
    setup = SETUPS[name]
    model = loaded[name]
    axial = axial_module(setup["depth"], setup["seed"])
    vids = videos(setup["seed"], (100, 1300))
    with torch.no_grad():
        ours = model.score_videos(vids, model.text_features())
    for v, (scores, probs) in zip(vids, ours):
        ref_s, ref_p = reference_predict(sd, axial, setup, v, centroid)
        assert scores.shape == (v.shape[0],) and probs.shape == (v.shape[0], len(class_table(setup)[0]))
        torch.testing.assert_close(scores, ref_s, atol=1e-5, rtol=0)
        torch.testing.assert_close(probs, ref_p, atol=1e-5, rtol=0)
        assert scores.std() > 1e-3  # a non-degenerate test


@pytest.mark.parametrize("name", ["ucf", "sht"])
def test_hand_made_file_equals_native_load(loaded, name):
    """Loading the authors' file equals building our model and copying the same weights in."""
    native = our_model(SETUPS[name], seed=0)
    native.load_state_dict(loaded[name].state_dict())
    assert_same_predictions(native, loaded[name], videos(5))


@pytest.mark.parametrize("name", ["ucf", "sht"])
def test_our_modules_through_the_authors_layout(tmp_path, name):
    setup = SETUPS[name]
    model = our_model(setup, seed=setup["seed"])
    ref_sd = to_reference_state_dict(model)
    assert all(k.startswith("net.") for k in ref_sd)
    assert ref_sd["net.text_encoder.text_projection"].shape == (W, D)
    assert ref_sd["net.text_encoder.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * W, W)
    path = tmp_path / "last.ckpt"
    save_reference(path, ref_sd, model.centroid.clone())
    loaded = load_checkpoint(path).model
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert_same_predictions(model, loaded, videos(setup["seed"]))


def test_inverse_gives_back_the_file(hand_made_files, loaded):
    _, sd, _ = hand_made_files["sht"]
    back = to_reference_state_dict(loaded["sht"])
    expected = {k: v for k, v in sd.items() if not k.startswith("net.image_encoder.")}
    assert set(back) == set(expected)
    for k, v in expected.items():
        assert torch.equal(back[k], v), k


def test_pickled_object_is_refused_without_the_flag(tmp_path, hand_made_files):
    _, sd, centroid = hand_made_files["ucf"]
    path = tmp_path / "last.ckpt"
    save_reference(path, sd, centroid, hyper_parameters=argparse.Namespace(lr=1e-5, arch="ViT-B/16"))
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust=True)
    assert loaded.model.cfg.num_classes == 14


def test_missing_centroid_names_the_files_and_the_flag(tmp_path, hand_made_files):
    _, sd, centroid = hand_made_files["ucf"]
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    save_reference(path, sd)
    with pytest.raises(InputError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "--centroid" in msg and str(path.parent / "ncentroid.pt") in msg and str(tmp_path / "run" / "ncentroid.pt") in msg
    # Given explicitly, or found one folder up (the authors' run layout).
    elsewhere = tmp_path / "my_centroid.pt"
    torch.save(centroid, elsewhere)
    assert torch.equal(load_checkpoint(path, centroid=elsewhere).model.centroid, centroid)
    torch.save(centroid, tmp_path / "run" / "ncentroid.pt")
    assert torch.equal(load_checkpoint(path).model.centroid, centroid)
    torch.save(torch.zeros(7), elsewhere)
    with pytest.raises(InputError, match=r"shape \(7,\)"):
        load_checkpoint(path, centroid=elsewhere)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(path, centroid=tmp_path / "nope.pt")


def test_unknown_class_count_needs_labels(tmp_path):
    names = ["Normal", "burning", "falling", "running", "waving"]
    setup = dict(UCF, seed=7)
    sd = hand_made(setup, names=names, image_encoder=False)
    path = tmp_path / "last.ckpt"
    save_reference(path, sd, random_centroid(7))
    with pytest.raises(InputError, match="--labels") as e:
        load_checkpoint(path)
    assert "5 classes" in str(e.value)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    model = load_checkpoint(path, labels=labels).model
    assert model.cfg.class_names == names and model.cfg.normal_id == 0
    torch.testing.assert_close(model.text_features(), reference_text_features(sd, 1), atol=1e-4, rtol=0)
    model = import_reference_checkpoint(path, torch.load(path)["state_dict"], class_names=names, centroid=random_centroid(7))
    assert model.model.cfg.class_names == names
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,name\n0,Normal\n1,fire\n")
    with pytest.raises(InputError, match="2 classes"):
        load_checkpoint(path, labels=wrong)


def test_names_that_do_not_match_the_prompt_tokens_warn(tmp_path, hand_made_files):
    path, _, _ = hand_made_files["ucf"]
    names = class_table(UCF)[0]
    renamed = names[:7] + ["Normal"] + [n + "x" for n in names[8:]]
    with pytest.warns(UserWarning, match="--labels"):
        load_checkpoint(path, class_names=renamed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(path)


def test_strict_keys(tmp_path, hand_made_files):
    _, sd, centroid = hand_made_files["ucf"]
    path = tmp_path / "last.ckpt"
    save_reference(path, {**sd, "net.temporal_model.extra.weight": torch.zeros(3)}, centroid)
    with pytest.raises(InputError, match="net.temporal_model.extra.weight"):
        load_checkpoint(path)
    save_reference(path, {**sd, "net.selector_model.unknown": torch.zeros(3)}, centroid)
    with pytest.raises(InputError, match="net.selector_model.unknown"):
        load_checkpoint(path)
    partial = {k: v for k, v in sd.items() if k != "net.text_encoder.transformer.resblocks.0.mlp.c_proj.bias"}
    save_reference(path, partial, centroid)
    with pytest.raises(InputError, match=r"resblocks\.0\.mlp\.c_proj\.bias"):
        load_checkpoint(path)
    partial = {k: v for k, v in sd.items() if k != "net.temporal_model.classifier.linear.bias"}
    save_reference(path, partial, centroid)
    with pytest.raises(InputError, match="classifier.linear.bias"):
        load_checkpoint(path)


def test_export_round_trip(tmp_path, hand_made_files, loaded):
    path, _, _ = hand_made_files["sht"]
    out = tmp_path / "export"
    assert main(["export", str(path), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not list(out.glob(".*tmp*"))
    exported = load_export(out)
    assert exported.source == "export" and exported.threshold is None
    original = loaded["sht"]
    for k, v in original.state_dict().items():
        assert torch.equal(v, exported.model.state_dict()[k]), k
    assert_same_predictions(original, exported.model, videos(3), atol=0)
    assert load_checkpoint(out).source == "export"  # a folder dispatches to load_export
    with pytest.raises(InputError, match="config.json"):
        load_export(tmp_path)


# ------------------------------------------------------------------------------------------
# the released image tower -> transformers
# ------------------------------------------------------------------------------------------
def reference_vit(sd: dict, images: torch.Tensor, layers: int) -> torch.Tensor:
    width, _, patch, _ = sd["conv1.weight"].shape
    x = F.conv2d(images, sd["conv1.weight"], stride=patch)  # (B, W, g, g)
    x = x.flatten(2).transpose(1, 2)  # (B, g*g, W)
    x = torch.cat([sd["class_embedding"].expand(x.shape[0], 1, width), x], dim=1) + sd["positional_embedding"]
    x = layer_norm(x, sd, "ln_pre")
    x = openai_transformer(x, sd, "", layers, max(1, width // 64), causal=False)
    return layer_norm(x[:, 0], sd, "ln_post") @ sd["proj"]


def test_openai_vision_keys_map_onto_transformers():
    from transformers import CLIPVisionModelWithProjection

    g = torch.Generator().manual_seed(11)
    sd = openai_vit(g, width=64, patch=8, image=32, layers=2)
    hf, config = map_openai_vision_keys(sd)
    assert (config.hidden_size, config.patch_size, config.image_size, config.num_hidden_layers) == (64, 8, 32, 2)
    assert (config.num_attention_heads, config.projection_dim, config.hidden_act) == (1, D, "quick_gelu")
    model = CLIPVisionModelWithProjection(config).eval()
    model.load_state_dict(hf, strict=True)
    images = torch.randn(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        ours = model(pixel_values=images).image_embeds
    torch.testing.assert_close(ours, reference_vit(sd, images, 2), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="conv1.bias"):
        map_openai_vision_keys({**sd, "conv1.bias": torch.zeros(64)})
