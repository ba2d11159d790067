"""Every kind of `--clip`: OpenAI's layout as a real TorchScript archive (read without running
it), an authors' last.ckpt, a transformers `CLIPModel` folder whose top-level projection width is
its own, and paths that do not exist. Each tower is checked against an independent forward."""

from collections import OrderedDict

import pytest
import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel

from anomalyclip.clip_sources import load_clip_tower
from anomalyclip.errors import InputError
from anomalyclip.tokenizer import tokenize
from authors_layout import UCF, hand_made, layer_norm, openai_transformer, reference_text_features, save_reference

W, VW, D = 64, 64, 512


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """OpenAI CLIP's residual block, by its attribute names."""

    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, max(1, width // 64))
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # scripting needs one; the tests never run it
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[Block(width) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class Visual(nn.Module):
    def __init__(self, width: int = VW, patch: int = 8, image: int = 32, layers: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(0.1 * torch.randn(width))
        self.positional_embedding = nn.Parameter(0.1 * torch.randn((image // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(width**-0.5 * torch.randn(width, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer(x)


class OpenAIStyleCLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Visual()
        self.transformer = Transformer(W, 2)
        self.token_embedding = nn.Embedding(49408, W)
        self.positional_embedding = nn.Parameter(0.05 * torch.randn(77, W))
        self.ln_final = nn.LayerNorm(W)
        self.text_projection = nn.Parameter(W**-0.5 * torch.randn(W, D))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale.exp()


def openai_sd(m: OpenAIStyleCLIP) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in m.state_dict().items()}


def text_reference(sd: dict, ids: torch.Tensor) -> torch.Tensor:
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    x = layer_norm(openai_transformer(x, sd, "", 2, 1, causal=True), sd, "ln_final")
    return x[torch.arange(len(ids)), ids.argmax(-1)] @ sd["text_projection"]


def vision_reference(sd: dict, images: torch.Tensor) -> torch.Tensor:
    v = {k[len("visual."):]: t for k, t in sd.items() if k.startswith("visual.")}
    x = torch.nn.functional.conv2d(images, v["conv1.weight"], stride=8).flatten(2).transpose(1, 2)  # (B, g*g, W)
    x = torch.cat([v["class_embedding"].expand(len(images), 1, VW), x], dim=1) + v["positional_embedding"]
    x = openai_transformer(layer_norm(x, v, "ln_pre"), v, "", 2, 1, causal=False)
    return layer_norm(x[:, 0], v, "ln_post") @ v["proj"]


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory):
    torch.manual_seed(0)
    m = OpenAIStyleCLIP().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("openai") / "ViT-B-16.pt"
    torch.jit.script(m).save(str(path))  # OpenAI ships its CLIPs as TorchScript archives
    return path, openai_sd(m)


def test_an_openai_torchscript_archive_loads_both_towers_without_running_it(openai_file, monkeypatch):
    path, sd = openai_file
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("the archive was run"))
    ids = tokenize(["a video from a CCTV camera of a fight.", "a video from a CCTV camera of a robbery."])
    text = load_clip_tower(path, "text")
    with torch.no_grad():
        ours = text.model(input_ids=ids).text_embeds
    torch.testing.assert_close(ours, text_reference(sd, ids), atol=1e-5, rtol=1e-5)
    assert text.logit_scale == pytest.approx(float(sd["logit_scale"].exp()))
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    vision = load_clip_tower(path, "vision")
    with torch.no_grad():
        ours = vision.model(pixel_values=images).image_embeds
    torch.testing.assert_close(ours, vision_reference(sd, images), atol=1e-5, rtol=1e-5)
    assert vision.weights_sha256 and len(vision.weights_sha256) == 64


def test_a_plain_openai_state_dict_file_loads_too(openai_file, tmp_path):
    _, sd = openai_file
    torch.save(sd, tmp_path / "clip.pt")
    ids = tokenize(["x"])
    with torch.no_grad():
        ours = load_clip_tower(tmp_path / "clip.pt", "text").model(input_ids=ids).text_embeds
    torch.testing.assert_close(ours, text_reference(sd, ids), atol=1e-5, rtol=1e-5)


def test_an_authors_checkpoint_gives_its_text_tower(tmp_path):
    net = hand_made(UCF)
    save_reference(tmp_path / "last.ckpt", net)
    tower = load_clip_tower(tmp_path / "last.ckpt", "text").model
    # the text features of the released prompts, through the loaded tower's parts
    sd = {k[4:]: v for k, v in net.items()}
    prompts = torch.cat([sd["prompt_learner.token_prefix"], sd["prompt_learner.ctx"], sd["prompt_learner.token_suffix"]], 1)
    from anomalyclip.model.clip_text import TextEncoder

    eot = (sd["prompt_learner.token_suffix"] == sd["token_embedding.weight"][49407]).all(-1).float().argmax(1) + 9
    with torch.no_grad():
        ours = TextEncoder(tower)(prompts, eot, truncate=False)
    torch.testing.assert_close(ours, reference_text_features(net, UCF["layers"]), atol=1e-4, rtol=0)
    save_reference(tmp_path / "text-only" / "last.ckpt", hand_made(UCF, image_encoder=False))
    with pytest.raises(InputError, match="holds no CLIP image tower"):
        load_clip_tower(tmp_path / "text-only" / "last.ckpt", "vision")


def test_a_clip_model_folder_uses_its_top_level_projection_width(tmp_path, capfd):
    from anomalyclip.model.clip_text import random_text_config

    text = random_text_config(64, 1, 512).to_dict()
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1, image_size=32, patch_size=16)
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    full.save_pretrained(tmp_path / "clip32")
    capfd.readouterr()
    images = torch.randn(2, 3, 32, 32)
    ids = tokenize(["a fight."])
    with torch.no_grad():
        v = load_clip_tower(tmp_path / "clip32", "vision").model(pixel_values=images).image_embeds
        t = load_clip_tower(tmp_path / "clip32", "text").model(input_ids=ids).text_embeds
        torch.testing.assert_close(v, full.get_image_features(pixel_values=images).pooler_output)
        torch.testing.assert_close(t, full.get_text_features(input_ids=ids).pooler_output)
    assert v.shape == (2, 32) and t.shape == (1, 32)
    said = capfd.readouterr()
    assert len((said.out + said.err).strip().splitlines()) <= 1  # no report of the other tower's keys


@pytest.mark.parametrize("spec", ["./no/such/folder", "/tmp/definitely-missing-clip.pt", "org/name/extra"])
def test_a_clip_path_that_does_not_exist_says_so(spec):
    with pytest.raises(InputError, match="CLIP not found: no such file or folder") as e:
        load_clip_tower(spec, "text")
    assert spec in str(e.value) and "Repo id" not in str(e.value)


def test_an_unreachable_hub_fails_at_once_without_the_clients_retries(monkeypatch):
    import socket

    from huggingface_hub import constants

    import anomalyclip.clip_sources as sources

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    assert sources.hub_reachable()
    listening.close()  # nothing listens on that port any more
    assert not sources.hub_reachable()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []
    real = sources._from_pretrained
    monkeypatch.setattr(sources, "_from_pretrained", lambda *a, **k: calls.append(k) or real(*a, **k))
    with pytest.raises(InputError, match="cannot be reached"):
        load_clip_tower("nobody/no-such-clip", "text")
    assert calls == [{"local_files_only": True}]  # the cache was read; the network was never tried
