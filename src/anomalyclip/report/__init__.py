"""`anomalyclip report`: one self-contained HTML page comparing run / eval folders with the paper."""

from __future__ import annotations

from pathlib import Path


def build_report(paths: list[Path], out: Path, max_points: int = 2000, draw_missing: bool = True) -> Path:
    """See anomalyclip.report.html.build_report (imported on call: matplotlib is heavy)."""
    from anomalyclip.report.html import build_report as build

    return build([Path(p) for p in paths], Path(out), max_points=max_points, draw_missing=draw_missing)


__all__ = ["build_report"]
