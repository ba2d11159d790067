"""Published numbers to compare a run with, in one typed table (percent, as the papers print them).

One table so the presets, the README and the HTML report read the same values. Each row carries its
source as text. Only numbers read from a source are here: per-class values of the AnomalyCLIP
paper (UCF-Crime per-class AUC, XD-Violence per-class AP) could not be read from a source text
while this table was written, so `per_class` is empty rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from anomalyclip.finegrained import DEFAULT_TIOUS as TIOUS

DATASETS = ("shanghaitech", "ucfcrime", "xdviolence")

ANOMALYCLIP_PAPER = (
    "Zanella et al., Delving into CLIP latent space for Video Anomaly Recognition, "
    "CVIU 249:104163 (2024), arXiv:2310.02835"
)
VADCLIP_PAPER = (
    "Wu et al., VadCLIP: Adapting Vision-Language Models for Weakly Supervised Video Anomaly "
    "Detection, AAAI 2024, arXiv:2308.11681"
)


@dataclass(frozen=True)
class Source:
    paper: str
    table: str
    row: str
    note: str = ""

    def text(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.paper}; {self.table}; row '{self.row}'{note}"


@dataclass(frozen=True)
class PublishedRow:
    """One method's numbers on one dataset; None where the source gives none."""

    dataset: str  # preset name: shanghaitech, ucfcrime, xdviolence
    method: str  # anomalyclip, zeroshot, vadclip (the `method` key of metrics.json where it applies)
    label: str
    source: Source
    auc: float | None = None
    ap: float | None = None
    mauc: float | None = None
    map: float | None = None
    map_tiou: tuple[float, ...] | None = None  # at TIOUS
    map_tiou_avg: float | None = None
    per_class_metric: str | None = None  # "AUC" or "AP"
    per_class: tuple[tuple[str, float], ...] = ()  # (class name, value), only from a source text

    def value(self, key: str) -> float | None:
        """The published value under a metrics.json key (percent), or None."""
        if key.startswith("map_tiou_") and key != "map_tiou_avg":
            th = float(key.rsplit("_", 1)[1])
            return None if self.map_tiou is None or th not in TIOUS else self.map_tiou[TIOUS.index(th)]
        return {
            "auc_roc": self.auc, "auc_pr": self.ap, "mean_mc_auroc": self.mauc,
            "mean_mc_aupr": self.map, "map_tiou_avg": self.map_tiou_avg,
        }.get(key)


def _anomalyclip(dataset: str, table: str, **values) -> PublishedRow:
    return PublishedRow(dataset, "anomalyclip", "AnomalyCLIP ViT-B/16 (paper)",
                        Source(ANOMALYCLIP_PAPER, table, "AnomalyCLIP (ViT-B/16)"), **values)


def _zeroshot(dataset: str, table: str, **values) -> PublishedRow:
    return PublishedRow(dataset, "zeroshot", "CLIP zero-shot (paper)",
                        Source(ANOMALYCLIP_PAPER, table, "zero-shot CLIP"), **values)


def _vadclip(dataset: str, table: str, tiou: tuple[float, ...], avg: float) -> PublishedRow:
    return PublishedRow(dataset, "vadclip", "VadCLIP (peer, fine-grained)",
                        Source(VADCLIP_PAPER, table, "VadCLIP"), map_tiou=tiou, map_tiou_avg=avg)


PUBLISHED: tuple[PublishedRow, ...] = (
    _anomalyclip("shanghaitech", "comparison with the state of the art, ShanghaiTech", auc=98.07, mauc=96.46),
    _zeroshot("shanghaitech", "comparison with the state of the art, ShanghaiTech", auc=49.17, mauc=51.02),
    _anomalyclip("ucfcrime", "comparison with the state of the art, UCF-Crime", auc=86.36, mauc=90.66),
    _zeroshot("ucfcrime", "comparison with the state of the art, UCF-Crime", auc=58.63, mauc=74.28),
    _vadclip("ucfcrime", "fine-grained detection mAP@tIoU, UCF-Crime", (11.72, 7.83, 6.40, 4.53, 2.93), 6.68),
    _anomalyclip("xdviolence", "comparison with the state of the art, XD-Violence", ap=78.51, map=49.41),
    _zeroshot("xdviolence", "comparison with the state of the art, XD-Violence", ap=27.21, map=21.32),
    _vadclip("xdviolence", "fine-grained detection mAP@tIoU, XD-Violence", (37.03, 30.84, 23.38, 17.90, 14.31), 24.70),
)


def published_for(dataset: str | None) -> list[PublishedRow]:
    """The rows for a preset name, in table order; [] for an unknown or synthetic dataset."""
    return [r for r in PUBLISHED if r.dataset == dataset]


def published_row(dataset: str | None, method: str) -> PublishedRow | None:
    return next((r for r in published_for(dataset) if r.method == method), None)
