"""What every checkpoint format loads into."""

from __future__ import annotations

from dataclasses import dataclass

from anomalyclip.model.anomalyclip import AnomalyCLIP


@dataclass
class LoadedModel:
    model: AnomalyCLIP
    threshold: float | None  # Youden threshold of the last evaluation, if any
    source: str  # "anomalyclip" (ours), "export" or "reference" (the authors' release)
