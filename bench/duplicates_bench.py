"""Benchmark of the duplicate search (errorless.quality.duplicates) on images.

``--data photos`` (default): crops of the real photographs of ``errorless.data.photos`` — the
photograph labels only (``photos.photograph_labels()``, as ``bench/train_one.py``; ``--drawings``
adds the colour wheel and the logo, whose quarters are mirror images, so crops of two of their
labels can be the same picture) — non-overlapping photo parts, half of the crops mirrored,
plus ``--per-kind`` planted copies of each near-copy kind of ``errorless.data.copies`` (JPEG,
rescale, crop, shift, flip, brightness, contrast, two combined), each under another label.
Prints recall per kind, the false pairs among the unplanted crops (crops of different labels
never share a source pixel, so every reported pair between them is false) per 10,000 crops,
time, peak RSS and the candidate load (candidate pairs per image, verified pairs per second,
and the verification time 1.28 M images with as many candidates would need).
``pixel_difference`` measures each false pair's two crops against each other under the
transform the search claims, with the bench's own code; pairs within ``--same-tolerance``
grey levels are also counted apart (``false_pairs_same_pixels``; ``false_pairs`` counts all).

``--data random --n 1280000``: ImageNet size. Images are made and described (keys and
thumbnails) block by block, never all held at once (1.28 M × 64×64×3 = 15.7 GB); each block
holds a few planted copies. Prints time and peak RSS of describing and of the search.

``--data natural --n 1280000``: the stand-in for a natural set of ImageNet size (none exists
offline): natural-like images made block by block from the same photographs
(``bench/natural_images.py``: crops turned by multiples of 90° and mirrored, 2×2 mosaics and
two-crop strips), ``--plant-per-block`` copies of each kind planted in every block. Prints the
time of each stage (describing, faiss candidates, thumbnail verification, full-resolution
check), peak RSS, the candidate load and what the rule ``duplicates`` asks Slurm for at this
size; ``--compare-photos`` also runs ``--data photos`` at the same n and seed and prints its
candidates per image next to these.

    python bench/duplicates_bench.py                                   # >= 10,000 real-photo crops
    python bench/duplicates_bench.py --data random --n 1280000         # ImageNet size
    python bench/duplicates_bench.py --data natural --n 60000 --compare-photos
    python bench/duplicates_bench.py --record     # docs/benchmarks/duplicates_bench-....md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from record import record, record_argument  # bench/record.py (the script's folder)

from errorless.data import photos
from errorless.data.copies import NEAR_KINDS, REAL_KINDS, plant
from errorless.quality.duplicates import (
    describe,
    find_duplicates,
    near_search_arguments,
    peak_rss_mb,
)
from errorless.quality.nearsettings import NearSettings
from errorless.quality.thumbnails import Thumbs

# --kinds: which copies to plant
KIND_SETS = {
    "classic": list(NEAR_KINDS),
    "real": list(REAL_KINDS),
    "all": [*NEAR_KINDS, *REAL_KINDS],
}


def score(pairs, truth, n_unplanted_rows) -> dict:
    found = {
        (int(a), int(b)): k for a, b, k in zip(pairs["a"], pairs["b"], pairs["kind"], strict=True)
    }
    out = {}
    for kind in dict.fromkeys(k for _, _, k in truth):
        mine = [(min(s, c), max(s, c)) for s, c, k in truth if k == kind]
        out[f"recall_{kind}"] = round(sum(p in found for p in mine) / max(1, len(mine)), 4)
    out["mirrored_kind_of_flips"] = sum(
        found.get((min(s, c), max(s, c))) == "mirrored" for s, c, k in truth if k == "flip"
    )
    planted = {(min(s, c), max(s, c)) for s, c, _ in truth}
    false = [
        p
        for p in found
        if p not in planted and p[0] in n_unplanted_rows and p[1] in n_unplanted_rows
    ]
    out["false_pairs"] = len(false)
    out["extra_pairs_touching_copies"] = sum(1 for p in found if p not in planted) - len(false)
    return out, false


def pixel_difference(images: np.ndarray, pairs: list, kinds: list, thumbs: Thumbs) -> np.ndarray:
    """(P,) how far apart two images are under the transform the search claims for them: the
    thumbnail fit (errorless.quality.alignment.similarity, mirrored for "mirrored" pairs) refined here by
    up to ±1 px and ±2 % per axis; both grey images blurred by σ = 1 px (resampling), no gain or
    offset (unplanted crops of one photo share its exposure); the largest RMS difference in an
    8 × 8-pixel window (every position, at least half inside the overlap), in grey levels 0-255. Not the
    search's own residual (relative to contrast, blur-matched, 2-px border left out)."""
    import itertools

    from scipy.ndimage import gaussian_filter, uniform_filter

    from errorless.quality import alignment, thumbnails

    if not pairs:
        return np.zeros(0)
    a, b = (np.array(v) for v in zip(*pairs, strict=True))
    f = np.array([k == "mirrored" for k in kinds])
    _, par, rev, *_ = alignment.both_ways(
        thumbs.grey[a], thumbs.grey[b], thumbs.colour[a], thumbs.colour[b], f
    )
    p, h = len(a), images.shape[1]
    grey = gaussian_filter(thumbnails._grey(images[np.r_[a, b]]), (0, 1, 1))
    ga, gb = grey[:p], grey[p:]
    src, dst = np.where(rev[:, None, None], gb, ga), np.where(rev[:, None, None], ga, gb)
    src[f] = src[f][:, :, ::-1]
    side, win = h - 2, 8
    xb, yb, flat = alignment._grid(h, 1, 1)
    dv = dst.reshape(p, -1)[:, flat]

    def windows(x):  # (P, side²) -> (P, side, side) means over the 8 × 8 window around each pixel
        return uniform_filter(x.reshape(p, side, side), (0, win, win), mode="constant")

    best = np.full(p, np.inf)
    steps = (-1, -0.5, 0, 0.5, 1)
    for dx, dy, fx, fy in itertools.product(steps, steps, (0.98, 1, 1.02), (0.98, 1, 1.02)):
        q = par.copy()
        q[:, 0] *= fx
        q[:, 2] *= fy
        q[:, 1] = (q[:, 1] + dx / 2) * h / thumbnails.SIDE  # thumbnail px -> image px
        q[:, 3] = (q[:, 3] + dy / 2) * h / thumbnails.SIDE
        sv, inside = alignment._sample(src, *alignment._warp(src, q, xb, yb))
        m = inside.astype(np.float64)
        cover = windows(m)
        rms = np.sqrt(np.maximum(windows((dv - sv) ** 2 * m), 0) / np.maximum(cover, 1e-9))
        best = np.minimum(best, np.where(cover >= 0.5, rms, 0).reshape(p, -1).max(1))
    return best


def settings(a) -> NearSettings:
    """The search settings of the command line."""
    return NearSettings(
        neighbours=a.neighbours,
        similarity=a.similarity,
        nprobe=a.nprobe,
        threads=a.threads,
        prefilter=a.prefilter,
        highpass=a.highpass,
        whiten=a.whiten,
        verify_mb=a.verify_mb,
    )


def photos_bench(a) -> dict:
    # photographs only by default: the two drawings' quarters are mirror images of each other
    # (the logo's green rim), so their crops under two labels can be the same picture
    chosen = list(range(photos.available_labels())) if a.drawings else photos.photograph_labels()
    labels = len(chosen)
    per_label = -(-a.n // labels)
    t0 = time.perf_counter()
    y = np.repeat(np.asarray(chosen, dtype=np.int64), per_label)
    images, _ = photos.crops(np.random.default_rng(a.seed), y, size=64)
    n = len(images)
    rng = np.random.default_rng(a.seed + 1)
    images, y, truth = plant(images, y, a.per_kind, rng, kinds=KIND_SETS[a.kinds])
    t_data = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    keys, thumbs = describe(images)
    t_desc = time.perf_counter() - t0
    res = find_duplicates(
        keys,
        thumbs,
        y,
        settings(a),
        images=None if a.thumbnails_only else images,
    )
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    sc, false = score(res.pairs, truth, set(range(n)))
    kind_of = {
        (int(i), int(j)): k
        for i, j, k in zip(res.pairs["a"], res.pairs["b"], res.pairs["kind"], strict=True)
    }
    diff = pixel_difference(images, false, [kind_of[p] for p in false], thumbs)
    same = diff <= a.same_tolerance
    other = [p for p, s_ in zip(false, same, strict=True) if not s_]
    out = {
        "data": f"errorless.data.photos crops, 64x64, {labels} labels x {per_label}, seed {a.seed}, "
        f"copies of the {a.kinds} kinds"
        + (" (photographs and the two drawings)" if a.drawings else " (photographs only)"),
        "unplanted_crops": n,
        "planted_copies": len(truth),
        "seconds_data": round(t_data, 1),
        "seconds_describe": round(t_desc, 1),
        "seconds_search_total": round(t_all, 1),
        "cpu_seconds": round(c_all, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        **sc,
        "false_pairs_per_10k": round(sc["false_pairs"] * 10_000 / n, 2),
        "false_pairs_by_photo": _by_photo(false, y),
        f"false_pairs_same_pixels (<= {a.same_tolerance:g} grey levels)": int(same.sum()),
        "false_pairs_other": len(other),
        "false_pairs_other_per_10k": round(len(other) * 10_000 / n, 2),
        "false_pairs_other_by_photo": _by_photo(other, y),
        "false_pair_pixel_difference": sorted(np.round(diff, 1).tolist()),
        **res.stats,
        **candidate_load(res.stats, len(images)),
    }
    if a.show_false and false:
        # the pairs that are not the same pixels first
        order = sorted(range(len(false)), key=lambda i: -diff[i])
        _show(images, [false[i] for i in order[: a.show_false]], a.show_false_path)
    return out


def candidate_load(stats: dict, n_images: int, n_target: int = 1_280_000) -> dict:
    """What the verification costs per image: candidate pairs per image, pairs verified per
    second on the thumbnails, and the thumbnail verification time that ``n_target`` images
    would need if each had as many candidates as these (a lower bound: the neighbour lists of
    a larger set are denser, so more of them pass the prefilter)."""
    per_image = stats["n_candidates"] / max(1, n_images)
    rate = stats["n_candidates"] / max(stats["seconds_verify"], 1e-9)
    return {
        "candidates_per_image": round(per_image, 3),
        "verified_pairs_per_second": round(rate),
        f"verify_seconds_at_{n_target}_at_this_rate": round(n_target * per_image / rate),
    }


def _by_photo(pairs, y) -> dict[str, int]:
    """False pairs counted by the photos their two crops come from ("logo+logo": 12, ...)."""
    photo = [p.name.split("/")[0] for p in photos.parts()]
    keys = ["+".join(sorted((photo[y[i]], photo[y[j]]))) for i, j in pairs]
    return dict(sorted(((k, keys.count(k)) for k in set(keys)), key=lambda kv: -kv[1]))


def _show(images, pairs, path) -> None:
    from PIL import Image

    gap = np.full((64, 4, 3), 255, np.uint8)
    rows = [
        np.concatenate([images[i], gap, images[j], np.full((64, 16, 3), 255, np.uint8)], 1)
        for i, j in pairs
    ]
    while len(rows) % 4:
        rows.append(np.full_like(rows[0], 255))
    grid = np.concatenate([np.concatenate(rows[i : i + 4], 1) for i in range(0, len(rows), 4)], 0)
    Image.fromarray(grid).save(path)


def random_images(rng: np.random.Generator, n: int, side: int = 64) -> np.ndarray:
    """Distinct smooth random colour images (coarse 8×8 noise, bilinear-upsampled, plus fine noise)."""
    from errorless.quality.thumbnails import area_matrix

    up = area_matrix(8, side)  # (side, 8): each pixel takes its coarse cell
    out = np.empty((n, side, side, 3), np.uint8)
    for lo in range(0, n, 2048):  # float32 throughout, in chunks: little memory besides the output
        coarse = rng.uniform(0, 255, size=(min(n, lo + 2048) - lo, 8, 8, 3)).astype(np.float32)
        x = np.einsum("hi,nijc,wj->nhwc", up, coarse, up, optimize=True)
        x += rng.standard_normal(size=x.shape, dtype=np.float32) * np.float32(12)
        out[lo : lo + len(x)] = np.clip(x, 0, 255)
    return out


def random_block(a, lo: int):
    """Images, labels and planted truth of the block of rows starting at ``lo`` (its own
    generator, so a block can be made again when the search asks for its images)."""
    rng = np.random.default_rng([a.seed, lo // a.block])
    m = min(a.block, a.n - lo)
    per = a.per_kind if lo == 0 else 0
    imgs = random_images(rng, m - per * len(NEAR_KINDS))
    y = rng.integers(0, 1000, len(imgs))
    truth = []
    if per:
        imgs, y, truth = plant(imgs, y, per, rng, offset=lo)
    return imgs, y, truth


def described_in_blocks(n: int, block: int, make):
    """Images made by ``make(lo)`` -> (images, labels, truth) block by block and described
    (keys, thumbnails) without holding them all. Returns keys, thumbnails, labels, truth and
    the seconds of making, of describing and the CPU seconds of describing."""
    keys, thumbs, labels, truth = (
        np.empty((n, 2), np.uint64),
        Thumbs.empty(n),
        np.empty(n, np.int64),
        [],
    )
    t_gen = t_desc = c_desc = 0.0
    for lo in range(0, n, block):
        t0 = time.perf_counter()
        imgs, y, tr = make(lo)
        truth += tr
        t1, c1 = time.perf_counter(), time.process_time()
        k, t = describe(imgs)
        keys[lo : lo + len(y)], labels[lo : lo + len(y)] = k, y
        thumbs.put(lo, t)
        t_gen += t1 - t0
        t_desc += time.perf_counter() - t1
        c_desc += time.process_time() - c1
        del imgs
    return keys, thumbs, labels, truth, t_gen, t_desc, c_desc


def remade(rows: np.ndarray, block: int, make) -> np.ndarray:
    """The images of sorted ``rows``, made again by ``make(lo)`` block by block."""
    out = np.empty((len(rows), 64, 64, 3), np.uint8)
    blocks = rows // block
    for blk in np.unique(blocks).tolist():
        sel = np.flatnonzero(blocks == blk)
        out[sel] = make(blk * block)[0][rows[sel] - blk * block]
    return out


def random_bench(a) -> dict:
    keys, thumbs, labels, truth, t_gen, t_desc, c_desc = described_in_blocks(
        a.n, a.block, lambda lo: random_block(a, lo)
    )

    def images(rows: np.ndarray) -> np.ndarray:  # made again, block by block
        return remade(rows, a.block, lambda lo: random_block(a, lo))

    rss_described = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    res = find_duplicates(
        keys,
        thumbs,
        labels,
        settings(a),
        images=None if a.thumbnails_only else images,
    )
    t_search, c_search = time.perf_counter() - t0, time.process_time() - c0
    sc, _ = score(res.pairs, truth, set())
    return {
        "data": f"random smooth 64x64 images, block {a.block}",
        "n": a.n,
        "planted_copies": len(truth),
        "seconds_generate": round(t_gen, 1),
        "seconds_describe": round(t_desc, 1),
        "cpu_seconds_describe": round(c_desc, 1),
        "seconds_search": round(t_search, 1),
        "cpu_seconds_search": round(c_search, 1),
        "seconds_describe_plus_search": round(t_desc + t_search, 1),
        "thumbnail_mb": round((thumbs.grey.nbytes + thumbs.colour.nbytes) / 2**20),
        "peak_rss_mb_before_search": round(rss_described),
        "peak_rss_mb": round(peak_rss_mb()),
        **sc,
        **res.stats,
        **candidate_load(res.stats, a.n),
    }


def natural_bench(a) -> dict:
    """``--data natural``: natural-like images (bench/natural_images.py) made and described
    block by block, as ``random_bench``; the time of each stage, the peak RSS, the candidate
    load, recall of the planted copies, false pairs among the unplanted images, and what the
    rule ``duplicates`` asks Slurm for at this size (workflow/rules/common.smk)."""
    from natural_images import natural_block  # bench/natural_images.py (the script's folder)

    from errorless.quality.duplicates import planned_minutes

    def block(lo: int):
        return natural_block(a.seed, a.block, lo, a.n, a.plant_per_block, 64, a.mosaic)

    keys, thumbs, labels, truth, t_gen, t_desc, c_desc = described_in_blocks(a.n, a.block, block)
    t_fetch = [0.0]

    def images(rows: np.ndarray) -> np.ndarray:  # made again, block by block
        t0 = time.perf_counter()
        out = remade(rows, a.block, block)
        t_fetch[0] += time.perf_counter() - t0
        return out

    rss_described = peak_rss_mb()
    if a.candidates_only:  # the search's first stage alone: its candidate pairs, time, memory
        from errorless.quality.candidates import candidates

        t0, c0 = time.perf_counter(), time.process_time()
        ca, cb, cf, method = candidates(thumbs, labels, settings(a))
        t_cand, c_cand = time.perf_counter() - t0, time.process_time() - c0
        sample = {}
        if a.verify_sample:  # the verification (thumbnails, then full resolution) of a sample
            from errorless.quality.nearcopy import near_copies

            pick = np.sort(
                np.random.default_rng(a.seed).choice(
                    len(ca), size=min(a.verify_sample, len(ca)), replace=False
                )
            )
            t1 = time.perf_counter()
            res = near_copies(
                thumbs, labels, settings(a), images, pairs=(ca[pick], cb[pick], cf[pick])
            )
            t_sample = time.perf_counter() - t1
            st = res.stats
            # the bench makes a matched image's whole block again (about 3 s a block); the
            # search over all candidates asks for all matched images once, the rule reads them
            # from its shards: that is left out of the full check's cost per match
            full = st["seconds_full_check"] - t_fetch[0]
            thumb_rate = len(pick) / max(st["seconds_verify"], 1e-9)
            matched_share = st["n_thumbnail_matches"] / len(pick)
            verify = len(ca) / thumb_rate + len(ca) * matched_share * (
                full / max(1, st["n_thumbnail_matches"])
            )
            sample = {
                "verified_sample_pairs": len(pick),
                "seconds_verify_sample": round(t_sample, 1),
                "seconds_sample_thumbnails": st["seconds_verify"],
                "sample_thumbnail_pairs_per_second": round(thumb_rate),
                "sample_thumbnail_matches": st["n_thumbnail_matches"],
                "seconds_sample_full_check": st["seconds_full_check"],
                "seconds_sample_full_check_making_images_again": round(t_fetch[0], 1),
                "sample_matches": st["n_verified_pairs"],
                "sample_pairs_per_second_without_making_images": round(
                    len(pick) / (st["seconds_verify"] + full)
                ),
                "projected_minutes_verify_all_candidates": round(verify / 60, 1),
                "projected_minutes_describe_candidates_verify": round(
                    (t_desc + t_cand + verify) / 60, 1
                ),
            }
        return {
            "data": f"natural-like 64x64 images (bench/natural_images.py), {a.mosaic:g} "
            f"mosaics and strips, block {a.block}, seed {a.seed}, {a.plant_per_block} planted "
            "copies of each kind per block; candidate stage only (no verification)",
            "n": a.n,
            "seconds_generate": round(t_gen, 1),
            "seconds_describe": round(t_desc, 1),
            "seconds_candidates": round(t_cand, 1),
            "cpu_seconds_candidates": round(c_cand, 1),
            "near_index": method,
            "n_candidates": len(ca),
            "candidates_per_image": round(len(ca) / a.n, 3),
            "thumbnail_mb": round((thumbs.grey.nbytes + thumbs.colour.nbytes) / 2**20),
            "peak_rss_mb_before_search": round(rss_described),
            "peak_rss_mb": round(peak_rss_mb()),
            **sample,
            "slurm_mem_mb_asked_at_this_n": _dup_mem_mb(a.n, a.verify_mb),
            "slurm_runtime_min_asked_at_this_n": planned_minutes(a.n),
        }
    t0, c0 = time.perf_counter(), time.process_time()
    res = find_duplicates(
        keys, thumbs, labels, settings(a), images=None if a.thumbnails_only else images
    )
    t_search, c_search = time.perf_counter() - t0, time.process_time() - c0
    copies = {c for _, c, _ in truth}
    sc, _ = score(res.pairs, truth, set(np.flatnonzero(labels < 10_000).tolist()) - copies)
    st = res.stats
    out = {
        "data": f"natural-like 64x64 images from the errorless.data.photos photographs "
        f"(crops turned and mirrored, {a.mosaic:g} mosaics and strips; bench/natural_images.py), "
        f"block {a.block}, seed {a.seed}, {a.plant_per_block} planted copies of each kind per block",
        "n": a.n,
        "planted_copies": len(truth),
        "seconds_generate": round(t_gen, 1),
        "seconds_describe": round(t_desc, 1),
        "cpu_seconds_describe": round(c_desc, 1),
        "seconds_search": round(t_search, 1),
        "cpu_seconds_search": round(c_search, 1),
        "seconds_candidates": st["seconds_candidates"],
        "seconds_verify_thumbnails": st["seconds_verify"],
        "seconds_full_check": st["seconds_full_check"],
        "seconds_full_check_making_images_again": round(t_fetch[0], 1),
        "seconds_describe_plus_search": round(t_desc + t_search, 1),
        "thumbnail_mb": round((thumbs.grey.nbytes + thumbs.colour.nbytes) / 2**20),
        "peak_rss_mb_before_search": round(rss_described),
        "peak_rss_mb": round(peak_rss_mb()),
        **sc,
        "false_pairs_per_10k": round(sc["false_pairs"] * 10_000 / a.n, 2),
        **st,
        **candidate_load(st, a.n),
        "slurm_mem_mb_asked_at_this_n": _dup_mem_mb(a.n, a.verify_mb),
        "slurm_runtime_min_asked_at_this_n": planned_minutes(a.n),
    }
    if a.compare_photos:  # the real-photo crops at the same n and seed, in a process of its own
        ph = in_process(
            "--n", str(a.n), "--seed", str(a.seed), "--per-kind", str(a.compare_per_kind)
        )
        out["photos_candidates_per_image_same_n_seed"] = ph["candidates_per_image"]
        out["photos_n_images"] = ph["n_images"]
        out["photos_n_candidates"] = ph["n_candidates"]
        out["photos_peak_rss_mb"] = ph["peak_rss_mb"]
        out["photos_seconds_search"] = ph["seconds_search_total"]
        out["photos_seconds_verify_thumbnails"] = ph["seconds_verify"]
        out["photos_verified_pairs_per_second"] = ph["verified_pairs_per_second"]
    return out


def _dup_mem_mb(n_images: int, verify_mb: float) -> int:
    """mem_mb the rule ``duplicates`` asks for ``n_images`` training images (first attempt):
    workflow/rules/common.smk, ``DUP_MEM, DUP_MIN = scaled(...)``, with TRAIN_IMAGES = n_images;
    its runtime is ``planned_minutes(n_images)``."""
    return 1500 + int(np.ceil(verify_mb)) + int(np.ceil(n_images * 2816 * 1.5 / 1e6))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["photos", "random", "natural"], default="photos")
    p.add_argument(
        "--n",
        type=int,
        default=10_000,
        help="unplanted images (photos: rounded up to whole labels)",
    )
    p.add_argument("--per-kind", type=int, default=100, help="planted copies per near-copy kind")
    p.add_argument(
        "--kinds",
        choices=list(KIND_SETS),
        default="classic",
        help="which copy kinds to plant: the generators' (classic), real data sets' others "
        "(real: hue, saturation, gain, aspect, overlay, triple; errorless.data.copies.REAL_KINDS) "
        "or all",
    )
    p.add_argument("--neighbours", type=int, default=NearSettings.neighbours)
    p.add_argument("--similarity", type=float, default=NearSettings.similarity)
    near_search_arguments(p)  # --nprobe, --whiten, as errorless duplicates
    p.add_argument(
        "--prefilter",
        type=float,
        default=NearSettings.prefilter,
        help="descriptor correlation a candidate needs to be verified",
    )
    p.add_argument(
        "--highpass",
        type=float,
        default=NearSettings.highpass,
        help="> 0: band-pass descriptors (thumbnail minus its blur by this sigma, px)",
    )
    p.add_argument(
        "--block",
        type=int,
        default=16384,
        help="random, natural: images made and described at once",
    )
    p.add_argument(
        "--mosaic",
        type=float,
        default=0.3,
        help="natural: share of 2x2 mosaics and two-crop strips (half each; the rest single crops)",
    )
    p.add_argument(
        "--plant-per-block",
        type=int,
        default=3,
        help="natural: planted copies of each near-copy kind in every block",
    )
    p.add_argument(
        "--compare-photos",
        action="store_true",
        help="natural: also run --data photos at the same n and seed (its own process) and "
        "print its candidates per image next to these",
    )
    p.add_argument(
        "--candidates-only",
        action="store_true",
        help="natural: stop after the candidate stage (faiss), to measure its pairs, time and "
        "memory at sizes whose verification would not finish",
    )
    p.add_argument(
        "--compare-per-kind",
        type=int,
        default=20,
        help="natural: --per-kind of the --compare-photos run",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--verify-mb",
        type=float,
        default=NearSettings.verify_mb,
        help="MB the verification holds at once (passes of candidate pairs; peak RSS is the "
        "images, the thumbnails and one pass)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="threads of the pair verification (2 cores here)"
    )
    p.add_argument(
        "--drawings",
        action="store_true",
        help="photos: also crop the two drawings (colour wheel, logo), whose quarters are "
        "mirror images, so some of their crops under two labels are the same picture",
    )
    p.add_argument(
        "--thumbnails-only",
        action="store_true",
        help="no full-resolution check of thumbnail matches",
    )
    p.add_argument(
        "--show-false", type=int, default=0, help="photos: save this many false pairs side by side"
    )
    p.add_argument("--show-false-path", default="false_pairs.png")
    p.add_argument(
        "--same-tolerance",
        type=float,
        default=6.0,
        help="photos: false pairs whose crops differ by at most this many grey levels "
        "(pixel_difference) are also counted apart as the same pixels",
    )
    p.add_argument(
        "--verify-sample",
        type=int,
        default=0,
        help="natural, with --candidates-only: verify this many candidate pairs drawn at random "
        "(thumbnails and full resolution) and project the verification of all of them from "
        "their pairs per second",
    )
    p.add_argument("--json", help="also write the figures to this JSON file")
    record_argument(p)
    a = p.parse_args()
    out = {"photos": photos_bench, "random": random_bench, "natural": natural_bench}[a.data](a)
    for k, v in out.items():
        print(f"{k:28s} {v}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    if a.record:
        figures = {k: v for k, v in out.items() if k != "data"}
        record(
            f"duplicates_bench-{a.data}-{a.n}-seed{a.seed}"
            + ("" if a.kinds == "classic" else f"-{a.kinds}")
            + ("-candidates" if a.candidates_only else ""),
            f"Duplicate search on {a.data} images ({a.n:,}, seed {a.seed})"
            + (", candidate stage only" if a.candidates_only else ""),
            str(out.get("data", f"{a.data} images, n = {a.n:,}, seed {a.seed}")),
            figures,
        )


def in_process(*options: str) -> dict:
    """This bench run with ``options`` in a process of its own (so its peak memory is its own);
    its figures, read back from ``--json``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *options, "--json", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


if __name__ == "__main__":
    main()
