"""Near copies, step 2: candidate pairs from faiss on 8×8 thumbnail descriptors
(:mod:`errorless.quality.nearcopy` describes the steps)."""

from __future__ import annotations

import numpy as np

from errorless.quality.nearsettings import NearSettings
from errorless.quality.thumbnails import DESC, SIDE, Thumbs, _blur, area_matrix

DESC_BLUR = 1.5  # thumbnail blur before the descriptor: shifts of a few pixels stay inside one cell
CORNER_CELLS = 2  # descriptor cells per side of the corner views' left-out corner (an overlay)
MIRROR_NEIGHBOURS = 1  # neighbours of the mirror image's moved and corner views (0: none).
# Real-photo bench, fit seeds 0-5: triples found 0.950 -> 0.960 (a mirrored copy with an
# overlay or a shift), 8.0 candidates per image instead of 7.7 (2 or 4 neighbours: the same
# recall, 8.4 and 9.0) (docs/double-labelling.md)


def descriptors(
    grey: np.ndarray,
    flip: bool = False,
    zoom: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    blurred: bool = False,
    corner: int = -1,
) -> np.ndarray:
    """(N, 64) float32 unit-norm centred 8×8 area averages of the thumbnails (optionally
    mirrored, of the central 1/zoom part, or of a window shifted by (rows, cols) pixels).
    ``blurred``: the thumbnails are already blurred by DESC_BLUR (one blur for several views).
    ``corner`` 0-3 (top-left, top-right, bottom-left, bottom-right): that corner's
    CORNER_CELLS × CORNER_CELLS cells set to the rest's mean (an overlay there says nothing)."""
    half = SIDE / zoom / 2
    r = area_matrix(SIDE, DESC, SIDE / 2 - half + shift[0], SIDE / 2 + half + shift[0])
    rc = area_matrix(SIDE, DESC, SIDE / 2 - half + shift[1], SIDE / 2 + half + shift[1])
    rc = rc[:, ::-1] if flip else rc
    g = grey if blurred else _blur(grey.astype(np.float32), DESC_BLUR)
    d = r @ g @ rc.T  # (N, 8, 8)
    if corner >= 0:
        rows = slice(0, CORNER_CELLS) if corner < 2 else slice(DESC - CORNER_CELLS, DESC)
        cols = slice(0, CORNER_CELLS) if corner % 2 == 0 else slice(DESC - CORNER_CELLS, DESC)
        keep = np.ones((DESC, DESC), bool)
        keep[rows, cols] = False
        d[:, rows, cols] = d[:, keep].mean(axis=1)[:, None, None]
    d = d.reshape(len(grey), -1)  # (N, 64)
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
    # and the image without each corner (an overlay of the copy's corner would otherwise
    # dominate its descriptor), few neighbours each: asked from the copy's side
    queries += [(False, 1.0, (0.0, 0.0), min(k, 4), c) for c in range(4)]
    # the moved and corner views of the mirror image too, with fewer neighbours still: a
    # mirrored copy can also be shifted or carry an overlay (three kinds in a row)
    if MIRROR_NEIGHBOURS > 0:
        kf = min(k, MIRROR_NEIGHBOURS)
        queries += [(True, 1.0, move, kf) for move in moves]
        queries += [(True, 1.0, (0.0, 0.0), kf, c) for c in range(4)]
    # each pair as one int64 key (lo·n + hi)·2 + flipped over positions in ``active`` (sorted,
    # so the order is that of the rows), made unique block by block: 8 bytes per pair kept
    found = []
    for lo in range(0, n, s.block):
        hi = min(n, lo + s.block)
        g = blurred(np.arange(lo, hi))
        q = np.repeat(np.arange(lo, hi), k).reshape(hi - lo, k)
        block = []
        for flip, zoom, shift, kq, *corner in queries:
            if method != "flat":
                nprobe = s.nprobe if shift == (0.0, 0.0) and not corner else s.shift_nprobe
                index.nprobe = min(nprobe, index.nlist)
            d = descriptors(g, flip, zoom, shift, blurred=True, corner=corner[0] if corner else -1)
            sim, nbr = index.search(unit(d), kq)
            keep = (nbr >= 0) & (nbr != q[:, :kq]) & (sim >= s.prefilter)
            qa, qb = q[:, :kq][keep], nbr[keep].astype(np.int64)
            other = labels[active[qa]] != labels[active[qb]]
            qa, qb = qa[other], qb[other]
            block.append((np.minimum(qa, qb) * n + np.maximum(qa, qb)) * 2 + int(flip))
        found.append(np.unique(np.concatenate(block)))
    return _pairs_of(found, active, n, len(t.contrast)) + (method,)


def _pairs_of(
    found: list[np.ndarray], active: np.ndarray, n: int, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, flipped) rows of the unique pair keys of ``found`` (each block's keys, emptied
    here). Memory: the keys twice (the blocks', then one array sorted in place), then the keys
    and the result, never an int64 temporary of all pairs (27.9 M pairs at 1.28 M natural-like
    images are 223 MB per copy; np.unique would hold four)."""
    key = np.concatenate(found) if found else np.zeros(0, np.int64)
    found.clear()
    key.sort()
    if len(key):
        new = np.empty(len(key), bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        key = key[new]
        del new
    # rows as int32 where they fit: 8 bytes per pair instead of 16
    rows_of = active.astype(np.int32) if n_rows < 2**31 else active
    a = np.empty(len(key), rows_of.dtype)
    b = np.empty(len(key), rows_of.dtype)
    flipped = np.empty(len(key), bool)
    step = 1 << 20
    for lo in range(0, len(key), step):  # in chunks: no int64 temporary of every pair
        k = key[lo : lo + step]
        flipped[lo : lo + step] = (k & 1).astype(bool)
        pos = k >> 1
        a[lo : lo + step] = rows_of[pos // n]
        b[lo : lo + step] = rows_of[pos % n]
    return a, b, flipped


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
