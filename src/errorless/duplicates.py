"""Evidence 2 of SPEC §8: identical or near-identical inputs that carry different labels.

The search runs over the whole data set (every shard, across modules) on the transformed
inputs of one feature and scales to ImageNet (1.28 M × 900):

* **exact**: rows are quantised to integers (``round(x · 10^decimals)``), their bytes read as
  64-bit words and hashed with two random multiply-add hashes (one integer matmul, no
  per-row Python); rows with equal 128-bit keys form candidate groups that are then checked
  element by element, so a hash collision can never merge different inputs. Groups holding
  more than one label are reported.
* **near**: one representative per group of identical rows goes into a faiss index (exact
  ``IndexFlatL2`` up to ``flat_limit`` rows; above it a PCA projection to ``pca_dims``
  followed by ``IndexIVFFlat``). Each representative asks for its ``neighbours`` nearest
  neighbours, in blocks; candidates are re-measured exactly in the full space and pairs with
  Euclidean distance < ``near_threshold`` and different labels are kept. The PCA projection is
  orthonormal, so it never makes a close pair look farther apart (no loss from projecting);
  the only approximation is the IVF probe (``nprobe``), measured by ``bench/duplicates_bench.py``.

Searching representatives, not all rows, keeps many copies of one image from filling up the
``neighbours`` slots with distance-0 matches.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import settings_arguments, settings_from_args
from .errors import ConfigError, DataError
from .io import write_json, write_parquet

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["a", "b", "kind", "distance", "group"]
OUTPUT_COLUMNS = [
    "id_a", "id_b", "label_a", "label_b", "module_a", "submodule_a", "module_b", "submodule_b",
    "kind", "distance", "group",
]
MAX_GROUP_PAIRS = 64  # groups larger than this emit star pairs, not all pairs
BLOCK = 16384


@dataclass
class SearchSettings:
    decimals: int = 4
    near_threshold: float = 0.5
    neighbours: int = 5
    index: str = "auto"  # auto | flat | ivf | none (skip the near search)
    flat_limit: int = 20_000
    pca_dims: int = 64
    nprobe: int = 8
    nlist: int = 0  # IVF cells; 0 = 4·sqrt(N)
    seed: int = 0
    block: int = BLOCK


@dataclass
class DuplicateResult:
    pairs: pd.DataFrame  # PAIR_COLUMNS; a < b are row indices
    group: np.ndarray  # int64 (N,): exact-group id of every row (0..G-1)
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- exact


def quantise(x: np.ndarray, decimals: int) -> np.ndarray:
    """``round(x · 10^decimals)`` as the smallest signed integer type that holds it."""
    scaled = np.rint(np.asarray(x, dtype=np.float64) * 10.0**decimals)
    top = float(np.abs(scaled).max()) if scaled.size else 0.0
    for dt in (np.int16, np.int32, np.int64):
        if top <= np.iinfo(dt).max:
            return scaled.astype(dt)
    raise DataError(f"inputs too large to quantise at {decimals} decimals (max |x| = {top:g})")


def _int_dtype(x: np.ndarray, decimals: int) -> np.dtype:
    # max and min do not allocate (np.abs(x) would copy the whole matrix)
    top = max(float(x.max()), -float(x.min())) * 10.0**decimals if x.size else 0.0
    for dt in (np.int16, np.int32, np.int64):
        if top + 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise DataError(f"inputs too large to quantise at {decimals} decimals (max |x| = {top:g})")


def row_keys(x: np.ndarray, decimals: int = 4, seed: int = 0, block: int = BLOCK) -> np.ndarray:
    """128-bit keys (N, 2) uint64 of the quantised rows: equal rows have equal keys.

    The quantised row bytes are read as 64-bit words w and hashed as Σ wᵢ·rᵢ mod 2⁶⁴ with two
    random odd multiplier vectors r (an integer matmul, vectorised over a block of rows).
    """
    n, d = x.shape
    dt = _int_dtype(x, decimals)
    per_word = 8 // dt.itemsize
    width = -(-d // per_word) * per_word  # pad columns to whole 64-bit words
    words = width // per_word
    rng = np.random.default_rng(seed)
    mult = rng.integers(0, 2**63, size=(words, 2), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = np.empty((n, 2), dtype=np.uint64)
    buf = np.zeros((min(block, max(n, 1)), width), dtype=dt)
    scale = 10.0**decimals
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        b = buf[: hi - lo]
        np.rint(x[lo:hi] * scale, out=b[:, :d], casting="unsafe")
        with np.errstate(over="ignore"):
            keys[lo:hi] = b.view(np.uint64) @ mult
    return keys


def exact_groups(
    x: np.ndarray, decimals: int = 4, seed: int = 0, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Group identical (quantised) rows. Returns (group (N,), first (G,)): the group id of each
    row (numbered in order of first appearance) and the first row of each group."""
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = row_keys(x, decimals, seed, block)
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    ks = keys[order]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    cand = np.cumsum(new) - 1  # candidate group of each sorted row
    first_sorted = np.flatnonzero(new)
    lead = order[first_sorted[cand]]  # candidate representative of every sorted row
    # verify every multi-member candidate row against its representative, in blocks
    multi = np.flatnonzero(order != lead)
    bad_rows: list[np.ndarray] = []
    for lo in range(0, len(multi), block):
        sel = multi[lo : lo + block]
        qa = np.rint(x[order[sel]] * 10.0**decimals)
        qb = np.rint(x[lead[sel]] * 10.0**decimals)
        mism = np.any(qa != qb, axis=1)
        if mism.any():
            bad_rows.append(sel[mism])
    group_sorted = cand.astype(np.int64)
    if bad_rows:  # hash collision: split those candidate groups exactly
        bad_groups = np.unique(cand[np.concatenate(bad_rows)])
        log.warning("%d hash collision group(s) resolved by exact comparison", len(bad_groups))
        next_id = int(cand.max()) + 1
        for g in bad_groups:
            members = np.flatnonzero(cand == g)
            _, inv = np.unique(quantise(x[order[members]], decimals), axis=0, return_inverse=True)
            inv = inv.ravel()
            group_sorted[members] = np.where(inv == inv[0], g, next_id + inv)
            next_id += int(inv.max()) + 1
    group = np.empty(n, dtype=np.int64)
    group[order] = group_sorted
    # renumber by first appearance so that results do not depend on hash values
    uniq, first = np.unique(group, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    group = rank[np.searchsorted(uniq, group)]
    return group, np.sort(first)


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
    """Pairs (a < b) of identical rows with different labels (PAIR_COLUMNS)."""
    labels = np.asarray(labels)
    n_groups = int(group.max()) + 1 if len(group) else 0
    order = np.lexsort((labels, group))
    l_sorted = labels[order]
    size = np.bincount(group, minlength=n_groups)
    # a group is mixed when its smallest and largest label differ
    starts = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    nonempty = size > 0
    mixed = np.zeros(n_groups, dtype=bool)
    mixed[nonempty] = l_sorted[starts[nonempty]] != l_sorted[starts[nonempty] + size[nonempty] - 1]
    rows: list[tuple[int, int, int]] = []
    for g in np.flatnonzero(mixed).tolist():
        members = np.sort(order[starts[g] : starts[g] + size[g]])
        rows += [(a, b, g) for a, b in _cross_label_pairs(members, labels)]
    if not rows:
        return _empty_pairs()
    arr = np.asarray(rows, dtype=np.int64)
    return pd.DataFrame(
        {"a": arr[:, 0], "b": arr[:, 1], "kind": "exact", "distance": 0.0, "group": arr[:, 2]}
    )[PAIR_COLUMNS]


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": pd.Series([], dtype=np.int64),
            "b": pd.Series([], dtype=np.int64),
            "kind": pd.Series([], dtype=object),
            "distance": pd.Series([], dtype=np.float64),
            "group": pd.Series([], dtype=np.int64),
        }
    )


# ---------------------------------------------------------------- near


def _pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), block):
        d = x[a[lo : lo + block]].astype(np.float64) - x[b[lo : lo + block]]
        out[lo : lo + block] = np.sqrt(np.einsum("ij,ij->i", d, d))
    return out


def _take(x: np.ndarray, rows: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    part = x[lo:hi] if rows is None else x[rows[lo:hi]]
    return np.ascontiguousarray(part, dtype=np.float32)


@dataclass
class Projection:
    """Orthonormal projection onto the top principal axes: it never lengthens a distance."""

    mean: np.ndarray  # (D,) float32
    axes: np.ndarray  # (D, p) float32, orthonormal columns

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x - self.mean) @ self.axes, dtype=np.float32)


def fit_pca(sample: np.ndarray, dims: int, seed: int = 0, power: int = 4) -> Projection:
    """Top principal axes by randomized subspace iteration on the covariance (a few BLAS
    products and QRs; a full ``eigh`` of a 900×900 matrix is slow on a loaded 2-core box)."""
    xs = sample.astype(np.float64)
    mean = xs.mean(axis=0)
    xs -= mean
    cov = xs.T @ xs
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(cov @ rng.normal(size=(cov.shape[0], min(cov.shape[0], dims + 16))))
    for _ in range(power):
        q, _ = np.linalg.qr(cov @ q)
    small = q.T @ cov @ q
    _, vecs = np.linalg.eigh(small)
    axes = q @ vecs[:, ::-1][:, :dims]
    return Projection(mean.astype(np.float32), np.ascontiguousarray(axes, dtype=np.float32))


def near_candidates(
    x: np.ndarray, rows: np.ndarray | None, s: SearchSettings
) -> tuple[np.ndarray, np.ndarray, str]:
    """k-NN candidate pairs (positions into ``rows``, i < j) whose index distance is below the
    threshold (with slack). ``rows`` = representatives (None = every row of x)."""
    import faiss

    n = len(x) if rows is None else len(rows)
    d = x.shape[1]
    k = min(s.neighbours + 1, n)
    if n < 2 or k < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), "none"
    method = s.index
    if method == "auto":
        method = "flat" if n <= s.flat_limit else "ivf"
    pca = None
    if method == "flat":
        index = faiss.IndexFlatL2(d)
    elif method == "ivf":
        rng = np.random.default_rng(s.seed)
        nlist = s.nlist or int(max(1, min(4 * np.sqrt(n), n // 20)))
        n_train = int(min(n, max(20 * nlist, 20_000)))
        sample = np.sort(rng.choice(n, size=n_train, replace=False))
        train = np.ascontiguousarray(x[sample if rows is None else rows[sample]], dtype=np.float32)
        dims = d
        if s.pca_dims and s.pca_dims < d:
            pca = fit_pca(train, s.pca_dims, s.seed)
            train = pca.apply(train)
            dims = s.pca_dims
        quantizer = faiss.IndexFlatL2(dims)
        index = faiss.IndexIVFFlat(quantizer, dims, nlist)
        index.cp.seed = s.seed
        index.cp.min_points_per_centroid = 1  # no warning for small samples
        index.train(train)
        index.nprobe = min(s.nprobe, nlist)
        method = f"ivf(nlist={nlist},nprobe={index.nprobe},pca={dims})"
        del train
    else:
        raise ConfigError(f"duplicate search index {s.index!r}: use auto, flat, ivf or none")

    projected = None
    if pca is not None:  # project once (N × pca_dims float32), reused by add and search
        projected = np.empty((n, pca.axes.shape[1]), np.float32)
        for lo in range(0, n, s.block):
            projected[lo : lo + s.block] = pca.apply(_take(x, rows, lo, min(n, lo + s.block)))

    def block_of(lo: int, hi: int) -> np.ndarray:
        return projected[lo:hi] if projected is not None else _take(x, rows, lo, hi)

    for lo in range(0, n, s.block):
        index.add(block_of(lo, min(n, lo + s.block)))
    limit = (s.near_threshold * (1 + 1e-3) + 1e-3) ** 2  # faiss float32 distances: slack
    ca, cb = [], []
    for lo in range(0, n, s.block):
        hi = min(n, lo + s.block)
        dist, nbr = index.search(block_of(lo, hi), k)
        q = np.repeat(np.arange(lo, hi), k).reshape(hi - lo, k)
        keep = (nbr >= 0) & (nbr != q) & (dist < limit)
        ca.append(q[keep])
        cb.append(nbr[keep])
    a, b = np.concatenate(ca), np.concatenate(cb).astype(np.int64)
    lo_, hi_ = np.minimum(a, b), np.maximum(a, b)
    if len(lo_):
        pairs = np.unique(np.stack([lo_, hi_], axis=1), axis=0)
        lo_, hi_ = pairs[:, 0], pairs[:, 1]
    return lo_, hi_, method


def near_pairs(
    x: np.ndarray, labels: np.ndarray, group: np.ndarray, first: np.ndarray, s: SearchSettings
) -> tuple[pd.DataFrame, str]:
    """Pairs of rows in different exact groups, distance < threshold, labels different."""
    labels = np.asarray(labels)
    rows = None if len(first) == len(x) else first
    ca, cb, method = near_candidates(x, rows, s)
    if rows is not None:
        ca, cb = rows[ca], rows[cb]
    dist = _pair_distances(x, ca, cb, s.block)
    keep = dist < s.near_threshold
    ca, cb, dist = ca[keep], cb[keep], dist[keep]
    size = np.bincount(group, minlength=len(first))
    simple = (size[group[ca]] == 1) & (size[group[cb]] == 1)
    out_a = [ca[simple]]
    out_b = [cb[simple]]
    out_d = [dist[simple]]
    if (~simple).any():  # expand representatives of multi-member groups into member pairs
        order = np.argsort(group, kind="stable")
        starts = np.concatenate([[0], np.cumsum(size)[:-1]])
        for ra, rb, dd in zip(ca[~simple], cb[~simple], dist[~simple], strict=True):
            ga, gb = group[ra], group[rb]
            ma = order[starts[ga] : starts[ga] + size[ga]]
            mb = order[starts[gb] : starts[gb] + size[gb]]
            ii, jj = np.meshgrid(ma[:MAX_GROUP_PAIRS], mb[:MAX_GROUP_PAIRS], indexing="ij")
            ii, jj = ii.ravel(), jj.ravel()
            out_a.append(np.minimum(ii, jj))
            out_b.append(np.maximum(ii, jj))
            out_d.append(np.full(len(ii), dd))
    a, b, d = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_d)
    keep = labels[a] != labels[b]
    a, b, d = a[keep], b[keep], d[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    df = pd.DataFrame({"a": lo, "b": hi, "kind": "near", "distance": d, "group": np.int64(-1)})
    return df[PAIR_COLUMNS].astype({"a": np.int64, "b": np.int64, "group": np.int64}), method


# ---------------------------------------------------------------- both


def find_duplicates(
    x: np.ndarray, labels: np.ndarray, settings: SearchSettings | None = None
) -> DuplicateResult:
    """Exact and near duplicates with different labels among the rows of ``x`` (N, D)."""
    s = settings or SearchSettings()
    x = np.asarray(x)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(labels) != len(x):
        raise DataError(f"inputs {x.shape} and labels {labels.shape} do not match")
    t0 = time.perf_counter()
    group, first = exact_groups(x, s.decimals, s.seed, s.block)
    exact = exact_pairs(group, labels)
    t1 = time.perf_counter()
    if s.index == "none":
        near, method = _empty_pairs(), "none"
    else:
        near, method = near_pairs(x, labels, group, first, s)
    t2 = time.perf_counter()
    pairs = pd.concat([exact, near], ignore_index=True) if len(near) else exact
    pairs = pairs.sort_values(["kind", "a", "b"], kind="stable").reset_index(drop=True)
    stats = {
        "n_rows": int(len(x)),
        "n_dims": int(x.shape[1]),
        "n_unique": int(len(first)),
        "n_exact_groups_mixed": int(exact["group"].nunique()),
        "n_exact_pairs": int(len(exact)),
        "n_near_pairs": int(len(near)),
        "near_index": method,
        "seconds_exact": round(t1 - t0, 3),
        "seconds_near": round(t2 - t1, 3),
    }
    return DuplicateResult(pairs=pairs, group=group, stats=stats)


def brute_force_pairs(x: np.ndarray, labels: np.ndarray, threshold: float, decimals: int = 4) -> set[tuple[int, int, str]]:
    """All-pairs oracle for tests: {(a, b, kind)} with a < b, labels different, kind exact when
    the quantised rows are equal, near when distance < threshold."""
    q = quantise(x, decimals)
    out = set()
    xd = np.asarray(x, dtype=np.float64)
    for a in range(len(x)):
        for b in range(a + 1, len(x)):
            if labels[a] == labels[b]:
                continue
            if np.array_equal(q[a], q[b]):
                out.add((a, b, "exact"))
            elif np.linalg.norm(xd[a] - xd[b]) < threshold:
                out.add((a, b, "near"))
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024**2 if sys.platform == "darwin" else r / 1024


# ---------------------------------------------------------------- data set and CLI


def duplicate_feature(cfg: dict[str, Any]) -> str:
    feat = cfg["double_labeling"]["feature"] or cfg["features"][0]
    if feat not in cfg["features"] and feat != "gray":
        log.info("double_labeling.feature %s is not a training feature (allowed)", feat)
    return feat


def shard_paths(shards: Path) -> list[Path]:
    paths = sorted(shards.glob("*.npz"))
    if not paths:
        raise DataError(f"{shards}: no shards (*.npz); run the modularize step first")
    return paths


@dataclass
class Inputs:
    x: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    module: np.ndarray  # str "m01"
    submodule: np.ndarray  # str "s1"


def load_inputs(shards: Path, feature: str, transform: dict[str, int]) -> Inputs:
    """Transform every shard with one feature into one (N, D) matrix (preallocated)."""
    from .features import transform as transform_images
    from .shards import load_shard

    paths = shard_paths(shards)
    sizes = []
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                sizes.append(len(z["labels"]))
        except Exception as e:
            raise DataError(f"{p}: unreadable shard: {e}") from None
    n = int(sum(sizes))
    x: np.ndarray | None = None
    labels = np.empty(n, np.int64)
    ids = np.empty(n, dtype=object)
    module = np.empty(n, dtype=object)
    sub = np.empty(n, dtype=object)
    lo = 0
    for p, size in zip(paths, sizes, strict=True):
        sh = load_shard(p)
        xi = transform_images(sh.images, feature, **transform)
        if x is None:
            x = np.empty((n, xi.shape[1]), np.float32)
        hi = lo + size
        x[lo:hi] = xi
        labels[lo:hi] = sh.labels
        ids[lo:hi] = sh.ids.astype(str)
        mname, sname = sh.name.split("_")
        module[lo:hi] = mname
        sub[lo:hi] = sname
        lo = hi
        del sh, xi
    assert x is not None
    return Inputs(x=x, labels=labels, ids=ids, module=module, submodule=sub)


def pairs_table(pairs: pd.DataFrame, inp: Inputs) -> pd.DataFrame:
    """Row-index pairs -> the duplicates.parquet table (OUTPUT_COLUMNS)."""
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    return pd.DataFrame(
        {
            "id_a": pd.array(inp.ids[a].astype(str), dtype=object),
            "id_b": pd.array(inp.ids[b].astype(str), dtype=object),
            "label_a": inp.labels[a],
            "label_b": inp.labels[b],
            "module_a": inp.module[a].astype(str),
            "submodule_a": inp.submodule[a].astype(str),
            "module_b": inp.module[b].astype(str),
            "submodule_b": inp.submodule[b].astype(str),
            "kind": pairs["kind"].astype(str).to_numpy(),
            "distance": pairs["distance"].to_numpy(np.float64),
            "group": pairs["group"].to_numpy(np.int64),
        }
    )[OUTPUT_COLUMNS]


def output_schema():
    import pyarrow as pa

    return pa.schema(
        [("id_a", pa.string()), ("id_b", pa.string()), ("label_a", pa.int64()),
         ("label_b", pa.int64()), ("module_a", pa.string()), ("submodule_a", pa.string()),
         ("module_b", pa.string()), ("submodule_b", pa.string()), ("kind", pa.string()),
         ("distance", pa.float64()), ("group", pa.int64())]
    )


def duplicates_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--results", help="results folder (default: config key results)")
    p.add_argument("--shards", help="shard folder (default: {results}/shards)")
    p.add_argument("--out", help="pairs Parquet (default: {results}/quality/duplicates.parquet)")
    p.add_argument("--stats", help="time/memory JSON (default: the --out path with .json)")
    p.add_argument("--feature", help="feature compared (default: double_labeling.feature or the first feature)")
    p.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "none"],
                   help="near-duplicate index: flat (exact), ivf (PCA + IVF), auto (flat up to --flat-limit rows), none")
    p.add_argument("--flat-limit", type=int, default=SearchSettings.flat_limit)
    p.add_argument("--nprobe", type=int, default=SearchSettings.nprobe)
    p.add_argument("--pca-dims", type=int, default=SearchSettings.pca_dims)


def duplicates_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    results = Path(args.results or cfg["results"])
    shards = Path(args.shards) if args.shards else results / "shards"
    out = Path(args.out) if args.out else results / "quality" / "duplicates.parquet"
    stats_path = Path(args.stats) if args.stats else out.with_suffix(".json")
    feature = args.feature or duplicate_feature(cfg)
    dl, tr = cfg["double_labeling"], cfg["transform"]
    s = SearchSettings(
        decimals=tr["decimals"], near_threshold=dl["near_threshold"], neighbours=dl["neighbours"],
        index=args.index, flat_limit=args.flat_limit, pca_dims=args.pca_dims, nprobe=args.nprobe,
        seed=cfg["seed"],
    )
    t0 = time.perf_counter()
    inp = load_inputs(shards, feature, {"pool": tr["pool"], "trim": tr["trim"], "decimals": tr["decimals"]})
    t_load = time.perf_counter() - t0
    log.info("%d images x %d inputs (feature %s) loaded in %.1f s", *inp.x.shape, feature, t_load)
    res = find_duplicates(inp.x, inp.labels, s)
    table = pairs_table(res.pairs, inp)
    import pyarrow as pa

    write_parquet(out, pa.Table.from_pandas(table, schema=output_schema(), preserve_index=False))
    stats = {
        "feature": feature,
        "shards": str(shards),
        "seconds_load": round(t_load, 3),
        **res.stats,
        "seconds_total": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "settings": vars(s),
    }
    write_json(stats_path, stats)
    log.info(
        "%d exact pair(s) in %d group(s), %d near pair(s) (< %g, %s); %.1f s, peak RSS %.0f MB",
        stats["n_exact_pairs"], stats["n_exact_groups_mixed"], stats["n_near_pairs"],
        s.near_threshold, stats["near_index"], stats["seconds_total"], stats["peak_rss_mb"],
    )
    return 0
