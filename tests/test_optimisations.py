"""The speed switches and fast paths compute the same numbers as the naive path (no timings here).

Naive: reversible recomputation, the full 77-token text transformer, a loop over videos for the
MIL selection, one test video per forward with text features per video, whole-file reading.
The naive pieces that are not package settings live in `tests/naive.py` (the benchmarks use them too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyclip.config import LossConfig
from anomalyclip.data import datasets
from anomalyclip.classes import ClassTable
from anomalyclip.data.formats import VideoEntry
from anomalyclip.data.sampling import train_indices
from anomalyclip.errors import InputError
from anomalyclip.evaluation import evaluate
from anomalyclip.losses import select_segments, training_losses
from anomalyclip.model import AnomalyCLIP

from conftest import UCF_LIKE, tiny_model_config
from naive import evaluate_naive, naive_model, optimised_model_config, select_segments_loop

N, L = 8, 4  # a small grid: 32 frames per item
NORMAL = 3
D = 48


def pair(**kw) -> tuple[AnomalyCLIP, AnomalyCLIP]:
    """The same weights under the naive path (the library's reversible transformer) and ours."""
    cfg = tiny_model_config(num_segments=N, seg_length=L, feature_dim=D, **kw)
    torch.manual_seed(0)
    naive = naive_model(cfg)
    with torch.no_grad():
        naive.centroid.normal_(0, 0.3)
        naive.selector.bn.running_mean.normal_()
        naive.selector.bn.running_var.uniform_(0.5, 2)
        for p in naive.temporal.parameters():  # move off the initialisation (zero biases, unit norms)
            p.add_(0.05 * torch.randn_like(p))
    fast = AnomalyCLIP(optimised_model_config(cfg))
    fast.load_state_dict(naive.state_dict())
    assert naive.cfg.recompute_temporal and not naive.cfg.truncate_text
    assert not fast.cfg.recompute_temporal and fast.cfg.truncate_text
    return naive, fast


def batch(b: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, N * L, D, generator=g)
    y = torch.tensor([0, 4, NORMAL, NORMAL][:b])
    keep = torch.rand(b, N, generator=g) < 0.5
    keep[:, 1:4] = True  # at least k kept, so no tie among pushed-away segments decides
    return x, y, keep


def train_step(m: AnomalyCLIP, x, y, keep, loop: bool):
    m.train()
    m.zero_grad(set_to_none=True)
    out = m(x)
    select = select_segments_loop if loop else select_segments
    terms = training_losses(out, y, NORMAL, LossConfig(), N, keep=keep, select=select)
    terms["loss"].backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}
    return out, terms, grads


@pytest.mark.parametrize("kw", [dict(depth=1), dict(depth=2, concat_features=True)])
@pytest.mark.parametrize("piece", [8, 1])  # the plain path on the whole batch, or grid by grid
def test_recompute_and_plain_autograd_give_the_same_scores_and_gradients(kw, piece):
    naive, fast = pair(**kw)
    fast.temporal.cpu_grids_per_piece = piece
    assert list(naive.state_dict()) == list(fast.state_dict())  # checkpoint keys do not depend on the switch
    x, y, keep = batch()
    out_n, terms_n, grads_n = train_step(naive, x, y, keep, loop=True)
    out_f, terms_f, grads_f = train_step(fast, x, y, keep, loop=False)
    torch.testing.assert_close(out_f.scores, out_n.scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_f.similarity, out_n.similarity, atol=1e-5, rtol=1e-5)
    for k in terms_n:
        torch.testing.assert_close(terms_f[k], terms_n[k], atol=1e-5, rtol=1e-5)
    assert grads_n.keys() == grads_f.keys()
    for name in grads_n:
        assert grads_n[name].abs().sum() > 0, name
        torch.testing.assert_close(grads_f[name], grads_n[name], atol=1e-5, rtol=1e-4, msg=name)
    # The BatchNorm running statistics moved identically.
    torch.testing.assert_close(fast.selector.bn.running_mean, naive.selector.bn.running_mean)


def test_truncated_and_full_text_features_are_equal():
    naive, fast = pair()
    full, short = naive.text_features(), fast.text_features()
    assert int(fast.prompt_learner.eot_index.max()) + 1 < 77
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)
    # gradients reach the prompt context the same way
    g_full = torch.autograd.grad(full.square().sum(), naive.prompt_learner.ctx)[0]
    g_short = torch.autograd.grad(short.square().sum(), fast.prompt_learner.ctx)[0]
    torch.testing.assert_close(g_short, g_full, atol=1e-5, rtol=1e-4)


def test_vectorised_selection_equals_the_loop_over_videos():
    g = torch.Generator().manual_seed(5)
    b, n, k, normal = 8, 12, 4, 2
    sim = torch.randn(b, n * 3, k, generator=g)
    abnormal = torch.tensor([0, 1, 3, 4])
    labels = torch.cat([abnormal[torch.randint(0, k, (b // 2,), generator=g)], torch.full((b // 2,), normal)])
    keep = torch.rand(b, n, generator=g) < 0.5
    keep[:, :3] = True  # at least 3 kept: no ties among the pushed-away entries
    cfg = LossConfig()
    fast = select_segments(sim, labels, normal, cfg, n, keep=keep)
    ref = select_segments_loop(sim, labels, normal, cfg, n, keep=keep)
    assert torch.equal(fast.top.sort(1).values, ref.top.sort(1).values)
    assert torch.equal(fast.bottom_abn.sort(1).values, ref.bottom_abn.sort(1).values)
    assert all(keep[i, fast.top[i]].all() for i in range(b))
    # Fewer kept than k: every kept segment is chosen by both.
    keep = torch.zeros(b, n, dtype=torch.bool)
    keep[:, 5] = True
    fast = select_segments(sim, labels, normal, cfg, n, keep=keep)
    ref = select_segments_loop(sim, labels, normal, cfg, n, keep=keep)
    assert (fast.top == 5).any(1).all() and (ref.top == 5).any(1).all()
    assert (fast.bottom_abn == 5).any(1).all() and (ref.bottom_abn == 5).any(1).all()


def test_several_videos_per_forward_equal_one_per_forward():
    _, fast = pair()
    fast.eval()
    g = torch.Generator().manual_seed(2)
    videos = [torch.randn(t, D, generator=g) for t in (5, 32, 33, 100, 70)]  # s = 1, 1, 2, 4, 3
    text = fast.text_features()
    together = fast.score_videos(videos, text)
    for v, (p, probs) in zip(videos, together):
        [(p1, probs1)] = fast.score_videos([v], text)
        torch.testing.assert_close(p, p1, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(probs, probs1, atol=1e-6, rtol=1e-5)


def _write_videos(root: Path, lengths, dtype=np.float32, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i, t in enumerate(lengths):
        p = root / f"v{i}.npy"
        np.save(p, rng.standard_normal((t, D)).astype(dtype))
        paths.append(p)
    return paths


def test_text_once_and_batched_videos_give_the_naive_evaluation(tmp_path):
    naive, fast = pair()
    lengths = [5, 40, 33, 100, 64, 7]
    _write_videos(tmp_path, lengths)
    labels = [0, NORMAL, 4, 1, NORMAL, 2]
    entries = [VideoEntry(f"v{i}", 0, t - 1, y) for i, (t, y) in enumerate(zip(lengths, labels))]
    temporal = {"v0": [(1, 3)], "v2": [(10, 20)], "v3": [(0, 30), (60, 80)], "v5": [(0, 6)]}
    classes = ClassTable(names=UCF_LIKE, normal_id=NORMAL)
    ds = datasets.TestVideos(entries, tmp_path, temporal, classes, D)
    ref = evaluate_naive(naive, ds)
    ours = evaluate(fast, ds, frames_per_forward=96, progress=False)  # several videos per forward
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours.probs, ref.probs, atol=1e-5, rtol=1e-5)
    assert np.array_equal(ours.labels, ref.labels) and np.array_equal(ours.video, ref.video)
    for k in ("auc_roc", "auc_pr", "mean_mc_auroc", "mean_mc_aupr"):
        assert ours.metrics[k] == pytest.approx(ref.metrics[k], abs=1e-6), k


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_whole_file_and_memory_mapped_items_are_identical(tmp_path, dtype):
    lengths = [3, 511, 512, 513, 1500]
    _write_videos(tmp_path, lengths, dtype)
    entries = [VideoEntry(f"v{i}", 0, t - 1, i % 3) for i, t in enumerate(lengths)]
    mapped = datasets.TrainItems(entries, tmp_path, D, N * 4, L * 4)
    whole = datasets.TrainItems(entries, tmp_path, D, N * 4, L * 4, read_whole_file=True)
    for seed in (0, 1):
        np.random.seed(seed)
        a = [mapped[i] for i in range(len(entries))]
        np.random.seed(seed)
        b = [whole[i] for i in range(len(entries))]
        for (xa, ya), (xb, yb) in zip(a, b):
            assert ya == yb and xa.dtype == xb.dtype == torch.float32
            assert torch.equal(xa, xb)


def test_long_videos_scored_in_pieces_give_the_same_numbers():
    _, fast = pair()
    fast.eval()
    g = torch.Generator().manual_seed(3)
    videos = [torch.randn(t, D, generator=g) for t in (150, 9, 64)]  # 5 + 1 + 2 grids
    text = fast.text_features()
    whole = fast.score_videos(videos, text)
    fast.grids_per_forward = {"cpu": 2, "other": 2}
    fast.temporal.cpu_grids_per_piece = 1
    pieces = fast.score_videos(videos, text)
    for (p, probs), (p2, probs2) in zip(whole, pieces):
        torch.testing.assert_close(p2, p, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(probs2, probs, atol=1e-6, rtol=1e-5)


def test_overwrite_input_centres_a_lone_video_in_place_with_the_same_numbers():
    _, fast = pair()
    fast.eval()
    g = torch.Generator().manual_seed(4)
    video = torch.randn(150, D, generator=g)
    text = fast.text_features()
    [(p, probs)] = fast.score_videos([video], text)
    mine = video.clone()
    with torch.inference_mode():
        [(p2, probs2)] = fast.score_videos([mine], text, overwrite_input=True)
    assert torch.equal(p2, p) and torch.equal(probs2, probs)
    torch.testing.assert_close(mine, video - fast.centroid)  # the memory was reused
    pair_in = [video.clone(), video[:40].clone()]
    fast.score_videos(pair_in, text, overwrite_input=True)  # several videos: copied, inputs kept
    assert torch.equal(pair_in[0], video) and torch.equal(pair_in[1], video[:40])


def test_frozen_text_features_give_the_same_scores_and_refuse_training():
    from anomalyclip.checkpoint.native import model_meta

    _, fast = pair()
    fast.eval()
    g = torch.Generator().manual_seed(5)
    videos = [torch.randn(t, D, generator=g) for t in (150, 9)]
    text = fast.text_features()
    before = fast.score_videos(videos)
    frozen = fast.freeze_text_features()
    assert fast.text_encoder is None and torch.equal(frozen, text)
    assert not any(k.startswith("text_encoder.") for k in fast.state_dict())
    after = fast.score_videos(videos)  # text features from the kept copy
    for (p, probs), (p2, probs2) in zip(before, after):
        assert torch.equal(p, p2) and torch.equal(probs, probs2)
    fast.train()
    with pytest.raises(RuntimeError, match="load the checkpoint again"):
        fast(torch.randn(2, N * L, D))
    with pytest.raises(ValueError, match="cannot be saved"):
        model_meta(fast)


def test_batched_items_equal_items_one_by_one(tmp_path):
    lengths = [3, 511, 512, 513, 1500, 40]
    _write_videos(tmp_path, lengths)
    entries = [VideoEntry(f"v{i}", 0, t - 1, i % 3) for i, t in enumerate(lengths)]
    for whole in (False, True):
        ds = datasets.TrainItems(entries, tmp_path, D, N * 4, L * 4, read_whole_file=whole)
        order = [4, 0, 5, 2, 1, 3, 4]
        np.random.seed(7)
        one = [ds[i] for i in order]
        np.random.seed(7)
        batch = ds.__getitems__(order)
        assert [y for _, y in batch] == [y for _, y in one]
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batch, one))
    # a DataLoader fetches a whole batch through __getitems__
    calls = []
    ds = datasets.TrainItems(entries, tmp_path, D, N * 4, L * 4)
    real = ds.__getitems__
    ds.__getitems__ = lambda idx: calls.append(list(idx)) or real(idx)
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert calls == [[0, 1, 2]] and x.shape == (3, N * 4 * L * 4, D)


def test_row_reads_fortran_files_and_truncation(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((700, D)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))  # rows not contiguous on disk: memory map
    entries = [VideoEntry("c", 0, 699, 1), VideoEntry("f", 0, 699, 2)]
    ds = datasets.TrainItems(entries, tmp_path, D, N * 4, L * 4)
    np.random.seed(3)
    (a, ya), (b, yb) = ds.__getitems__([0, 1])
    np.random.seed(3)
    i0, i1 = train_indices(700, N * 4, L * 4), train_indices(700, N * 4, L * 4)
    assert ya == 1 and yb == 2
    np.testing.assert_array_equal(a.numpy(), x[i0])
    np.testing.assert_array_equal(b.numpy(), x[i1])
    # the file shrinks after the dataset was made: one clear error naming it
    data = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "c.npy").write_bytes(data[: len(data) - 300 * D * 4])
    with pytest.raises(InputError, match=r"c\.npy.*ends before row"):
        for _ in range(20):  # some draw reaches past the new end
            ds[0]
