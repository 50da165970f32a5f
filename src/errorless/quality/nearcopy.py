"""Near copies of images (docs/method.md#double-labelling-evidence): find pairs of images that are
the same picture after JPEG
re-encoding, rescaling, small crops and shifts, mirroring or brightness/contrast changes.

Four steps, all vectorised over whole arrays (no Python loop per image or per pair):

1. **Thumbnails** (``Thumbs``): each image becomes a 32×32 grey thumbnail (area-averaged, BW
   weights), its mean colour and its grey contrast. Computed in chunks, so 1.28 M images
   need 1.3 GB, never the 15 GB of the images themselves.
2. **Candidates** (faiss): an 8×8 descriptor of the thumbnail, centred and scaled to unit
   norm (inner product = Pearson correlation: blind to brightness and contrast, blurred enough
   for JPEG, rescaling and few-pixel shifts). The index holds one descriptor per image; every
   image asks for its ``neighbours`` nearest with views of itself: as it is, its mirror image,
   both zoomed in by ``zoom`` (a crop of the query is close to the zoomed query), and windows
   moved by 4 px (at 64 px; fewer neighbours). Exact inner product search up to
   ``flat_limit`` images, an IVF index above (``nprobe`` cells, ``shift_nprobe`` for the
   moved windows, of which two suffice there: a pair is asked for from both sides). Opt-in
   (``whiten`` > 0): PCA-whitened descriptors (``_whitening``), 3× fewer candidates on real
   photos at the cost of 1-2 combined-transform copies in 100 (docs/double-labelling.md "Limits, measured").
3. **Verification** on the thumbnails: per candidate pair, Gauss-Newton (Lucas-Kanade)
   fits a scale and shift per axis plus gain and offset that map one thumbnail onto the
   other, coarse to fine (blur σ = 2, 1, 0.5 px), from three starting scales; the pair's
   **similarity** is the correlation of the aligned thumbnails over their overlap (the better
   of b as it is and b smoothed like a sampled between its pixels, INTERP_SIGMA). The fit
   must be one a copy can need (``plausible``: bounded scale, shift, gain and offset) and
   ``consistent`` with a crop or no change of scale (both axes shrink alike from the image that
   covers more to the other). A pair matches when the similarity reaches ``similarity``, the
   aligned band-pass details reach ``detail`` and the aligned colour thumbnails (both blurred
   by COLOUR_SIGMA) reach ``colour`` — or the similarity alone
   reaches ``sure_similarity`` with colours at ``sure_colour`` (JPEG at quality 30 blurs the
   details away); **mirrored** when it only matches through the mirror image. Images with
   almost no grey contrast (std below ``min_contrast``, e.g. a black or a constant-colour
   crop) have no shape to compare and take part only in the exact search.
4. **Full resolution** (when the caller can give the images back, ``near_copies(images=)``):
   the thumbnail matches are compared once more on the images, aligned by the thumbnail fit
   in both directions (a pair passes when either does), block by block (``full_residual``):
   a copy is close in every block, while two different
   pictures that share one large shape — a logo's mirror-symmetric quarters, brick-wall
   crops one period apart — differ somewhere (the drawing in one quarter, the specks on the
   bricks). Thresholds ``max_residual`` and ``max_local_residual`` are the 99.5th
   percentile of the planted copies of every kind on real photos (bench/duplicates_bench.py,
   seed 0; checked on seed 1). Small structure in one image where the other is flat (a few
   specks of a drawing next to plain green) is too small a part of a block; windows of 7 px
   compare the two images' local contrast (``_new_structure``, at most ``max_new_structure``,
   the largest of the planted copies of seed 0). Both blurred by COARSE_SIGMA (2 px), the
   worst block must be within ``max_coarse_residual`` of the image's contrast: crops of the
   repeating brick wall from two of its quarters pass every other test and fail this one
   (where the mortar runs). Pairs of images whose structure runs one way (``structure``
   below ``line_structure``: a single mortar line, stripes) match only closer
   (``line_local_residual``): two crops of one line are alike wherever along it they were
   cut. What still pairs on that bench: about 1 brick pair in 60,000 crops, and, with the
   drawings, crops of the logo's mirror-symmetric green rim from two of its quarters (mostly
   the same pixels within a few grey levels; docs/double-labelling.md "Limits, measured").

The verification runs in blocks of pairs on ``NearSettings.threads`` threads (``in_blocks``),
in passes of at most ``NearSettings.verify_mb`` MB (``pairs_per_pass``): the candidate pairs'
thumbnails are gathered one pass at a time, so memory is bounded by the thumbnails and one
pass, not by the number of candidates (natural images have many more than random ones).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SIDE = 32  # thumbnail side
DESC = 8  # descriptor side (DESC² values)
GREY = np.array([0.299, 0.587, 0.114], np.float32)
TRIM = 2  # thumbnail border left out of the verification (shift fill, crop edges)
# bytes the thumbnail verification holds per candidate pair: both grey (float16) and colour
# (uint8) thumbnails gathered, twice (a float32 working copy of each block), and the results
PAIR_BYTES = 2 * 2 * (SIDE * SIDE * 2 + (SIDE // 2) ** 2 * 3) + 4 * (3 + 6 + 6 + 2)


@dataclass(frozen=True)
class NearSettings:
    similarity: float = 0.95  # aligned correlation at or above which a pair is a near copy ...
    detail: float = 0.8  # ... when its band-pass details correlate this much ...
    colour: float = 0.8  # ... and its colour thumbnails this much
    sure_similarity: float = 0.99  # or: aligned correlation this high (JPEG blurs the details) ...
    sure_colour: float = 0.97  # ... with colours this close
    max_residual: float = (
        0.32  # and, at full resolution, no block further off than this share of the
    )
    max_local_residual: float = (
        0.66  # image's contrast, nor than this share of the block's own (full_residual)
    )
    max_new_structure: float = 2.0  # ... nor structure in one image where the other is flat
    # (_new_structure; the largest of the planted copies on real photos, seed 0: 1.99)
    max_coarse_residual: float = 0.25  # ... nor, both blurred by COARSE_SIGMA, a block further
    # off than this share of the image's contrast (where a repeating wall's mortar runs)
    line_structure: float = 0.03  # pairs of images whose structure runs one way (a line,
    # stripes: ``structure`` below this) match only closer, block by block ...
    line_local_residual: float = 0.37  # ... than this share of the block's contrast
    min_contrast: float = 4.0  # grey std (0..255) below which an image has no near search
    neighbours: int = 10
    prefilter: float = 0.75  # descriptor correlation a candidate needs to be verified
    highpass: float = 0.0  # > 0: descriptors of the thumbnails minus their blur by this σ (px)
    whiten: float = 0.0  # > 0: PCA-whitened descriptors, each eigenvalue plus this share of the
    # largest (the smooth layouts natural images share weigh less; docs/double-labelling.md "Limits, measured")
    # (band-pass: unrelated natural images correlate less; docs/double-labelling.md "Limits, measured")
    zoom: float = 1.15
    flat_limit: int = 20_000
    nprobe: int = 10  # IVF cells probed by the image, mirror and zoom views ...
    shift_nprobe: int = 3  # ... and by the moved windows
    nlist: int = 0  # IVF cells; 0 = 4·sqrt(N)
    seed: int = 0
    block: int = 8192
    threads: int = 1  # verification blocks run at once (the search uses faiss's own threads)
    verify_mb: float = 512.0  # MB the verification holds at once: candidate pairs are gathered
    # and verified in passes of ``pairs_per_pass`` pairs (thumbnails), and the full-resolution
    # check in passes that fit too, so peak memory is the thumbnails plus this, whatever the
    # number of candidates (the same pairs for any value)

    def pairs_per_pass(self, pair_bytes: int = 0) -> int:
        """Pairs gathered at once in ``verify_mb`` (``pair_bytes`` per pair; default: two
        thumbnails and their fits), a multiple of the verification block."""
        unit = max(1, self.block // 4)
        per = int(self.verify_mb * 1e6 // max(1, pair_bytes or PAIR_BYTES))
        return max(unit, per // unit * unit)


@dataclass
class Thumbs:
    grey: np.ndarray  # (N, 32, 32) float16, 0..255
    colour: np.ndarray  # (N, 16, 16, 3) uint8
    contrast: np.ndarray  # (N,) float32 grey std

    @staticmethod
    def concat(parts: list[Thumbs]) -> Thumbs:
        return Thumbs(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("grey", "colour", "contrast")
            )
        )

    @staticmethod
    def empty(n: int) -> Thumbs:
        """Room for n images, filled block by block with ``put`` (no second copy, unlike concat)."""
        return Thumbs(
            np.empty((n, SIDE, SIDE), np.float16),
            np.empty((n, SIDE // 2, SIDE // 2, 3), np.uint8),
            np.empty(n, np.float32),
        )

    def put(self, lo: int, part: Thumbs) -> None:
        hi = lo + len(part.grey)
        self.grey[lo:hi], self.colour[lo:hi], self.contrast[lo:hi] = (
            part.grey,
            part.colour,
            part.contrast,
        )

    def take(self, rows: np.ndarray) -> Thumbs:
        return Thumbs(self.grey[rows], self.colour[rows], self.contrast[rows])


def area_matrix(n_in: int, n_out: int, lo: float = 0.0, hi: float | None = None) -> np.ndarray:
    """(n_out, n_in) weights: output pixel i averages the input interval
    [lo + i·w, lo + (i+1)·w), w = (hi − lo)/n_out, with fractional pixel coverage."""
    hi = float(n_in) if hi is None else hi
    edges = lo + (hi - lo) * np.arange(n_out + 1) / n_out
    left, right = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    cover = np.clip(np.minimum(right, px + 1) - np.maximum(left, px), 0, None)
    return (cover / cover.sum(axis=1, keepdims=True)).astype(np.float32)


def _area32(x: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 32, 32, 3) float32 area averages (a reshape when H and W are
    multiples of 32, interpolation matrices otherwise)."""
    b, h, w, _ = x.shape
    if h % SIDE == 0 and w % SIDE == 0:
        fh, fw = h // SIDE, w // SIDE  # sums of strided slices: much faster than a strided mean
        rows = sum(x[:, i::fh].astype(np.uint32) for i in range(fh))  # (B, 32, W, 3)
        acc = sum(rows[:, :, j::fw] for j in range(fw))  # (B, 32, 32, 3)
        return acc.astype(np.float32) * np.float32(1 / (fh * fw))
    rh, rw = area_matrix(h, SIDE), area_matrix(w, SIDE)
    return np.einsum("ih,bhwc,jw->bijc", rh, x.astype(np.float32), rw, optimize=True)


def thumbs(images: np.ndarray, block: int = 4096) -> Thumbs:
    """Grey 32×32 and colour 16×16 thumbnails and grey contrast of uint8 images (N, H, W, C)."""
    n = len(images)
    grey = np.empty((n, SIDE, SIDE), np.float16)
    colour = np.empty((n, SIDE // 2, SIDE // 2, 3), np.uint8)
    contrast = np.empty(n, np.float32)
    for lo in range(0, n, block):
        x = images[lo : lo + block]
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=3)
        col = _area32(x)  # (B, 32, 32, 3)
        g = (
            GREY[0] * col[..., 0] + GREY[1] * col[..., 1] + GREY[2] * col[..., 2]
        )  # (B, 32, 32): grey of the average
        grey[lo : lo + block] = g
        contrast[lo : lo + block] = g.reshape(len(g), -1).std(axis=1)
        small = (
            col[:, ::2, ::2] + col[:, 1::2, ::2] + col[:, ::2, 1::2] + col[:, 1::2, 1::2]
        ) * 0.25
        colour[lo : lo + block] = np.clip(np.rint(small), 0, 255)
    return Thumbs(grey, colour, contrast)


DESC_BLUR = 1.5  # thumbnail blur before the descriptor: shifts of a few pixels stay inside one cell


def descriptors(
    grey: np.ndarray,
    flip: bool = False,
    zoom: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    blurred: bool = False,
) -> np.ndarray:
    """(N, 64) float32 unit-norm centred 8×8 area averages of the thumbnails (optionally
    mirrored, of the central 1/zoom part, or of a window shifted by (rows, cols) pixels).
    ``blurred``: the thumbnails are already blurred by DESC_BLUR (one blur for several views)."""
    half = SIDE / zoom / 2
    r = area_matrix(SIDE, DESC, SIDE / 2 - half + shift[0], SIDE / 2 + half + shift[0])
    rc = area_matrix(SIDE, DESC, SIDE / 2 - half + shift[1], SIDE / 2 + half + shift[1])
    rc = rc[:, ::-1] if flip else rc
    g = grey if blurred else _blur(grey.astype(np.float32), DESC_BLUR)
    d = (r @ g @ rc.T).reshape(len(grey), -1)  # (N, 64)
    d -= d.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return np.divide(d, norm, out=np.zeros_like(d), where=norm > 1e-6)


# ---------------------------------------------------------------- candidates


def candidates(
    t: Thumbs, labels: np.ndarray, s: NearSettings, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Candidate pairs (a, b, flipped) with different labels among the images with contrast
    (of ``rows`` only, when given: no copy of the thumbnails); each pair once per orientation,
    a < b."""
    import faiss

    rows = np.arange(len(t.contrast)) if rows is None else np.asarray(rows, np.int64)
    active = rows[t.contrast[rows] >= s.min_contrast]
    n = len(active)
    k = min(s.neighbours + 1, n)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), "none"
    dim = DESC * DESC

    # the data set's mean descriptor is removed: what all images share (a common layout, a
    # shared background) says nothing about which two are copies
    rng = np.random.default_rng(s.seed)
    sample = np.sort(rng.choice(n, size=min(n, 100_000), replace=False))

    def blurred(rows: np.ndarray) -> np.ndarray:  # the thumbnails the views are cut from
        g = _blur(t.grey[active[rows]].astype(np.float32), DESC_BLUR)
        return g - _blur(g, s.highpass) if s.highpass > 0 else g

    centre = np.concatenate(
        [
            descriptors(blurred(sample[i : i + s.block]), blurred=True)
            for i in range(0, len(sample), s.block)
        ]
    ).mean(axis=0)

    whitening = _whitening(
        (
            descriptors(blurred(sample[i : i + s.block]), blurred=True) - centre
            for i in range(0, len(sample), s.block)
        ),
        s.whiten,
    )

    def unit(d: np.ndarray) -> np.ndarray:
        d = d - centre
        if whitening is not None:
            d = d @ whitening
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        return np.ascontiguousarray(np.divide(d, norm, out=np.zeros_like(d), where=norm > 1e-6))

    if n <= s.flat_limit:
        index = faiss.IndexFlatIP(dim)
        method = "flat"
    else:
        nlist = s.nlist or int(max(1, min(4 * np.sqrt(n), n // 40)))
        sample = np.sort(rng.choice(n, size=int(min(n, max(40 * nlist, 50_000))), replace=False))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = s.seed
        index.train(
            np.concatenate(  # block by block: 180,000 float32 thumbnails would be 0.7 GB
                [
                    unit(descriptors(blurred(sample[i : i + s.block]), blurred=True))
                    for i in range(0, len(sample), s.block)
                ]
            )
        )
        method = f"ivf(nlist={nlist},nprobe={min(s.nprobe, nlist)},shift nprobe={min(s.shift_nprobe, nlist)})"
    for lo in range(0, n, s.block):
        index.add(unit(descriptors(blurred(np.arange(lo, min(n, lo + s.block))), blurred=True)))
    # views asked for: the image, its mirror image, both zoomed in (a crop of the image is close
    # to the zoomed view), each with k neighbours; and windows moved by 2 thumbnail px (4 px at
    # 64) with fewer neighbours. A pair is asked for from both sides, so on the IVF index two
    # diagonal moves cover all four (a moved by (2, 2) against b is b moved by (-2, -2) against a)
    # and are probed less deeply.
    queries = [(flip, zoom, (0.0, 0.0), k) for flip in (False, True) for zoom in (1.0, s.zoom)]
    moves = (
        ((-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0))
        if method == "flat"
        else ((2.0, 2.0), (2.0, -2.0))
    )
    queries += [(False, 1.0, move, min(k, 4)) for move in moves]
    ca, cb, cf = [], [], []
    for lo in range(0, n, s.block):
        hi = min(n, lo + s.block)
        g = blurred(np.arange(lo, hi))
        q = np.repeat(np.arange(lo, hi), k).reshape(hi - lo, k)
        for flip, zoom, shift, kq in queries:
            if method != "flat":
                index.nprobe = min(s.nprobe if shift == (0.0, 0.0) else s.shift_nprobe, index.nlist)
            sim, nbr = index.search(unit(descriptors(g, flip, zoom, shift, blurred=True)), kq)
            keep = (nbr >= 0) & (nbr != q[:, :kq]) & (sim >= s.prefilter)
            qa, qb = q[:, :kq][keep], nbr[keep].astype(np.int64)
            other = labels[active[qa]] != labels[active[qb]]
            ca.append(qa[other])
            cb.append(qb[other])
            cf.append(np.full(int(other.sum()), flip))
    a = active[np.concatenate(ca)]
    b = active[np.concatenate(cb)]
    f = np.concatenate(cf)
    lo_, hi_ = np.minimum(a, b), np.maximum(a, b)
    key = (
        np.unique(np.stack([lo_, hi_, f.astype(np.int64)], axis=1), axis=0)
        if len(a)
        else np.zeros((0, 3), np.int64)
    )
    return key[:, 0], key[:, 1], key[:, 2].astype(bool), method


WHITEN_MIN = 1000  # descriptors needed to whiten (16 per dimension)


def _whitening(parts, floor: float) -> np.ndarray | None:
    """(64, 64) PCA whitening U·diag(λ + floor·λ_max)^-½·Uᵀ of the covariance of the unit-norm
    centred descriptors in ``parts`` (blocks of them); None when ``floor`` is 0. Natural images
    share smooth layouts (a bright top, a dark corner), the directions of the largest eigenvalues,
    so two unrelated crops correlate; whitened, the correlation weighs every direction alike and
    the rarer details decide (Jégou & Chum 2012, "Negative evidences and co-occurrences in image
    retrieval: the benefit of PCA and whitening"). The floor keeps the least common directions,
    which a JPEG or a shift of a copy changes, from weighing more than the rest. Fewer than
    WHITEN_MIN descriptors do not estimate a 64 × 64 covariance: None as well."""
    if floor <= 0:
        return None
    cov = np.zeros((DESC * DESC, DESC * DESC), np.float64)
    count = 0
    for d in parts:
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        u = np.divide(d, norm, out=np.zeros_like(d), where=norm > 1e-6).astype(np.float64)
        cov += u.T @ u
        count += len(d)
    if count < WHITEN_MIN:
        return None
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0)
    return ((vec / np.sqrt(lam + floor * lam.max() + 1e-12)) @ vec.T).astype(np.float32)


# ---------------------------------------------------------------- verification


def in_blocks(fn: Callable[[int], Any], n: int, block: int, threads: int = 1) -> list:
    """[fn(0), fn(block), fn(2·block), ...] for the blocks of n items, on ``threads`` threads
    (numpy releases the GIL in the array work; blocks are independent, so the result does not
    depend on the number of threads)."""
    starts = range(0, n, block)
    if threads <= 1 or n <= block:
        return [fn(lo) for lo in starts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, starts))


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest") if sigma > 0 else x


def _sample(img: np.ndarray, r: np.ndarray, c: np.ndarray, grad: bool = False):
    """Bilinear values of img (P, H, W) at rows r, cols c (P, K); whether inside; with
    ``grad`` also the derivatives along rows and columns of the bilinear surface."""
    p, h, w = img.shape
    inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
    r = np.clip(r, 0, h - 1.001)
    c = np.clip(c, 0, w - 1.001)
    r0, c0 = r.astype(np.int64), c.astype(np.int64)
    fr, fc = r - r0, c - c0
    flat = img.reshape(p, -1)
    base = r0 * w + c0
    v00 = np.take_along_axis(flat, base, 1)
    v01 = np.take_along_axis(flat, base + 1, 1)
    v10 = np.take_along_axis(flat, base + w, 1)
    v11 = np.take_along_axis(flat, base + w + 1, 1)
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


INTERP_SIGMA = 0.5  # thumbnail px: the smoothing of bilinear sampling half a pixel off, about
COARSE_KEEP = 0.8  # pairs below this correlation after the coarse level are not refined


def _fit(
    al: np.ndarray, bv: np.ndarray, xb: np.ndarray, yb: np.ndarray, par: np.ndarray, steps: int
) -> None:
    """Gauss-Newton steps on par (P, 6) in place for b(x) ≈ g·a(s∘x + t) + h."""
    for _ in range(steps):
        r, c = _warp(al, par, xb, yb)
        av, inside, dy, dx = _sample(al, r, c, grad=True)
        m = inside.astype(np.float32)
        g = par[:, 4:5]
        res = g * av + par[:, 5:6] - bv
        jac = np.stack(
            [g * dx * xb, g * dx, g * dy * yb, g * dy, av, np.ones_like(av)], axis=2
        )  # (P, K, 6)
        jm = jac * m[..., None]
        hess = np.matmul(jm.transpose(0, 2, 1), jac) + 1e-3 * np.eye(6, dtype=np.float32)
        grad = np.matmul(jm.transpose(0, 2, 1), res[..., None])
        par -= np.linalg.solve(hess, grad)[..., 0]
        par[:, [0, 2]] = np.clip(par[:, [0, 2]], 0.75, 1.33)
        par[:, [1, 3]] = np.clip(par[:, [1, 3]], -6, 6)


def align(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit b(x) ≈ g·a(s∘x + t) + h per pair of thumbnails (P, 32, 32), coarse to fine.
    Returns (similarity, detail similarity, parameters (P, 6) = sx, tx, sy, ty, g, h):
    similarity = correlation of the aligned thumbnails (σ = 0.5 blur) over their overlap;
    detail similarity = the same for their band-pass (σ 0.5 minus σ 2) parts, which a smooth
    gradient or a flat background cannot fake. Pairs that do not reach COARSE_KEEP at the
    coarsest level are not refined (similarity and detail −1)."""
    p = len(a)
    grids = {sg: _grid(SIDE, TRIM, step) for sg, _, step in LEVELS}
    sg0 = LEVELS[0][0]
    a0, xb, yb = _blur(a, sg0), grids[sg0][0], grids[sg0][1]
    b0 = _blur(b, sg0).reshape(p, -1)
    # starting scale: the best correlation at the coarsest level
    best, par = np.full(p, -2.0), np.zeros((p, 6), np.float32)
    for s0 in SCALES:
        cand = np.zeros((p, 6), np.float32)
        cand[:, 0] = cand[:, 2] = s0
        cand[:, 4] = 1.0
        av, inside = _sample(a0, *_warp(a0, cand, xb, yb))
        sim = _ncc(av, b0[:, grids[sg0][2]], inside.astype(np.float32))
        better = sim > best
        best[better], par[better] = sim[better], cand[better]
    _fit(a0, b0[:, grids[sg0][2]], xb, yb, par, LEVELS[0][1])
    av, inside = _sample(a0, *_warp(a0, par, xb, yb))
    keep = np.flatnonzero(_ncc(av, b0[:, grids[sg0][2]], inside.astype(np.float32)) >= COARSE_KEEP)
    sim_out, detail_out = np.full(p, -1.0, np.float32), np.full(p, -1.0, np.float32)
    if not len(keep):
        return sim_out, detail_out, par
    a, b, a0, b0, pk = a[keep], b[keep], a0[keep], b0[keep], par[keep]
    for sigma, steps, _ in LEVELS[1:]:
        xb, yb, flat = grids[sigma]
        al = _blur(a, sigma)
        _fit(al, _blur(b, sigma).reshape(len(keep), -1)[:, flat], xb, yb, pk, steps)
    xb, yb, flat = grids[LEVELS[-1][0]]
    r, c = _warp(al, pk, xb, yb)
    b_fine = _blur(b, LEVELS[-1][0]).reshape(len(keep), -1)
    av, inside = _sample(al, r, c)
    m = inside.astype(np.float32)
    # sampling a between its pixels smooths it (a copy shifted by an odd number of pixels at
    # 64 px is half a thumbnail pixel off): b smoothed alike may correlate better
    b_soft = _blur(b, float(np.hypot(LEVELS[-1][0], INTERP_SIGMA))).reshape(len(keep), -1)
    sim_out[keep] = np.maximum(_ncc(av, b_fine[:, flat], m), _ncc(av, b_soft[:, flat], m))
    av_band, _ = _sample(al - a0, r, c)
    detail_out[keep] = _ncc(av_band, (b_fine - b0)[:, flat], m)
    par[keep] = pk
    return sim_out, detail_out, par


# What a copy can need, with a margin over the planted ranges (crops of 10 % per side zoom by
# 1.25, shifts of 4 px are 2 thumbnail px, brightness/contrast ×0.8-1.2, two of them combined).
# Measured on real-photo crops: the 1st-99th percentile of the fits of true copies lies inside
# (scale 0.82-1.04, shift ±2 px, gain 0.81-1.2, offset ±27 grey levels), while most fits that
# pair two different images need more (bench/duplicates_bench.py). The offset is measured at
# the image's mean grey: a brighter copy (×1.2) of a bright image saturates at 255, and its
# fit is a gain below 1 with a large offset at grey 0 (0.7·a + 78) that moves the mean by 20.
MAX_SCALE, MAX_SHIFT, MAX_GAIN, MAX_OFFSET = 1.28, 3.5, 1.65, 60.0


def plausible(par: np.ndarray, mean: np.ndarray | float = 0.0) -> np.ndarray:
    """(P,) whether fitted parameters (P, 6) = sx, tx, sy, ty, gain, offset are within what a
    copy needs; the offset is the change of the grey level ``mean`` (the mapped image's mean
    grey, (P,)), g·mean + h − mean."""
    sx, tx, sy, ty, g, h = par.T
    return (
        (sx >= 1 / MAX_SCALE)
        & (sx <= MAX_SCALE)
        & (sy >= 1 / MAX_SCALE)
        & (sy <= MAX_SCALE)
        & (np.abs(tx) <= MAX_SHIFT)
        & (np.abs(ty) <= MAX_SHIFT)
        & (g >= 1 / MAX_GAIN)
        & (g <= MAX_GAIN)
        & (np.abs((g - 1) * mean + h) <= MAX_OFFSET)
    )


# A copy of the documented kinds changes the scale of an axis only by a crop (each axis
# 0.80-0.96 of the original, cut 2-10 % per side) or not at all: both axes shrink from the larger
# image to the smaller by similar factors. A fit that zooms one axis in and the other out, or
# squeezes one axis 20 % more than the other, pairs two different pictures that share one
# smooth shape (a disk's rim in two quarters of a logo). A crop alone allows |log(sx/sy)| up to
# log(0.96/0.8) = 0.18. Planted copies of the real-photo bench, seed 0: |log(sx/sy)| at most
# 0.14 and the larger scale (image that covers more mapped onto the other) at most 1.03, while
# 18 of its 51 false pairs were outside; seed 1 (held out): one combo copy of 100 at 0.23.
MAX_ANISOTROPY, MAX_ZOOM_OUT = 0.2, 1.05


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


def colour_similarity(ca: np.ndarray, cb: np.ndarray, par: np.ndarray) -> np.ndarray:
    """Correlation of the aligned colour thumbnails (P, 16, 16, 3), all three channels as one
    vector centred by one mean: unchanged by brightness and contrast, low when the colours
    differ (a blue and a green gradient of the same shape). Both are blurred by COLOUR_SIGMA
    first: sampling one between its pixels (a copy shifted by 2 px is half a colour pixel off)
    smooths it, which alone took the correlation of a finely textured grey crop and its copy
    shifted by 2 px down to 0.70 (0.86 blurred; real-photo bench, seed 5)."""
    from scipy.ndimage import gaussian_filter

    p, side = len(ca), ca.shape[1]
    sig = (0, COLOUR_SIGMA, COLOUR_SIGMA, 0)
    ca = gaussian_filter(ca.astype(np.float32), sig, mode="nearest")
    cb = gaussian_filter(cb.astype(np.float32), sig, mode="nearest")
    xb, yb, flat = _grid(side, 1)
    r, c = _warp(ca[..., 0], par, xb * 1.0, yb * 1.0, unit=side / SIDE)
    av = np.concatenate([_sample(ca[..., ch], r, c)[0] for ch in range(3)], axis=1)
    inside = _sample(ca[..., 0], r, c)[1]
    bv = np.concatenate([cb[..., ch].reshape(p, -1)[:, flat] for ch in range(3)], axis=1)
    m = np.tile(inside, 3).astype(np.float32)
    return _ncc(av, bv, m)


def _one_way(
    ga: np.ndarray, gb: np.ndarray, ca: np.ndarray, cb: np.ndarray, flipped: np.ndarray
) -> np.ndarray:
    a = ga.astype(np.float32)
    a[flipped] = a[flipped][:, :, ::-1]
    cola = ca.astype(np.float32)
    cola[flipped] = cola[flipped][:, :, ::-1]
    sim, detail, par = align(a, gb.astype(np.float32))
    col = colour_similarity(cola, cb.astype(np.float32), par)
    sim[~plausible(par, a.mean(axis=(1, 2)))] = -1.0  # a fit no copy of the documented kinds needs
    return np.stack([sim, detail, col], axis=1), par


REVERSE_FROM = 0.8  # pairs at least this similar one way are also fitted the other way


def similarity(
    ga: np.ndarray,
    gb: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    flipped: np.ndarray,
    block: int = 2048,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, 3): similarity, detail similarity, colour similarity of image pairs (ga/ca mirrored
    where flipped). The fit is not symmetric (which image covers the other after a crop, where
    Gauss-Newton starts), so promising pairs are also fitted b onto a; the direction with the
    higher similarity counts. Also returns the fitted parameters (P, 6) and whether they map
    b onto a (``reverse``) rather than a onto b. Blocks of ``block`` pairs, ``threads`` at a
    time (the same result for any number of threads)."""
    return both_ways(ga, gb, ca, cb, flipped, block, threads)[:3]


def both_ways(
    ga: np.ndarray,
    gb: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    flipped: np.ndarray,
    block: int = 2048,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``similarity``'s (sims, par, reverse), plus the fit the other direction gave (P, 6) and
    its similarity (P,): −1 where that direction was not fitted (below REVERSE_FROM) or its fit
    is not one a copy can need (``plausible``)."""

    def one(lo: int) -> tuple[np.ndarray, ...]:
        hi = min(len(ga), lo + block)
        f = flipped[lo:hi]
        fwd, par = _one_way(ga[lo:hi], gb[lo:hi], ca[lo:hi], cb[lo:hi], f)
        reverse = np.zeros(hi - lo, bool)
        other, other_sim = par.copy(), np.full(hi - lo, -1.0, np.float32)
        redo = np.flatnonzero(fwd[:, 0] >= REVERSE_FROM)
        if len(redo):  # mirrored: flip(a) ~ b  <=>  flip(b) ~ a
            rev, rpar = _one_way(
                gb[lo:hi][redo], ga[lo:hi][redo], cb[lo:hi][redo], ca[lo:hi][redo], f[redo]
            )
            better = rev[:, 0] > fwd[redo, 0]
            other[redo] = np.where(better[:, None], par[redo], rpar)
            other_sim[redo] = np.where(better, fwd[redo, 0], rev[:, 0])
            fwd[redo[better]] = rev[better]
            par[redo[better]] = rpar[better]
            reverse[redo[better]] = True
        return fwd, par, reverse, other, other_sim

    parts = in_blocks(one, len(ga), block, threads)
    if not parts:
        return (
            np.empty((0, 3), np.float32),
            np.empty((0, 6), np.float32),
            np.zeros(0, bool),
            np.empty((0, 6), np.float32),
            np.empty(0, np.float32),
        )
    return tuple(np.concatenate(v) for v in zip(*parts, strict=True))


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


def _new_structure(av: np.ndarray, bv: np.ndarray, m: np.ndarray, side: int) -> np.ndarray:
    """(P,) the largest |s_b − s_a| / (min(s_a, s_b) + NEW_FLOOR·sd) over the NEW_WINDOW ×
    NEW_WINDOW windows wholly inside the overlap m, where s_a, s_b are the grey standard
    deviations in the window of g·av and bv (gain fitted over the overlap) and sd is bv's over
    the overlap: structure that one image has where the other is flat — a few specks of a
    drawing next to plain green, too small a part of a block for ``_local_residual`` — while
    a copy's edges, textures and JPEG noise are in both (blur-matched by the caller)."""
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
    score = np.abs(sb - sa) / np.maximum(np.minimum(sa, sb) + NEW_FLOOR * sd, 1e-6)
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
) -> np.ndarray:
    """(P, 3) the largest block residuals (``_local_residual``: relative to the image's and to
    the block's contrast) and the new-structure score (``_new_structure``) of image pairs
    (P, H, W, C) uint8 after the thumbnail alignment ``par`` (from ``similarity``: a mirrored
    where ``flipped``, b fitted onto a where ``reverse``), each the smallest over the
    ``blur_match`` comparisons (both images blurred by ``sigma`` px at 64 px first). Blocks of
    ``block`` pairs, ``threads`` at a time."""
    p, h, w = img_a.shape[:3]
    if h != w:
        raise ValueError(f"near-copy check at full resolution needs square images, not {h}×{w}")
    unit = h / SIDE
    trim = max(1, round(FULL_TRIM * h / 64))
    sigma = sigma * h / 64
    xb, yb, flat = _grid(h, trim, 1)

    def one(lo: int) -> np.ndarray:
        hi = min(p, lo + block)
        ga = _grey(img_a[lo:hi])
        gb = _grey(img_b[lo:hi])
        rev = reverse[lo:hi, None, None]
        src, dst = np.where(rev, gb, ga), np.where(rev, ga, gb)
        f = flipped[lo:hi]
        src[f] = src[f][:, :, ::-1]
        pf = par[lo:hi].copy()
        pf[:, [1, 3]] *= unit
        r, c = _warp(src, pf, xb, yb)
        best = np.full((hi - lo, 3), np.inf, np.float32)
        for extra_src, extra_dst in blur_match:
            sv, inside = _sample(_blur(src, float(np.hypot(sigma, extra_src * unit / 2))), r, c)
            dv = _blur(dst, float(np.hypot(sigma, extra_dst * unit / 2))).reshape(hi - lo, -1)[
                :, flat
            ]
            m = inside.astype(np.float32)
            res = (
                *_local_residual(sv, dv, m, h - 2 * trim),
                _new_structure(sv, dv, m, h - 2 * trim),
            )
            best = np.minimum(best, np.stack(res, 1))
        return best

    parts = in_blocks(one, p, block, threads)
    return np.concatenate(parts) if parts else np.empty((0, 3), np.float32)


def structure(images: np.ndarray, block: int = 1024) -> np.ndarray:
    """(N,) how two-dimensional the structure of images (N, H, W, C) uint8 is: the smaller over
    the larger eigenvalue of the structure tensor (the sums of gx², gx·gy, gy² of the grey
    gradients after a FULL_SIGMA blur) — about 0 for a line, stripes or a gradient, whose
    content does not change along one direction; 0.5 is the median of real-photo crops. Two
    crops of one such pattern (a brick wall's vertical mortar line from two of its parts) are
    the same picture up to where along the line they were cut, so their match says less than a
    match of two-dimensional pictures (``NearSettings.line_structure``)."""
    out = np.empty(len(images), np.float32)
    for lo in range(0, len(images), block):
        x = images[lo : lo + block]
        g = _blur(_grey(x), FULL_SIGMA * x.shape[1] / 64)
        gy, gx = np.gradient(g, axis=(1, 2))
        jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
        half = (jxx + jyy) / 2
        disc = np.sqrt(np.maximum(half * half - (jxx * jyy - jxy * jxy), 0))
        out[lo : lo + block] = (half - disc) / np.maximum(half + disc, 1e-9)
    return out


def _grey(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x[..., 0] if x.shape[-1] == 1 else x @ GREY


@dataclass
class NearResult:
    a: np.ndarray  # (P,) int64, a < b
    b: np.ndarray
    kind: np.ndarray  # "near" | "mirrored"
    similarity: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def near_copies(
    t: Thumbs,
    labels: np.ndarray,
    s: NearSettings | None = None,
    images: Callable[[np.ndarray], np.ndarray] | None = None,
    rows: np.ndarray | None = None,
) -> NearResult:
    """Pairs of images with different labels that are near copies (module docstring).
    ``images(rows)`` returns the images (len(rows), H, W, C) uint8 of sorted row indices; with
    it, the pairs that match on the thumbnails are also checked at full resolution
    (``full_residual`` at most ``s.max_residual``). ``rows``: search these rows only (sorted;
    e.g. one image per exact group), without copying their thumbnails."""
    s = s or NearSettings()
    labels = np.asarray(labels)
    t0 = time.perf_counter()
    a, b, f, method = candidates(t, labels, s, rows)
    t1 = time.perf_counter()
    per_pass = s.pairs_per_pass()
    passes = [
        both_ways(
            t.grey[a[lo : lo + per_pass]],
            t.grey[b[lo : lo + per_pass]],
            t.colour[a[lo : lo + per_pass]],
            t.colour[b[lo : lo + per_pass]],
            f[lo : lo + per_pass],
            s.block // 4,
            s.threads,
        )
        for lo in range(0, max(1, len(a)), per_pass)
    ]
    sims, par, rev, other, other_sim = (np.concatenate(v) for v in zip(*passes, strict=True))
    sim = sims[:, 0].astype(np.float64)
    t2 = time.perf_counter()
    n_candidates = len(a)
    good = (
        ((sims[:, 0] >= s.similarity) & (sims[:, 1] >= s.detail) & (sims[:, 2] >= s.colour))
        | ((sims[:, 0] >= s.sure_similarity) & (sims[:, 2] >= s.sure_colour))
    ) & consistent(par)
    a, b, f, sim, par, rev = a[good], b[good], f[good], sim[good], par[good], rev[good]
    other, other_sim = other[good], other_sim[good]
    n_thumb = len(a)
    n_line_refused = 0
    if images is not None and len(a):
        matched = np.unique(np.concatenate([a, b]))  # not ``rows``: those are the searched ones
        img = images(matched)
        if len(img) != len(matched):
            raise ValueError(f"images(rows) gave {len(img)} images for {len(matched)} rows")
        ia, ib = np.searchsorted(matched, a), np.searchsorted(matched, b)
        # pairs of full-resolution images gathered at once: two uint8 images and ~8 float32
        # working copies of their grey planes each (full_residual)
        full_pass = s.pairs_per_pass(2 * img[0].nbytes + 2 * 8 * 4 * img[0].shape[0] ** 2)
        line = structure(img)  # a line pair: both images' structure runs one way
        lined = np.maximum(line[ia], line[ib]) < s.line_structure
        # the direction of the fit: the one with the higher similarity, then, for the pairs
        # it does not pass, the other one (two fits of a copy can both be right within noise
        # while only one lines up at full resolution: a combo copy of the real-photo test set
        # came out of the two at block residuals 0.32 and 0.43); a pair passes when either does
        ok = np.zeros(len(a), bool)
        refused = np.zeros(len(a), bool)

        def check(sel: np.ndarray, p_: np.ndarray, r_: np.ndarray) -> None:
            """Pairs ``sel`` with fits p_ (len(sel), 6) in directions r_: the block, local and
            new-structure tests, then the coarse blocks for those that pass, then the line
            pairs' closer limit."""
            ja, jb = img[ia[sel]], img[ib[sel]]
            resid = full_residual(ja, jb, f[sel], p_, r_, threads=s.threads)
            keep = np.flatnonzero(
                (resid[:, 0] <= s.max_residual)
                & (resid[:, 1] <= s.max_local_residual)
                & (resid[:, 2] <= s.max_new_structure)
            )
            coarse = full_residual(
                ja[keep],
                jb[keep],
                f[sel][keep],
                p_[keep],
                r_[keep],
                threads=s.threads,
                sigma=COARSE_SIGMA,
                blur_match=NO_BLUR,
            )[:, 0]
            keep = keep[coarse <= s.max_coarse_residual]
            too_far = lined[sel][keep] & (resid[keep, 1] > s.line_local_residual)
            refused[sel[keep[too_far]]] = True
            ok[sel[keep[~too_far]]] = True

        def check_in_passes(sel: np.ndarray, p_: np.ndarray, r_: np.ndarray) -> None:
            for lo in range(0, len(sel), full_pass):
                check(sel[lo : lo + full_pass], p_[lo : lo + full_pass], r_[lo : lo + full_pass])

        check_in_passes(np.arange(len(a)), par, rev)
        rest = np.flatnonzero(~ok)  # the other direction (similarity fitted it for every match)
        rest = rest[(other_sim[rest] > -1) & consistent(other[rest])]  # a fit a copy can need
        check_in_passes(rest, other[rest], ~rev[rest])
        n_line_refused = int((refused & ~ok).sum())
        a, b, f, sim = a[ok], b[ok], f[ok], sim[ok]
    t3 = time.perf_counter()
    # best orientation per pair; "near" wins when the plain orientation also matches
    order = np.lexsort((-sim, f, b, a))
    a, b, f, sim = a[order], b[order], f[order], sim[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, f, sim = a[first], b[first], f[first], sim[first]
    kind = np.where(f, "mirrored", "near").astype(object)
    stats = {
        "near_index": method,
        "n_candidates": int(n_candidates),
        "n_thumbnail_matches": int(n_thumb),
        "full_resolution_check": images is not None,
        "n_line_pairs_refused": n_line_refused,
        "n_verified_pairs": int(len(a)),
        "n_without_contrast": int(
            (t.contrast[rows if rows is not None else slice(None)] < s.min_contrast).sum()
        ),
        "pairs_per_pass": int(per_pass),
        "verification_passes": len(passes),
        "seconds_candidates": round(t1 - t0, 3),
        "seconds_verify": round(t2 - t1, 3),
        "seconds_full_check": round(t3 - t2, 3),
    }
    return NearResult(a.astype(np.int64), b.astype(np.int64), kind, sim.astype(np.float64), stats)
