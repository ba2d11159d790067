import numpy as np
import pytest
import torch

from anomalyclip.data.sampling import train_indices
from anomalyclip.model.grid import eval_grid_index


def naive_train_indices(t, n, l, offsets):
    dist = (t - l + 1) // n if t >= n * l else (n * l - l + 1) // n
    out = []
    for i in range(n):
        for j in range(l):
            out.append((i * dist + offsets[i] + j) % t)
    return out


@pytest.mark.parametrize("t", [3000, 512, 700, 100, 17])
def test_train_indices_match_reference_rule(t):
    n, l = 32, 16
    rng = np.random.RandomState(7)
    idx = train_indices(t, n, l, rng)
    dist = (t - l + 1) // n if t >= n * l else 15
    offsets = np.random.RandomState(7).randint(dist - l + 2, size=n)
    assert idx.tolist() == naive_train_indices(t, n, l, offsets)
    assert idx.shape == (512,) and idx.min() >= 0 and idx.max() < t


def test_short_video_has_no_random_offset():
    # For T < 512, dist = 15 and randint(1) == 0: segment i starts at 15 * i, wrapping modulo T.
    for seed in range(3):
        idx = train_indices(100, rng=np.random.RandomState(seed)).reshape(32, 16)
        assert idx[:, 0].tolist() == [(15 * i) % 100 for i in range(32)]


def naive_padded_grids(t, n=32, l=16):
    """Pad by wrap-around, then split as '(n s l) -> s n l' with explicit loops."""
    s = -(-t // (n * l))
    padded = [j % t for j in range(s * n * l)]
    grids = [[None] * (n * l) for _ in range(s)]
    pos = 0
    for seg in range(n):
        for g in range(s):
            for f in range(l):
                grids[g][seg * l + f] = pos  # padded position
                pos += 1
    return s, grids, padded


@pytest.mark.parametrize("t", [300, 512, 1300, 1536])
def test_eval_grid_index_matches_naive_interleave(t):
    s, grids, _ = naive_padded_grids(t)
    idx = eval_grid_index(t)
    assert idx.shape == (s, 512)
    assert idx.tolist() == grids
    assert s == (1 if t <= 512 else 3)


def test_chunk_k_goes_to_grid_k_mod_s():
    idx = eval_grid_index(1300)  # s = 3
    for g in range(3):
        chunks = (idx[g].view(32, 16)[:, 0] // 16).tolist()
        assert chunks == [k for k in range(96) if k % 3 == g]
    assert torch.equal(idx.flatten().sort().values, torch.arange(1536))
