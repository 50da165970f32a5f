"""Images that are the same picture with different labels
(docs/method.md#double-labelling-evidence, image matches): exact copies,
near copies after what real data sets do to copies, mirrored copies — measured on real photos."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from errorless.cli import main
from errorless.data import photos
from errorless.data.copies import ALL_KINDS, NEAR_KINDS, jpeg, plant, transform_copy
from errorless.quality import alignment, candidates, exact, fullres, nearsettings, thumbnails
from errorless.quality import duplicates as dup
from errorless.quality import nearcopy as nc
from errorless.quality.duplicates import describe, find_duplicates


def _pairs(res) -> dict[tuple[int, int], str]:
    return {
        (int(a), int(b)): k
        for a, b, k in zip(res.pairs["a"], res.pairs["b"], res.pairs["kind"], strict=True)
    }


# ---------------------------------------------------------------- exact


def test_exact_groups_cross_label_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    x[2] = x[0]  # other label: reported
    x[3] = x[1]  # same label: not reported
    labels = np.array([0, 1, 5, 1, 2, 3])
    keys, t = describe(x)
    res = find_duplicates(keys, t, labels, near=False)
    assert _pairs(res) == {(0, 2): "exact"}
    assert (
        res.group[0] == res.group[2] and res.group[1] == res.group[3] and res.stats["n_unique"] == 4
    )
    assert (res.pairs["similarity"] == 1.0).all()


def _linear_keys(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The former image_keys (before issue 24), a linear hash Σ wᵢ·rᵢ mod 2⁶⁴ over 64-bit
    words: kept as the reference that the structured-change tests below can fail on."""
    flat = images.reshape(len(images), -1)
    d = flat.shape[1]
    width = -(-d // 8) * 8
    mult = np.random.default_rng(seed).integers(
        0, 2**63, size=(width // 8, 2), dtype=np.uint64
    ) * np.uint64(2) + np.uint64(1)
    words = np.zeros((len(flat), width), np.uint8)
    words[:, :d] = flat
    with np.errstate(over="ignore"):
        return words.view(np.uint64) @ mult


def _n_distinct(keys: np.ndarray) -> int:
    return len(np.unique(keys, axis=0))


def _two_byte_images(lo: int, hi: int, shape: tuple[int, ...], i: int, j: int) -> np.ndarray:
    """Images lo..hi-1 of 65,536: one random image with bytes i and j set to v % 256 and
    v // 256 (v the image's number), so that every two of them differ."""
    base = np.random.default_rng(11).integers(0, 256, math.prod(shape), dtype=np.uint8)
    x = np.tile(base, (hi - lo, 1))
    v = np.arange(lo, hi)
    x[:, i], x[:, j] = v % 256, v // 256
    return x.reshape(hi - lo, *shape)


def test_image_keys_equal_a_plain_loop() -> None:
    """Oracle: xxhash's XXH3-128 applied image by image, seeded with BLAKE2b (hashlib) of the
    seed, the dtype and the image shape."""
    xxhash = pytest.importorskip("xxhash")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(9, 5, 7, 3), dtype=np.uint8)
    for seed in (0, 3):
        keys = exact.image_keys(x, seed=seed, block=4)
        text = f"errorless.image_keys:{seed}:|u1:(5, 7, 3)".encode()
        s = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
        assert exact.key_seed((5, 7, 3), np.uint8, seed) == s
        for i in range(len(x)):
            digest = xxhash.xxh3_128(x[i].tobytes(), seed=s).digest()
            assert keys[i].tolist() == np.frombuffer(digest, "<u8").tolist()
    assert keys.dtype == np.uint64 and keys.shape == (9, 2)
    assert exact.image_keys(x[:0]).shape == (0, 2)


@pytest.mark.parametrize(
    ("shape", "i", "j"),
    [((16, 16, 3), 7, 15), ((16, 16, 3), 0, 767), ((16, 16, 3), 100, 101), ((64, 64, 3), 7, 15)],
)
def test_image_keys_two_byte_changes_all_distinct(shape, i, j) -> None:
    """The review's case: 65,536 images that differ only in two byte positions are all
    different, so all their keys are (made block by block: the 64×64×3 set is 805 MB whole).
    The former linear hash fails it on bytes 7 and 15 (the top bytes of two words)."""
    n, step = 65_536, 8_192
    keys = np.concatenate(
        [exact.image_keys(_two_byte_images(lo, lo + step, shape, i, j)) for lo in range(0, n, step)]
    )
    assert _n_distinct(keys) == n
    if (i, j) == (7, 15):
        old = np.concatenate(
            [_linear_keys(_two_byte_images(lo, lo + step, shape, i, j)) for lo in range(0, n, step)]
        )
        assert _n_distinct(old) == n // 2  # the review's measurement: 32,768 keys


def test_image_keys_single_bit_flips_all_distinct() -> None:
    """Every single-bit flip of one image gives another key (the former linear hash did not:
    flipping the top bit of any 64-bit word added 2⁶³ to both halves of the key)."""
    x = np.random.default_rng(4).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    flat = np.tile(x.reshape(-1), (x.size * 8 + 1, 1))
    k = np.arange(x.size * 8)
    flat[1 + k, k // 8] ^= (1 << (k % 8)).astype(np.uint8)  # image 1 + k: bit k flipped
    assert len(np.unique(flat, axis=0)) == len(flat)
    keys = exact.image_keys(flat.reshape(-1, *x.shape), block=1000)
    assert _n_distinct(keys) == len(flat) == 6_145


def test_image_keys_equal_bytes_equal_keys() -> None:
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, size=(40, 16, 32, 6), dtype=np.uint8)
    view = big[::2, :, ::2, 1:4]  # non-contiguous
    assert not view.flags.c_contiguous
    copy = np.ascontiguousarray(view)
    fortran = np.asfortranarray(view)
    keys = exact.image_keys(view, block=3)
    for other in (copy, fortran, copy.copy()):
        assert np.array_equal(exact.image_keys(other, block=7), keys)
    assert np.array_equal(exact.image_keys(view, block=1), keys)  # blocks do not matter
    assert np.array_equal(exact.image_keys(copy[[5, 5, 0]]), keys[[5, 5, 0]])  # per image
    twins = np.concatenate([copy, copy[::-1]])
    assert np.array_equal(exact.image_keys(twins)[20:], keys[::-1])
    assert _n_distinct(keys) == 20  # random images: all different
    # the same bytes under another shape, dtype or seed are other keys
    assert not (exact.image_keys(copy.reshape(20, 32, 8, 3)) == keys).all(axis=1).any()
    assert not (exact.image_keys(copy.view(np.int8)) == keys).all(axis=1).any()
    assert not (exact.image_keys(copy, seed=1) == keys).all(axis=1).any()


def test_image_keys_stream_non_contiguous_input_block_by_block() -> None:
    """A non-contiguous set is copied one block at a time, never whole."""
    import tracemalloc

    base = np.zeros((4096, 32, 32, 6), np.uint8)  # 25 MB; the view below 12.6 MB
    view = base[..., 1:4]  # (as numpy's reshape to rows would copy it whole)
    tracemalloc.start()
    try:
        exact.image_keys(view, block=256)  # one block: 0.79 MB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000, peak


def test_large_group_gives_star_pairs() -> None:
    n = exact.MAX_GROUP_PAIRS + 10
    x = np.ones((n, 8, 8, 3), np.uint8)
    labels = np.arange(n) % 3
    keys, t = describe(x)
    res = find_duplicates(keys, t, labels, near=False)
    assert len(res.pairs) == n - 1  # every member once with a head of another label; (0, 1) shared
    assert set(res.pairs["a"]) | set(res.pairs["b"]) == set(range(n))


# ---------------------------------------------------------------- thumbnails


def test_thumbnails_equal_a_plain_loop() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    t = thumbnails.thumbs(x, block=2)
    odd = thumbnails.thumbs(x[:, :63, :62])  # not a multiple of 32: the interpolation-matrix path
    for i in range(len(x)):
        img = x[i].astype(np.float64)
        col = np.array(
            [
                [img[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean(axis=(0, 1)) for c in range(32)]
                for r in range(32)
            ]
        )
        grey = col @ [0.299, 0.587, 0.114]
        np.testing.assert_allclose(t.grey[i], grey, atol=0.07)  # float16
        np.testing.assert_allclose(t.contrast[i], grey.std(), rtol=1e-4)
        small = col.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
        assert np.abs(t.colour[i].astype(float) - small).max() <= 0.5 + 1e-6
        assert (
            abs(
                float(odd.grey[i].mean())
                - float((x[i, :63, :62].astype(float) @ [0.299, 0.587, 0.114]).mean())
            )
            < 0.1
        )


def test_area_matrix_rows_average() -> None:
    m = thumbnails.area_matrix(64, 8)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
    assert (m[0, :8] == 1 / 8).all() and (m[0, 8:] == 0).all()
    z = thumbnails.area_matrix(32, 8, 4.0, 28.0)  # central part: 3 px per output
    assert np.flatnonzero(z[0]).tolist() == [4, 5, 6]


def test_blur_equals_scipy_gaussian_filter() -> None:
    """The matrix blur of small float images (thumbnails, colour planes, 64-px images) equals
    scipy's filter with nearest-pixel edges within float32 rounding, keeps the dtype, and larger
    images go to the filter itself."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(4)
    for shape in ((4, 32, 32), (6, 16, 16), (2, 64, 64), (3, 20, 28), (2, 80, 72)):
        x = (rng.random(shape) * 255).astype(np.float32)
        for sigma in (0.5, 0.71, 1.0, 1.5, 2.0):
            ref = gaussian_filter(x, (0, sigma, sigma), mode="nearest")
            out = thumbnails._blur(x, sigma)
            assert out.dtype == np.float32 and out.shape == x.shape
            np.testing.assert_allclose(out, ref, atol=1e-4)
            if max(shape[1:]) > thumbnails.BLUR_MATRIX_MAX:
                assert np.array_equal(out, ref)
    half = x[:, :32, :32].astype(np.float16)
    assert thumbnails._blur(half, 1.0).dtype == np.float16
    assert thumbnails._blur(x, 0) is x


def test_bilinear_sample_equals_a_plain_loop() -> None:
    """alignment._sample (one flat gather over all images) against the bilinear formula point
    by point: values, whether inside, and the surface's derivatives along rows and columns."""
    rng = np.random.default_rng(5)
    img = rng.random((3, 7, 9)).astype(np.float32)
    r = rng.uniform(-1.5, 7.5, (3, 40)).astype(np.float32)
    c = rng.uniform(-1.5, 9.5, (3, 40)).astype(np.float32)
    v, inside, dr, dc = alignment._sample(img, r, c, grad=True)
    for p in range(3):
        for k in range(40):
            rr = min(max(float(r[p, k]), 0.0), 7 - 1.001)
            cc = min(max(float(c[p, k]), 0.0), 9 - 1.001)
            i, j = int(rr), int(cc)
            fr, fc = rr - i, cc - j
            q = img[p].astype(np.float64)
            top = q[i, j] * (1 - fc) + q[i, j + 1] * fc
            bot = q[i + 1, j] * (1 - fc) + q[i + 1, j + 1] * fc
            assert v[p, k] == pytest.approx(top * (1 - fr) + bot * fr, abs=1e-5)
            assert dr[p, k] == pytest.approx(bot - top, abs=1e-5)
            left = q[i, j] * (1 - fr) + q[i + 1, j] * fr
            right = q[i, j + 1] * (1 - fr) + q[i + 1, j + 1] * fr
            assert dc[p, k] == pytest.approx(right - left, abs=1e-5)
            assert inside[p, k] == (0 <= r[p, k] <= 6 and 0 <= c[p, k] <= 8)


def test_fits_stopped_early_leave_the_copies_as_they_were(monkeypatch) -> None:
    """The thumbnail fit refines only pairs whose fit is near one a copy can need
    (REFINE_SLACK) and whose middle level reaches FINE_KEEP: most candidate pairs of real photos
    are two pictures that share a layout. On the candidates of real-photo crops with two copies
    of every kind (seed 0, a seed the limits were fitted on), against the same fit with no pair
    stopped: fewer than half as many pairs reach the finest level, every copy found there is
    found with the same similarities (to float32 rounding), no pair matches that did not, and
    nearly all other pairs that reach a match's similarity do so too (crops of one photograph's
    parts under two labels)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.asarray(photos.photograph_labels()), 8)
    x, _ = photos.crops(rng, y, size=64)
    x, labels, truth = plant(x, y, 2, rng, kinds=sorted(ALL_KINDS))
    _, t = describe(x)
    s = nearsettings.NearSettings()
    a, b, f, _ = candidates.candidates(t, labels, s)
    args = (t.grey[a], t.grey[b], t.colour[a], t.colour[b], f)
    finest = [0]
    fine_views = alignment._fine_views

    def counted(*v):
        finest[0] += len(v[4])  # the rows
        return fine_views(*v)

    monkeypatch.setattr(alignment, "_fine_views", counted)
    gated = alignment.both_ways(*args)
    n_gated, finest[0] = finest[0], 0
    monkeypatch.setattr(alignment, "FINE_KEEP", -np.inf)
    monkeypatch.setattr(alignment, "REFINE_SLACK", (np.inf,) * 4)
    every = alignment.both_ways(*args)
    assert n_gated < 0.5 * finest[0], (n_gated, finest[0])

    def found(out, i: int) -> np.ndarray:  # whole picture (0) or without a corner (5)
        return (out[i][:, 0] >= s.similarity) & alignment.consistent(out[i + 1 if i else 1])

    copy_pairs = {(min(i, j), max(i, j)) for i, j, _ in truth}
    planted = np.array([(i, j) in copy_pairs for i, j in zip(a.tolist(), b.tolist(), strict=True)])
    for i in (0, 5):
        same = np.isclose(gated[i], every[i], atol=1e-5).all(axis=1)  # batches differ: rounding
        assert same[planted & found(every, i)].all(), i
        assert not (found(gated, i) & ~found(every, i)).any(), i  # no match the fit lacks
        assert found(gated, i).sum() >= 0.9 * found(every, i).sum(), i
    assert (planted & (found(every, 0) | found(every, 5))).sum() >= 0.9 * len(truth)


# ---------------------------------------------------------------- near copies on real photographs


@pytest.fixture(scope="module")
def photo_run():
    """270 crops of 27 photo parts (labels) plus 3 copies of each kind under other labels.
    The logo's parts (labels 24-27) are left out: its quadrants are mirror images of one
    arc, which the search pairs (a known limitation, measured in docs/double-labelling.md)."""
    rng = np.random.default_rng(5)
    labels = np.repeat(np.r_[0:24, 28:31], 10)
    images, _ = photos.crops(np.random.default_rng(4), labels, size=64)
    all_images, all_labels, planted = plant(images, labels, 3, rng)
    keys, t = describe(all_images)
    res = find_duplicates(keys, t, all_labels, images=all_images)
    return res, {(s, c): k for s, c, k in planted}, len(images)


def test_every_copy_kind_is_found_on_photos(photo_run) -> None:
    res, truth, _ = photo_run
    found = _pairs(res)
    missed = [(p, k) for p, k in truth.items() if p not in found]
    # every copy, including a dark combo copy of crop 159 (mean grey 17, contrast raised,
    # clipped at 0) that the coarse block limit refused (0.27 against 0.25) before the
    # full-resolution fit was refined and the mapped image's border band left out. Recall per
    # kind is measured by bench/duplicates_bench.py on seeds the limits were not fitted on.
    assert missed == [], f"copies not found: {missed}"
    flips = [found.get(p) for p, k in truth.items() if k == "flip"]
    assert flips == ["mirrored"] * 3
    assert all(
        found.get(p) == "near"
        for p, k in truth.items()
        if k in ("jpeg", "crop", "shift", "rescale")
    )


def test_distinct_photo_crops_are_not_paired(photo_run) -> None:
    res, truth, n = photo_run
    # crops of different labels never share a source pixel: any pair between them is false
    false = [p for p in _pairs(res) if p not in truth and p[1] < n]
    assert false == []


def test_colour_wheel_and_constant_channel_are_not_duplicates() -> None:
    """The feature-level identities of issue #12: a blue and a green gradient of one shape,
    a black and a magenta crop (constant G channel) are different images."""
    ramp = np.linspace(30, 220, 64)[None, :, None] * np.ones((64, 1, 1))
    blue = np.zeros((64, 64, 3))
    blue[..., 2:3] = ramp
    green = np.zeros((64, 64, 3))
    green[..., 1:2] = ramp
    black = np.zeros((64, 64, 3))
    magenta = np.zeros((64, 64, 3))
    magenta[..., 0] = magenta[..., 2] = 200
    x = np.stack([blue, green, black, magenta]).astype(np.uint8)
    keys, t = describe(x)
    res = find_duplicates(keys, t, np.arange(4))
    assert res.pairs.empty
    sims, *_ = alignment.both_ways(
        t.grey[[0]], t.grey[[1]], t.colour[[0]], t.colour[[1]], np.array([False])
    )
    # the same grey shape, but only at 5x the contrast (0.587 / 0.114), and other colours
    assert sims[0, 0] == -1.0
    _, _, par = alignment.align(t.grey[[0]].astype(np.float32), t.grey[[1]].astype(np.float32))
    assert par[0, 4] == pytest.approx(0.587 / 0.114, rel=0.05) and not alignment.plausible(par)[0]
    assert alignment.colour_similarity(t.colour[[0]], t.colour[[1]], par)[0] < 0.5


def _crop(label: int, box: tuple[int, int, int, int], mirror: bool = False) -> np.ndarray:
    """A 64×64 crop of a label's photo, made as photos.crops makes them."""
    from PIL import Image

    y0, x0, y1, x1 = box
    photo = photos.source_photos()[photos.parts()[label].photo][1]
    im = np.asarray(
        Image.fromarray(photo).crop((x0, y0, x1, y1)).resize((64, 64), Image.Resampling.BILINEAR)
    )
    return np.ascontiguousarray(im[:, ::-1] if mirror else im)


@pytest.mark.regression
def test_full_resolution_check_rejects_look_alikes_keeps_copies() -> None:
    """Two look-alikes of the real-photo bench (seed 0) that match on the thumbnails: the logo's
    top-left and top-right quarters (mirror-symmetric arcs; a line drawing in one corner of one
    of them only) and brick-wall crops about one brick period apart (the specks differ). At full
    resolution neither are copies, while JPEG (quality 30), mirrored and 4-px-shifted copies of
    the same crops still are. The quarters are the same picture but for the drawing in one
    corner, as a copy with an overlay would be, yet outside that corner they hold only the
    arc's one edge (structure one way): a match without the corner says nothing there."""
    logo_l, logo_r = _crop(24, (13, 12, 122, 121)), _crop(25, (26, 378, 132, 484))
    brick_a, brick_b = _crop(42, (98, 388, 156, 446)), _crop(44, (421, 385, 493, 457))
    astro = _crop(0, (60, 100, 200, 240))
    logo_jpeg = transform_copy(logo_l, "jpeg", np.random.default_rng(0))
    astro_jpeg = jpeg(astro, 30)
    shifted = np.ascontiguousarray(
        brick_a[np.clip(np.arange(64) - 4, 0, 63)][:, np.clip(np.arange(64) + 4, 0, 63)]
    )
    x = np.stack(
        [logo_l, logo_r, brick_a, brick_b, astro, astro_jpeg, logo_jpeg, brick_a[:, ::-1], shifted]
    )
    labels = np.arange(len(x))
    keys, t = describe(x)
    thumbs_only = _pairs(find_duplicates(keys, t, labels))
    assert (0, 1) in thumbs_only and (2, 3) in thumbs_only  # the thumbnails cannot tell them apart
    res = find_duplicates(keys, t, labels, images=x)
    found = _pairs(res)
    assert (0, 1) not in found and (2, 3) not in found
    assert found[(4, 5)] == "near" and found[(0, 6)] == "near"
    assert found[(2, 7)] == "mirrored" and found[(2, 8)] == "near"
    assert (
        res.stats["full_resolution_check"]
        and res.stats["n_thumbnail_matches"] > res.stats["n_verified_pairs"]
    )


def _copies_and_random_pairs(n_random: int):
    """Real-photo crops (4 of each of 27 labels) plus one copy of each near-copy kind: the
    images, their thumbnails, and pairs a, b, mirrored f: every copy with its source, then
    ``n_random`` random pairs. Returns x, t, a, b, f and the kinds."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.r_[0:24, 28:31], 4)
    x, _ = photos.crops(np.random.default_rng(2), labels, size=64)
    copies = np.stack([transform_copy(x[i], k, rng) for i, k in enumerate(NEAR_KINDS)])
    x = np.concatenate([x, copies])
    _, t = describe(x)
    n, kinds = len(labels), list(NEAR_KINDS)
    a, b = (v.ravel() for v in np.triu_indices(len(x), 1))
    keep = rng.choice(len(a), n_random, replace=False)
    a = np.r_[np.arange(len(kinds)), a[keep]]
    b = np.r_[n + np.arange(len(kinds)), b[keep]]
    f = np.r_[[k == "flip" for k in kinds], rng.random(len(keep)) < 0.3]
    return x, t, a, b, f, kinds


def test_verification_on_threads_equals_one_thread() -> None:
    """The pair verification run in blocks on 2 threads gives the same numbers, bit for bit,
    as one thread (blocks are independent; the duplicates rule passes its threads)."""
    x, t, a, b, f, kinds = _copies_and_random_pairs(600)
    args = (t.grey[a], t.grey[b], t.colour[a], t.colour[b], f, 64)
    one, two = alignment.both_ways(*args, threads=1), alignment.both_ways(*args, threads=2)
    assert all(np.array_equal(u, v) for u, v in zip(one, two, strict=True))
    assert (one[0][: len(kinds), 0] > 0.9).all()  # the copies reach the fine levels
    _, par, rev, *_ = one
    fr = [fullres.full_residual(x[a], x[b], f, par, rev, block=50, threads=n) for n in (1, 2)]
    assert np.array_equal(fr[0], fr[1]) and fr[0].shape == (len(a), 3)
    assert np.allclose(
        fr[0], fullres.full_residual(x[a], x[b], f, par, rev, block=len(a)), rtol=1e-4
    )


def test_new_structure_runs_only_for_pairs_within_the_residual_limits() -> None:
    """``full_residual(limits=...)`` leaves out the new-structure test, the costliest, for the
    pairs that a block residual refuses already in every comparison (most thumbnail matches
    that the full resolution refuses): their third column is inf, every other number is the
    same as with no limits; with ``only_global`` it is not run at all."""
    x, t, a, b, f, kinds = _copies_and_random_pairs(300)
    _, par, rev, *_ = alignment.both_ways(t.grey[a], t.grey[b], t.colour[a], t.colour[b], f)
    args = (x[a], x[b], f, par, rev)
    s = nearsettings.NearSettings()
    limit = np.array([s.max_residual, s.max_local_residual])
    every = fullres.full_residual(*args)
    some = fullres.full_residual(*args, limits=np.broadcast_to(limit, (len(a), 2)))
    within = (every[:, :2] <= limit).all(1)
    assert 0 < within.sum() < len(a)  # both kinds of pair are here
    assert np.array_equal(some[:, :2], every[:, :2])
    assert np.allclose(some[within, 2], every[within, 2], rtol=1e-5)  # fewer rows: rounding
    assert np.isinf(some[~within, 2]).all() and np.isfinite(every[~within, 2]).any()
    assert (every[: len(kinds)][:, :2] <= limit).all(1).sum() >= len(kinds) - 2  # copies pass
    coarse = fullres.full_residual(*args, only_global=True)
    assert coarse.shape == (len(a), 1) and np.array_equal(coarse[:, 0], every[:, 0])
    with pytest.raises(ValueError, match="limits must have shape"):
        fullres.full_residual(*args, limits=limit)


def test_both_greys_decides_as_with_every_score_computed() -> None:
    """``nearcopy.both_greys`` computes the new-structure score only where it can decide; the
    oracle is the plain rule (the luma's three scores, and for the pairs the luma does not
    pass the smaller of the luma's and the channels' mean's, criterion by criterion): the same
    pairs pass with the same scores, on tables of scores around the limits, including a pair
    whose block residuals only the channels' mean passes and whose new structure only the
    luma does (its luma score is computed late)."""
    s = nearsettings.NearSettings()
    rng = np.random.default_rng(0)
    n = 2000
    scale = np.array([s.max_residual, s.max_local_residual, s.max_new_structure])
    luma = rng.uniform(0.3, 1.8, (n, 3)) * scale
    mean = rng.uniform(0.3, 1.8, (n, 3)) * scale
    luma[0], mean[0] = scale * [1.5, 0.5, 0.5], scale * [0.5, 0.5, 1.5]  # the late case
    computed = [0]

    def run(pick, limits=None, grey=None):
        out = (luma if grey is None else mean)[pick].copy()
        assert grey in (None, fullres.intensity)
        if limits is not None:
            out[(out[:, :2] > limits).any(1), 2] = np.inf
        computed[0] += int(np.isfinite(out[:, 2]).sum())
        return out

    def passes(r):
        return (r <= scale).all(1)

    got = nc.both_greys(run, n, passes, scale[:2])

    plain = luma.copy()
    again = ~passes(luma)
    plain[again] = np.minimum(luma[again], mean[again])
    assert passes(plain)[0] and passes(got)[0]
    assert np.array_equal(passes(got), passes(plain))
    assert np.array_equal(got[passes(plain)], plain[passes(plain)])
    assert computed[0] < 0.6 * (n + again.sum())  # most scores were left out


def test_verification_in_passes_bounded_by_memory_gives_the_same_pairs() -> None:
    """A small ``verify_mb`` cuts the candidate pairs into many passes and the full-resolution
    check into spans whose images are fetched a few pairs at a time: the same pairs, kinds and
    similarities, bit for bit, as one pass; and the images without contrast are counted among
    the rows searched, not among the pairs matched."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.r_[0:24, 28:31], 4)
    x, _ = photos.crops(np.random.default_rng(6), labels, size=64)
    copies = np.stack([transform_copy(x[i], k, rng) for i, k in enumerate(NEAR_KINDS)])
    flat = np.full((2, 64, 64, 3), 90, np.uint8)  # no contrast: left out of the near search
    x = np.concatenate([x, copies, flat])
    y = np.r_[labels, 100 + np.arange(len(copies)), 200, 201]
    _, t = describe(x)
    rows = np.arange(len(x) - 1)  # one of the two flat images is searched

    fetched: list[int] = []

    def images(r: np.ndarray) -> np.ndarray:
        fetched.append(len(r))
        return x[r]

    def run(verify_mb: float) -> nc.NearResult:
        s = nearsettings.NearSettings(block=16, verify_mb=verify_mb)
        fetched.clear()
        return nc.near_copies(t, y, s, images=images, rows=rows)

    one = run(1e4)
    assert len(fetched) == 2  # one image to size the passes, then all matched images at once
    many = run(0.01)
    # the full-resolution check fetches the images of 4 pairs at a time
    assert many.stats["n_thumbnail_matches"] > 8
    assert max(fetched) <= 8 and len(fetched) == 1 + -(-many.stats["n_thumbnail_matches"] // 4)
    assert one.stats["verification_passes"] == 1
    assert many.stats["pairs_per_pass"] == 4  # the smallest pass: one verification block
    assert many.stats["verification_passes"] == -(-one.stats["n_candidates"] // 4) > 3
    for field in ("a", "b", "kind", "similarity"):
        assert np.array_equal(getattr(one, field), getattr(many, field)), field
    assert len(one.a) >= len(NEAR_KINDS) - 1  # the copies are there to compare
    assert one.stats["n_without_contrast"] == many.stats["n_without_contrast"] == 1


def test_search_stopped_part_way_goes_on_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search killed in its 4th verification pass (a Slurm time limit) and started again
    with the same checkpoint folder computes neither the candidates nor the 3 passes done
    before, and gives the pairs of a search never stopped, bit for bit; a changed input (other
    labels) does not reuse the folder's work."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.r_[0:24, 28:31], 4)
    x, _ = photos.crops(np.random.default_rng(6), labels, size=64)
    copies = np.stack([transform_copy(x[i], k, rng) for i, k in enumerate(NEAR_KINDS)])
    x = np.concatenate([x, copies])
    y = np.r_[labels, 100 + np.arange(len(copies))]
    _, t = describe(x)
    s = nearsettings.NearSettings(block=64, verify_mb=0.01)  # passes of 16 pairs
    whole = nc.near_copies(t, y, s, images=lambda r: x[r])
    assert whole.stats["verification_passes"] > 5 and len(whole.a) >= len(NEAR_KINDS) - 1

    calls = {"candidates": 0, "passes": 0}
    real_candidates, real_both_ways = nc.candidates, nc.both_ways

    def counted_candidates(*a, **k):
        calls["candidates"] += 1
        return real_candidates(*a, **k)

    def both_ways_killed_in_pass_4(*a, **k):
        calls["passes"] += 1
        if calls["passes"] == 4:
            raise KeyboardInterrupt("killed")  # what SIGTERM/SIGINT raise in the job
        return real_both_ways(*a, **k)

    monkeypatch.setattr(nc, "candidates", counted_candidates)
    monkeypatch.setattr(nc, "both_ways", both_ways_killed_in_pass_4)
    folder = tmp_path / "checkpoint"
    with pytest.raises(KeyboardInterrupt):
        nc.near_copies(t, y, s, images=lambda r: x[r], checkpoint=folder)
    assert len(list(folder.glob("pass-*.npz"))) == 3
    calls.update(candidates=0, passes=10)  # from here on, no kill
    again = nc.near_copies(t, y, s, images=lambda r: x[r], checkpoint=folder)
    assert calls["candidates"] == 0  # the candidates came from the checkpoint
    assert calls["passes"] - 10 == whole.stats["verification_passes"] - 3
    for name in ("a", "b", "kind", "similarity"):
        assert np.array_equal(getattr(whole, name), getattr(again, name)), name

    calls.update(candidates=0, passes=10)
    y2 = y.copy()
    y2[:4] = 99  # another data set: the folder's work is of another search
    nc.near_copies(t, y2, s, images=lambda r: x[r], checkpoint=folder)
    assert calls["candidates"] == 1
    assert calls["passes"] - 10 >= whole.stats["verification_passes"] - 1


def test_consistent_scales_are_those_of_a_crop() -> None:
    par = np.zeros((8, 6), np.float32)
    par[:, 4] = 1.0
    par[:, [0, 2]] = [
        [1.0, 1.0],  # no change
        [0.85, 0.9],  # a crop of 5-8 % per side
        [1 / 0.85, 1 / 0.9],  # the same crop, fitted the other way
        [0.8, 0.96],  # the most a crop can squeeze one axis more than the other
        [1.22, 0.88],  # zooms one axis in and the other out: no copy does that
        [0.8, 1.0],  # an aspect-ratio change of 1.25 (one axis cut to 80 %, resized back)
        [0.73, 1.0],  # the same after a crop that cut that axis 9 % more
        [0.66, 1.0],  # squeezes one axis 34 % more than the other: more than either needs
    ]
    assert alignment.consistent(par).tolist() == [True, True, True, True, False, True, True, False]


@pytest.mark.regression
def test_logo_rim_look_alikes_are_not_paired_its_copies_are() -> None:
    """Hard negatives of the real-photo bench (seed 0): crops of the logo's green disk rim from
    its top-right and top-left quarters. One matches the other's mirror image on the thumbnails
    only by zooming one axis in and the other out (not consistent with any copy); the rim crop
    has the logo's line drawing in its bottom-left corner, the other quarter's crop has none
    (whole, rejected at full resolution; without that corner the same mirrored arc, as a copy
    with an overlay: if paired at all, then as mirrored). Copies of the rim crop (crop, JPEG,
    shift, rescale) are still found."""
    rim = _crop(25, (90, 418, 156, 484))
    zoomed = _crop(24, (51, 39, 123, 111))
    drawn = _crop(24, (66, 12, 171, 117))
    rng = np.random.default_rng(3)
    copies = [transform_copy(rim, k, rng) for k in ("crop", "jpeg", "shift", "rescale")]
    x = np.stack([rim, zoomed, drawn, *copies])
    labels = np.arange(len(x))
    keys, t = describe(x)
    sims, par, *_ = alignment.both_ways(
        t.grey[[1]], t.grey[[0]], t.colour[[1]], t.colour[[0]], np.array([True])
    )  # zoomed, mirrored, onto rim
    assert sims[0, 0] >= 0.95 and not alignment.consistent(par)[0]
    thumbs_only = _pairs(find_duplicates(keys, t, labels))
    assert any(2 in p for p in thumbs_only)  # the thumbnails cannot tell
    found = _pairs(find_duplicates(keys, t, labels, images=x))
    assert not [p for p in found if 1 in p], found
    assert {k for p, k in found.items() if 2 in p} <= {"mirrored"}, found
    assert all(found.get((0, i)) == "near" for i in range(3, len(x))), found


@pytest.mark.regression
def test_drawing_specks_next_to_plain_rim_are_not_paired() -> None:
    """Hard negatives of the real-photo bench (seed 1): a plain piece of the logo's green rim
    and a piece from the other quarter with a few specks of the line drawing near its border
    (where the first is plain green). Their blocks' residuals are those of a JPEG copy; the
    new-structure score is not. A JPEG copy of the specked crop is still found."""
    plain, specks = _crop(24, (10, 23, 127, 140)), _crop(25, (0, 334, 140, 474))
    plain2, specks2 = _crop(24, (26, 111, 85, 170)), _crop(25, (8, 308, 122, 422), mirror=True)
    x = np.stack([plain, specks, plain2, specks2, jpeg(specks, 30)])
    keys, t = describe(x)
    found = _pairs(find_duplicates(keys, t, np.arange(len(x)), images=x))
    assert (0, 1) not in found and (2, 3) not in found
    assert found.get((1, 4)) == "near"


@pytest.mark.regression
def test_line_look_alikes_from_two_brick_quarters_are_not_paired_their_copies_are(
    monkeypatch,
) -> None:
    """Hard negatives of the real-photo bench (seed 3): crops of a vertical mortar line from three
    quarters of the brick photo. Their structure runs one way (``structure`` about 0), so they
    match one another like copies do on every test but the line pairs' closer block residual;
    JPEG, brighter and shifted copies of them are still found. (Rescaled copies of b are not,
    with or without that limit: docs/double-labelling.md "Limits, measured".)"""
    a = _crop(41, (184, 79, 234, 129), mirror=True)
    b = _crop(43, (345, 66, 398, 119), mirror=True)
    c = _crop(44, (270, 315, 321, 366))
    rng = np.random.default_rng(0)
    copies = [transform_copy(v, k, rng) for v, k in ((a, "jpeg"), (b, "brightness"), (c, "shift"))]
    x = np.stack([a, b, c, *copies])
    assert (fullres.structure(x[:3]) < nearsettings.NearSettings.line_structure).all()
    keys, t = describe(x)
    labels = np.arange(len(x))
    found = _pairs(find_duplicates(keys, t, labels, images=x))
    assert {p: k for p, k in found.items() if p[1] < 3} == {}, found
    assert all(found.get((i, i + 3)) == "near" for i in range(3)), found
    # the thumbnail fit now stops most of them early (their coarse fits need more than a copy);
    # refined to the end as a pair that is near a copy's fit at every level would be, and
    # without the line pairs' limit, the look-alikes pass: the limit is what refuses those
    monkeypatch.setattr(alignment, "FINE_KEEP", -np.inf)
    monkeypatch.setattr(alignment, "REFINE_SLACK", (np.inf,) * 4)
    assert {
        p: k for p, k in _pairs(find_duplicates(keys, t, labels, images=x)).items() if p[1] < 3
    } == {}
    loose = nearsettings.NearSettings(
        line_local_residual=nearsettings.NearSettings.max_local_residual
    )
    found = _pairs(find_duplicates(keys, t, labels, loose, images=x))
    assert [p for p in found if p[1] < 3], found


@pytest.mark.regression
def test_repeating_wall_crops_differ_at_a_coarser_scale_their_copies_do_not() -> None:
    """A hard negative of the real-photo bench (seed 3): crops of the brick wall from two of its
    quarters with the same arrangement of mortar lines. They pass the thumbnails and the
    full-resolution block tests like a copy (their specks and JPEG-like noise are alike); both
    blurred by 2 px, the worst block shows where the mortar runs. JPEG and cropped copies of
    the first are still found."""
    a = _crop(41, (99, 155, 159, 215), mirror=True)
    b = _crop(43, (331, 152, 389, 210), mirror=True)
    rng = np.random.default_rng(1)
    # other photos around them: the search removes the set's mean descriptor, which four crops
    # of one wall would be
    others, _ = photos.crops(rng, np.repeat(np.arange(0, 40, 2), 2), size=64)
    x = np.concatenate([np.stack([a, b, transform_copy(a, "jpeg", rng)]), others])
    x = np.concatenate([x, transform_copy(a, "crop", rng)[None]])
    keys, t = describe(x)
    labels = np.arange(len(x))
    found = _pairs(find_duplicates(keys, t, labels, images=x))
    last = len(x) - 1
    assert (0, 1) not in found, found
    assert found.get((0, 2)) == "near" and found.get((0, last)) == "near", found
    loose = nearsettings.NearSettings(
        max_coarse_residual=np.inf
    )  # the coarse limit is what refuses it
    assert (0, 1) in _pairs(find_duplicates(keys, t, labels, loose, images=x))


def test_full_resolution_check_refines_a_thumbnail_fit_a_pixel_off(monkeypatch) -> None:
    """The thumbnail fit is good to a fraction of a thumbnail pixel, a pixel or more at 64 px:
    the full-resolution check refines it on the images first (fullres.REFINE_STEPS). Crop
    copies of 27 real-photo crops, their thumbnail fits moved by half a thumbnail pixel
    (1 px at 64) on both axes: the same block residuals as from the fits themselves; without
    the refinement most of them would be over the block limit."""
    rng = np.random.default_rng(4)
    x, _ = photos.crops(np.random.default_rng(7), np.r_[0:24, 28:31], size=64)
    images = np.concatenate([x, np.stack([transform_copy(img, "crop", rng) for img in x])])
    _, t = describe(images)
    n = len(x)
    a, b, f = np.arange(n), n + np.arange(n), np.zeros(n, bool)
    _, par, rev, *_ = alignment.both_ways(t.grey[a], t.grey[b], t.colour[a], t.colour[b], f)
    off = par.copy()
    off[:, 1] += 0.5
    off[:, 3] -= 0.5
    fitted = fullres.full_residual(images[a], images[b], f, par, rev)
    moved = fullres.full_residual(images[a], images[b], f, off, rev)
    limit = nearsettings.NearSettings().max_residual
    assert (fitted[:, 0] <= limit / 2).all()
    assert np.allclose(moved[:, :2], fitted[:, :2], atol=0.01)
    monkeypatch.setattr(fullres, "REFINE_STEPS", 0)
    unrefined = fullres.full_residual(images[a], images[b], f, off, rev)
    assert (unrefined[:, 0] > limit).sum() > n / 2


def test_full_resolution_fit_keeps_a_shift_of_more_than_six_pixels() -> None:
    """Gauss-Newton at full resolution (``alignment._fit`` with ``unit``) limits the shift to
    SHIFT_CLIP thumbnail pixels, 12 px at 64, not 6: a copy shifted by 10 and -9 px keeps its
    fit."""
    x, _ = photos.crops(np.random.default_rng(3), np.array([5]), size=64)
    src = thumbnails._grey(x)
    rows = np.clip(np.arange(64) - 9, 0, 63)
    cols = np.clip(np.arange(64) + 10, 0, 63)
    dst = src[:, rows][:, :, cols]  # dst(y, x) = src(y - 9, x + 10)
    xb, yb, flat = alignment._grid(64, 2, 2)
    bl = thumbnails._blur(dst, 1.0).reshape(1, -1)[:, flat]
    par = np.array([[1, 10, 1, -9, 1, 0]], np.float32)
    alignment._fit(thumbnails._blur(src, 1.0), bl, xb, yb, par, 3, 1.0, unit=2.0)
    assert abs(par[0, 1] - 10) < 0.3 and abs(par[0, 3] + 9) < 0.3, par


@pytest.mark.regression
def test_finely_textured_copy_shifted_by_half_a_thumbnail_pixel_is_found() -> None:
    """Real-photo bench, seed 5: a grass crop and a brick crop moved by 3 px (1.5 thumbnail px),
    a brick crop moved by 2 px (one colour-thumbnail half pixel). Sampling between pixels
    smooths the fine texture; without the smoothed comparison the aligned correlation stayed at
    0.93-0.95 and the colours at 0.70."""

    def moved(img, dy, dx):
        rows, cols = np.clip(np.arange(64) - dy, 0, 63), np.clip(np.arange(64) - dx, 0, 63)
        return np.ascontiguousarray(img[rows][:, cols])

    grass = _crop(45, (18, 4, 167, 153), mirror=True)
    brick = _crop(42, (68, 290, 225, 447))
    wall = _crop(41, (48, 66, 206, 224))
    x = np.stack(
        [grass, moved(grass, 3, 3), brick, moved(brick, -3, -1), wall, moved(wall, -2, -2)]
    )
    t = thumbnails.thumbs(x)
    a, b = np.array([0, 2, 4]), np.array([1, 3, 5])
    sims, *_ = alignment.both_ways(
        t.grey[a], t.grey[b], t.colour[a], t.colour[b], np.zeros(3, bool)
    )
    assert (sims[:, 0] >= nearsettings.NearSettings.similarity).all(), sims
    assert (sims[:, 2] >= nearsettings.NearSettings.colour).all(), sims
    keys, t = describe(x)
    found = _pairs(find_duplicates(keys, t, np.arange(len(x)), images=x))
    assert all(found.get((i, i + 1)) == "near" for i in (0, 2, 4)), found


def test_structure_equals_the_eigenvalues_of_a_plain_tensor() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    x[1] = np.where(np.arange(32) % 8 < 3, 200, 60)[None, :, None].astype(np.uint8)  # stripes
    x[2] = np.clip(np.arange(32)[:, None] + np.arange(32)[None, :], 0, 255)[..., None] * 4  # ramp
    got = fullres.structure(x, block=2)
    for i in range(len(x)):
        g = gaussian_filter(x[i].astype(np.float64) @ thumbnails.GREY, 0.5, mode="nearest")
        gy, gx = np.gradient(g)
        tensor = [[(gx * gx).sum(), (gx * gy).sum()], [(gx * gy).sum(), (gy * gy).sum()]]
        low, high = np.linalg.eigvalsh(np.array(tensor))
        assert got[i] == pytest.approx(low / high, abs=1e-4)
    assert got[0] > 0.5 and got[1] < 1e-3 and got[2] < 1e-3  # noise; stripes, a diagonal ramp


def test_whitening_weighs_every_direction_alike_up_to_the_floor() -> None:
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(64, 64)))[0]
    scale = np.geomspace(10, 0.01, 64)
    d = (rng.normal(size=(20_000, 64)) * scale) @ basis.T
    parts = [d[i : i + 5000].astype(np.float32) for i in range(0, len(d), 5000)]
    assert candidates._whitening(parts, 0.0) is None
    assert (
        candidates._whitening([parts[0][: candidates.WHITEN_MIN - 1]], 0.03) is None
    )  # too few to estimate
    floor = 0.03
    w = candidates._whitening(parts, floor).astype(np.float64)
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    cov = u.T @ u
    lam = np.linalg.eigvalsh(cov)
    after = np.sort(np.linalg.eigvalsh(w @ cov @ w.T))
    assert np.allclose(w, w.T, atol=1e-5)
    assert np.allclose(after, np.sort(lam / (lam + floor * lam.max())), atol=1e-3)


def test_whitened_descriptors_verify_fewer_pairs_on_photos_same_copies() -> None:
    """On real-photo crops the plain 8×8 descriptors of unrelated crops correlate (a bright top,
    a dark corner); whitened (``NearSettings.whiten``, off by default), fewer candidate pairs pass
    the prefilter, and these planted copies of every kind are still candidates."""
    chosen = photos.photograph_labels()
    y = np.repeat(np.asarray(chosen), 40)
    images, _ = photos.crops(np.random.default_rng(6), y, size=64)
    x, labels, planted = plant(images, y, 4, np.random.default_rng(7))
    _, t = describe(x)
    truth = {(s, c) for s, c, _ in planted}
    found = {}
    # off (the default) and the measured lead of docs/double-labelling.md
    for whiten in (0.0, 0.03):
        a, b, _, _ = candidates.candidates(t, labels, nearsettings.NearSettings(whiten=whiten))
        found[whiten] = set(zip(a.tolist(), b.tolist(), strict=True))
    plain, whitened = found[0.0], found[0.03]
    assert len(whitened) < 0.6 * len(plain), (len(whitened), len(plain))
    assert truth <= whitened, truth - whitened


def test_new_structure_equals_a_plain_loop() -> None:
    """The window test against a loop over windows, with the floor of the first pair (grey std
    20) the grey level, of the second (std 60) 3 % of its contrast."""
    rng = np.random.default_rng(4)
    p, side = 2, 12
    av = rng.normal(100, 20, (p, side * side))
    bv = 90 + rng.normal(0, 1, (p, side * side)) * np.array([[20.0], [60.0]])
    m = np.ones((p, side * side))
    m[0, :side] = 0  # first row outside the overlap
    got = fullres._new_structure(av, bv, m, side)
    w = max(3, round(fullres.NEW_WINDOW * (side + 2 * fullres.FULL_TRIM) / 64))
    for i in range(p):
        cnt = m[i].sum()
        da = (av[i] - (av[i] * m[i]).sum() / cnt) * m[i]
        db = (bv[i] - (bv[i] * m[i]).sum() / cnt) * m[i]
        a2 = ((da * db).sum() / (da * da).sum() * da).reshape(side, side)
        b2, mm = db.reshape(side, side), m[i].reshape(side, side)
        sd = np.sqrt((db * db).sum() / cnt)
        best = 0.0
        for r in range(side):  # windows centred as scipy's uniform_filter centres them
            for c in range(side):
                r0, c0 = r - w // 2, c - w // 2
                if r0 < 0 or c0 < 0 or r0 + w > side or c0 + w > side:
                    continue
                if mm[r0 : r0 + w, c0 : c0 + w].min() < 1:
                    continue
                sa, sb = a2[r0 : r0 + w, c0 : c0 + w].std(), b2[r0 : r0 + w, c0 : c0 + w].std()
                floor = max(fullres.NEW_FLOOR * sd, fullres.NEW_GREY_FLOOR)
                best = max(best, abs(sb - sa) / (min(sa, sb) + floor))
        assert got[i] == pytest.approx(best, rel=1e-4)
        assert (floor == fullres.NEW_GREY_FLOOR) == (i == 0)  # both floors are exercised


@pytest.mark.regression
def test_brighter_copy_of_a_bright_crop_is_found() -> None:
    """Missed by the real-photo bench (seed 1) before the offset was measured at the mean: ×1.15
    saturates a fifth of a bright logo crop at 255, so the fitted map is a gain below 1 with a
    large offset at grey 0 — but it moves the mean grey by only about 20 levels."""
    src = _crop(24, (45, 44, 175, 174), mirror=True)
    x = np.stack([src, np.clip(np.rint(src * 1.15), 0, 255).astype(np.uint8)])
    keys, t = describe(x)
    sims, par, *_ = alignment.both_ways(
        t.grey[[0]], t.grey[[1]], t.colour[[0]], t.colour[[1]], np.array([False])
    )
    assert abs(par[0, 5]) > alignment.MAX_OFFSET and sims[0, 0] >= 0.95  # offset at grey 0
    assert _pairs(find_duplicates(keys, t, np.arange(2), images=x)) == {(0, 1): "near"}


def test_local_residual_equals_a_plain_loop() -> None:
    rng = np.random.default_rng(9)
    side = 12
    a = rng.normal(size=(3, side * side)).astype(np.float32)
    b = (2 * a + 1 + rng.normal(scale=0.3, size=a.shape)).astype(np.float32)
    b[1, :20] += 5  # one block far off
    m = np.ones_like(a)
    m[2, : side * 7] = 0  # pair 2: the top blocks are (mostly) outside the overlap
    glob, local = fullres._local_residual(a, b, m, side)
    k = side // fullres.BLOCKS
    for p in range(3):
        w = m[p] > 0
        g, h = np.polyfit(a[p][w], b[p][w], 1)
        e = (b[p] - g * a[p] - h).reshape(side, side)
        sd = b[p][w].std()
        pa = (g * a[p]).reshape(side, side)
        bb, mm = b[p].reshape(side, side), m[p].reshape(side, side)
        worst_g = worst_l = 0.0
        for i in range(fullres.BLOCKS):
            for j in range(fullres.BLOCKS):
                sl = (slice(i * k, (i + 1) * k), slice(j * k, (j + 1) * k))
                inside = mm[sl] > 0
                if inside.sum() < 0.5 * k * k:
                    continue
                rms = np.sqrt((e[sl][inside] ** 2).mean())
                contrast = max(bb[sl][inside].std(), pa[sl][inside].std(), fullres.LOCAL_FLOOR * sd)
                worst_g, worst_l = max(worst_g, rms / sd), max(worst_l, rms / contrast)
        assert glob[p] == pytest.approx(worst_g, rel=1e-3) and local[p] == pytest.approx(
            worst_l, rel=1e-3
        )
    assert glob[1] > 2 * glob[0]


def test_pair_keys_to_rows_equal_np_unique() -> None:
    """The candidate stage's keys (sorted in place, rows converted in chunks, for memory) give
    the pairs np.unique and plain division give, in the same order."""
    rng = np.random.default_rng(0)
    n, n_rows = 3000, 5000
    active = np.sort(rng.choice(n_rows, size=n, replace=False))
    blocks = []
    for _ in range(5):
        i, j = rng.integers(0, n, size=(2, 40_000))
        blocks.append(np.unique((np.minimum(i, j) * n + np.maximum(i, j)) * 2 + (i % 2)))
    key = np.unique(np.concatenate(blocks))
    want = (active[(key >> 1) // n], active[(key >> 1) % n], (key & 1).astype(bool))
    got = candidates._pairs_of(list(blocks), active, n, n_rows)
    assert got[0].dtype == np.int32 and len(got[0]) == len(key) < 200_000
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    empty = candidates._pairs_of([], active, n, n_rows)
    assert [len(v) for v in empty] == [0, 0, 0]


def test_mirror_query_equals_mirrored_descriptor() -> None:
    rng = np.random.default_rng(6)
    g = rng.uniform(0, 255, size=(3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(
        candidates.descriptors(g, flip=True),
        candidates.descriptors(g[:, :, ::-1].copy()),
        atol=1e-5,
    )


# ---------------------------------------------------------------- CLI on shards


def write_shard(
    folder: Path, module: int, sub: int, images: np.ndarray, labels, batch: str, rows
) -> None:
    rows = np.asarray(rows, np.int64)
    np.savez(
        folder / f"m{module:02d}_s{sub}.npz",
        images=images,
        labels=np.asarray(labels, np.int64),
        batch=np.array([batch] * len(rows)),
        row=rows,
        ids=np.array([f"{batch}:{r}" for r in rows]),
        module=np.int64(module),
        submodule=np.int64(sub),
        label_lo=np.int64((module - 1) * 2),
        label_hi=np.int64(module * 2),
        num_labels=np.int64(4),
    )


def write_manifest(folder: Path, names: list[str]) -> Path:
    """A shard manifest listing the shards ``names`` (``m01_s1`` ...) of ``folder``."""
    from errorless.data.shards import write_manifest as write

    rows = [
        {"module": n[:3], "submodule": n[4:], "images": 6, "label_lo": 0, "label_hi": 2}
        | {"changed": True, "path": folder / f"{n}.npz"}
        for n in names
    ]
    write(folder / "manifest.tsv", rows)
    return folder / "manifest.tsv"


def test_cli_cross_module_pairs(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    images, _, _ = photos.make_crops(12, 1, size=32, seed=1)
    a, b = images[:6].copy(), images[6:].copy()
    b[3] = a[0]  # label 0 in m01, label 3 in m02: cross-module exact copy
    b[4] = a[1][:, ::-1]  # mirrored copy across modules
    write_shard(shards, 1, 1, a, [0, 0, 1, 1, 0, 1], "train_data_batch_1", range(6))
    write_shard(shards, 2, 1, b, [2, 2, 3, 3, 2, 3], "train_data_batch_2", range(6))
    # a shard left from an earlier grid (not in the manifest) holds copies of a with other
    # labels: it is not part of the run, so none of its images may be paired
    write_shard(shards, 3, 1, a.copy(), [5, 5, 4, 4, 5, 4], "train_data_batch_3", range(6))
    manifest = write_manifest(shards, ["m01_s1", "m02_s1"])
    out = tmp_path / "q" / "duplicates.parquet"
    settings = {"features": ["R", "G", "B"], "featured_models": [3]}
    rc = main(
        [
            "duplicates",
            "--settings",
            json.dumps(settings),
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--checkpoint",
            str(tmp_path / "checkpoint"),
        ]
    )
    assert rc == 0
    assert not (tmp_path / "checkpoint").exists()  # the finished search's work is removed
    df = pd.read_parquet(out)
    assert list(df.columns) == dup.OUTPUT_COLUMNS
    got = {frozenset((i, j)): k for i, j, k in zip(df["id_a"], df["id_b"], df["kind"], strict=True)}
    assert got == {
        frozenset(("train_data_batch_1:0", "train_data_batch_2:3")): "exact",
        frozenset(("train_data_batch_1:1", "train_data_batch_2:4")): "mirrored",
    }
    assert set(df["module_a"]) | set(df["module_b"]) == {"m01", "m02"}
    stats = json.loads(out.with_suffix(".json").read_text())
    assert stats["n_images"] == 12 and stats["peak_rss_mb"] > 0


def test_cli_missing_or_bad_manifest_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "nowhere" / "manifest.tsv"
    assert main(["duplicates", "--settings", "{}", "--manifest", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "manifest missing" in err
    bad = tmp_path / "manifest.tsv"
    bad.write_text("a\tb\n1\t2\n")
    assert main(["duplicates", "--settings", "{}", "--manifest", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a shard manifest" in err


def test_slurm_time_follows_the_measured_candidate_load() -> None:
    """The duplicates job asks for at least an hour, and for an ImageNet-size search (1.3 M
    images at the natural-like stand-in's measured candidate load and verification rate) more
    than its projected verification time."""
    assert dup.planned_minutes(26_000) == 60  # the default run's 20 labels x 1,300
    imagenet = 1_300 * 1_000
    verify = imagenet * dup.CANDIDATES_PER_IMAGE / dup.PAIRS_PER_SECOND / 60
    assert dup.planned_minutes(imagenet) >= 1.4 * (10 + verify) > 240
    sizes = [10**k for k in range(3, 8)]
    assert [dup.planned_minutes(n) for n in sizes] == sorted(dup.planned_minutes(n) for n in sizes)


@pytest.mark.slow
def test_photos_data_set_reports_only_planted_pairs(tmp_path: Path) -> None:
    """The real-photo data set of config/photos.yaml (20 colour-photo labels, 2,400 training
    crops, 4 exact plants and 14 near ones: one per kind of errorless.data.copies, the
    generators' and real data sets') through the workflow's
    data stage and duplicates rule: every plant is found with its kind of match, and no pair
    of two unplanted crops is reported (crops of different labels never share a source pixel:
    such a pair would be two different pictures)."""
    from test_workflow import ROOT, snakemake_with

    r = snakemake_with(
        ROOT / "config/photos.yaml",
        "--cores",
        "2",
        "out/quality/duplicates.parquet",
        "--config",
        "results=out",
        "dataset={format: photos, path: out/data/photos, validation: true}",
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    planted = pd.read_csv(tmp_path / "out/data/photos/planted.csv")
    kinds = planted["kind"].value_counts().to_dict()
    assert kinds == {"same_shard": 2, "cross_module": 2} | {k: 1 for k in ALL_KINDS}
    pairs = pd.read_parquet(tmp_path / "out/quality/duplicates.parquet")
    found = {
        frozenset((a, b)): k
        for a, b, k in zip(pairs["id_a"], pairs["id_b"], pairs["kind"], strict=True)
    }
    for a, b, kind in zip(planted["id_a"], planted["id_b"], planted["kind"], strict=True):
        assert frozenset((a, b)) in found, f"planted {kind} pair {a} {b} not found"
        match = found[frozenset((a, b))]
        if kind in ("same_shard", "cross_module"):
            assert match == "exact"
        elif kind == "flip":
            assert match == "mirrored"
        elif kind not in ("combo", "triple"):  # (a combination may include a flip)
            assert match == "near", (kind, match)
    copies = set(planted["id_b"])  # the planted images; every other crop is distinct
    unplanted = [p for p in found if not p & copies]
    assert unplanted == [], f"pairs of two unplanted crops: {unplanted}"


def test_images_without_contrast_are_counted_over_the_searched_rows() -> None:
    """``n_without_contrast`` counts the flat images among the rows searched, also when the
    full-resolution check runs (it once counted the matched rows instead: 0 here)."""
    astro = _crop(0, (60, 100, 200, 240))
    astro_jpeg = jpeg(astro, 30)
    others = photos.make_crops(6, 2, seed=1)[0]  # unrelated crops: the descriptors' mean
    flat = [np.full((64, 64, 3), v, np.uint8) for v in (0, 90, 200)]
    x = np.stack([astro, astro_jpeg, *others, *flat])  # flat: rows 14-16
    labels = np.arange(len(x))
    t = thumbnails.thumbs(x)
    res = nc.near_copies(t, labels, images=lambda r: x[r])
    assert list(zip(res.a, res.b, res.kind, strict=True)) == [(0, 1, "near")]
    assert res.stats["n_without_contrast"] == 3
    searched = np.array([*range(14), 15])  # one flat image among the searched rows
    res = nc.near_copies(t, labels, images=lambda r: x[r], rows=searched)
    assert list(zip(res.a, res.b, res.kind, strict=True)) == [(0, 1, "near")]
    assert res.stats["n_without_contrast"] == 1


def test_colour_cast_copies_are_found() -> None:
    """Copies whose channels were scaled apart (a colour cast: R x0.85, B x1.15) keep the
    picture: every one of 48 crops' casts is found (with one mean for all channels, the colour
    check refused the casts of the most colourful crops), and nothing else is paired."""
    labels = np.repeat(np.asarray(photos.photograph_labels()[:12]), 4)
    images, _ = photos.crops(np.random.default_rng(11), labels, size=64)
    cast = np.clip(np.round(images * np.array([0.85, 1.0, 1.15])), 0, 255).astype(np.uint8)
    x = np.concatenate([images, cast])
    n = len(images)
    keys, t = describe(x)
    found = _pairs(find_duplicates(keys, t, np.arange(2 * n), images=x))
    low = (
        t.contrast[:n] < nearsettings.NearSettings().min_contrast
    )  # no shape to compare: exact search only
    assert {p: k for p, k in found.items() if p[1] < n} == {}
    assert [i for i in range(n) if not low[i] and found.get((i, n + i)) != "near"] == []
