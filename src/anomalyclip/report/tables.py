"""The published numbers as the README's markdown table (`python -m anomalyclip.report.tables`)."""

from __future__ import annotations

from anomalyclip.presets import PRESETS
from anomalyclip.published import PUBLISHED, TIOUS


def _cell(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def markdown_table() -> str:
    """The README's table of published numbers, generated from PUBLISHED; the sources as
    numbered notes under it (one per paper and table)."""
    head = ["dataset", "method", "AUC", "AP", "mAUC", "mAP"] + [f"mAP@{t}" for t in TIOUS] + ["mAP@tIoU AVG", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for r in PUBLISHED:
        where = f"{r.source.paper}; {r.source.table}" + (f" ({r.source.note})" if r.source.note else "")
        if where not in notes:
            notes.append(where)
        tiou = list(r.map_tiou) if r.map_tiou else [None] * len(TIOUS)
        cells = [PRESETS[r.dataset].title, r.label.replace(" (paper)", ""), *map(_cell, (r.auc, r.ap, r.mauc, r.map)),
                 *map(_cell, tiou), _cell(r.map_tiou_avg), f"[{notes.index(where) + 1}] row '{r.source.row}'"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[{i}] {n}  " for i, n in enumerate(notes, start=1)]
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    print(markdown_table())
