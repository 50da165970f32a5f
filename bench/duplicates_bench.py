"""Benchmark of the duplicate search (errorless.duplicates) on synthetic transformed inputs.

Makes N image-like rows of D float32 values (low-rank smooth part + noise, centred, scaled to
max |v| = 1 and rounded like the real transform), plants exact copies and near copies (small
noise) under other labels, and prints seconds and peak RSS of the exact and near searches and
the recall of the plants. Default N = 200,000 × 900; ``--n 1280000`` is ImageNet size.

    .venv/bin/python bench/duplicates_bench.py                 # 200k × 900
    .venv/bin/python bench/duplicates_bench.py --n 1280000     # ImageNet-1k size (~5 GB input)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from errorless.duplicates import SearchSettings, exact_groups, exact_pairs, near_pairs, peak_rss_mb


def make_data(n: int, d: int, labels: int, seed: int, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(32, d)).astype(np.float32)
    x = np.empty((n, d), np.float32)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        v = rng.normal(size=(hi - lo, 32)).astype(np.float32) @ basis
        v += rng.normal(0, 0.5, size=v.shape).astype(np.float32)
        v -= v.mean(axis=1, keepdims=True)
        v /= np.abs(v).max(axis=1, keepdims=True)
        x[lo:hi] = np.round(v, 4)
    return x, rng.integers(0, labels, n)


def plant(x: np.ndarray, y: np.ndarray, n_exact: int, n_near: int, noise: float, labels: int, seed: int):
    """Copy rows (exactly or with noise of Euclidean norm ~``noise``) under another label."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(x), size=2 * (n_exact + n_near), replace=False)
    src, dst = rows[::2], rows[1::2]
    d = x.shape[1]
    for k, (s, t) in enumerate(zip(src, dst, strict=True)):
        x[t] = x[s] if k < n_exact else np.round(x[s] + rng.normal(0, noise / np.sqrt(d), d), 4)
        y[t] = (y[s] + 1 + rng.integers(0, labels - 1)) % labels
    pairs = [(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist(), strict=True)]
    return set(pairs[:n_exact]), set(pairs[n_exact:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dims", type=int, default=900)
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--exact", type=int, default=500, help="planted exact copies")
    p.add_argument("--near", type=int, default=500, help="planted near copies")
    p.add_argument("--noise", type=float, default=0.2, help="Euclidean size of a near copy's noise")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--neighbours", type=int, default=5)
    p.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "none"])
    p.add_argument("--flat-limit", type=int, default=SearchSettings.flat_limit)
    p.add_argument("--nprobe", type=int, default=SearchSettings.nprobe)
    p.add_argument("--nlist", type=int, default=0, help="IVF cells (0 = 4·sqrt(N))")
    p.add_argument("--pca-dims", type=int, default=SearchSettings.pca_dims)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args()

    t0 = time.perf_counter()
    x, y = make_data(a.n, a.dims, a.labels, a.seed)
    planted_exact, planted_near = plant(x, y, a.exact, a.near, a.noise, a.labels, a.seed)
    t_gen = time.perf_counter() - t0
    rss_data = peak_rss_mb()
    s = SearchSettings(near_threshold=a.threshold, neighbours=a.neighbours, index=a.index,
                       flat_limit=a.flat_limit, nprobe=a.nprobe, nlist=a.nlist, pca_dims=a.pca_dims, seed=a.seed)

    t0, c0 = time.perf_counter(), time.process_time()
    group, first = exact_groups(x, s.decimals, s.seed, s.block)
    ex = exact_pairs(group, y)
    t_exact, c_exact = time.perf_counter() - t0, time.process_time() - c0
    rss_exact = peak_rss_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    near, method = near_pairs(x, y, group, first, s) if a.index != "none" else (ex.iloc[:0], "none")
    t_near, c_near = time.perf_counter() - t0, time.process_time() - c0
    rss_near = peak_rss_mb()

    found_exact = set(zip(ex["a"].tolist(), ex["b"].tolist(), strict=True))
    found_near = set(zip(near["a"].tolist(), near["b"].tolist(), strict=True))
    out = {
        "n": a.n, "dims": a.dims, "input_mb": round(x.nbytes / 2**20, 1), "near_index": method,
        "seconds_generate": round(t_gen, 2),
        "seconds_exact": round(t_exact, 2), "seconds_near": round(t_near, 2),
        "cpu_seconds_exact": round(c_exact, 2), "cpu_seconds_near": round(c_near, 2),
        "peak_rss_mb_data": round(rss_data), "peak_rss_mb_exact": round(rss_exact),
        "peak_rss_mb_near": round(rss_near),
        "exact_recall": len(planted_exact & found_exact) / max(1, len(planted_exact)),
        "exact_extra": len(found_exact - planted_exact),
        "near_recall": len(planted_near & found_near) / max(1, len(planted_near)),
        "near_extra": len(found_near - planted_near),
    }
    for k, v in out.items():
        print(f"{k:20s} {v}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
