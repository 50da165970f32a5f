"""Identical rows, found in one place: the GDT pre-check (byte-identical transformed inputs
with different labels, ``gdtmath.find_conflicts``) and the exact-copy search (equal image keys
with different labels, ``duplicates``) both group equal rows here and keep the groups that
carry more than one label."""

from __future__ import annotations

import numpy as np


def row_groups(rows: np.ndarray) -> np.ndarray:
    """Group id (N,) of every row of a 2-D array: rows with the same bytes share an id.
    Ids number the distinct rows in their byte order (0..G-1)."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    r = np.ascontiguousarray(rows).reshape(len(rows), -1)
    view = r.view(np.dtype((np.void, r.dtype.itemsize * r.shape[1]))).ravel()
    _, inverse = np.unique(view, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def mixed_groups(group: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The groups holding more than one label: their ids (ascending) and, for each, its
    members (row indices, sorted)."""
    labels = np.asarray(labels)
    n_groups = int(group.max()) + 1 if len(group) else 0
    order = np.lexsort((labels, group))  # by group, then label
    l_sorted = labels[order]
    size = np.bincount(group, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    nonempty = size > 0
    mixed = np.zeros(n_groups, dtype=bool)  # smallest and largest label differ
    mixed[nonempty] = l_sorted[starts[nonempty]] != l_sorted[starts[nonempty] + size[nonempty] - 1]
    ids = np.flatnonzero(mixed)
    return ids, [np.sort(order[starts[g] : starts[g] + size[g]]) for g in ids.tolist()]
