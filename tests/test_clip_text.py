import gzip

import pytest
import torch
from transformers import CLIPTextModelWithProjection

from anomalyclip.assets import asset_path
from anomalyclip.errors import InputError
from anomalyclip.model import AnomalyCLIP
from anomalyclip.model.clip_text import load_text_model, random_text_config
from anomalyclip.tokenizer import class_prompts, tokenize

from conftest import save_small_clip, tiny_model_config


def test_tokenizer_uses_the_shipped_clip_vocabulary():
    # Build the id of a few tokens straight from the BPE file: 256 bytes, 256 bytes + '</w>', merges.
    with gzip.open(asset_path("bpe_simple_vocab_16e6.txt.gz"), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    merged = ["".join(m.split()) for m in merges]
    # Printable ASCII starts the byte table at '!', so "x</w>" is 256 + (ord("x") - ord("!")).
    x_id = 256 + ord("x") - ord("!")
    dot_id = 256 + ord(".") - ord("!")
    ids = tokenize(class_prompts(["Abuse", "Road_Accidents"], 8))
    assert ids[0, :9].tolist() == [49406] + [x_id] * 8
    assert ids[0, 9].item() == 512 + merged.index("abuse</w>")
    assert ids[0, 10].item() == dot_id and ids[0, 11].item() == 49407 and ids[0, 12:].eq(0).all()
    assert ids.argmax(-1).tolist() == [11, 12]  # "road accidents." is one token longer


def test_text_tower_from_a_local_clip_folder(tmp_path):
    full = save_small_clip(tmp_path / "clip")
    text = load_text_model(str(tmp_path / "clip"))
    ids = tokenize(["a video from a cctv camera of a fight."])
    with torch.no_grad():
        ref = full.get_text_features(input_ids=ids)
        ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
        ours = text(input_ids=ids).text_embeds
    torch.testing.assert_close(ours, ref)
    model = AnomalyCLIP(tiny_model_config(clip=str(tmp_path / "clip")))
    torch.testing.assert_close(model.text_encoder.text_projection.weight, full.text_projection.weight)


def test_text_only_folder_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    CLIPTextModelWithProjection(random_text_config(64, 1)).save_pretrained(tmp_path / "text")
    assert isinstance(load_text_model(str(tmp_path / "text")), CLIPTextModelWithProjection)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_text_model(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="cannot load the CLIP text tower 'nobody/no-such-clip-model'"):
        load_text_model("nobody/no-such-clip-model")  # HF_HUB_OFFLINE=1 in tests: fails at once
