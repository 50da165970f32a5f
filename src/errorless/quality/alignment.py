"""Near copies, step 3: verification on the thumbnails — the coarse-to-fine Gauss-Newton fit of
scale, shift, gain and offset, the aligned similarities and the fit checks
(:mod:`errorless.quality.nearcopy` describes the steps)."""

from __future__ import annotations

import numpy as np

from errorless.quality.thumbnails import SIDE, TRIM, _blur, in_blocks

# What a copy can need, with a margin over the planted ranges (crops of 10 % per side zoom by
# 1.25, shifts of 4 px are 2 thumbnail px, brightness/contrast ×0.8-1.2, two of them combined).
# Measured on real-photo crops: the 1st-99th percentile of the fits of true copies lies inside
# (scale 0.82-1.04, shift ±2 px, gain 0.81-1.2, offset ±27 grey levels), while most fits that
# pair two different images need more (bench/duplicates_bench.py). The offset is measured at
# the image's mean grey: a brighter copy (×1.2) of a bright image saturates at 255, and its
# fit is a gain below 1 with a large offset at grey 0 (0.7·a + 78) that moves the mean by 20.
# The scale limit is 1.45, not 1.28, since three kinds in a row (a crop, then an aspect change)
# can shrink one axis to 0.8 · 0.8 = 0.64; Gauss-Newton may go to SCALE_CLIP.
MAX_SCALE, MAX_SHIFT, MAX_GAIN, MAX_OFFSET = 1.45, 3.5, 1.65, 60.0


# A copy of the documented kinds changes the scale of an axis only by a crop (each axis
# 0.80-0.96 of the original, cut 2-10 % per side) or not at all: both axes shrink from the larger
# image to the smaller by similar factors. A fit that zooms one axis in and the other out, or
# squeezes one axis 20 % more than the other, pairs two different pictures that share one
# smooth shape (a disk's rim in two quarters of a logo). A crop alone allows |log(sx/sy)| up to
# log(0.96/0.8) = 0.18. Planted copies of the real-photo bench, seed 0: |log(sx/sy)| at most
# 0.14 and the larger scale (image that covers more mapped onto the other) at most 1.03, while
# 18 of its 51 false pairs were outside; seed 1 (held out): one combo copy of 100 at 0.23.
# Real data sets also stretch one axis (an aspect-ratio change of up to 1.25, log 0.22), alone
# or after a crop: MAX_ANISOTROPY allows that plus a crop's 0.1. What still refuses the rim's
# look-alikes is MAX_ZOOM_OUT (one axis in, the other out) and the full-resolution tests.
MAX_ANISOTROPY, MAX_ZOOM_OUT = 0.32, 1.05

# An overlay (a logo, a box of text, a coloured patch) covers one corner of a copy: the other
# fit is made, and every similarity measured, once more without the corner where the aligned
# thumbnails disagree most — a square of CORNER of the side (boxes of up to 20 % plus a crop's
# zoom and a shift). 0-3 = top-left, top-right, bottom-left, bottom-right; -1 = none.
CORNER = 0.35


def corner_masks(xb: np.ndarray, yb: np.ndarray, side: float, margin: float = 0.0) -> np.ndarray:
    """(4, K) whether each grid point (offsets xb, yb (1, K) from the centre of a side × side
    image) lies in the top-left, top-right, bottom-left, bottom-right corner square, grown by
    ``margin`` px on its two inner sides."""
    lim = side * (0.5 - CORNER) - margin
    x, y = xb[0], yb[0]
    return np.stack([(sy * y >= lim) & (sx * x >= lim) for sy in (-1, 1) for sx in (-1, 1)])


def _corner_weight(corner: np.ndarray | None, masks: np.ndarray) -> np.ndarray | float:
    """(P, K) 0 in each pair's left-out corner (``corner`` (P,), -1: none), else 1."""
    if corner is None:
        return 1.0
    w = ~masks[np.maximum(corner, 0)]
    w[corner < 0] = True
    return w.astype(np.float32)


def _sample(img: np.ndarray, r: np.ndarray, c: np.ndarray, grad: bool = False):
    """Bilinear values of img (P, H, W) at rows r, cols c (P, K); whether inside; with
    ``grad`` also the derivatives along rows and columns of the bilinear surface."""
    p, h, w = img.shape
    inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
    r = np.clip(r, 0, h - 1.001)
    c = np.clip(c, 0, w - 1.001)
    index = np.int32 if p * h * w < 2**31 else np.int64
    r0, c0 = r.astype(index), c.astype(index)
    fr, fc = r - r0, c - c0
    # one flat index into all P images: np.take is 3× faster than take_along_axis
    base = r0 * w + c0 + (np.arange(p, dtype=index) * (h * w))[:, None]
    flat = img.reshape(-1)
    v00, v01 = flat.take(base), flat.take(base + 1)
    v10, v11 = flat.take(base + w), flat.take(base + w + 1)
    top = v00 + fc * (v01 - v00)
    bot = v10 + fc * (v11 - v10)
    if grad:
        dc = (v01 - v00) + fr * ((v11 - v10) - (v01 - v00))
        return top + fr * (bot - top), inside, bot - top, dc
    return top + fr * (bot - top), inside


LEVELS = (
    (2.0, 8, 3),
    (1.0, 5, 2),
    (0.5, 3, 1),
)  # (blur σ in thumbnail px, Gauss-Newton steps, grid step)
SCALES = (1.0, 1 / 1.12, 1.12)  # starting scales tried (crops zoom in by up to 1.25)
SCALE_CLIP = 1.55  # the scales Gauss-Newton may reach (a little beyond MAX_SCALE)
SHIFT_CLIP = 6.0  # and the shifts (thumbnail px)


def _grid(side: int, trim: int, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = (side - 1) / 2
    ax = np.arange(trim, side - trim, step, dtype=np.float32) - centre
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    flat = ((yy + centre) * side + (xx + centre)).astype(np.int64).ravel()
    return xx.ravel()[None, :], yy.ravel()[None, :], flat


def _warp(img: np.ndarray, par: np.ndarray, xb: np.ndarray, yb: np.ndarray, unit: float = 1.0):
    """img (P, H, W) sampled at a(s∘x + t) for b's offsets (xb, yb); t in 32-px units."""
    centre = (img.shape[1] - 1) / 2
    r = par[:, 2:3] * yb + par[:, 3:4] * unit + centre
    c = par[:, 0:1] * xb + par[:, 1:2] * unit + centre
    return r, c


def _ncc(av: np.ndarray, bv: np.ndarray, m: np.ndarray) -> np.ndarray:
    cnt = m.sum(axis=1)
    mean_a = (av * m).sum(1) / np.maximum(cnt, 1)
    mean_b = (bv * m).sum(1) / np.maximum(cnt, 1)
    da, db = (av - mean_a[:, None]) * m, (bv - mean_b[:, None]) * m
    den = np.sqrt((da * da).sum(1) * (db * db).sum(1))
    ok = (cnt >= 0.5 * m.shape[1]) & (den > 0)
    return np.where(ok, (da * db).sum(1) / np.maximum(den, 1e-12), -1.0)


DETAIL_MATCH = 0.7  # thumbnail px: the extra blur for the detail similarity of a blurred copy,
DETAIL_RETRY = 0.9  # tried where the detail similarity is below this and the similarity above
INTERP_SIGMA = 0.5  # thumbnail px: the smoothing of bilinear sampling half a pixel off, about
COARSE_KEEP = 0.8  # pairs below this correlation after the coarse level are not refined


def _fit(
    al: np.ndarray,
    bv: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    par: np.ndarray,
    steps: int,
    weight: np.ndarray | float = 1.0,
    unit: float = 1.0,
) -> None:
    """Gauss-Newton steps on par (P, 6) in place for b(x) ≈ g·a(s∘x + t) + h (grid points
    weighted by ``weight``: 0 leaves a point out); ``unit``: a's pixels per thumbnail pixel
    (the shifts in par are in a's pixels, kept within SHIFT_CLIP thumbnail pixels)."""
    for _ in range(steps):
        r, c = _warp(al, par, xb, yb)
        av, inside, dy, dx = _sample(al, r, c, grad=True)
        m = inside.astype(np.float32) * weight
        g = par[:, 4:5]
        res = g * av + par[:, 5:6] - bv
        jac = np.stack(
            [g * dx * xb, g * dx, g * dy * yb, g * dy, av, np.ones_like(av)], axis=1
        )  # (P, 6, K): the sums over K run along contiguous memory
        jm = jac * m[:, None, :]
        hess = np.matmul(jm, jac.transpose(0, 2, 1)) + 1e-3 * np.eye(6, dtype=np.float32)
        grad = np.matmul(jm, res[..., None])
        par -= np.linalg.solve(hess, grad)[..., 0]
        par[:, [0, 2]] = np.clip(par[:, [0, 2]], 1 / SCALE_CLIP, SCALE_CLIP)
        par[:, [1, 3]] = np.clip(par[:, [1, 3]], -SHIFT_CLIP * unit, SHIFT_CLIP * unit)


def align(a: np.ndarray, b: np.ndarray, corners: bool = False) -> tuple[np.ndarray, ...]:
    """Fit b(x) ≈ g·a(s∘x + t) + h per pair of thumbnails (P, 32, 32), coarse to fine.
    Returns (similarity, detail similarity, parameters (P, 6) = sx, tx, sy, ty, g, h):
    similarity = correlation of the aligned thumbnails (σ = 0.5 blur) over their overlap;
    detail similarity = the same for their band-pass (σ 0.5 minus σ 2) parts, which a smooth
    gradient or a flat background cannot fake. Pairs that do not reach COARSE_KEEP at the
    coarsest level, or whose fit there is beyond what a copy needs by more than REFINE_SLACK,
    are not refined, and pairs below FINE_KEEP at the middle level stop there (similarity and
    detail −1; the parameters as far as they were fitted).

    With ``corners`` also (similarity, detail, parameters, corner) without the corner square
    (``corner_masks``) where the aligned thumbnails disagree most — an overlay in one corner of
    a copy: pairs whose similarity that raises are fitted once more at the fine levels without
    it; corner −1 (and the first three as above) where not."""
    p = len(a)
    sg0 = LEVELS[0][0]
    xb, yb, flat0 = _grid(SIDE, TRIM, LEVELS[0][2])
    a0 = _blur(a, sg0)
    b0 = _blur(b, sg0).reshape(p, -1)
    # starting scale: the best correlation at the coarsest level
    best, par = np.full(p, -2.0), np.zeros((p, 6), np.float32)
    for s0 in SCALES:
        cand = np.zeros((p, 6), np.float32)
        cand[:, 0] = cand[:, 2] = s0
        cand[:, 4] = 1.0
        av, inside = _sample(a0, *_warp(a0, cand, xb, yb))
        sim = _ncc(av, b0[:, flat0], inside.astype(np.float32))
        better = sim > best
        best[better], par[better] = sim[better], cand[better]
    _fit(a0, b0[:, flat0], xb, yb, par, LEVELS[0][1])
    av, inside = _sample(a0, *_warp(a0, par, xb, yb))
    bc = b0[:, flat0]
    m0 = inside.astype(np.float32)
    coarse = _ncc(av, bc, m0)
    # the whole picture goes on to the fine levels where its fit is near one a copy can need
    mean = a.mean(axis=(1, 2))
    plain = (coarse >= COARSE_KEEP) & plausible(par, mean, REFINE_SLACK)
    sim_out, detail_out = np.full(p, -1.0, np.float32), np.full(p, -1.0, np.float32)
    cpar = par.copy()
    worst = np.full(p, -1, np.int64)
    cornered = np.zeros(p, bool)
    if corners:  # pairs the whole picture stops here (too far from b, or its fit from one a
        # copy needs): fitted again without the worst corner, from the whole picture's fit or
        # from no change (a box can pull that fit far away: a gain of 2.1 for a crop with an
        # inverted box of 19 % of the side, tests/test_copy_kinds.py)
        masks0 = corner_masks(xb, yb, SIDE)
        identity = np.zeros((p, 6), np.float32)
        identity[:, [0, 2, 4]] = 1.0
        masked = np.full(p, -2.0)
        lost = np.flatnonzero(~plain)  # (the whole picture's fit is kept where it reached)
        for p0, rows in ((par, np.arange(p)), (identity, lost)):
            if p0 is par:
                av0, inside0 = av, inside
            else:
                av0, inside0 = _sample(a0[rows], *_warp(a0[rows], p0[rows], xb, yb))
            m = inside0.astype(np.float32)
            k = _worst_corner(av0, bc[rows], m, masks0)
            sim = _ncc(av0, bc[rows], m * _corner_weight(k, masks0))
            better = sim > masked[rows]
            b_ = rows[better]
            masked[b_], worst[b_], cpar[b_] = sim[better], k[better], p0[b_]
        redo = np.flatnonzero((masked >= COARSE_KEEP) & (~plain | (masked >= coarse + CORNER_LIFT)))
        worst[np.setdiff1d(np.arange(p), redo)] = -1
        if len(redo):
            w0 = _corner_weight(worst[redo], masks0)
            cpar_redo = cpar[redo]
            _fit(a0[redo], bc[redo], xb, yb, cpar_redo, LEVELS[0][1], w0)
            cpar[redo] = cpar_redo
            av, inside = _sample(a0[redo], *_warp(a0[redo], cpar_redo, xb, yb))
            cornered[redo] = (
                _ncc(av, bc[redo], inside.astype(np.float32) * w0) >= COARSE_KEEP
            ) & plausible(cpar_redo, mean[redo], REFINE_SLACK)
    keep = np.flatnonzero(plain | cornered)
    csim_out, cdetail_out = sim_out.copy(), detail_out.copy()
    corner_out = np.full(p, -1, np.int64)
    if not len(keep):
        return (sim_out, detail_out, par) + (
            (csim_out, cdetail_out, cpar, corner_out) if corners else ()
        )
    a, b, a0, b0, mean = a[keep], b[keep], a0[keep], b0[keep], mean[keep]
    whole = np.flatnonzero(plain[keep])
    if len(whole):
        pk = par[keep[whole]]
        on, finest = _fit_fine(a, b, mean, whole, pk)
        par[keep[whole]] = pk
        whole, pk = whole[on], pk[on]
    if len(whole):
        sim_k, det_k, worst_k, without_k = _similarities(
            *_fine_views(a, b, a0, b0, whole, finest), pk, None
        )
        sim_out[keep[whole]], detail_out[keep[whole]] = sim_k, det_k
    if not corners:
        return sim_out, detail_out, par
    if len(whole):  # whole pictures close but for their worst corner: fitted without it too
        close = without_k >= CORNER_FROM
        cornered[keep[whole[close]]] = True
        worst[keep[whole[close]]] = worst_k[close]
        cpar[keep[whole[close]]] = pk[close]
    sel = np.flatnonzero(cornered[keep])
    if len(sel):
        cpk, ck = cpar[keep[sel]], worst[keep[sel]]
        on, finest = _fit_fine(a, b, mean, sel, cpk, ck)
        cpar[keep[sel]] = cpk
        sel, cpk, ck = sel[on], cpk[on], ck[on]
    if len(sel):
        csim_k, cdet_k, *_ = _similarities(*_fine_views(a, b, a0, b0, sel, finest), cpk, ck)
        csim_out[keep[sel]], cdetail_out[keep[sel]] = csim_k, cdet_k
        corner_out[keep[sel]] = ck
    return sim_out, detail_out, par, csim_out, cdetail_out, cpar, corner_out


FINE_KEEP = 0.9  # similarity at the middle level (the whole picture's or without its worst
# corner, the higher) below which a pair is not refined at the finest level (far below the
# finest level's SIMILARITY 0.95, which a pair reaches only from here)


def _fit_fine(
    a: np.ndarray,
    b: np.ndarray,
    mean: np.ndarray,
    rows: np.ndarray,
    par: np.ndarray,
    corner: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Gauss-Newton on par (len(rows), 6) in place at the finer LEVELS, for pairs ``rows`` of
    thumbnails a, b (P, 32, 32) (a's mean grey ``mean``), without each pair's ``corner`` when
    given. Between levels the pairs below FINE_KEEP, or whose fit is beyond what a copy can
    need by more than REFINE_SLACK, stop. Returns the positions in ``rows`` of those fitted at
    every level and their a and b (flat) at the finest level's blur (for ``_fine_views``)."""
    on = np.arange(len(rows))
    finest = (np.empty((0, SIDE, SIDE), np.float32), np.empty((0, SIDE * SIDE), np.float32))
    for i, (sigma, steps, step) in enumerate(LEVELS[1:]):
        if not len(on):
            break
        xb, yb, flat = _grid(SIDE, TRIM, step)
        masks = corner_masks(xb, yb, SIDE)
        al = _blur(a[rows[on]], sigma)
        finest = (al, _blur(b[rows[on]], sigma).reshape(len(on), -1))
        bl = finest[1][:, flat]
        w = 1.0 if corner is None else _corner_weight(corner[on], masks)
        p_ = par[on]
        _fit(al, bl, xb, yb, p_, steps, w)
        par[on] = p_
        if i + 2 < len(LEVELS):
            av, inside = _sample(al, *_warp(al, p_, xb, yb))
            m = inside.astype(np.float32) * w
            sim = _ncc(av, bl, m)
            if corner is None:  # an overlay's corner may be what keeps a copy below
                left = m * _corner_weight(_worst_corner(av, bl, m, masks), masks)
                sim = np.maximum(sim, _ncc(av, bl, left))
            on = on[(sim >= FINE_KEEP) & plausible(p_, mean[rows[on]], REFINE_SLACK)]
    return on, finest


def _fine_views(
    a: np.ndarray,
    b: np.ndarray,
    a0: np.ndarray,
    b0: np.ndarray,
    rows: np.ndarray,
    finest: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """What ``_similarities`` compares for pairs ``rows`` of thumbnails a, b (P, 32, 32) and of
    their coarsest blurs a0, b0 (b0 flat): both at the finest level (``finest``, from
    ``_fit_fine``); b smoothed as bilinear sampling half a pixel off smooths a; both blurred as
    a copy rescaled down and back."""
    sg, n = LEVELS[-1][0], len(rows)
    ar, br = a[rows], b[rows]
    soft = float(np.hypot(sg, DETAIL_MATCH))
    return (
        finest[0],
        a0[rows],
        finest[1],
        b0[rows],
        _blur(br, float(np.hypot(sg, INTERP_SIGMA))).reshape(n, -1),
        _blur(ar, soft),
        _blur(br, soft).reshape(n, -1),
    )


CORNER_LIFT = 0.03  # or: a pair whose coarse similarity the worst corner lowers this much (a
# box that can pull the whole picture's fit away) is fitted without that corner from the start
CORNER_FROM = 0.93  # fine similarity without the worst corner (the whole picture's fit) from
# which a pair is fitted once more without it


def _worst_corner(av: np.ndarray, bv: np.ndarray, m: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(P,) the corner (``corner_masks``) where the standardised aligned values differ most."""

    def unit(v: np.ndarray) -> np.ndarray:
        cnt = np.maximum(m.sum(1, keepdims=True), 1)
        d = (v - (v * m).sum(1, keepdims=True) / cnt) * m
        return d / np.maximum(np.sqrt((d * d).sum(1, keepdims=True)), 1e-12)

    err = (unit(av) - unit(bv)) ** 2
    return (err @ masks.T.astype(np.float32)).argmax(1)


def _similarities(
    al: np.ndarray,
    a0: np.ndarray,
    bl: np.ndarray,
    b0: np.ndarray,
    b_soft: np.ndarray,
    a_soft: np.ndarray,
    b_dsoft: np.ndarray,
    par: np.ndarray,
    corner: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity and detail similarity (``align``) of the finest level for fits ``par``,
    without each pair's ``corner`` (None: the whole overlap); the worst corner and the
    similarity without it (with ``corner`` None; else the similarity again)."""
    xb, yb, flat = _grid(SIDE, TRIM, LEVELS[-1][2])
    r, c = _warp(al, par, xb, yb)
    av, inside = _sample(al, r, c)
    masks = corner_masks(xb, yb, SIDE)
    m = inside.astype(np.float32) * _corner_weight(corner, masks)
    bf, bs = bl[:, flat], b_soft[:, flat]
    sim = np.maximum(_ncc(av, bf, m), _ncc(av, bs, m))
    worst = _worst_corner(av, bf, m, masks)
    if corner is None:
        mw = m * _corner_weight(worst, masks)
        without = _ncc(av, bf, mw)
    else:
        without = sim
    av0, _ = _sample(a0, r, c)
    bv_band = (bl - b0)[:, flat]
    detail = _ncc(av - av0, bv_band, m)
    # a copy rescaled down and back (or re-encoded) lost some of the finest detail: the other
    # image's band-pass blurred alike may correlate better (the best of the three counts)
    low = np.flatnonzero((detail < DETAIL_RETRY) & (sim >= DETAIL_RETRY))
    if len(low):
        av_soft, _ = _sample(a_soft[low], r[low], c[low])
        ml, band = m[low], av[low] - av0[low]
        again = np.maximum(
            _ncc(av_soft - av0[low], bv_band[low], ml),
            _ncc(band, (b_dsoft[low] - b0[low])[:, flat], ml),
        )
        detail[low] = np.maximum(detail[low], again)
    return sim, detail, worst, without


# How far beyond ``plausible``'s limits a fit may be after the coarsest and the middle level
# and still be refined: log scale, thumbnail px of shift, log gain, grey levels of offset. The
# later levels move a fit little: of the copies the search finds on the real-photo bench's fit
# seeds 0-5 (4,106 fitted one way), the farthest after the coarsest level was 0.09 px of shift
# beyond MAX_SHIFT, every other one within all four limits. Most candidate pairs of natural
# images are two pictures that share a layout and need far more (after the coarsest level
# 74 % of the natural-like stand-in's were beyond the limits, 89 % of the bench's): they stop
# there instead of costing the fine levels (docs/double-labelling.md, step 3).
REFINE_SLACK = (0.1, 1.0, 0.1, 10.0)


def plausible(
    par: np.ndarray,
    mean: np.ndarray | float = 0.0,
    slack: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
) -> np.ndarray:
    """(P,) whether fitted parameters (P, 6) = sx, tx, sy, ty, gain, offset are within what a
    copy needs; the offset is the change of the grey level ``mean`` (the mapped image's mean
    grey, (P,)), g·mean + h − mean. ``slack``: the limits widened by (log scale, shift px,
    log gain, offset grey levels)."""
    sx, tx, sy, ty, g, h = par.T
    d_scale, d_shift, d_gain, d_offset = slack
    max_scale = MAX_SCALE * np.exp(d_scale) if d_scale else MAX_SCALE
    max_gain = MAX_GAIN * np.exp(d_gain) if d_gain else MAX_GAIN
    return (
        (sx >= 1 / max_scale)
        & (sx <= max_scale)
        & (sy >= 1 / max_scale)
        & (sy <= max_scale)
        & (np.abs(tx) <= MAX_SHIFT + d_shift)
        & (np.abs(ty) <= MAX_SHIFT + d_shift)
        & (g >= 1 / max_gain)
        & (g <= max_gain)
        & (np.abs((g - 1) * mean + h) <= MAX_OFFSET + d_offset)
    )


def consistent(par: np.ndarray) -> np.ndarray:
    """(P,) whether the scales of fitted parameters (P, 6) are those of a crop or of no change:
    written as the map from the image that covers more onto the other (inverted when
    sx·sy > 1), neither axis zooms out by more than MAX_ZOOM_OUT and the axes' scales differ by
    at most a factor exp(MAX_ANISOTROPY)."""
    sx, sy = par[:, 0].astype(np.float64), par[:, 2].astype(np.float64)
    inv = sx * sy > 1
    sx, sy = np.where(inv, 1 / sx, sx), np.where(inv, 1 / sy, sy)
    return (np.abs(np.log(sx / sy)) <= MAX_ANISOTROPY) & (np.maximum(sx, sy) <= MAX_ZOOM_OUT)


COLOUR_SIGMA = 1.5  # blur (colour-thumbnail px, 6 px at 64) of both colour thumbnails: the
# colours' layout is compared, not their texture


def colour_similarity(
    ca: np.ndarray, cb: np.ndarray, par: np.ndarray, corner: np.ndarray | None = None
) -> np.ndarray:
    """Correlation of the aligned colour thumbnails (P, 16, 16, 3), all three channels as one
    vector, centred by one mean or each channel by its own (the higher): unchanged by
    brightness, contrast and a colour cast (per-channel gain), low when the colours' layout
    differs (a blue and a green gradient of the same shape). Both are blurred by COLOUR_SIGMA
    first: sampling one between its pixels (a copy shifted by 2 px is half a colour pixel off)
    smooths it, which alone took the correlation of a finely textured grey crop and its copy
    shifted by 2 px down to 0.70 (0.86 blurred; real-photo bench, seed 5). ``corner`` (P,):
    each pair's corner square left out (``corner_masks``; -1 none)."""
    p, side = len(ca), ca.shape[1]
    ca, cb = _blur_channels(ca, COLOUR_SIGMA), _blur_channels(cb, COLOUR_SIGMA)
    xb, yb, flat = _grid(side, 1)
    r, c = _warp(ca[..., 0], par, xb * 1.0, yb * 1.0, unit=side / SIDE)
    av = np.concatenate([_sample(ca[..., ch], r, c)[0] for ch in range(3)], axis=1)
    inside = _sample(ca[..., 0], r, c)[1]
    bv = np.concatenate([cb[..., ch].reshape(p, -1)[:, flat] for ch in range(3)], axis=1)
    m = np.tile(inside * _corner_weight(corner, corner_masks(xb, yb, side)), 3).astype(np.float32)
    # the better of: one mean for all channels (brightness and contrast changes), and each
    # channel centred on its own mean (a colour cast: each channel's gain or offset changed,
    # the colour layout kept). A blue and a green gradient of one shape stay apart in both:
    # their structure lies in different channels.
    return np.maximum(_ncc(av, bv, m), _ncc(_per_channel(av, m), _per_channel(bv, m), m))


def _blur_channels(x: np.ndarray, sigma: float) -> np.ndarray:
    """Colour images x (P, H, W, C) as float32, each channel blurred by ``_blur``."""
    p, h, w, ch = x.shape
    planes = np.ascontiguousarray(x.astype(np.float32).transpose(0, 3, 1, 2)).reshape(-1, h, w)
    return _blur(planes, sigma).reshape(p, ch, h, w).transpose(0, 2, 3, 1)


def _per_channel(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(P, 3·k) channel blocks, each minus its own mean over the mask."""
    p = v.reshape(len(v), 3, -1)
    w = m.reshape(len(m), 3, -1)
    mean = (p * w).sum(2, keepdims=True) / np.maximum(w.sum(2, keepdims=True), 1)
    return (p - mean).reshape(v.shape)


def _one_way(
    ga: np.ndarray, gb: np.ndarray, ca: np.ndarray, cb: np.ndarray, flipped: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(P, 3) similarities and the fit (P, 6) of a (mirrored where flipped) onto b, then the
    same without each pair's worst corner, and that corner (``align``)."""
    a = ga.astype(np.float32)
    a[flipped] = a[flipped][:, :, ::-1]
    cola = ca.astype(np.float32)
    cola[flipped] = cola[flipped][:, :, ::-1]
    sim, detail, par, csim, cdetail, cpar, corner = align(a, gb.astype(np.float32), corners=True)
    colb = cb.astype(np.float32)
    # colours only where the fit went through every level (the rest cannot match): -1 elsewhere
    fitted = np.flatnonzero(sim > -1)
    col = np.full(len(sim), -1.0, np.float32)
    if len(fitted):
        col[fitted] = colour_similarity(cola[fitted], colb[fitted], par[fitted])
    ccol = col.copy()  # pairs without a corner left out: as the whole picture
    c = np.flatnonzero(corner >= 0)
    if len(c):
        ccol[c] = colour_similarity(cola[c], colb[c], cpar[c], corner[c])
    mean = a.mean(axis=(1, 2))
    sim[~plausible(par, mean)] = -1.0  # a fit no copy of the documented kinds needs
    csim[~plausible(cpar, mean)] = -1.0
    return (
        np.stack([sim, detail, col], axis=1),
        par,
        np.stack([csim, cdetail, ccol], axis=1),
        cpar,
        corner,
    )


REVERSE_FROM = 0.8  # pairs at least this similar one way are also fitted the other way
CORNER_REVERSE_FROM = 0.95  # ... or this similar without a corner


def both_ways(
    ga: np.ndarray,
    gb: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    flipped: np.ndarray,
    block: int = 2048,
    threads: int = 1,
) -> tuple[np.ndarray, ...]:
    """(P, 3): similarity, detail similarity, colour similarity of image pairs (ga/ca mirrored
    where flipped); all three −1 where the fit stopped before the finest level (``align``,
    ``_fit_fine``). The fit is not symmetric (which image covers the other after a crop, where
    Gauss-Newton starts), so promising pairs are also fitted b onto a; the direction with the
    higher similarity counts. Also returns the fitted parameters (P, 6) and whether they map
    b onto a (``reverse``) rather than a onto b, then the fit the other direction gave (P, 6)
    and its similarity (P,): −1 where that direction was not fitted (below REVERSE_FROM) or its
    fit is not one a copy can need (``plausible``). Then the same without each pair's worst
    corner (an overlay): similarities (P, 3), fit (P, 6), reverse (P,) and the corner (P,),
    −1 where leaving a corner out does not raise the similarity (then as the whole picture).
    Blocks of ``block`` pairs, ``threads`` at a time (the same result for any number of
    threads)."""

    def one(lo: int) -> tuple[np.ndarray, ...]:
        hi = min(len(ga), lo + block)
        f = flipped[lo:hi]
        fwd, par, cfwd, cpar, corner = _one_way(ga[lo:hi], gb[lo:hi], ca[lo:hi], cb[lo:hi], f)
        reverse, creverse = np.zeros(hi - lo, bool), np.zeros(hi - lo, bool)
        other, other_sim = par.copy(), np.full(hi - lo, -1.0, np.float32)
        redo = np.flatnonzero((fwd[:, 0] >= REVERSE_FROM) | (cfwd[:, 0] >= CORNER_REVERSE_FROM))
        if len(redo):  # mirrored: flip(a) ~ b  <=>  flip(b) ~ a
            rev, rpar, crev, crpar, rcorner = _one_way(
                gb[lo:hi][redo], ga[lo:hi][redo], cb[lo:hi][redo], ca[lo:hi][redo], f[redo]
            )
            better = rev[:, 0] > fwd[redo, 0]
            other[redo] = np.where(better[:, None], par[redo], rpar)
            other_sim[redo] = np.where(better, fwd[redo, 0], rev[:, 0])
            fwd[redo[better]] = rev[better]
            par[redo[better]] = rpar[better]
            reverse[redo[better]] = True
            cbetter = crev[:, 0] > cfwd[redo, 0]
            cfwd[redo[cbetter]] = crev[cbetter]
            cpar[redo[cbetter]] = crpar[cbetter]
            corner[redo[cbetter]] = rcorner[cbetter]
            creverse[redo[cbetter]] = True
        return fwd, par, reverse, other, other_sim, cfwd, cpar, creverse, corner

    parts = in_blocks(one, len(ga), block, threads)
    if not parts:
        return (
            np.empty((0, 3), np.float32),
            np.empty((0, 6), np.float32),
            np.zeros(0, bool),
            np.empty((0, 6), np.float32),
            np.empty(0, np.float32),
            np.empty((0, 3), np.float32),
            np.empty((0, 6), np.float32),
            np.zeros(0, bool),
            np.empty(0, np.int64),
        )
    return tuple(np.concatenate(v) for v in zip(*parts, strict=True))
