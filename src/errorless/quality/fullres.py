"""Near copies, step 4: the full-resolution tests of the thumbnail matches — block residuals,
local residuals, new structure, coarse blocks and the line-structure measure
(:mod:`errorless.quality.nearcopy` describes the steps)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from errorless.quality.alignment import _corner_weight, _fit, _grid, _sample, _warp, corner_masks
from errorless.quality.thumbnails import SIDE, _blur, _grey, in_blocks

BLOCKS = 4  # the aligned overlap is cut into BLOCKS × BLOCKS blocks for the local residual
LOCAL_FLOOR = 0.2  # a block's contrast counts as at least this share of the image's


def _local_residual(
    av: np.ndarray, bv: np.ndarray, m: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """How far aligned grey values bv (P, side²) on a side × side grid are from g·av + h (gain
    and offset fitted by least squares over the overlap m), block by block (BLOCKS × BLOCKS
    blocks, those at least half inside). Returns (P,) pairs of the largest block RMS residual
    divided by (1) b's global standard deviation and (2) the block's own contrast: the larger
    of both images' standard deviation in the block, at least LOCAL_FLOOR of the global one.
    A copy is close everywhere; two different pictures that share a large shape (a logo's
    mirror-symmetric quarters, brick walls one period apart) differ in some block (a drawing
    in one quarter only, the specks on the bricks)."""
    p = len(av)
    cnt = np.maximum(m.sum(1), 1)
    ma, mb = (av * m).sum(1) / cnt, (bv * m).sum(1) / cnt
    da, db = (av - ma[:, None]) * m, (bv - mb[:, None]) * m
    g = (da * db).sum(1) / np.maximum((da * da).sum(1), 1e-6)
    pa = g[:, None] * da
    k = side // BLOCKS

    def blocks(x: np.ndarray) -> np.ndarray:  # (P, side²) -> (P, BLOCKS², k²)
        x = x.reshape(p, side, side)[:, : k * BLOCKS, : k * BLOCKS].reshape(p, BLOCKS, k, BLOCKS, k)
        return x.transpose(0, 1, 3, 2, 4).reshape(p, BLOCKS * BLOCKS, k * k)

    mm = blocks(m).sum(2)
    inside, mm = mm >= 0.5 * k * k, np.maximum(mm, 1)
    mk = blocks(m)

    def block_std(x: np.ndarray) -> np.ndarray:
        xb = blocks(x)
        mean = (xb * mk).sum(2) / mm
        return np.sqrt(np.maximum((xb * xb * mk).sum(2) / mm - mean**2, 0))

    rms = np.sqrt((blocks((db - pa) * m) ** 2).sum(2) / mm)
    sd = np.sqrt((db * db).sum(1) / cnt)[:, None]
    contrast = np.maximum(np.maximum(block_std(db), block_std(pa)), LOCAL_FLOOR * sd)
    flat = sd[:, 0] <= 1e-6
    glob = np.where(inside, rms / np.maximum(sd, 1e-6), 0).max(1)
    local = np.where(inside, rms / np.maximum(contrast, 1e-6), 0).max(1)
    return np.where(flat, np.inf, glob), np.where(flat, np.inf, local)


NEW_WINDOW = 7  # window side (at 64 px) of the new-structure test
NEW_FLOOR = 0.03  # share of the image's contrast added to the flatter window's std
NEW_GREY_FLOOR = 1.0  # ... and at least this many grey levels (of 255): JPEG's block noise is
# a grey level or so whatever the picture's contrast (7×7 windows plain in 2,000 real-photo
# crops, grey std < 0.5 after the σ blur, have 0.32 in their quality-30 copies, 1.23 at the
# 90th percentile), so below a grey std of 33 (a dark, nearly flat picture most of all) 3 % of
# it is less than that noise. Real-photo bench, fit seeds 0-5: JPEG copies found 0.977 -> 0.997
# (docs/double-labelling.md)


def _new_structure(av: np.ndarray, bv: np.ndarray, m: np.ndarray, side: int) -> np.ndarray:
    """(P,) the largest |s_b − s_a| / (min(s_a, s_b) + max(NEW_FLOOR·sd, NEW_GREY_FLOOR)) over
    the NEW_WINDOW × NEW_WINDOW windows wholly inside the overlap m, where s_a, s_b are the
    grey standard deviations in the window of g·av and bv (gain fitted over the overlap) and
    sd is bv's over the overlap: structure that one image has where the other is flat — a few
    specks of a drawing next to plain green, too small a part of a block for
    ``_local_residual`` — while a copy's edges, textures and JPEG noise are in both
    (blur-matched by the caller)."""
    from scipy.ndimage import uniform_filter

    p = len(av)
    cnt = np.maximum(m.sum(1), 1)
    da = (av - ((av * m).sum(1) / cnt)[:, None]) * m
    db = (bv - ((bv * m).sum(1) / cnt)[:, None]) * m
    g = (da * db).sum(1) / np.maximum((da * da).sum(1), 1e-6)
    w = max(3, round(NEW_WINDOW * (side + 2 * FULL_TRIM) / 64))
    mm = m.reshape(p, side, side)

    def mean(x: np.ndarray) -> np.ndarray:  # (P, side, side) window means
        return uniform_filter(x, (0, w, w), mode="constant")

    inside = mean(mm)  # the share of each window inside the overlap
    cover = np.maximum(inside, 1e-9)

    def std(x: np.ndarray) -> np.ndarray:
        x = x.reshape(p, side, side)
        mu = mean(x * mm) / cover
        return np.sqrt(np.maximum(mean(x * x * mm) / cover - mu * mu, 0))

    sa, sb = std(g[:, None] * da), std(db)
    sd = np.sqrt((db * db).sum(1) / cnt)[:, None, None]
    floor = np.maximum(NEW_FLOOR * sd, NEW_GREY_FLOOR)
    score = np.abs(sb - sa) / np.maximum(np.minimum(sa, sb) + floor, 1e-6)
    return np.where(inside >= 0.99, score, 0).reshape(p, -1).max(1)


# Full resolution: a pair that matches on the thumbnails is compared once more on the images
# themselves, aligned by the thumbnail fit. Both images blurred by FULL_SIGMA (at 64 px; in
# proportion otherwise); either one may be blurred further (BLUR_MATCH), since rescaling and
# JPEG blur a copy, and the best of those comparisons counts.
FULL_SIGMA = 1.0
FULL_TRIM = 2  # border pixels (at 64 px) left out (resampling at the crop edges); the pixels a
# shift repeats fall outside the aligned overlap. 3 hid small drawings at the border of
# look-alikes (the logo's line drawing next to the rim) from the residual
BLUR_MATCH = ((0.0, 0.0), (0.8, 0.0), (1.5, 0.0), (0.0, 0.8), (0.0, 1.5))
# At a coarser scale (both blurred by COARSE_SIGMA px at 64 px, no blur matching) JPEG blocks,
# resampling and specks are gone and a copy is close in every block, while two crops of a
# repeating wall differ where its mortar lines run: the worst block's residual, relative to the
# image's contrast, at most ``max_coarse_residual``. Real-photo bench, seeds 0-5: 9 of 9 such
# brick pairs (0.25-0.39) above 0.25 but one, about 1 % of the planted copies too
COARSE_SIGMA = 2.0
NO_BLUR = ((0.0, 0.0),)
# A blur with nearest-pixel edges makes a band of about two σ along an image's border that
# depends on where the border lies, and a crop, an aspect change or a shift puts a copy's
# border elsewhere in the picture: the points where the mapped image (src) is within
# EDGE_REACH·σ of its border are left out (that border can cross any block of the other's
# grid), and a left-out corner (an overlay) is grown by as much on its inner sides (the box's
# edge spreads that far). The grid itself keeps FULL_TRIM: leaving out its border band too let
# more crops of the brick wall one period apart through (60,000 crops, seed 0). Before the
# comparison, REFINE_STEPS Gauss-Newton steps on the images themselves (blurred by σ, every
# REFINE_GRID-th pixel) refine the thumbnail fit, which is good to a fraction of a thumbnail
# pixel: a pixel or more at 64 px, more than a mortar line or a thin stroke leaves a copy's
# residual. Real-photo bench, fit seeds 0-5 (chosen there, with the coarse limits of
# NearSettings): triples found 0.927 → 0.950, 0 false pairs (docs/double-labelling.md)
EDGE_REACH = 2.0
REFINE_STEPS = 3
REFINE_GRID = 2


def intensity(x: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 mean of the channels of images (N, H, W, C): what a hue rotation
    (about the grey axis) and a saturation change (each channel's distance to it scaled) keep
    pixel by pixel, while the luma of a red and of a green region move apart."""
    return x.astype(np.float32).mean(axis=-1)


def full_residual(
    img_a: np.ndarray,
    img_b: np.ndarray,
    flipped: np.ndarray,
    par: np.ndarray,
    reverse: np.ndarray,
    block: int = 256,
    threads: int = 1,
    sigma: float = FULL_SIGMA,
    blur_match: tuple[tuple[float, float], ...] = BLUR_MATCH,
    corner: np.ndarray | None = None,
    grey: Callable[[np.ndarray], np.ndarray] = _grey,
    only_global: bool = False,
    limits: np.ndarray | None = None,
) -> np.ndarray:
    """(P, 3) the largest block residuals (``_local_residual``: relative to the image's and to
    the block's contrast) and the new-structure score (``_new_structure``) of image pairs
    (P, H, W, C) uint8 after the thumbnail alignment ``par`` (from ``alignment.both_ways``: a
    mirrored where ``flipped``, b fitted onto a where ``reverse``; refined by REFINE_STEPS
    Gauss-Newton steps on the images, and without the mapped image's border band, EDGE_REACH),
    each the smallest over the ``blur_match`` comparisons (both images blurred by ``sigma`` px
    at 64 px first). Blocks of
    ``block`` pairs, ``threads`` at a time. ``corner`` (P,): the corner square of the aligned
    overlap each pair leaves out (``alignment.corner_masks``: an overlay; -1 none). ``grey``:
    the grey plane compared (luma, or ``intensity``: the channels' mean). ``only_global``: (P, 1),
    the first column only (the new-structure test is not run). ``limits`` (P, 2): the
    new-structure test, the costliest, runs only for the pairs whose two block residuals (each
    the smallest over the comparisons) are within ``limits``; the others, refused by those
    already, get inf in the third column. Each blur of either image is made (and
    sampled on the aligned grid) once, however many comparisons use it."""
    p, h, w = img_a.shape[:3]
    if h != w:
        raise ValueError(f"near-copy check at full resolution needs square images, not {h}×{w}")
    if limits is not None and np.shape(limits) != (p, 2):
        raise ValueError(f"limits must have shape ({p}, 2), not {np.shape(limits)}")
    unit = h / SIDE
    sigma = sigma * h / 64
    edge = EDGE_REACH * sigma
    trim = max(1, round(FULL_TRIM * h / 64))
    xb, yb, flat = _grid(h, trim, 1)
    masks = corner_masks(xb, yb, h, edge)
    xr, yr, flat_r = _grid(h, trim, REFINE_GRID)
    masks_r = corner_masks(xr, yr, h, edge)
    side = h - 2 * trim

    def one(lo: int) -> np.ndarray:
        hi = min(p, lo + block)
        ga = grey(img_a[lo:hi])
        gb = grey(img_b[lo:hi])
        rev = reverse[lo:hi, None, None]
        src, dst = np.where(rev, gb, ga), np.where(rev, ga, gb)
        f = flipped[lo:hi]
        src[f] = src[f][:, :, ::-1]
        pf = par[lo:hi].copy()
        pf[:, [1, 3]] *= unit
        cn = None if corner is None else corner[lo:hi]

        def blurred(img: np.ndarray, extra: float) -> np.ndarray:
            return _blur(img, float(np.hypot(sigma, extra * unit / 2)))

        plain_src, plain_dst = blurred(src, 0.0), blurred(dst, 0.0).reshape(hi - lo, -1)
        _fit(
            plain_src,
            plain_dst[:, flat_r],
            xr,
            yr,
            pf,
            REFINE_STEPS,
            _corner_weight(cn, masks_r),
            unit,
        )
        r, c = _warp(src, pf, xb, yb)
        # the aligned overlap (the same grid for every blur): src at least EDGE_REACH·σ from
        # its border, less the corner
        core = (r >= edge) & (r <= h - 1 - edge) & (c >= edge) & (c <= w - 1 - edge)
        m = core.astype(np.float32) * _corner_weight(cn, masks)
        best = np.full((hi - lo, 3), np.inf, np.float32)
        sources: dict[float, np.ndarray] = {}  # src blurred by extra px, on the aligned grid
        targets: dict[float, np.ndarray] = {}  # dst blurred by extra px, on the same grid
        views = []
        for extra_src, extra_dst in blur_match:
            if extra_src not in sources:
                image = plain_src if extra_src == 0 else blurred(src, extra_src)
                sources[extra_src], _ = _sample(image, r, c)
            if extra_dst not in targets:
                image = (
                    plain_dst if extra_dst == 0 else blurred(dst, extra_dst).reshape(hi - lo, -1)
                )
                targets[extra_dst] = image[:, flat]
            sv, dv = sources[extra_src], targets[extra_dst]
            best[:, :2] = np.minimum(best[:, :2], np.stack(_local_residual(sv, dv, m, side), 1))
            views.append((sv, dv))
        if only_global:
            return best
        need: np.ndarray | slice = slice(None)
        if limits is not None:
            within = (best[:, 0] <= limits[lo:hi, 0]) & (best[:, 1] <= limits[lo:hi, 1])
            need = slice(None) if within.all() else within
            if not within.any():
                return best
        for sv, dv in views:
            best[need, 2] = np.minimum(
                best[need, 2], _new_structure(sv[need], dv[need], m[need], side)
            )
        return best

    parts = in_blocks(one, p, block, threads)
    out = np.concatenate(parts) if parts else np.empty((0, 3), np.float32)
    return out[:, :1] if only_global else out


def structure(
    images: np.ndarray, block: int = 1024, corner: np.ndarray | None = None
) -> np.ndarray:
    """(N,) how two-dimensional the structure of images (N, H, W, C) uint8 is: the smaller over
    the larger eigenvalue of the structure tensor (the sums of gx², gx·gy, gy² of the grey
    gradients after a FULL_SIGMA blur) — about 0 for a line, stripes or a gradient, whose
    content does not change along one direction; 0.5 is the median of real-photo crops. Two
    crops of one such pattern (a brick wall's vertical mortar line from two of its parts) are
    the same picture up to where along the line they were cut, so their match says less than a
    match of two-dimensional pictures (``NearSettings.line_structure``). ``corner`` (N,): each
    image's corner square (``alignment.corner_masks``; -1 none) left out of the sums."""
    out = np.empty(len(images), np.float32)
    for lo in range(0, len(images), block):
        x = images[lo : lo + block]
        g = _blur(_grey(x), FULL_SIGMA * x.shape[1] / 64)
        gy, gx = np.gradient(g, axis=(1, 2))
        if corner is not None:
            side = x.shape[1]
            ax = np.arange(side, dtype=np.float32) - (side - 1) / 2
            yy, xx = np.meshgrid(ax, ax, indexing="ij")
            w = _corner_weight(
                corner[lo : lo + block], corner_masks(xx.ravel()[None], yy.ravel()[None], side)
            )
            w = np.broadcast_to(w, (len(x), side * side)).reshape(len(x), side, side)
            gx, gy = gx * w, gy * w
        jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
        half = (jxx + jyy) / 2
        disc = np.sqrt(np.maximum(half * half - (jxx * jyy - jxy * jxy), 0))
        out[lo : lo + block] = (half - disc) / np.maximum(half + disc, 1e-9)
    return out
