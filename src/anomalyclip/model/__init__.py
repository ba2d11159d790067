"""The network: frozen CLIP text tower with learned prompts, selector, temporal model.

`AnomalyCLIP` is loaded on first use, so the light sub-modules (`grid`) import without
transformers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AnomalyCLIP", "TrainOutput", "class_probs"]


def __getattr__(name: str) -> Any:
    if name in ("AnomalyCLIP", "TrainOutput"):
        from anomalyclip.model import anomalyclip

        return getattr(anomalyclip, name)
    if name == "class_probs":
        from anomalyclip.model.class_space import class_probs

        return class_probs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
