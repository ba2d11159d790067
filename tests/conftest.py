import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from anomalyclip.config import ModelConfig  # noqa: E402
from anomalyclip.data.synthetic import SyntheticSpec, write_synthetic  # noqa: E402

torch.set_num_threads(2)

UCF_LIKE = ["Abuse", "Arrest", "Fighting", "Normal", "Robbery"]


def tiny_model_config(**kw) -> ModelConfig:
    base = dict(clip="random", class_names=UCF_LIKE, normal_id=3, emb_size=32, depth=1, random_clip_width=64, random_clip_layers=1)
    base.update(kw)
    return ModelConfig(**base)


def small_clip_config():
    """A full CLIP (text and image towers) of the real architecture, small: width 64, one layer,
    32-pixel images, 512-d projections."""
    from transformers import CLIPConfig

    from anomalyclip.model.clip_text import random_text_config

    text = random_text_config(width=64, layers=1, output_dim=512).to_dict()
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1, image_size=32, patch_size=16)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def save_small_clip(folder, seed: int = 0, logit_scale: float | None = None):
    """A random small `transformers.CLIPModel`, saved to `folder`; `logit_scale` sets
    exp(logit_scale) (default: transformers' initial value). Returns the model."""
    import math

    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(small_clip_config()).eval()
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(logit_scale))
    model.save_pretrained(folder)
    return model


TINY_SPEC = SyntheticSpec(
    seed=3,
    abnormal_classes=("Explosion", "Fighting", "Shooting"),
    train_abnormal_per_class=4,
    train_normal=12,
    test_abnormal_per_class=2,
    test_normal=4,
    min_len=60,
    max_len=1400,
)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP image tower saved to a folder (`--clip DIR`)."""
    from anomalyclip.video.encoder import save_random_clip_vision

    return save_random_clip_vision(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), TINY_SPEC)


def save_tiny_export(folder, class_names=("Explosion", "Fighting", "Normal", "Shooting"), seed: int = 0, threshold=0.5):
    """A small random AnomalyCLIP (512-d features, E = 32) exported to `folder`: loadable by
    `--checkpoint folder` everywhere."""
    from anomalyclip.checkpoint.export import save_export
    from anomalyclip.checkpoint.loaded import LoadedModel
    from anomalyclip.classes import normal_index
    from anomalyclip.model import AnomalyCLIP

    torch.manual_seed(seed)
    names = list(class_names)
    model = AnomalyCLIP(ModelConfig(clip="random", class_names=names, normal_id=normal_index(names), emb_size=32, random_clip_layers=1))
    save_export(LoadedModel(model.eval(), threshold, "anomalyclip"), folder)
    return folder
