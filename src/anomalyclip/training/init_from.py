"""Starting a run from released weights (the authors' `last.ckpt`, or one of ours): fine-tuning
on the same classes, or adapting to a new dataset, where what belongs to a class is carried
over by class name and the rest starts fresh."""

from __future__ import annotations

import dataclasses

import torch

from anomalyclip.classes import ClassTable, abnormal_ids
from anomalyclip.config import ModelConfig
from anomalyclip.model.anomalyclip import AnomalyCLIP

# The architecture comes from the released file, not from the preset.
ARCHITECTURE = ("n_ctx", "feature_dim", "emb_size", "depth", "heads", "num_segments", "seg_length", "concat_features")
PER_CLASS = ("prompt_learner.ctx", "prompt_learner.token_prefix", "prompt_learner.token_suffix")  # (C, ...)
PER_ABNORMAL = ("selector.bn.running_mean", "selector.bn.running_var")  # (K,)


def model_config_from(source: ModelConfig, target: ModelConfig, classes: ClassTable) -> ModelConfig:
    arch = {name: getattr(source, name) for name in ARCHITECTURE}
    return dataclasses.replace(target, **arch, class_names=list(classes.names), normal_id=classes.normal_id)


def _rows(src_names: list[str], dst_names: list[str]) -> list[tuple[int, int]]:
    where = {n: i for i, n in enumerate(src_names)}
    return [(where[n], j) for j, n in enumerate(dst_names) if n in where]


@torch.no_grad()
def transfer(source: AnomalyCLIP, target: AnomalyCLIP, keep_centroid: bool) -> dict[str, list[str]]:
    """Copy `source`'s weights into `target` (built with `model_config_from`); returns what was
    copied, what starts fresh, and the classes new to the weights."""
    src, dst = source.state_dict(), target.state_dict()
    s_names, d_names = list(source.cfg.class_names), list(target.cfg.class_names)
    s_abn = [s_names[i] for i in abnormal_ids(len(s_names), source.cfg.normal_id)]
    d_abn = [d_names[i] for i in abnormal_ids(len(d_names), target.cfg.normal_id)]
    report: dict[str, list[str]] = {"copied": [], "fresh": [], "new_classes": [n for n in d_names if n not in s_names]}
    for key, t in dst.items():
        if key == "centroid" and not keep_centroid:
            report["fresh"].append(key)
        elif key in PER_CLASS or key in PER_ABNORMAL:
            pairs = _rows(s_names, d_names) if key in PER_CLASS else _rows(s_abn, d_abn)
            for i, j in pairs:
                t[j] = src[key][i]
            (report["copied"] if pairs else report["fresh"]).append(key)
        elif key in src and src[key].shape == t.shape:
            t.copy_(src[key])
            report["copied"].append(key)
        else:
            report["fresh"].append(key)  # e.g. the projection of concat features over another K
    return report
