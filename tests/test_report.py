"""`anomalyclip report`: folders read, bad input refused, the page checked in a real headless browser.

The test inputs are two small eval folders written here from synthetic arrays (no training):
one AnomalyCLIP-like run on the last epoch with fine-grained mAP, one zero-shot-like run.
"""

import argparse
import dataclasses
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyclip.errors import InputError
from anomalyclip.metrics import compute_metrics
from anomalyclip.classes import predict_classes
from anomalyclip.published import PUBLISHED, published_for, published_row
from anomalyclip.report.tables import markdown_table
from anomalyclip.report import build_report
from anomalyclip.cli.report import add_arguments, run
from anomalyclip.report.html import HEADLINE
from anomalyclip.report.runs import read_run
from anomalyclip.report.series import decode, encode, max_pool, video_series

UCF = ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "Normal",
       "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
NORMAL = 7
LONG = 5000  # frames of the longest test video: downsampled in the page


def _tiny_png(path: Path, colour) -> None:
    Image.new("RGB", (40, 30), colour).save(path)


def write_eval_folder(path: Path, seed: int, signal: float, extra: dict, per_class_pngs: bool) -> dict:
    """An eval folder as `anomalyclip eval` writes it, from synthetic frames: abnormal videos
    hold one span of their class; `signal` sets how well scores and probabilities find it."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    classes = [0, 2, 5, 6, 8, 10, 13, NORMAL, NORMAL, NORMAL]
    lengths = [300, 420, LONG, 250, 800, 360, 510, 640, 900, 280]
    names, labels, probs = [], [], []
    for v, (c, n) in enumerate(zip(classes, lengths)):
        y = np.full(n, NORMAL)
        if c != NORMAL:
            s = int(rng.integers(n // 5, n // 2))
            y[s : s + n // 4] = c
        logits = rng.normal(size=(n, len(UCF)))
        logits[np.arange(n), y] += signal
        logits[:, NORMAL] += 1.5
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        names.append(np.full(n, f"{UCF[c]}/{UCF[c]}_test{v:03d}_x264"))
        labels.append(y)
        probs.append(p)
    names, labels, probs = np.concatenate(names), np.concatenate(labels), np.concatenate(probs).astype(np.float32)
    scores = 1 - probs[:, NORMAL]
    m = compute_metrics(scores, probs, labels, NORMAL)
    m["class_names"] = UCF
    m["checkpoint"] = None if extra.get("method") == "zeroshot" else str(path / "checkpoints" / "last.ckpt")
    m.update(extra)
    (path / "metrics.json").write_text(json.dumps(m, indent=1))
    pred = predict_classes(scores, probs, NORMAL, m["optimal_threshold"])
    frame = np.concatenate([np.arange(n) for n in lengths])
    with open(path / "predictions.csv", "w") as f:
        f.write(",".join(["video", "frame", "label", "score", "pred"] + [f"p_{n}" for n in UCF]) + "\n")
        for i in range(len(labels)):
            f.write(f"{names[i]},{frame[i]},{labels[i]},{scores[i]:.6f},{pred[i]}," + ",".join(f"{x:.6f}" for x in probs[i]) + "\n")
    for k, name in enumerate(["roc.png", "pr.png", "confusion_matrix.png"] + (["roc_per_class.png", "pr_per_class.png"] if per_class_pngs else [])):
        _tiny_png(path / name, (40 * k, 120, 200 - 30 * k))
    return m


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    fine = {f"map_tiou_{t}": v for t, v in zip(("0.1", "0.2", "0.3", "0.4", "0.5"), (0.21, 0.15, 0.11, 0.08, 0.05))}
    fine.update(map_tiou_avg=0.12, fine_grained_rule="ucf")
    a = write_eval_folder(root / "seed1-last", 1, 2.5, dict(dataset="ucfcrime", method="anomalyclip", checkpoint_kind="last", **fine), True)
    b = write_eval_folder(root / "zeroshot", 2, 0.6, dict(method="zeroshot"), False)
    return root, [root / "seed1-last", root / "zeroshot"], [a, b]


@pytest.fixture(scope="module")
def report(folders, tmp_path_factory):
    _, paths, _ = folders
    return build_report(paths, tmp_path_factory.mktemp("out") / "report.html")


# -- published numbers -----------------------------------------------------------------------
def test_published_table():
    ucf = {r.method: r for r in published_for("ucfcrime")}
    assert (ucf["anomalyclip"].auc, ucf["anomalyclip"].mauc) == (86.36, 90.66)
    assert (ucf["zeroshot"].auc, ucf["zeroshot"].mauc) == (58.63, 74.28)
    assert ucf["vadclip"].map_tiou == (11.72, 7.83, 6.40, 4.53, 2.93) and ucf["vadclip"].map_tiou_avg == 6.68
    xd = published_row("xdviolence", "anomalyclip")
    assert (xd.ap, xd.map, xd.auc) == (78.51, 49.41, None)
    assert published_row("xdviolence", "vadclip").value("map_tiou_0.3") == 23.38
    assert published_row("shanghaitech", "zeroshot").value("mean_mc_auroc") == 51.02
    assert published_for("synthetic") == []
    for r in PUBLISHED:
        assert r.source.paper and r.source.table and r.source.row
        assert r.per_class == ()  # nothing unverified
        if r.map_tiou:
            assert r.map_tiou_avg == pytest.approx(sum(r.map_tiou) / 5, abs=0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PUBLISHED[0].auc = 1.0
    md = markdown_table()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(PUBLISHED) + 1 and "| UCF-Crime | AnomalyCLIP ViT-B/16 | 86.36 |  | 90.66 |" in md
    assert "| 24.70 | [5] row 'VadCLIP' |" in md and "[1] Zanella et al." in md and "arXiv:2308.11681" in md
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert md in readme, "README's table of published numbers: regenerate it with python -m anomalyclip.report.tables"


# -- series ----------------------------------------------------------------------------------
def test_downsampling_keeps_peaks_and_three_decimals(folders):
    _, paths, _ = folders
    run_ = read_run(paths[0])
    series = {s["name"]: s for s in video_series(run_.frames, NORMAL, max_points=2000)}
    long = next(s for s in series.values() if s["frames"] == LONG)
    assert long["k"] == 3 and len(decode(long["score"])) == 1667 <= 2000
    v = run_.frames.videos.index(long["name"])
    raw = run_.frames.scores[run_.frames.starts[v] : run_.frames.starts[v + 1]]
    assert decode(long["score"]).max() == pytest.approx(raw.max(), abs=5e-4)  # the peak survives
    assert long["true"] is not None and long["true"] in long["classes"]
    short = next(s for s in series.values() if s["frames"] == 300)
    assert short["k"] == 1 and len(decode(short["score"])) == 300
    x = np.array([0.0, 0.0004, 0.0006, 0.5, 0.9995, 1.0])
    assert np.allclose(decode(encode(x)), np.round(x, 3)) and len(encode(x)) == 16
    assert max_pool(np.array([0, 9, 0, 0, 0, 1, 0]), 3).tolist() == [9, 1, 0]


# -- bad input -------------------------------------------------------------------------------
def _copy(folders, name, tmp_path):
    root, _, _ = folders
    dst = tmp_path / name
    shutil.copytree(root / name, dst)
    return dst


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_folder_without_metrics(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no metrics.json") as e:
        build_report([tmp_path / "empty"], tmp_path / "r.html")
    assert str(tmp_path / "empty") in str(e.value)
    with pytest.raises(InputError, match="not a folder"):
        build_report([tmp_path / "missing"], tmp_path / "r.html")


@pytest.mark.parametrize("damage, match, line", [
    (lambda ls: ls[:5] + [ls[5].replace(",", ",x", 1)] + ls[6:], "corrupt row", 6),
    (lambda ls: ls[:9] + [ls[9].rsplit(",", 3)[0] + "\n"] + ls[10:], "corrupt row", 10),
    (lambda ls: ls[:-50], "metrics.json says", None),
    (lambda ls: ["video,frame,label,score\n"] + ls[1:], "header", 1),
    (lambda ls: ls[:3] + [ls[3].replace(",7,", ",99,", 1)] + ls[4:], "not a class id", 4),
    (lambda ls: ls[:1] + ls[1:40] + ls[-20:] + ls[40:-20], "not contiguous", None),
])
def test_corrupt_predictions(folders, tmp_path, damage, match, line):
    folder = _copy(folders, "zeroshot", tmp_path)
    csv = folder / "predictions.csv"
    csv.write_text("".join(damage(_lines(csv))))
    out = tmp_path / "r.html"
    out.write_text("old")
    with pytest.raises(InputError, match=match) as e:
        build_report([folder], out)
    assert str(csv) in str(e.value)
    if line is not None:
        assert e.value.line == line
    assert out.read_text() == "old"  # nothing half-written


def test_mixed_class_tables_refused(folders, tmp_path):
    folder = _copy(folders, "zeroshot", tmp_path)
    m = json.loads((folder / "metrics.json").read_text())
    m["class_names"] = [n.replace("Abuse", "Abuses") for n in m["class_names"]]
    (folder / "metrics.json").write_text(json.dumps(m))
    _, paths, _ = folders
    with pytest.raises(InputError, match="class table") as e:
        build_report([paths[0], folder], tmp_path / "r.html")
    assert str(folder) in str(e.value)


def test_cli_run(folders, tmp_path):
    _, paths, _ = folders
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(p) for p in paths] + ["--out", str(tmp_path / "r.html"), "--no-draw"])
    assert run(args) == 0
    text = (tmp_path / "r.html").read_text()
    assert "roc_per_class.png of zeroshot" not in text  # --no-draw: nothing drawn for the zero-shot folder
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text), "the page must not load anything from a network"


def test_page_is_self_contained(report):
    text = report.read_text()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text)
    assert "<script src" not in text and "@import" not in text
    assert text.count('src="data:image/png;base64,') == 10  # 5 figures x 2 runs (2 drawn by the report)
    assert text.count("drawn by the report") == 2
    assert "no checkpoint (zero-shot, untrained)" in text and "last epoch (as the paper reports)" in text


# -- the page in a real browser --------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for exe in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(exe).exists():
            pytest.skip(f"{exe} is missing: apt-get install -y chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless chromium did not start: {str(e).splitlines()[0]}")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_in_browser(browser, report, folders, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, _, metrics = folders
    browser.get(report.as_uri())
    assert _errors(browser) == []

    # headline table == metrics.json, at the displayed rounding
    for i, m in enumerate(metrics):
        for key, _ in HEADLINE:
            text = browser.find_element(By.CSS_SELECTOR, f'#headline td[data-run="{i}"][data-key="{key}"]').text
            if m.get(key) is None:
                assert text == "\u2014"
            else:
                assert text == f"{100 * m[key]:.2f}" and abs(float(text) - 100 * m[key]) <= 0.005
    header = browser.find_element(By.CSS_SELECTOR, "#headline thead").text
    assert "AnomalyCLIP ViT-B/16 (paper)" in header and "CLIP zero-shot (paper)" in header
    assert "last epoch" in header and "zero-shot, untrained" in header
    paper = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#headline td.paper")]
    assert "86.36" in paper and "58.63" in paper and "90.66" in paper and "6.68" in paper
    deltas = browser.find_elements(By.CSS_SELECTOR, "#headline td.delta")
    auc_a = browser.find_element(By.CSS_SELECTOR, '#headline td[data-run="0"][data-key="auc_roc"] + td.delta').text
    assert float(auc_a) == pytest.approx(100 * metrics[0]["auc_roc"] - 86.36, abs=0.006)
    auc_b = browser.find_element(By.CSS_SELECTOR, '#headline td[data-run="1"][data-key="auc_roc"] + td.delta').text
    assert float(auc_b) == pytest.approx(100 * metrics[1]["auc_roc"] - 58.63, abs=0.006)  # zero-shot vs zero-shot row
    assert len(deltas) == 2 * len(HEADLINE)
    cell = browser.find_element(By.CSS_SELECTOR, '#perclass td[data-run="1"][data-class="5"][data-key="mc_auroc"]').text
    assert cell == f"{100 * metrics[1]['mc_auroc'][5]:.2f}"

    # the video browser: switching the selector redraws another video
    panel = browser.find_element(By.CSS_SELECTOR, '.vplot[data-run="0"]')
    canvas = panel.find_element(By.TAG_NAME, "canvas")
    before = (panel.get_attribute("data-video"), browser.execute_script("return arguments[0].toDataURL()", canvas))
    assert before[0] == "Abuse/Abuse_test000_x264"
    Select(browser.find_element(By.ID, "video-select")).select_by_index(2)
    after = (panel.get_attribute("data-video"), browser.execute_script("return arguments[0].toDataURL()", canvas))
    assert after[0] == "Explosion/Explosion_test002_x264" and after[1] != before[1]
    assert int(panel.get_attribute("data-points")) == 1667  # 5000 frames, max-pooled to <= 2000 points
    browser.find_element(By.ID, "video-next").click()
    assert panel.get_attribute("data-video") == "Fighting/Fighting_test003_x264"
    assert browser.find_element(By.CSS_SELECTOR, '.vplot[data-run="1"]').get_attribute("data-video") == panel.get_attribute("data-video")
    assert all(img.get_property("naturalWidth") > 0 for img in browser.find_elements(By.CSS_SELECTOR, "#figures img"))
    assert _errors(browser) == []

    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot looks blank"


def test_dataset_and_checkpoint_kind_sources(folders, tmp_path):
    from anomalyclip.report.runs import checkpoint_kind_of, dataset_of

    assert checkpoint_kind_of({"checkpoint_kind": "best_on_test", "checkpoint": "x/last.ckpt"}) == ("best_on_test", False)
    assert checkpoint_kind_of({"checkpoint": "runs/a/checkpoints/best.ckpt"}) == ("best_on_test", True)
    assert checkpoint_kind_of({"checkpoint": "runs/a/checkpoints/last.ckpt"}) == ("last", True)
    assert checkpoint_kind_of({"checkpoint": "model.safetensors"}) == (None, False)
    assert dataset_of({"dataset": "xdviolence"}, {"preset": "ucfcrime"}, UCF) == ("xdviolence", False)
    assert dataset_of({}, {"preset": "synthetic"}, UCF) == ("synthetic", False)
    assert dataset_of({}, None, UCF) == ("ucfcrime", True)
    assert dataset_of({}, None, ["a", "Normal"]) == (None, False)

    folder = _copy(folders, "zeroshot", tmp_path)  # made a training run folder: config.json beside it
    m = json.loads((folder / "metrics.json").read_text())
    m.pop("method")
    m["checkpoint"] = str(folder / "checkpoints" / "best.ckpt")
    (folder / "metrics.json").write_text(json.dumps(m))
    (folder / "config.json").write_text(json.dumps({"model": {"normal_id": NORMAL}, "train": {"epochs": 50}, "preset": "ucfcrime"}))
    r = read_run(folder)
    assert (r.dataset, r.dataset_inferred, r.checkpoint_kind, r.checkpoint_kind_inferred) == ("ucfcrime", False, "best_on_test", True)
    text = build_report([folder], tmp_path / "r.html", draw_missing=False).read_text()
    assert "best on test (epoch chosen on the test set: optimistic) &ndash; inferred from the file name" in text
    assert "&quot;epochs&quot;: 50" in text  # the configuration is shown
