"""Identical-row detection exists once (errorless.identical); the GDT pre-check and the exact
copy search both use it. Oracle: a plain dict of row bytes."""

from __future__ import annotations

import numpy as np

from errorless.identical import mixed_groups, row_groups
from errorless.quality.exact import exact_pairs, key_groups
from errorless.train import gdtmath


def test_groups_and_mixed_groups_equal_a_dict_of_row_bytes():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(60, 2)).astype(np.float32)  # many repeats
    y = rng.integers(0, 3, size=60)
    group = row_groups(x)
    by_bytes: dict[bytes, list[int]] = {}
    for i, row in enumerate(x):
        by_bytes.setdefault(row.tobytes(), []).append(i)
    assert len(set(group.tolist())) == len(by_bytes)
    for members in by_bytes.values():
        assert len(set(group[members].tolist())) == 1
    want = sorted(m for m in by_bytes.values() if len(set(y[m].tolist())) > 1)
    ids, got = mixed_groups(group, y)
    assert sorted(g.tolist() for g in got) == want
    assert list(ids) == sorted(ids) and all(len(set(group[g].tolist())) == 1 for g in got)
    # the GDT pre-check is the same detection (after -0.0 -> +0.0)
    assert [g.tolist() for g in gdtmath.find_conflicts(x, y)] == [g.tolist() for g in got]


def test_exact_copies_use_the_same_groups():
    keys = np.array([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]], dtype=np.uint64)
    labels = np.array([0, 1, 1, 1, 2])
    group, first = key_groups(keys)
    assert group.tolist() == [0, 1, 0, 1, 2] and first.tolist() == [0, 1, 4]
    pairs = exact_pairs(group, labels)
    assert list(zip(pairs["a"], pairs["b"], strict=True)) == [(0, 2)]
    assert row_groups(np.zeros((0, 3))).shape == (0,)
    assert mixed_groups(np.zeros(0, np.int64), np.zeros(0))[1] == []
