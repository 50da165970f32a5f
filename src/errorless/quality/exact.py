"""Exact copies: every image's raw bytes hashed with xxHash's XXH3-128 (seeded with the image's
shape and dtype) into 128-bit keys; equal keys form groups; groups holding more than one label
give pairs (kind ``exact``; large groups give star pairs)."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from xxhash import xxh3_128_digest

from errorless.identical import mixed_groups, row_groups

PAIR_COLUMNS = ["a", "b", "kind", "similarity", "group"]
MAX_GROUP_PAIRS = 64  # groups larger than this emit star pairs, not all pairs
BLOCK = 4096


# ---------------------------------------------------------------- exact


def key_seed(shape: Sequence[int], dtype: np.dtype | type, seed: int = 0) -> int:
    """The 64-bit XXH3 seed of ``image_keys``: BLAKE2b of the caller's seed, the image shape
    and the dtype, so that images with the same bytes but another shape (32×32×3 against
    64×16×3) or dtype get other keys."""
    text = f"errorless.image_keys:{int(seed)}:{np.dtype(dtype).str}:{tuple(map(int, shape))}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def image_keys(images: np.ndarray, seed: int = 0, block: int = BLOCK) -> np.ndarray:
    """128-bit keys (N, 2) uint64 of the raw image bytes: equal images have equal keys.

    Each image's bytes (C order) are hashed with XXH3-128 (``xxhash.xxh3_128_digest``), seeded
    by ``key_seed`` (``seed``, the image shape and dtype); the 16-byte digest is read as two
    little-endian uint64. XXH3-128 is a non-cryptographic hash built to pass SMHasher (whose
    tests include sparse keys and single-bit flips), so different images are expected to
    collide at about the rate of random 128-bit keys, ~2⁻¹²⁸ per pair, structured
    differences included (tests/test_duplicates.py checks two-byte changes and every
    single-bit flip); this is measured, not proven, and no defence against crafted
    collisions. The former linear hash Σ wᵢ·rᵢ mod 2⁶⁴ was not: 65,536 64×64×3 images
    differing only in bytes 7 and 15 got 32,768 distinct keys.

    Images are taken ``block`` at a time (a non-contiguous array is copied one block at a
    time): one hash call per image, everything else whole-array.
    """
    images = np.asarray(images)
    n = len(images)
    s = key_seed(images.shape[1:], images.dtype, seed)
    width = math.prod(images.shape[1:]) * images.dtype.itemsize
    keys = np.empty((n, 2), dtype=np.uint64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        rows = np.ascontiguousarray(images[lo:hi]).view(np.uint8).reshape(hi - lo, width)
        digests = b"".join(map(xxh3_128_digest, rows, itertools.repeat(s, hi - lo)))
        keys[lo:hi] = np.frombuffer(digests, dtype="<u8").reshape(hi - lo, 2)
    return keys


def key_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys. Returns (group (N,), first (G,)): the group of each image (numbered in
    order of first appearance) and the first image of each group."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    group = row_groups(keys)
    uniq, first = np.unique(group, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[group], np.sort(first)


def _cross_label_pairs(members: np.ndarray, labels: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of members with different labels: all of them for small groups, otherwise a star
    (every member paired with the first member of some other label)."""
    lab = labels[members]
    if len(members) <= MAX_GROUP_PAIRS:
        i, j = np.triu_indices(len(members), k=1)
        keep = lab[i] != lab[j]
        return list(zip(members[i[keep]].tolist(), members[j[keep]].tolist(), strict=True))
    _, first = np.unique(lab, return_index=True)
    heads = members[np.sort(first)]
    out = set()
    for m in members.tolist():
        for h in heads.tolist():
            if labels[h] != labels[m]:
                out.add((min(m, h), max(m, h)))
                break
    return sorted(out)


def exact_pairs(group: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Pairs (a < b) of identical images with different labels (PAIR_COLUMNS)."""
    labels = np.asarray(labels)
    rows: list[tuple[int, int, int]] = []
    for g, members in zip(*mixed_groups(group, labels), strict=True):
        rows += [(a, b, int(g)) for a, b in _cross_label_pairs(members, labels)]
    if not rows:
        return empty_pairs()
    arr = np.asarray(rows, dtype=np.int64)
    return pd.DataFrame(
        {"a": arr[:, 0], "b": arr[:, 1], "kind": "exact", "similarity": 1.0, "group": arr[:, 2]}
    )[PAIR_COLUMNS]


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": pd.Series([], dtype=np.int64),
            "b": pd.Series([], dtype=np.int64),
            "kind": pd.Series([], dtype=object),
            "similarity": pd.Series([], dtype=np.float64),
            "group": pd.Series([], dtype=np.int64),
        }
    )
