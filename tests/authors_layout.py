"""Checkpoints in the authors' layout, built from hand-made tensors (OpenAI-CLIP text tower,
axial-attention temporal model) or from our own modules, and the release's forward written
out independently of `anomalyclip.model`: the references of the checkpoint and inference tests."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from axial_attention import AxialImageTransformer

from anomalyclip.assets import asset_path
from anomalyclip.checkpoint.openai_layout import BLOCK_MAP
from anomalyclip.data.formats import read_labels
from anomalyclip.model.anomalyclip import AnomalyCLIP
from anomalyclip.tokenizer import class_prompts, tokenize

W, D, E, VOCAB, CTX_LEN, N_CTX = 64, 512, 64, 49408, 77, 8
EOT = 49407
PREFIX = "net."
TEXT = "text_encoder.clip.text_model."

UCF = dict(labels="ucf_labels.csv", normal_id=7, concat=False, depth=1, layers=1, seed=1)
SHT = dict(labels="sht_labels.csv", normal_id=8, concat=True, depth=2, layers=2, seed=2)
SETUPS = {"ucf": UCF, "sht": SHT}


# ------------------------------------------------------------------------------------------
# hand-made authors'-layout checkpoints
# ------------------------------------------------------------------------------------------
def _ln(g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return 1 + 0.1 * torch.randn(width, generator=g), 0.05 * torch.randn(width, generator=g)


def openai_resblocks(g: torch.Generator, prefix: str, width: int, layers: int) -> dict[str, torch.Tensor]:
    sd = {}
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        sd[p + "attn.in_proj_weight"] = torch.randn(3 * width, width, generator=g) * width**-0.5
        sd[p + "attn.in_proj_bias"] = 0.05 * torch.randn(3 * width, generator=g)
        sd[p + "attn.out_proj.weight"] = torch.randn(width, width, generator=g) * width**-0.5
        sd[p + "attn.out_proj.bias"] = 0.05 * torch.randn(width, generator=g)
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = _ln(g, width)
        sd[p + "mlp.c_fc.weight"] = torch.randn(4 * width, width, generator=g) * width**-0.5
        sd[p + "mlp.c_fc.bias"] = 0.05 * torch.randn(4 * width, generator=g)
        sd[p + "mlp.c_proj.weight"] = torch.randn(width, 4 * width, generator=g) * (4 * width) ** -0.5
        sd[p + "mlp.c_proj.bias"] = 0.05 * torch.randn(width, generator=g)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = _ln(g, width)
    return sd


def openai_vit(g: torch.Generator, width: int = 64, patch: int = 8, image: int = 32, layers: int = 2, out: int = D) -> dict[str, torch.Tensor]:
    grid = image // patch
    sd = {
        "conv1.weight": torch.randn(width, 3, patch, patch, generator=g) * (3 * patch * patch) ** -0.5,
        "class_embedding": 0.1 * torch.randn(width, generator=g),
        "positional_embedding": 0.1 * torch.randn(grid * grid + 1, width, generator=g),
        "proj": torch.randn(width, out, generator=g) * width**-0.5,
    }
    sd["ln_pre.weight"], sd["ln_pre.bias"] = _ln(g, width)
    sd["ln_post.weight"], sd["ln_post.bias"] = _ln(g, width)
    sd.update(openai_resblocks(g, "", width, layers))
    return sd


def axial_module(depth: int, seed: int) -> AxialImageTransformer:
    """The release's temporal transformer (axial_attention package), with perturbed weights."""
    torch.manual_seed(seed)
    m = AxialImageTransformer(dim=E, depth=depth, heads=8, dim_heads=None, reversible=True, axial_pos_emb_shape=(32, 16))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def class_table(setup: dict) -> tuple[list[str], int]:
    t = read_labels(asset_path(setup["labels"]))
    assert t.normal_id == setup["normal_id"]
    return t.names, t.normal_id


def hand_made(setup: dict, names: list[str] | None = None, image_encoder: bool = True) -> dict[str, torch.Tensor]:
    """A full authors'-layout state dict (keys `net.*`) from random tensors in the right shapes."""
    names = names or class_table(setup)[0]
    c, k = len(names), len(names) - 1
    g = torch.Generator().manual_seed(setup["seed"])
    sd: dict[str, torch.Tensor] = {}
    tok = 0.05 * torch.randn(VOCAB, W, generator=g)
    sd["token_embedding.weight"] = tok
    sd["text_encoder.positional_embedding"] = 0.05 * torch.randn(CTX_LEN, W, generator=g)
    sd.update(openai_resblocks(g, "text_encoder.", W, setup["layers"]))
    sd["text_encoder.ln_final.weight"], sd["text_encoder.ln_final.bias"] = _ln(g, W)
    sd["text_encoder.text_projection"] = torch.randn(W, D, generator=g) * W**-0.5
    # Prompt buffers the way the release computes them: token embeddings of "X X ... X name."
    emb = tok[tokenize(class_prompts(names, N_CTX))]
    sd["prompt_learner.ctx"] = 0.02 * torch.randn(c, N_CTX, W, generator=g)
    sd["prompt_learner.token_prefix"] = emb[:, :1].clone()
    sd["prompt_learner.token_suffix"] = emb[:, 1 + N_CTX :].clone()
    sd["selector_model.logit_scale"] = torch.tensor(math.log(1 / 0.07))
    sd["selector_model.bn_layer.running_mean"] = 0.3 * torch.randn(k, generator=g)
    sd["selector_model.bn_layer.running_var"] = 0.5 + torch.rand(k, generator=g)
    sd["selector_model.bn_layer.num_batches_tracked"] = torch.tensor(123)
    in_dim = D + (k if setup["concat"] else 0)
    sd["temporal_model.projection.weight"] = torch.randn(E, in_dim, generator=g) * in_dim**-0.5
    sd["temporal_model.projection.bias"] = 0.05 * torch.randn(E, generator=g)
    for key, v in axial_module(setup["depth"], setup["seed"]).state_dict().items():
        sd["temporal_model.axial_attn." + key] = v.clone()
    sd["temporal_model.classifier.layer_norm.weight"], sd["temporal_model.classifier.layer_norm.bias"] = _ln(g, E)
    sd["temporal_model.classifier.linear.weight"] = torch.randn(1, E, generator=g) * E**-0.5
    sd["temporal_model.classifier.linear.bias"] = torch.zeros(1)
    if image_encoder:
        for key, v in openai_vit(g).items():
            sd["image_encoder." + key] = v
    return {"net." + key: v for key, v in sd.items()}


def save_reference(path, net_sd: dict, centroid: torch.Tensor | None = None, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net_sd, "epoch": 3, **extra}, path)
    if centroid is not None:
        torch.save(centroid, path.parent / "ncentroid.pt")


def random_centroid(seed: int) -> torch.Tensor:
    return 0.2 * torch.randn(D, generator=torch.Generator().manual_seed(100 + seed))


# ------------------------------------------------------------------------------------------
# independent reference forwards (OpenAI CLIP, the release's inference)
# ------------------------------------------------------------------------------------------
def layer_norm(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def openai_transformer(x: torch.Tensor, sd: dict, prefix: str, layers: int, heads: int, causal: bool) -> torch.Tensor:
    b, length, width = x.shape
    dh = width // heads
    mask = torch.full((length, length), float("-inf")).triu(1) if causal else torch.zeros(length, length)
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        h = layer_norm(x, sd, p + "ln_1")
        qkv = h @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]
        q, k, v = (t.reshape(b, length, heads, dh).transpose(1, 2) for t in qkv.split(width, dim=-1))
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(dh) + mask).softmax(dim=-1)
        h = (att @ v).transpose(1, 2).reshape(b, length, width)
        x = x + h @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        h = layer_norm(x, sd, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return x


def reference_text_features(net_sd: dict, layers: int) -> torch.Tensor:
    sd = {k[4:]: v for k, v in net_sd.items()}
    prompts = torch.cat([sd["prompt_learner.token_prefix"], sd["prompt_learner.ctx"], sd["prompt_learner.token_suffix"]], dim=1)
    # EOT: the first suffix row equal to the EOT token's embedding (the highest token id).
    is_eot = (sd["prompt_learner.token_suffix"] == sd["token_embedding.weight"][EOT]).all(dim=-1)
    eot = 1 + N_CTX + is_eot.float().argmax(dim=1)
    x = prompts + sd["text_encoder.positional_embedding"]
    x = openai_transformer(x, sd, "text_encoder.", layers, max(1, W // 64), causal=True)
    x = layer_norm(x, sd, "text_encoder.ln_final")
    return x[torch.arange(x.shape[0]), eot] @ sd["text_encoder.text_projection"]


def reference_predict(net_sd: dict, axial: AxialImageTransformer, setup: dict, features: torch.Tensor, centroid: torch.Tensor):
    """The release's test-mode forward (METHOD §10), written out; `axial` runs its own forward."""
    sd = {k[4:]: v for k, v in net_sd.items()}
    normal = setup["normal_id"]
    text = reference_text_features(net_sd, setup["layers"])
    d = torch.cat([text[:normal], text[normal + 1 :]]) - centroid
    d = d / d.norm(dim=-1, keepdim=True)
    t = features.shape[0]
    t_pad = math.ceil(t / 512) * 512
    s_size = t_pad // 512
    x = features[torch.arange(t_pad) % t] - centroid
    sim = x @ d.T
    sim = (sim - sd["selector_model.bn_layer.running_mean"]) / torch.sqrt(sd["selector_model.bn_layer.running_var"] + 1e-5)
    inp = torch.cat([sim, x], dim=-1) if setup["concat"] else x
    h = inp @ sd["temporal_model.projection.weight"].T + sd["temporal_model.projection.bias"]
    h = h.reshape(32, s_size, 16, E).permute(1, 3, 0, 2)  # "(n s l) d -> (s) d n l"
    with torch.no_grad():
        h = axial(h)
    h = h.permute(2, 0, 3, 1).reshape(t_pad, E)  # back to "(n s l) d"
    h = F.layer_norm(h, (E,), sd["temporal_model.classifier.layer_norm.weight"], sd["temporal_model.classifier.layer_norm.bias"], eps=1e-5)
    p = torch.sigmoid(h @ sd["temporal_model.classifier.linear.weight"].T + sd["temporal_model.classifier.linear.bias"]).squeeze(-1)
    abn = sim.softmax(dim=-1) * p[:, None]
    probs = torch.cat([abn[:, :normal], (1 - p)[:, None], abn[:, normal:]], dim=1)
    return p[:t], probs[:t]


# ------------------------------------------------------------------------------------------
# our modules -> the authors' layout
# ------------------------------------------------------------------------------------------
def _unmap_blocks(hf: dict[str, torch.Tensor], src: str, dst: str, layers: int, out: dict[str, torch.Tensor]) -> None:
    """transformers `encoder.layers.{i}.*` under `src` -> OpenAI `transformer.resblocks.{i}.*` under `dst`."""
    for i in range(layers):
        s, d = f"{src}encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
        q, k, v = (f"{s}self_attn.{n}_proj" for n in "qkv")
        out[d + "attn.in_proj_weight"] = torch.cat([hf[q + ".weight"], hf[k + ".weight"], hf[v + ".weight"]])
        out[d + "attn.in_proj_bias"] = torch.cat([hf[q + ".bias"], hf[k + ".bias"], hf[v + ".bias"]])
        for a, h in BLOCK_MAP.items():
            out[d + a] = hf[s + h]


def to_reference_state_dict(model: AnomalyCLIP) -> dict[str, torch.Tensor]:
    """Our modules -> the authors' layout (`net.*` keys, OpenAI CLIP text tower). No image encoder."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    out["token_embedding.weight"] = sd[TEXT + "embeddings.token_embedding.weight"]
    out["text_encoder.positional_embedding"] = sd[TEXT + "embeddings.position_embedding.weight"]
    _unmap_blocks(sd, TEXT, "text_encoder.", model.text_encoder.clip.config.num_hidden_layers, out)
    out["text_encoder.ln_final.weight"] = sd[TEXT + "final_layer_norm.weight"]
    out["text_encoder.ln_final.bias"] = sd[TEXT + "final_layer_norm.bias"]
    out["text_encoder.text_projection"] = sd["text_encoder.clip.text_projection.weight"].T.contiguous()
    for name in ("ctx", "token_prefix", "token_suffix"):
        out[f"prompt_learner.{name}"] = sd[f"prompt_learner.{name}"]
    out["selector_model.logit_scale"] = torch.tensor(math.log(1 / 0.07))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        out[f"selector_model.bn_layer.{name}"] = sd[f"selector.bn.{name}"]
    for k, v in sd.items():
        if k.startswith("temporal."):
            out["temporal_model." + k[len("temporal.") :]] = v
    return {PREFIX + k: v for k, v in out.items()}
