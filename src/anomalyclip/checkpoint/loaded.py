"""What every checkpoint format loads into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anomalyclip.model.anomalyclip import AnomalyCLIP


@dataclass
class LoadedModel:
    model: AnomalyCLIP
    threshold: float | None  # Youden threshold of the last evaluation, if any
    source: str  # "anomalyclip" (ours), "export" or "reference" (the authors' release)
    # What the file says of itself beyond the network: `checkpoint_kind` ("last": the final epoch,
    # or "best_on_test"), `epoch`, `run_config` (ours and exports of ours).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return self.meta.get("checkpoint_kind")
