"""The image matches of docs/method.md#double-labelling-evidence: images that are the same picture
while their labels differ.

The search runs on the images themselves (never on one feature's transformed vectors: a
constant channel maps to zeros after centring and different colour gradients can share a
shape), over the whole data set (every shard, across modules), and scales to ImageNet:

* **exact**: the raw bytes of every image are hashed with xxHash's XXH3-128 (seeded with the
  image shape and dtype) into 128-bit keys; equal keys form groups; groups holding more than
  one label are reported (kind ``exact``).
* **near** / **mirrored**: one representative per exact group goes through
  ``errorless.quality.nearcopy`` (thumbnails, faiss candidates, aligned verification): copies after
  JPEG, rescaling, crops, shifts, brightness/contrast changes (``near``) or a left-right
  mirror (``mirrored``), each pair with its similarity (aligned correlation, 1 = identical).
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import (
    results_arguments,
    results_paths,
    settings_arguments,
    settings_from_args,
)
from errorless.data.shards import manifest_shards
from errorless.errors import DataError
from errorless.io import write_json, write_parquet
from errorless.names import split_shard
from errorless.quality.exact import (
    MAX_GROUP_PAIRS,
    PAIR_COLUMNS,
    empty_pairs,
    exact_pairs,
    image_keys,
    key_groups,
)
from errorless.quality.nearcopy import near_copies
from errorless.quality.nearsettings import NearSettings
from errorless.quality.thumbnails import Thumbs, thumbs

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = [
    "id_a",
    "id_b",
    "label_a",
    "label_b",
    "module_a",
    "submodule_a",
    "module_b",
    "submodule_b",
    "kind",
    "similarity",
    "group",
]
MATCH_KINDS = ("exact", "near", "mirrored")
ImageRows = Callable[
    [np.ndarray], np.ndarray
]  # sorted row indices -> their images (R, H, W, C) uint8


@dataclass
class DuplicateResult:
    pairs: pd.DataFrame  # PAIR_COLUMNS; a < b are row indices
    group: np.ndarray  # int64 (N,): exact-group id of every image (0..G-1)
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- near


def near_pairs(
    t: Thumbs,
    labels: np.ndarray,
    group: np.ndarray,
    first: np.ndarray,
    s: NearSettings,
    images: ImageRows | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Near and mirrored pairs with different labels; the search runs on one representative per
    exact group and its result is expanded to the group members."""
    labels = np.asarray(labels)
    size = np.bincount(group, minlength=len(first))
    rep_labels = labels[first].copy()
    mixed = np.flatnonzero(size > 1)
    if len(mixed):  # a group with several labels differs from every label: mark it apart
        lab_min = np.full(len(first), np.iinfo(np.int64).max)
        lab_max = np.full(len(first), np.iinfo(np.int64).min)
        np.minimum.at(lab_min, group, labels)
        np.maximum.at(lab_max, group, labels)
        several = lab_min != lab_max
        rep_labels[several] = -1 - np.flatnonzero(several)
    # the search runs on the representatives in place (a copy of 1.28 M thumbnails is 3.6 GB)
    reps = first if len(first) < len(group) else None
    res = near_copies(t, rep_labels[group], s, images, rows=reps, checkpoint=checkpoint)
    ca, cb = res.a, res.b
    simple = (size[group[ca]] == 1) & (size[group[cb]] == 1)
    out = [
        pd.DataFrame(
            {
                "a": ca[simple],
                "b": cb[simple],
                "kind": res.kind[simple],
                "similarity": res.similarity[simple],
            }
        )
    ]
    if (~simple).any():
        order = np.argsort(group, kind="stable")
        starts = np.concatenate([[0], np.cumsum(size)[:-1]])
        for ra, rb, k, sim in zip(
            ca[~simple], cb[~simple], res.kind[~simple], res.similarity[~simple], strict=True
        ):
            ma = order[starts[group[ra]] : starts[group[ra]] + size[group[ra]]][:MAX_GROUP_PAIRS]
            mb = order[starts[group[rb]] : starts[group[rb]] + size[group[rb]]][:MAX_GROUP_PAIRS]
            ii, jj = (v.ravel() for v in np.meshgrid(ma, mb, indexing="ij"))
            out.append(
                pd.DataFrame(
                    {"a": np.minimum(ii, jj), "b": np.maximum(ii, jj), "kind": k, "similarity": sim}
                )
            )
    df = pd.concat(out, ignore_index=True)
    df = df[labels[df["a"].to_numpy()] != labels[df["b"].to_numpy()]]
    df["group"] = np.int64(-1)
    return df[PAIR_COLUMNS].astype({"a": np.int64, "b": np.int64, "group": np.int64}), res.stats


# ---------------------------------------------------------------- both


def find_duplicates(
    keys: np.ndarray,
    t: Thumbs,
    labels: np.ndarray,
    settings: NearSettings | None = None,
    near: bool = True,
    images: np.ndarray | ImageRows | None = None,
    checkpoint: str | Path | None = None,
) -> DuplicateResult:
    """Exact, near and mirrored copies with different labels, from the images' keys
    (``image_keys``) and thumbnails (``thumbnails.thumbs``). ``images``: the images (an array,
    or a function of sorted row indices that returns those rows' images), with which pairs
    that match on the thumbnails are confirmed at full resolution (``fullres.full_residual``);
    without it, the thumbnails decide alone (less precise). ``checkpoint``: a folder for the
    near search's finished work (``nearcopy.Checkpoint``), so that a stopped search goes on."""
    s = settings or NearSettings()
    labels = np.asarray(labels)
    if len(keys) != len(labels) or len(t.grey) != len(labels):
        raise DataError(
            f"keys {keys.shape}, thumbnails {t.grey.shape} and labels {labels.shape} do not match"
        )
    t0 = time.perf_counter()
    group, first = key_groups(keys)
    exact = exact_pairs(group, labels)
    t1 = time.perf_counter()
    fetch = (lambda rows: images[rows]) if isinstance(images, np.ndarray) else images
    near_df, near_stats = (
        near_pairs(t, labels, group, first, s, fetch, checkpoint) if near else (empty_pairs(), {})
    )
    t2 = time.perf_counter()
    pairs = pd.concat([exact, near_df], ignore_index=True) if len(near_df) else exact
    pairs = pairs.sort_values(["kind", "a", "b"], kind="stable").reset_index(drop=True)
    stats = {
        "n_images": int(len(labels)),
        "n_unique": int(len(first)),
        "n_exact_groups_mixed": int(exact["group"].nunique()),
        "n_exact_pairs": int(len(exact)),
        "n_near_pairs": int((near_df["kind"] == "near").sum()),
        "n_mirrored_pairs": int((near_df["kind"] == "mirrored").sum()),
        **near_stats,
        "seconds_exact": round(t1 - t0, 3),
        "seconds_near": round(t2 - t1, 3),
    }
    return DuplicateResult(pairs=pairs, group=group, stats=stats)


def describe(images: np.ndarray, seed: int = 0) -> tuple[np.ndarray, Thumbs]:
    """Keys and thumbnails of a block of images (what the search keeps of them)."""
    return image_keys(images, seed), thumbs(images)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024**2 if sys.platform == "darwin" else r / 1024


# ---------------------------------------------------------------- data set and CLI


@dataclass
class Inputs:
    keys: np.ndarray  # (N, 2) uint64
    thumbs: Thumbs
    labels: np.ndarray
    ids: np.ndarray
    module: np.ndarray  # str "m01"
    submodule: np.ndarray  # str "s1"
    paths: list[Path] = field(default_factory=list)  # shards, in row order
    starts: np.ndarray = field(
        default_factory=lambda: np.zeros(1, np.int64)
    )  # first row of each shard, then N

    def images(self, rows: np.ndarray) -> np.ndarray:
        """The images of sorted rows, read back from their shards (only the shards they are in)."""
        from errorless.data.shards import load_shard

        rows = np.asarray(rows, np.int64)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        out = None
        for k in np.unique(shard).tolist():
            sel = np.flatnonzero(shard == k)
            img = load_shard(self.paths[k]).images
            out = np.empty((len(rows), *img.shape[1:]), np.uint8) if out is None else out
            out[sel] = img[rows[sel] - self.starts[k]]
        return out if out is not None else np.zeros((0, 1, 1, 1), np.uint8)


def load_inputs(paths: Sequence[Path], seed: int = 0) -> Inputs:
    """Keys and thumbnails of the images of ``paths`` (the shards of :func:`manifest_shards`;
    one shard in memory at a time)."""
    from errorless.data.shards import load_shard

    sizes = []
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                sizes.append(len(z["labels"]))
        except Exception as e:
            raise DataError(f"{p}: unreadable shard: {e}") from None
    n = int(sum(sizes))
    keys, thumbs_all = np.empty((n, 2), np.uint64), Thumbs.empty(n)
    labels, ids = np.empty(n, np.int64), np.empty(n, dtype=object)
    module, sub = np.empty(n, dtype=object), np.empty(n, dtype=object)
    lo = 0
    for p, size in zip(paths, sizes, strict=True):
        sh = load_shard(p)
        hi = lo + size
        k, t = describe(sh.images, seed)
        keys[lo:hi] = k
        thumbs_all.put(lo, t)
        labels[lo:hi] = sh.labels
        ids[lo:hi] = sh.ids.astype(str)
        module[lo:hi], sub[lo:hi] = split_shard(sh.name)
        lo = hi
        del sh
    return Inputs(
        keys,
        thumbs_all,
        labels,
        ids,
        module,
        sub,
        paths,
        np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    )


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
            "similarity": pairs["similarity"].to_numpy(np.float64),
            "group": pairs["group"].to_numpy(np.int64),
        }
    )[OUTPUT_COLUMNS]


def output_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("id_a", pa.string()),
            ("id_b", pa.string()),
            ("label_a", pa.int64()),
            ("label_b", pa.int64()),
            ("module_a", pa.string()),
            ("submodule_a", pa.string()),
            ("module_b", pa.string()),
            ("submodule_b", pa.string()),
            ("kind", pa.string()),
            ("similarity", pa.float64()),
            ("group", pa.int64()),
        ]
    )


# What the Slurm job of rule `duplicates` asks for, from the natural-like stand-in at ImageNet
# size (bench/duplicates_bench.py --data natural --n 1280000 --candidates-only --verify-sample
# 300000; docs/double-labelling.md "Limits, measured"). 2026-12-06, with the mirror image's
# moved and corner views: describing and the candidate stage 0.54 ms per image, 23.2 candidate
# pairs per image (21.8 before), verified at 2,957 pairs/s on 2 threads (thumbnails at 3,904
# pairs/s, then the full-resolution check of the 3.4 % that match there at 2.4 ms each). The
# rate asked for is the slower run of the same day before the views were added (2,260 pairs/s,
# thumbnails at 2,871: the same code, a more loaded machine), since a node can be as slow.
# Real-photo crops have 10 per image (60,000 of them): for them it is an upper estimate. The
# search keeps its work in a checkpoint (nearcopy.Checkpoint), so an attempt stopped by the
# limit loses at most one pass.
SEARCH_SECONDS_PER_IMAGE = 0.54e-3
CANDIDATES_PER_IMAGE = 23.2
PAIRS_PER_SECOND = 2_260


def planned_minutes(n_images: int, floor: int = 60) -> int:
    """Minutes to ask for a duplicate search of ``n_images``: 1.5 × (10 minutes for reading the
    shards + describing and the candidate stage at SEARCH_SECONDS_PER_IMAGE + the verification
    of CANDIDATES_PER_IMAGE pairs per image at PAIRS_PER_SECOND), at least ``floor``.
    1.3 M images (ImageNet): 367 minutes."""
    search = n_images * (SEARCH_SECONDS_PER_IMAGE + CANDIDATES_PER_IMAGE / PAIRS_PER_SECOND) / 60
    return max(floor, math.ceil(1.5 * (10 + search)))


def duplicates_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    results_arguments(p)
    p.add_argument("--out", help="pairs Parquet (default: {results}/quality/duplicates.parquet)")
    p.add_argument("--stats", help="time/memory JSON (default: the --out path with .json)")
    p.add_argument(
        "--no-near", action="store_true", help="exact copies only (skip the near-copy search)"
    )
    p.add_argument(
        "--flat-limit",
        type=int,
        default=NearSettings.flat_limit,
        help="images up to which the candidate search is exact (faiss flat); IVF above",
    )
    near_search_arguments(p)
    p.add_argument(
        "--checkpoint",
        help="folder for the near search's finished work (its candidates and verification "
        "passes), so that a search stopped part way goes on from there when run again; removed "
        "once the pairs are written (default: {results}/checkpoints/duplicates)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=NearSettings.threads,
        help="threads of the pair verification (the rule passes its own)",
    )


def near_search_arguments(p: argparse.ArgumentParser) -> None:
    """The candidate-search options ``errorless duplicates`` and bench/duplicates_bench.py
    share, with NearSettings' defaults."""
    p.add_argument(
        "--nprobe", type=int, default=NearSettings.nprobe, help="IVF cells probed per query"
    )
    p.add_argument(
        "--whiten",
        type=float,
        default=NearSettings.whiten,
        help="> 0: PCA-whitened candidate descriptors, each eigenvalue plus this share of the "
        "largest (0.03: 3x fewer candidates on real photos, 1-2 combined-transform copies in "
        "100 fewer; docs/double-labelling.md)",
    )


def near_settings(cfg: dict[str, Any], **extra: Any) -> NearSettings:
    dl = cfg["double_labeling"]
    return NearSettings(
        similarity=dl["near_similarity"],
        neighbours=dl["neighbours"],
        verify_mb=dl["verify_mb"],
        seed=cfg["seed"],
        **extra,
    )


def duplicates_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    results, manifest = results_paths(args, cfg)
    out = Path(args.out) if args.out else results / "quality" / "duplicates.parquet"
    stats_path = Path(args.stats) if args.stats else out.with_suffix(".json")
    s = near_settings(
        cfg,
        flat_limit=args.flat_limit,
        nprobe=args.nprobe,
        threads=args.threads,
        whiten=args.whiten,
    )
    t0 = time.perf_counter()
    inp = load_inputs(list(manifest_shards(manifest).values()), cfg["seed"])
    t_load = time.perf_counter() - t0
    log.info("%d images: keys and thumbnails in %.1f s", len(inp.labels), t_load)
    checkpoint = Path(args.checkpoint or results / "checkpoints" / "duplicates")
    res = find_duplicates(
        inp.keys,
        inp.thumbs,
        inp.labels,
        s,
        near=not args.no_near,
        images=inp.images,
        checkpoint=checkpoint,
    )
    table = pairs_table(res.pairs, inp)
    import pyarrow as pa

    write_parquet(out, pa.Table.from_pandas(table, schema=output_schema(), preserve_index=False))
    stats = {
        "manifest": str(manifest),
        "seconds_load": round(t_load, 3),
        **res.stats,
        "seconds_total": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "settings": vars(s),
    }
    write_json(stats_path, stats)
    shutil.rmtree(checkpoint, ignore_errors=True)  # its work is in the outputs now
    log.info(
        "%d exact pair(s) in %d group(s), %d near, %d mirrored (similarity >= %g); %.1f s, peak RSS %.0f MB",
        stats["n_exact_pairs"],
        stats["n_exact_groups_mixed"],
        stats["n_near_pairs"],
        stats["n_mirrored_pairs"],
        s.similarity,
        stats["seconds_total"],
        stats["peak_rss_mb"],
    )
    return 0
