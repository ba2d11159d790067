import numpy as np

from anomalyclip.runs import consecutive_runs, runs, true_runs


def naive_runs(values):
    out, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out.append((start, i - start))
            start = i
    return out


def test_runs_equal_a_loop():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 50):
        v = rng.integers(0, 3, n)
        starts, lengths = runs(v)
        assert list(zip(starts.tolist(), lengths.tolist())) == naive_runs(v.tolist())


def test_true_runs_are_inclusive_spans():
    mask = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)
    starts, ends = true_runs(mask)
    assert starts.tolist() == [1, 4, 7] and ends.tolist() == [2, 4, 9]
    assert [len(x) for x in true_runs(np.zeros(4, bool))] == [0, 0]


def test_consecutive_rows_group_into_one_read_each():
    rows = np.array([5, 6, 7, 2, 3, 9, 10, 11, 12, 0])
    pos, lengths = consecutive_runs(rows)
    assert pos.tolist() == [0, 3, 5, 9] and lengths.tolist() == [3, 2, 4, 1]
