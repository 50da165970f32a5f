"""Near copies of the kinds real data sets hold (issue 26): colour changes, aspect ratio, an
overlay in a corner, three kinds combined — planted by both generators and found by the search,
while look-alikes stay apart."""

from __future__ import annotations

import numpy as np
import pytest

from errorless.config import load_config
from errorless.data import photos, synthetic
from errorless.data.copies import ALL_KINDS, jpeg, plant, transform_copy
from errorless.names import image_id
from errorless.quality import alignment, candidates, fullres, nearcopy
from errorless.quality.duplicates import describe, find_duplicates
from errorless.quality.nearsettings import NearSettings
from errorless.quality.thumbnails import SIDE, TRIM

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _train_images(batches: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = [n for n in batches if n.startswith("train")]
    images = np.concatenate([batches[n][0] for n in names])
    labels = np.concatenate([batches[n][1] for n in names])
    ids = [image_id(n, i) for n in names for i in range(len(batches[n][1]))]
    return images, labels, ids


@pytest.mark.parametrize("section", ["synthetic", "photos"])
def test_generators_plant_every_kind_and_the_search_finds_it(section: str) -> None:
    """Both generators plant each of the 14 kinds when asked (``near_kinds``), and the search
    finds every plant with its kind of match: exact for the exact pairs, mirrored for the
    flip, near for every single kind (the combinations may hold a flip); no pair of two
    images that are not copies is reported. One limit, on the synthetic images only: there the
    images of one label differ by pixel noise alone, so a copy whose corner a box covers is
    one of a hundred equally close neighbours of its source and need not be a candidate
    (docs/double-labelling.md "Limits, measured"); it is planted all the same."""
    kinds = list(ALL_KINDS)
    extra = {section: {"near_kinds": kinds, "plant_near": len(kinds), "plant_flips": 0}}
    if section == "photos":
        extra["dataset"] = {"format": "photos", "path": "unused", "validation": True}
        batches, planted = photos.generate(load_config(ROOT / "config/photos.yaml", extra))
    else:
        batches, planted = synthetic.generate(load_config(ROOT / "config.yaml", extra))
    assert [p["kind"] for p in planted][-len(kinds) :] == kinds
    images, labels, ids = _train_images(batches)
    keys, t = describe(images)
    pairs = find_duplicates(keys, t, labels, images=images).pairs
    found = {
        frozenset((ids[a], ids[b])): k
        for a, b, k in zip(pairs["a"], pairs["b"], pairs["kind"], strict=True)
    }
    for p in planted:
        match = found.get(frozenset((p["id_a"], p["id_b"])))
        if section == "synthetic" and p["kind"] == "overlay":
            continue
        expected = {"same_shard": "exact", "cross_module": "exact", "flip": "mirrored"}
        if p["kind"] in ("combo", "triple"):
            assert match in ("near", "mirrored"), p
        else:
            assert match == expected.get(p["kind"], "near"), p
    copies = {p["id_b"] for p in planted}
    assert [set(q) for q in found if not q & copies] == []


def _labels(n: int) -> np.ndarray:
    """The real-photo bench's labels (bench/duplicates_bench.py): photograph parts in turn."""
    chosen = np.asarray(photos.photograph_labels(), dtype=np.int64)
    return np.repeat(chosen, -(-n // len(chosen)))


def _crops(seed: int, n: int) -> np.ndarray:
    return photos.crops(np.random.default_rng(seed), _labels(n)[:n], size=64)[0]


def test_a_box_in_a_corner_is_an_overlay_in_the_middle_it_is_not() -> None:
    """A box of 12 px (19 % of the side) in a corner of a crop is an overlay: the copy is
    found, only without that corner. The same box in the middle of the crop changes the
    picture where every corner is kept: not a copy."""
    crops = _crops(13, 400)[::50]  # 8 crops of different photographs
    corner, middle = crops.copy(), crops.copy()
    for i, c in enumerate(crops):
        colour = 255 - c.reshape(-1, 3).mean(0).astype(np.uint8)  # against the picture
        ys = slice(0, 12) if i % 2 else slice(52, 64)
        xs = slice(0, 12) if i // 2 % 2 else slice(52, 64)
        corner[i, ys, xs] = colour
        middle[i, 26:38, 26:38] = colour
    n = len(crops)
    x = np.concatenate([crops, corner, middle])
    keys, t = describe(x)
    res = find_duplicates(keys, t, np.arange(3 * n), images=x)
    pairs = res.pairs
    found = {(a, b): k for a, b, k in zip(pairs["a"], pairs["b"], pairs["kind"], strict=True)}
    assert {i: found.get((i, n + i)) for i in range(n)} == {i: "near" for i in range(n)}
    assert res.stats["n_matched_without_a_corner"] >= 1
    assert [p for p in found if p[1] >= 2 * n] == []  # no box in the middle is an overlay


@pytest.mark.regression
def test_brick_crops_one_period_apart_stay_apart_without_a_corner() -> None:
    """Hard negative of the real-photo bench (fit seed 2, crops 1341 and 1403): two brick-wall
    crops about one period apart match on the thumbnails and pass every full-resolution test
    once their worst corner is left out but the coarse blocks, which must be closer for a pair
    matched so (``max_corner_coarse_residual`` 0.2; this pair: 0.24). Searched among all
    2,000 crops of that seed, as the bench does (the candidates depend on the data set)."""
    labels = _labels(2000)
    x = photos.crops(np.random.default_rng(2), labels, size=64)[0]
    keys, t = describe(x)
    pair = (1341, 1403)
    thumbs_only = find_duplicates(keys, t, labels).pairs
    assert pair in set(zip(thumbs_only["a"], thumbs_only["b"], strict=True))
    pairs = find_duplicates(keys, t, labels, images=x).pairs
    assert pair not in set(zip(pairs["a"], pairs["b"], strict=True))


@pytest.mark.regression
def test_line_crops_with_a_speck_or_a_stretch_stay_apart() -> None:
    """Hard negatives of 30,000 real-photo crops (seed 0): two mortar-line crops whose fit
    stretches one axis 1.35x against the other (one crop's speck lifts its structure measure
    just over ``line_structure``), and a dark corner on plain sky next to another sky crop.
    Both match on the thumbnails; at full resolution a pair where either image is a line
    matches only with a fit stretched at most ``LINE_ANISOTROPY`` and closer blocks. A JPEG
    copy of the line crop still pairs with it."""
    labels = _labels(30000)
    x = photos.crops(np.random.default_rng(0), labels, size=64)[0]
    rows = np.array([16639, 17082, 20808, 21142])
    copy = transform_copy(x[20808], "jpeg", np.random.default_rng(1))[None]
    img = np.concatenate([x[rows], copy])
    y = np.r_[labels[rows], 999]
    _, t = describe(img)
    a = np.array([0, 0, 2, 2, 2], np.int32)
    b = np.array([1, 1, 3, 3, 4], np.int32)
    f = np.array([False, True, False, True, False])
    s = NearSettings(threads=1)
    thumbs = nearcopy.near_copies(t, y, s, pairs=(a, b, f))
    assert {(0, 1), (2, 3), (2, 4)} <= set(zip(thumbs.a.tolist(), thumbs.b.tolist(), strict=True))
    full = nearcopy.near_copies(t, y, s, images=lambda r: img[r], pairs=(a, b, f))
    assert set(zip(full.a.tolist(), full.b.tolist(), strict=True)) == {(2, 4)}
    assert fullres.structure(img[[2, 3]]).min() < s.line_structure  # 21142 is a line


@pytest.mark.regression
@pytest.mark.parametrize("seed, refused_before", [(1, 3), (5, 4)])
def test_triples_refused_by_a_border_band_or_a_fit_a_pixel_off_are_found(
    seed: int, refused_before: int, monkeypatch
) -> None:
    """Fit seeds 1 and 5 of the real-photo bench (2,000 crops, 50 copies of every kind; the
    coarse limits were fitted on seeds 0-5): every triple copy (three kinds in a row: a brick
    wall with an overlay, a hue change and an aspect change among them) passes the
    verification, given as candidate pairs. With the rules before (no refined fit, the
    mapped image's border band and the corner's blur margin compared, coarse limits 0.25 and
    0.2) 3 and 4 of them were refused."""
    y = _labels(2000)
    x, _ = photos.crops(np.random.default_rng(seed), y, size=64)
    x, y, truth = plant(x, y, 50, np.random.default_rng(seed + 1), kinds=list(ALL_KINDS))
    triples = sorted((min(s, c), max(s, c)) for s, c, k in truth if k == "triple")
    a, b = (np.array([p[i] for p in triples] * 2) for i in (0, 1))
    f = np.repeat([False, True], len(triples))  # either orientation (a mirror among the kinds)
    _, t = describe(x)

    def found(s: NearSettings) -> set:
        r = nearcopy.near_copies(t, y, s, lambda rows: x[rows], pairs=(a, b, f))
        return set(zip(r.a.tolist(), r.b.tolist(), strict=True))

    assert found(NearSettings()) == set(triples)
    monkeypatch.setattr(fullres, "EDGE_REACH", 0.0)
    monkeypatch.setattr(fullres, "REFINE_STEPS", 0)
    before = NearSettings(max_coarse_residual=0.25, max_corner_coarse_residual=0.2)
    assert len(triples) - len(found(before)) == refused_before


@pytest.mark.parametrize("margin", [0.0, 4.0])
def test_corner_masks_are_the_corner_squares(margin: float) -> None:
    """The four corner squares of the thumbnail grid, grown by ``margin`` px on their inner
    sides (the full-resolution check's blur reach), against a plain loop over its points."""
    xb, yb, _ = alignment._grid(SIDE, TRIM)
    masks = alignment.corner_masks(xb, yb, SIDE, margin)
    lim = SIDE * (0.5 - alignment.CORNER) - margin
    centre = (SIDE - 1) / 2
    for k, (top, left) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        want = []
        for row in range(TRIM, SIDE - TRIM):
            for col in range(TRIM, SIDE - TRIM):
                y, x = row - centre, col - centre
                in_y = y <= -lim if top else y >= lim
                in_x = x <= -lim if left else x >= lim
                want.append(in_y and in_x)
        assert masks[k].tolist() == want
    assert not (masks.sum(0) > 1).any()  # no point in two corners
    # grown by the margin: 4 px more on each inner side of an 11.2 px square
    assert masks[0].sum() == (round(SIDE * alignment.CORNER + margin) - TRIM) ** 2


def test_hue_and_saturation_keep_the_channel_mean_not_the_luma() -> None:
    """Why the full-resolution check also compares the channels' mean: a hue rotation and a
    saturation change keep it pixel by pixel (up to rounding and clipping), while the luma of
    colourful regions moves."""
    img = _crops(5, 60)[::20]
    for kind in ("hue", "saturation"):
        for i, im in enumerate(img):
            copy = transform_copy(im, kind, np.random.default_rng(i))
            unclipped = (copy > 0).all(-1) & (copy < 255).all(-1)
            mean_diff = fullres.intensity(copy[None]) - fullres.intensity(im[None])
            assert np.abs(mean_diff[0][unclipped]).max() <= 1.0, kind
    colourful = np.zeros((1, 8, 8, 3), np.uint8)
    colourful[...] = (180, 90, 60)  # orange, no channel near 0 or 255
    hue = transform_copy(colourful[0], "hue", np.random.default_rng(0))[None]
    luma = np.abs(fullres._grey(hue) - fullres._grey(colourful)).max()
    assert luma > 5 and np.abs(fullres.intensity(hue) - fullres.intensity(colourful)).max() <= 1


def test_a_mirrored_copy_with_an_overlay_or_a_shift_is_a_candidate(monkeypatch) -> None:
    """Three kinds in a row can mirror a copy and also shift it or cover a corner: the mirror
    image's moved and corner views (``candidates.MIRROR_NEIGHBOURS``) make it a candidate.
    2,000 real-photo crops plus 60 mirrored copies of them, every second one with a box in a
    corner, the others shifted 1-4 px: all shifted ones and 29 of the 30 boxed ones are
    candidates (as mirrored pairs); without those views, 3 of each kind are lost."""
    x, y = _crops(0, 2000), _labels(2000)
    rng = np.random.default_rng(3)
    src = rng.choice(len(x), 60, replace=False)
    kinds = ["shift", "overlay"] * 30
    copies = np.stack(
        [
            transform_copy(transform_copy(x[s], "flip", rng), k, rng)
            for s, k in zip(src, kinds, strict=True)
        ]
    )
    x = np.concatenate([x, copies])
    y = np.concatenate([y, y.max() + 1 + np.arange(len(copies))])
    _, t = describe(x)

    def found() -> dict[str, int]:
        a, b, f, _ = candidates.candidates(t, y, NearSettings())
        have = set(zip(a.tolist(), b.tolist(), f.tolist(), strict=True))
        hit = [(int(s), 2000 + i, True) in have for i, s in enumerate(src)]
        return {
            k: sum(h for h, k_ in zip(hit, kinds, strict=True) if k_ == k)
            for k in ("shift", "overlay")
        }

    assert found() == {"shift": 30, "overlay": 29}
    monkeypatch.setattr(candidates, "MIRROR_NEIGHBOURS", 0)
    assert found() == {"shift": 27, "overlay": 26}


def test_jpeg_copies_of_plain_pictures_pass_the_new_structure_test(monkeypatch) -> None:
    """JPEG's block noise is a grey level or so whatever the picture's contrast, so the
    new-structure test counts at least ``fullres.NEW_GREY_FLOOR`` grey levels of structure
    in any window: JPEG (quality 30) copies of 80 real-photo crops of grey std 10-30 (an
    even spread), given as candidate pairs, are found but for 2; counted against 3 % of the
    contrast alone, 6 are refused. (Look-alikes with a drawing's specks next to plain
    green are still refused: tests/test_duplicates.py.)"""
    x, y = _crops(0, 2000), _labels(2000)
    _, t = describe(x)
    order = np.argsort(t.contrast)
    plain = order[(t.contrast[order] >= 10) & (t.contrast[order] < 30)]
    src = plain[:: max(1, len(plain) // 80)][:80]

    x = np.concatenate([x, np.stack([jpeg(x[s], 30) for s in src])])
    y = np.concatenate([y, y.max() + 1 + np.arange(len(src))])
    _, t = describe(x)
    pairs = (src, 2000 + np.arange(len(src)), np.zeros(len(src), bool))

    def found() -> int:
        return len(nearcopy.near_copies(t, y, NearSettings(), lambda r: x[r], pairs=pairs).a)

    assert len(src) == 80 and found() == 78
    monkeypatch.setattr(fullres, "NEW_GREY_FLOOR", 0.0)
    assert found() == 74
