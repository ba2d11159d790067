"""The report page: one self-contained HTML file (figures inlined as base64 PNG, the video
browser drawn by the page's own script), so it opens anywhere without a network."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np

from anomalyclip.fileio import write_text
from anomalyclip.presets import PRESETS
from anomalyclip.published import PublishedRow, published_for, published_row
from anomalyclip.report.runs import Run, check_comparable, read_run, unique_names
from anomalyclip.report.series import video_series

HEADLINE = [  # (metrics.json key, label)
    ("auc_roc", "AUC"),
    ("auc_pr", "AP"),
    ("mean_mc_auroc", "mAUC"),
    ("mean_mc_aupr", "mAP"),
    ("map_tiou_avg", "mAP@tIoU AVG"),
]
TIOU_KEYS = [(f"map_tiou_{t}", f"mAP@{t}") for t in ("0.1", "0.2", "0.3", "0.4", "0.5")] + [("map_tiou_avg", "AVG")]
FIGURE_TITLES = {
    "roc.png": "ROC (frame level)",
    "pr.png": "Precision-recall (frame level)",
    "roc_per_class.png": "ROC per class",
    "pr_per_class.png": "Precision-recall per class",
    "confusion_matrix.png": "Confusion matrix",
}
KIND_LABELS = {
    "last": "last epoch (as the paper reports)",
    "best_on_test": "best on test (epoch chosen on the test set: optimistic)",
}
METHOD_LABELS = {"anomalyclip": "AnomalyCLIP", "zeroshot": "CLIP zero-shot"}

esc = html.escape


def _pct(v) -> str:
    return "&mdash;" if v is None else f"{100 * v:.2f}"


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def kind_label(run: Run) -> str:
    if run.checkpoint_kind is None and run.method == "zeroshot":
        return "no checkpoint (zero-shot, untrained)"
    label = KIND_LABELS.get(run.checkpoint_kind, "unknown checkpoint")
    return label + (" &ndash; inferred from the file name" if run.checkpoint_kind_inferred else "")


def method_label(run: Run) -> str:
    return METHOD_LABELS.get(run.method, run.method) if run.method else "method not recorded"


def dataset_label(run: Run) -> str:
    name = PRESETS[run.dataset].title if run.dataset in PRESETS else (run.dataset or "unknown dataset")
    return name + (" (inferred from the class table)" if run.dataset_inferred else "")


def _reference(run: Run, key: str) -> PublishedRow | None:
    """The published row a run is compared with: the zero-shot row for a zero-shot run, else
    AnomalyCLIP's; for fine-grained mAP, the peer that publishes it (VadCLIP)."""
    if key.startswith("map_tiou"):
        return published_row(run.dataset, "vadclip")
    return published_row(run.dataset, "zeroshot" if run.method == "zeroshot" else "anomalyclip")


def _delta_cell(run: Run, key: str) -> str:
    value, ref = _num(run.metrics.get(key)), _reference(run, key)
    published = ref.value(key) if ref else None
    if value is None or published is None:
        return '<td class="num delta">&mdash;</td>'
    d = 100 * value - published
    sign = "pos" if d >= 0 else "neg"
    return f'<td class="num delta {sign}" title="minus {esc(ref.label)}">{d:+.2f}</td>'


def _run_header(run: Run, i: int) -> str:
    return (f'<th colspan="2" class="run" data-run="{i}">{esc(run.name)}<br><small>{esc(method_label(run))}; '
            f'{kind_label(run)}</small></th>')


def headline_table(runs: list[Run]) -> str:
    dataset = runs[0].dataset
    rows = published_for(dataset)
    pub_cols = [r for r in rows if r.method in ("anomalyclip", "zeroshot", "vadclip")]
    head = "".join(_run_header(r, i) for i, r in enumerate(runs))
    head += "".join(f'<th class="paper" title="{esc(r.source.text())}">{esc(r.label)}</th>' for r in pub_cols)
    sub = "".join('<th>value</th><th>&Delta; vs paper</th>' for _ in runs) + "".join("<th></th>" for _ in pub_cols)
    main_key = "auc_pr" if dataset == "xdviolence" else "auc_roc"
    body = []
    for key, label in HEADLINE:
        cls = ' class="headline-metric"' if key == main_key else ""
        cells = "".join(
            f'<td class="num" data-run="{i}" data-key="{key}">{_pct(_num(r.metrics.get(key)))}</td>' + _delta_cell(r, key)
            for i, r in enumerate(runs)
        )
        cells += "".join(
            f'<td class="num paper">{"&mdash;" if p.value(key) is None else f"{p.value(key):.2f}"}</td>' for p in pub_cols
        )
        body.append(f"<tr{cls}><th>{label}</th>{cells}</tr>")
    note = ("" if rows else f'<p class="note">No published numbers for dataset {esc(dataset_label(runs[0]))}.</p>')
    return (
        '<table id="headline"><thead><tr><th>metric (%)</th>' + head + "</tr><tr><th></th>" + sub
        + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note
        + '<p class="note">&Delta;: run minus the paper row of the same method (CLIP zero-shot for a zero-shot run, '
        "else AnomalyCLIP ViT-B/16); for mAP@tIoU, minus VadCLIP, the peer that publishes it. "
        "The headline metric of the dataset is in bold. Hover a paper column for its source.</p>"
    )


def finegrained_table(runs: list[Run]) -> str:
    """mAP at each tIoU threshold, when any run has them, beside VadCLIP's."""
    if not any(k in r.metrics for r in runs for k, _ in TIOU_KEYS):
        return '<p class="note">No run holds fine-grained mAP@tIoU (metrics.json without map_tiou_* keys).</p>'
    peer = published_row(runs[0].dataset, "vadclip")
    head = "".join(f"<th>{esc(r.name)}<br><small>rule: {esc(str(r.metrics.get('fine_grained_rule', 'not recorded')))}</small></th>" for r in runs)
    head += f'<th class="paper" title="{esc(peer.source.text())}">{esc(peer.label)}</th>' if peer else ""
    body = []
    for key, label in TIOU_KEYS:
        cells = "".join(f'<td class="num" data-run="{i}" data-key="{key}">{_pct(_num(r.metrics.get(key)))}</td>' for i, r in enumerate(runs))
        if peer:
            v = peer.value(key)
            cells += f'<td class="num paper">{"&mdash;" if v is None else f"{v:.2f}"}</td>'
        body.append(f"<tr><th>{label}</th>{cells}</tr>")
    note = ""
    if runs[0].dataset == "xdviolence":
        note = ('<p class="note">XD-Violence: its original ground truth gives each segment its own class; with one '
                "label per video, as AnomalyCLIP's lists have, the numbers compare with VadCLIP's only where a video "
                "holds one class.</p>")
    return '<table id="finegrained"><thead><tr><th>mAP (%)</th>' + head + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note


def _per_class_value(run: Run, key: str, c: int) -> str:
    values = run.metrics.get(key)
    return _pct(_num(values[c]) if isinstance(values, list) else None)


def per_class_table(runs: list[Run]) -> str:
    names, normal = runs[0].class_names, runs[0].normal_id
    counts = runs[0].counts
    paper = published_row(runs[0].dataset, "anomalyclip")
    paper_metric = {"ucfcrime": "AUC", "xdviolence": "AP"}.get(runs[0].dataset)
    paper_values = dict(paper.per_class) if paper else {}
    head = "".join(f'<th colspan="4" class="run">{esc(r.name)}</th>' for r in runs)
    sub = "".join("<th>AUC</th><th>AP</th><th>top-1</th><th>top-5</th>" for _ in runs)
    if paper_metric:
        head += f'<th class="paper">paper {paper_metric}</th>'
        sub += "<th></th>"
    order = [c for c in range(len(names)) if c != normal] + [normal]
    body = []
    for c in order:
        cells = "".join(
            "".join(f'<td class="num" data-run="{i}" data-class="{c}" data-key="{k}">{_per_class_value(r, k, c)}</td>'
                    for k in ("mc_auroc", "mc_aupr", "top1_accuracy", "top5_accuracy"))
            for i, r in enumerate(runs)
        )
        if paper_metric:
            v = paper_values.get(names[c])
            cells += f'<td class="num paper">{"&mdash;" if v is None else f"{v:.2f}"}</td>'
        cls = ' class="normal"' if c == normal else (' class="absent"' if counts[c] == 0 else "")
        body.append(f"<tr{cls}><th>{esc(names[c])}</th><td class=\"num\">{int(counts[c]):,}</td>{cells}</tr>")
    notes = ["Per class, one vs rest, over all test frames (METHOD &sect;11); &mdash;: the class has no test frame. "
             "The normal row (last) is not part of mAUC / mAP. top-1 / top-5 of the normal class: frames predicted normal."]
    if paper_metric:
        notes.append(f"Paper per-class {paper_metric}: not transcribed, since it could not be read from a source "
                     "text when this table was built (see anomalyclip.published).")
    if any(not np.array_equal(r.counts, counts) for r in runs[1:]):
        notes.append("The runs' test sets differ; frame counts are those of the first run.")
    return ('<table id="perclass"><thead><tr><th rowspan="2">class</th><th rowspan="2">frames</th>' + head
            + "</tr><tr>" + sub + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
            + "".join(f'<p class="note">{n}</p>' for n in notes))


def figures_grid(runs: list[Run]) -> str:
    """One row per figure kind, the runs side by side in it."""
    blocks = []
    for name, title in FIGURE_TITLES.items():
        if not any(name in r.figures for r in runs):
            continue
        cells = []
        for r in runs:
            if name in r.figures:
                b64 = base64.b64encode(r.figures[name]).decode("ascii")
                drawn = " (drawn by the report from predictions.csv)" if name in r.drawn else ""
                cells.append(f'<figure><img alt="{esc(name)} of {esc(r.name)}" data-figure="{esc(name)}" '
                             f'src="data:image/png;base64,{b64}"><figcaption>{esc(r.name)}: {esc(name)}{drawn}</figcaption></figure>')
            else:
                cells.append(f'<figure class="note">{esc(r.name)}: no {esc(name)} in the folder</figure>')
        blocks.append(f'<h3>{esc(title)}</h3><div class="figrow">{"".join(cells)}</div>')
    return '<div id="figures">' + "".join(blocks) + "</div>"


def config_section(runs: list[Run]) -> str:
    cols = []
    for r in runs:
        m = r.metrics
        facts = [
            ("folder", str(r.path.resolve())),
            ("dataset", dataset_label(r)),
            ("method", method_label(r)),
            ("checkpoint", str(m.get("checkpoint") or ("none" if r.method == "zeroshot" else "not recorded"))),
            ("numbers from", html.unescape(kind_label(r))),
            ("threshold (Youden)", f"{m['optimal_threshold']:.4f}"),
            ("test frames", f"{len(r.frames.labels):,} ({int((r.frames.labels != r.normal_id).sum()):,} abnormal) in {len(r.frames.videos):,} videos"),
        ]
        if "fine_grained_rule" in m:
            facts.append(("fine-grained rule", str(m["fine_grained_rule"])))
        zs = m.get("zeroshot") if isinstance(m.get("zeroshot"), dict) else {}
        facts += [(f"zero-shot {k.replace('_', ' ')}", f"{zs[k]:.2f}" if isinstance(zs[k], float) else str(zs[k]))
                  for k in ("clip", "template", "logit_scale", "logit_scale_source") if k in zs]
        dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
        cfg = (f"<details><summary>config.json</summary><pre>{esc(json.dumps(r.config, indent=2))}</pre></details>"
               if r.config else '<p class="note">no config.json (an eval folder)</p>')
        cols.append(f'<div class="runcfg" data-run-config="{esc(r.name)}"><h3>{esc(r.name)}</h3><dl>{dl}</dl>{cfg}</div>')
    return '<div class="columns">' + "".join(cols) + "</div>"


def _hex(rgba) -> str:
    return "#" + "".join(f"{round(255 * x):02x}" for x in rgba[:3])


def video_payload(runs: list[Run], max_points: int) -> dict:
    from anomalyclip.plots import class_colours

    order: list[str] = []
    seen: set[str] = set()
    for r in runs:
        for v in r.frames.videos:
            if v not in seen:
                seen.add(v)
                order.append(v)
    return {
        "order": order,
        "class_names": runs[0].class_names,
        "colours": [_hex(c) for c in class_colours(runs[0].class_names, runs[0].normal_id)],
        "max_points": max_points,
        "runs": [
            {"name": r.name, "threshold": float(r.metrics["optimal_threshold"]),
             "videos": {s["name"]: s for s in video_series(r.frames, r.normal_id, max_points)}}
            for r in runs
        ],
    }


def video_browser(runs: list[Run], payload: dict) -> str:
    first = runs[0]
    options = []
    for i, name in enumerate(payload["order"]):
        s = payload["runs"][0]["videos"].get(name)
        what = "" if s is None else f" ({'normal' if s['true'] is None else first.class_names[s['true']]}, {s['frames']:,} frames)"
        options.append(f'<option value="{i}">{esc(name + what)}</option>')
    panels = "".join(
        f'<div class="vplot" data-run="{i}"><h3>{esc(r.name)}</h3><canvas height="260"></canvas>'
        f'<div class="vlegend"></div><div class="vinfo"></div></div>'
        for i, r in enumerate(runs)
    )
    return (
        '<div class="controls"><button type="button" id="video-prev">&larr;</button>'
        f'<select id="video-select">{"".join(options)}</select>'
        '<button type="button" id="video-next">&rarr;</button></div>'
        f'<div class="columns">{panels}</div>'
        f'<p class="note">Curves are downsampled to at most {payload["max_points"]:,} points per video: each point is the '
        "maximum of the anomaly score (and of each class probability) over a bin of whole frames, so peaks survive; "
        "values are rounded to 3 decimals. Shaded: ground-truth abnormal frames (label not normal), exact. Dashed: the "
        "run's threshold (metrics.json optimal_threshold). Shown classes: the 3 abnormal classes with the highest "
        "peak probability in the video, plus its true class.</p>"
    )


def _asset(name: str) -> str:
    return resources.files("anomalyclip.report").joinpath(name).read_text()


def _script_json(obj) -> str:
    """JSON safe inside a <script> element (no '</' can close it)."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def render(runs: list[Run], max_points: int = 2000) -> str:
    payload = video_payload(runs, max_points)
    title = f"AnomalyCLIP report: {', '.join(r.name for r in runs)}"
    sections = [
        ("Headline numbers", headline_table(runs)),
        ("Fine-grained detection", finegrained_table(runs)),
        ("Per class", per_class_table(runs)),
        ("Curves and confusion matrices", figures_grid(runs)),
        ("Per video", video_browser(runs, payload)),
        ("Runs: configuration and checkpoint", config_section(runs)),
    ]
    body = "".join(f'<section id="s{i}"><h2>{esc(h)}</h2>{content}</section>' for i, (h, content) in enumerate(sections))
    runs_line = "".join(
        f"<li><b>{esc(r.name)}</b>: {esc(dataset_label(r))}, {esc(method_label(r))}; numbers from: {kind_label(r)}</li>"
        for r in runs
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
        f"<header><h1>AnomalyCLIP report</h1><p class=\"note\">generated {datetime.now().strftime('%Y-%m-%d %H:%M')} by "
        f"<code>anomalyclip report</code></p><ul class=\"runs\">{runs_line}</ul></header>{body}"
        f'<script type="application/json" id="report-data">{_script_json(payload)}</script>'
        f"<script>{_asset('report.js')}</script></body></html>"
    )
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")  # any locale writes it; JSON and JS are ASCII


def draw_missing_figures(run: Run) -> None:
    """Per-class curves are drawn from predictions.csv when the folder has none (older eval
    folders), labelled as drawn by the report."""
    from anomalyclip.plots import plot_pr_per_class, plot_roc_per_class

    todo = [n for n in ("roc_per_class.png", "pr_per_class.png") if n not in run.figures]
    if not todo:
        return
    f = run.frames
    with tempfile.TemporaryDirectory() as tmp:
        for name in todo:
            fn = plot_roc_per_class if name == "roc_per_class.png" else plot_pr_per_class
            fn(Path(tmp) / name, f.probs, f.labels, run.class_names, run.normal_id, run_name=run.name)
            run.figures[name] = (Path(tmp) / name).read_bytes()
            run.drawn.add(name)


def build_report(paths: list[Path], out: Path, max_points: int = 2000, draw_missing: bool = True) -> Path:
    """Read every folder, refuse incomparable ones, write one HTML file atomically."""
    if not paths:
        raise ValueError("no run folder given")
    runs = [read_run(p) for p in paths]
    check_comparable(runs)
    unique_names(runs)
    if draw_missing:
        for r in runs:
            draw_missing_figures(r)
    out = Path(out)
    write_text(out, render(runs, max_points))
    return out
