"""The class space (METHOD §1): names, the normal class, and abnormal-only ("K-space") indexing.

Numpy only, so metrics, writers and plots use the same rules without importing torch;
`to_k_space` also works on torch tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from anomalyclip.errors import InputError


def normal_index(names: Sequence[str], where: object = None) -> int:
    """The id of the one class named 'normal' (any case, surrounding spaces ignored)."""
    found = [i for i, n in enumerate(names) if str(n).strip().lower() == "normal"]
    if len(found) != 1:
        raise InputError(f"exactly one class must be named 'Normal' (any case), got {list(names)}", where)
    return found[0]


def abnormal_ids(num_classes: int, normal_id: int) -> list[int]:
    return [c for c in range(num_classes) if c != normal_id]


def to_k_space(labels, normal_id: int):
    """Class ids -> indices among the abnormal classes: ids above `normal_id` move down by one.
    Works on ints, numpy arrays and torch tensors alike (`(x > n) * 1` is an integer in each)."""
    return labels - (labels > normal_id) * 1


def best_abnormal(probs: np.ndarray, normal_id: int) -> np.ndarray:
    """Per row of `probs (N, C)`, the most probable abnormal class id; ties go to the lower id,
    as one argmax over the abnormal columns would. Reads the columns either side of the normal
    one as views, so no `(N, K)` copy is made."""
    left, right = probs[:, :normal_id], probs[:, normal_id + 1 :]
    if left.shape[1] == 0:
        return right.argmax(axis=1) + normal_id + 1
    if right.shape[1] == 0:
        return left.argmax(axis=1)
    return np.where(right.max(axis=1) > left.max(axis=1), right.argmax(axis=1) + normal_id + 1, left.argmax(axis=1))


def predict_classes(scores: np.ndarray, probs: np.ndarray, normal_id: int, threshold: float) -> np.ndarray:
    """Normal where `score < threshold`, else the most probable abnormal class (METHOD §11)."""
    return np.where(scores < threshold, normal_id, best_abnormal(probs, normal_id)).astype(np.int64)


def _folder_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def class_of_folder(folder: str, names: Sequence[str], normal_id: int) -> int | None:
    """The class a dataset's class folder stands for: its name matched case-insensitively
    (spaces, `_` and `-` alike) against the class names; else a name starting with `normal` or
    holding the word `normal` (`Normal_Videos_event`, `Training_Normal_Videos_Anomaly`) is the
    normal class; else None."""
    key = _folder_key(folder)
    for i, name in enumerate(names):
        if _folder_key(name) == key:
            return i
    if key.startswith("normal") or "normal" in re.split(r"[^a-z]+", key):
        return normal_id
    return None


@dataclass(frozen=True)
class ClassTable:
    """Class names in the order every label id indexes, and the normal class."""

    names: list[str]
    normal_id: int

    @classmethod
    def from_names(cls, names: Sequence[str], where: object = None) -> ClassTable:
        names = [str(n) for n in names]
        return cls(names, normal_index(names, where))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def abnormal_ids(self) -> list[int]:
        return abnormal_ids(self.num_classes, self.normal_id)
