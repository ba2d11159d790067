"""The zero-shot CLIP baseline against transformers' own CLIPModel, and `anomalyclip zeroshot`."""

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from transformers import CLIPTextModelWithProjection

from anomalyclip.classes import ClassTable
from anomalyclip.cli import main
from anomalyclip.data.formats import read_labels, read_video_list
from anomalyclip.errors import InputError
from anomalyclip.metrics import fine_grained_map
from anomalyclip.model.clip_text import random_text_config
from anomalyclip.tokenizer import tokenize
from anomalyclip.zeroshot import TEXT_ONLY_LOGIT_SCALE, ZeroShotCLIP, build_zero_shot, class_texts

from conftest import save_small_clip

CLASSES = ClassTable(names=["Abuse", "Car_accident", "Fighting", "Normal", "Riot"], normal_id=3)
SCALE = 80.0  # not transformers' initial exp(2.6592) = 14.3: the checkpoint's value must be read


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "clip"
    return folder, save_small_clip(folder, seed=0, logit_scale=SCALE)


def test_probabilities_equal_transformers_clip_logits(clip_folder):
    folder, full = clip_folder
    texts = class_texts(CLASSES.names)
    assert texts[1] == "a video from a CCTV camera of a Car accident"
    pixels = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = full(input_ids=tokenize(texts), pixel_values=pixels).logits_per_image.softmax(dim=-1)  # (12, C)
        image = full.get_image_features(pixel_values=pixels)
        image = image.pooler_output if hasattr(image, "pooler_output") else image  # (12, 512)
    model, info = build_zero_shot(str(folder), CLASSES)
    assert info["logit_scale"] == pytest.approx(SCALE, rel=1e-6) and info["logit_scale_source"] == "checkpoint"
    assert info["prompts"] == texts
    [(scores, probs)] = model.score_videos([image])
    torch.testing.assert_close(probs, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores, 1 - ref[:, CLASSES.normal_id], rtol=1e-5, atol=1e-6)
    # not trivial: far from uniform, and transformers' initial scale would give other numbers
    assert (ref.max(dim=1).values - ref.min(dim=1).values).min() > 0.1
    assert (ZeroShotCLIP(model.text_features(), math.exp(2.6592), CLASSES.normal_id).class_probs(image) - ref).abs().max() > 0.05


def test_text_only_checkpoint_uses_100_and_the_scale_can_be_given(tmp_path):
    torch.manual_seed(2)
    tower = CLIPTextModelWithProjection(random_text_config(64, 1)).eval()
    tower.save_pretrained(tmp_path / "text")
    texts = class_texts(CLASSES.names, "a photo of {} happening")
    with torch.no_grad():
        text = tower(input_ids=tokenize(texts)).text_embeds.numpy().astype(np.float64)  # transformers' own pooling
    image = np.random.default_rng(3).normal(size=(20, 512))
    cos = (image / np.linalg.norm(image, axis=1, keepdims=True)) @ (text / np.linalg.norm(text, axis=1, keepdims=True)).T
    for given, scale in ((None, TEXT_ONLY_LOGIT_SCALE), (7.0, 7.0)):
        model, info = build_zero_shot(str(tmp_path / "text"), CLASSES, "a photo of {} happening", logit_scale=given)
        assert info["logit_scale"] == scale and info["logit_scale_source"] == ("given" if given else "text-only checkpoint: OpenAI CLIP's trained value")
        logits = scale * cos
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        [(_, probs)] = model.score_videos([torch.from_numpy(image).float()])
        np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("template", ["a video of a fight", "{} and {}"])
def test_template_needs_one_placeholder(template):
    with pytest.raises(InputError, match="exactly once"):
        class_texts(CLASSES.names, template)


def test_bad_logit_scale_is_refused(clip_folder):
    with pytest.raises(InputError, match="positive number"):
        build_zero_shot(str(clip_folder[0]), CLASSES, logit_scale=-1.0)


def test_zeroshot_verb_writes_what_eval_writes(tiny_dataset, clip_folder, tmp_path, capsys):
    """Scores recomputed here from the feature files with transformers' text features equal
    predictions.csv, and metrics.json's AUC and fine-grained mAP equal those of the recomputed
    scores."""
    folder, full = clip_folder
    out = tmp_path / "zs"
    code = main(["zeroshot", "--preset", "synthetic", "--data-root", str(tiny_dataset), "--clip", str(folder), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "logit scale 80.00 (checkpoint)" in printed and "mAP@AVG" in printed
    for name in ("metrics.json", "predictions.csv", "roc.png", "pr.png", "roc_per_class.png", "pr_per_class.png", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "zeroshot" and m["dataset"] == "synthetic" and m["checkpoint"] is None
    assert m["fine_grained_rule"] == "ucf" and m["zeroshot"]["clip"] == str(folder)

    classes = read_labels(tiny_dataset / "labels.csv")
    with torch.no_grad():
        text = full.get_text_features(input_ids=tokenize(class_texts(classes.names)))
        text = (text.pooler_output if hasattr(text, "pooler_output") else text).numpy().astype(np.float64)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    probs, labels, video = [], [], []
    from anomalyclip.data.sampling import frame_labels
    from anomalyclip.data.formats import read_temporal

    temporal = read_temporal(tiny_dataset / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    for i, e in enumerate(read_video_list(tiny_dataset / "Anomaly_Test.txt", classes)):
        x = np.load(tiny_dataset / "features" / f"{e.path}.npy").astype(np.float64)
        logits = SCALE * (x / np.linalg.norm(x, axis=1, keepdims=True)) @ text.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(p / p.sum(1, keepdims=True))
        labels.append(frame_labels(len(x), e.label, temporal.get(e.path.split("/")[-1], []), classes.normal_id, e.start_frame))
        video.append(np.full(len(x), i))
    probs, labels, video = np.concatenate(probs), np.concatenate(labels), np.concatenate(video)
    rows = np.loadtxt(out / "predictions.csv", delimiter=",", skiprows=1, usecols=range(1, 5 + len(classes.names)))
    np.testing.assert_array_equal(rows[:, 1], labels)
    np.testing.assert_allclose(rows[:, 4:], probs, atol=2e-6)  # six decimals
    scores = 1 - probs[:, classes.normal_id]
    assert m["auc_roc"] == pytest.approx(roc_auc_score(labels != classes.normal_id, scores), abs=1e-5)
    fine = fine_grained_map(probs, labels, video, classes.normal_id)
    for key, value in fine.items():
        assert m[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < m["map_tiou_0.1"] and not math.isnan(m["map_tiou_avg"])


def test_report_sets_a_zeroshot_run_beside_a_trained_one(tiny_dataset, clip_folder, tmp_path, capsys):
    """`anomalyclip report` over an `eval` folder and a `zeroshot` folder of the same test list:
    each headline cell is its metrics.json value, the zero-shot column is labelled as such."""
    import re

    from anomalyclip.checkpoint.export import save_export
    from anomalyclip.checkpoint.loaded import LoadedModel
    from anomalyclip.config import ModelConfig
    from anomalyclip.model import AnomalyCLIP

    classes = read_labels(tiny_dataset / "labels.csv")
    torch.manual_seed(0)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=classes.names, normal_id=classes.normal_id, emb_size=32, random_clip_layers=1))
    save_export(LoadedModel(model.eval(), 0.5, "anomalyclip"), tmp_path / "model")
    data = ["--preset", "synthetic", "--data-root", str(tiny_dataset)]
    assert main(["eval", "--checkpoint", str(tmp_path / "model"), *data, "--out", str(tmp_path / "trained")]) == 0
    assert main(["zeroshot", "--clip", str(clip_folder[0]), *data, "--out", str(tmp_path / "zeroshot")]) == 0
    page = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "trained"), str(tmp_path / "zeroshot"), "--out", str(page)]) == 0
    assert f"report: {page}" in capsys.readouterr().out
    text = page.read_text()
    headline = text[text.index('<table id="headline">') : text.index("</table>", text.index('<table id="headline">'))]
    for i, run in enumerate(("trained", "zeroshot")):
        m = json.loads((tmp_path / run / "metrics.json").read_text())
        for key in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr", "map_tiou_avg"):
            cell = re.search(rf'data-run="{i}" data-key="{key}">([^<]*)<', headline).group(1)
            assert cell == f"{100 * m[key]:.2f}", (run, key)
    assert "CLIP zero-shot" in text and "no checkpoint (zero-shot, untrained)" in text
    assert "zero-shot logit scale" in text and "a video from a CCTV camera of a {}" in text
    assert text.count('src="data:image/png;base64,') == 10  # five figures of each run, none drawn by the report
