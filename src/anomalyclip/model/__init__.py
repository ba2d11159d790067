"""The network: frozen CLIP text tower with learned prompts, selector, temporal model."""

from anomalyclip.model.anomalyclip import AnomalyCLIP, TrainOutput

__all__ = ["AnomalyCLIP", "TrainOutput"]
