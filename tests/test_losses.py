import math

import torch

from anomalyclip.config import LossConfig
from anomalyclip.losses import compute_losses, select_segments

N_SEG, SEG_LEN, K, NORMAL = 4, 2, 3, 1  # C = 4 classes, the normal one is id 1


def naive_top(values, keep, k, largest):
    """Indices of the k largest/smallest kept values, with the reference's ±1e6 for dropped ones."""
    vals = [(v if kp else (-1e6 if largest else 1e6), i) for i, (v, kp) in enumerate(zip(values, keep))]
    vals.sort(key=lambda x: -x[0] if largest else x[0])
    return sorted(i for _, i in vals[:k])


def test_selection_and_every_loss_term_by_hand():
    torch.manual_seed(0)
    b = 4  # 2 abnormal then 2 normal
    t = N_SEG * SEG_LEN
    s = torch.randn(b, t, K, dtype=torch.float64)
    p = torch.rand(b, t, dtype=torch.float64) * 0.9 + 0.05
    labels = torch.tensor([0, 3, NORMAL, NORMAL])  # class ids; K-space: 0 -> 0, 3 -> 2
    keep = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    cfg = LossConfig(num_topk=2, num_bottomk=2)
    yk = [0, 2]

    sel = select_segments(s, labels, NORMAL, cfg, N_SEG, keep=keep)
    seg = [[sum(s[v, j * SEG_LEN + f] for f in range(SEG_LEN)) for j in range(N_SEG)] for v in range(b)]
    top_ref = [naive_top([seg[v][j][yk[v]].item() for j in range(N_SEG)], keep[v].tolist(), 2, True) for v in range(2)]
    top_ref += [naive_top([seg[v][j].sum().item() for j in range(N_SEG)], keep[v].tolist(), 2, True) for v in (2, 3)]
    bot_ref = [naive_top([seg[v][j][yk[v]].item() for j in range(N_SEG)], keep[v].tolist(), 2, False) for v in range(2)]
    assert [sorted(r) for r in sel.top.tolist()] == top_ref
    assert [sorted(r) for r in sel.bottom_abn.tolist()] == bot_ref

    terms = compute_losses(s, p, labels, sel, NORMAL, cfg, N_SEG)

    def probs(v, f):
        e = [math.exp(s[v, f, c].item()) for c in range(K)]
        z = sum(e)
        abn = [x / z * p[v, f].item() for x in e]
        return abn[:NORMAL] + [1 - p[v, f].item()] + abn[NORMAL:]

    frames = lambda v, segs: [j * SEG_LEN + f for j in segs for f in range(SEG_LEN)]  # noqa: E731
    dir_abn = -sum(s[v, f, yk[v]].item() for v in range(2) for f in frames(v, top_ref[v])) / (2 * 2 * SEG_LEN)
    dir_nor = sum(max(s[v, f].tolist()) for v in (2, 3) for f in range(t)) / (2 * t)
    topk_abn = -sum(math.log(probs(v, f)[labels[v]]) for v in range(2) for f in frames(v, top_ref[v])) / 8
    bottomk_abn = -sum(math.log(probs(v, f)[NORMAL]) for v in range(2) for f in frames(v, bot_ref[v])) / 8
    topk_nor = -sum(math.log(probs(v, f)[NORMAL]) for v in (2, 3) for f in frames(v, top_ref[v])) / 8
    flat = p[:2].reshape(-1).tolist()
    smooth = 8e-4 * sum((flat[min(i + 1, len(flat) - 1)] - flat[i]) ** 2 for i in range(len(flat)))
    sparse = 8e-3 * sum(flat) / len(flat)
    expected = dict(dir_abn=dir_abn, dir_nor=dir_nor, topk_abn=topk_abn, bottomk_abn=bottomk_abn, topk_nor=topk_nor, smooth=smooth, sparse=sparse)
    for name, value in expected.items():
        assert math.isclose(terms[name].item(), value, rel_tol=1e-9, abs_tol=1e-12), name
    assert math.isclose(terms["loss"].item(), sum(expected.values()), rel_tol=1e-9)


def test_dropped_segments_only_chosen_when_too_few_kept():
    s = torch.zeros(2, N_SEG * SEG_LEN, K)
    s[0, :, 0] = torch.arange(N_SEG * SEG_LEN, dtype=torch.float32)  # segment 3 scores highest
    keep = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    sel = select_segments(s, torch.tensor([0, NORMAL]), NORMAL, LossConfig(num_topk=1, num_bottomk=1), N_SEG, keep=keep)
    assert sel.top[0].item() == 2  # the best kept segment, not the dropped one
    assert sel.bottom_abn[0].item() == 0
