"""Near copies of images (docs/method.md#double-labelling-evidence): find pairs of images that are
the same picture after JPEG re-encoding, rescaling, small crops and shifts, mirroring,
brightness/contrast and colour changes, an aspect-ratio change or an overlay in one corner.

Four steps, all vectorised over whole arrays (no Python loop per image or per pair):

1. **Thumbnails** (``Thumbs``): each image becomes a 32×32 grey thumbnail (area-averaged, BW
   weights), its mean colour and its grey contrast. Computed in chunks, so 1.28 M images
   need 1.3 GB, never the 15 GB of the images themselves.
2. **Candidates** (faiss): an 8×8 descriptor of the thumbnail, centred and scaled to unit
   norm (inner product = Pearson correlation: blind to brightness and contrast, blurred enough
   for JPEG, rescaling and few-pixel shifts). The index holds one descriptor per image; every
   image asks for its ``neighbours`` nearest with views of itself: as it is, its mirror image,
   both zoomed in by ``zoom`` (a crop of the query is close to the zoomed query), and windows
   moved by 4 px (at 64 px; fewer neighbours), and without each corner (an overlay; fewer
   neighbours); the mirror image's moved and corner views too (``MIRROR_NEIGHBOURS``, one
   each: a mirrored copy that is also shifted or carries an overlay). Exact inner product
   search up to
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
   ``consistent`` with a crop, an aspect-ratio change or no change of scale (no axis zooms out
   from the image that covers more to the other). Every pair is also measured, and where
   promising fitted again, without the corner where the thumbnails differ most (``align``
   ``corners``): an overlay. A fit stops early where it cannot end as a copy's
   (``alignment.REFINE_SLACK`` after the coarsest level, ``FINE_KEEP`` after the middle one):
   most candidates of natural images are two pictures that share a layout. A pair matches (as the whole picture or without that corner) when the similarity reaches ``similarity``, the
   aligned band-pass details reach ``detail`` and the aligned colour thumbnails (both blurred
   by COLOUR_SIGMA) reach ``colour`` — or the similarity alone
   reaches ``sure_similarity`` with colours at ``sure_colour`` (JPEG at quality 30 blurs the
   details away); **mirrored** when it only matches through the mirror image. Images with
   almost no grey contrast (std below ``min_contrast``, e.g. a black or a constant-colour
   crop) have no shape to compare and take part only in the exact search.
4. **Full resolution** (when the caller can give the images back, ``near_copies(images=)``):
   the thumbnail matches are compared once more on the images, aligned by the thumbnail fit
   in both directions (a pair passes when either does), refined by Gauss-Newton on the images
   themselves and without the mapped image's blurred border band (``fullres.REFINE_STEPS``,
   ``EDGE_REACH``), block by block (``full_residual``):
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
   (where the mortar runs; ``max_corner_coarse_residual`` for a pair matched without a corner,
   whose corner is left out here too). Grey is the luma, and the channels' mean for pairs the
   luma does not pass (kept by a hue or saturation change). Pairs where either image's
   structure runs one way (``structure`` below ``line_structure``: a single mortar line,
   stripes) match only closer (``line_local_residual``) and with a fit stretched by at most
   LINE_ANISOTROPY: two crops of one line are alike wherever along it they were cut and
   however far along it stretched. What still pairs on that bench: 2 pairs of brick-wall lines
   in 30,000 crops (seed 0), 11 pairs of different pictures in 60,000, and, with the drawings, crops of the logo's
   mirror-symmetric green rim from two of its quarters (mostly the same pixels within a few
   grey levels; docs/double-labelling.md "Limits, measured").

The verification runs in blocks of pairs on ``NearSettings.threads`` threads (``in_blocks``),
in passes of at most ``NearSettings.verify_mb`` MB (``pairs_per_pass``): the candidate pairs'
thumbnails are gathered one pass at a time, so memory is bounded by the thumbnails and one
pass, not by the number of candidates (natural images have many more than random ones).
With a ``checkpoint`` folder the candidates and every finished pass are kept on disk, so a
search stopped part way (a Slurm time limit) goes on from its last finished pass.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errorless.io import arrays_digest, write_npz, write_text
from errorless.quality.alignment import both_ways, consistent
from errorless.quality.candidates import candidates
from errorless.quality.fullres import COARSE_SIGMA, NO_BLUR, full_residual, intensity, structure
from errorless.quality.nearsettings import NearSettings
from errorless.quality.thumbnails import Thumbs

log = logging.getLogger(__name__)

# A line pair (either image's structure runs one way: ``structure`` below ``line_structure``)
# says nothing about the scale along its line, so its fit may not stretch one axis more than
# this (|log(sx/sy)|; the general limit alignment.MAX_ANISOTROPY admits an aspect change).
LINE_ANISOTROPY = 0.2


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
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    checkpoint: str | Path | None = None,
) -> NearResult:
    """Pairs of images with different labels that are near copies (module docstring).
    ``images(rows)`` returns the images (len(rows), H, W, C) uint8 of sorted row indices; with
    it, the pairs that match on the thumbnails are also checked at full resolution
    (``full_residual`` at most ``s.max_residual``). ``rows``: search these rows only (sorted;
    e.g. one image per exact group), without copying their thumbnails. ``pairs``: (a, b,
    flipped) candidate pairs to verify instead of the candidate stage's (a sample of them, to
    time the verification; bench/duplicates_bench.py ``--verify-sample``). ``checkpoint``: a
    folder where the candidates and each finished verification pass are kept (``Checkpoint``),
    so that a search stopped part way (a Slurm time limit) goes on where it stopped."""
    s = s or NearSettings()
    labels = np.asarray(labels)
    t0 = time.perf_counter()
    ck = None
    if checkpoint is not None:
        ck = Checkpoint(checkpoint, search_fingerprint(t, labels, s, rows, pairs))
    saved = ck.load("candidates") if ck else None
    if saved is not None:
        a, b, f, method = saved["a"], saved["b"], saved["f"], str(saved["method"])
        log.info("%d candidate pairs from the checkpoint %s", len(a), ck.folder)
    else:
        a, b, f, method = candidates(t, labels, s, rows) if pairs is None else (*pairs, "given")
        if ck:
            ck.save("candidates", a=a, b=b, f=f, method=np.array(method))
    t1 = time.perf_counter()
    per_pass = s.pairs_per_pass()
    n_candidates = len(a)
    log.info(
        "%d candidate pairs (%s) in %.1f s; verifying in passes of %d",
        n_candidates,
        method,
        t1 - t0,
        per_pass,
    )

    def matches(v: np.ndarray, p_: np.ndarray) -> np.ndarray:
        return (
            ((v[:, 0] >= s.similarity) & (v[:, 1] >= s.detail) & (v[:, 2] >= s.colour))
            | ((v[:, 0] >= s.sure_similarity) & (v[:, 2] >= s.sure_colour))
        ) & consistent(p_)

    def verify(lo: int) -> tuple[np.ndarray, ...]:
        """One pass: the thumbnail verification of candidates lo..lo+per_pass; only the
        matches are kept (a pair matches as the whole picture, or without the one corner an
        overlay covers), so what the passes leave grows with the matches, not the candidates."""
        part = slice(lo, lo + per_pass)
        out = both_ways(
            t.grey[a[part]],
            t.grey[b[part]],
            t.colour[a[part]],
            t.colour[b[part]],
            f[part],
            s.block // 4,
            s.threads,
        )
        sims, par_, rev_, other_, other_sim_, csims, cpar_, crev_, corner_ = out
        whole_, cornered_ = matches(sims, par_), matches(csims, cpar_) & (corner_ >= 0)
        good = np.flatnonzero(whole_ | cornered_)
        sim_ = np.where(whole_, sims[:, 0], csims[:, 0]).astype(np.float64)
        kept = (sim_, par_, rev_, other_, other_sim_, cpar_, crev_, corner_, whole_, cornered_)
        return (good + lo, *(v[good] for v in kept))

    def verified(lo: int) -> tuple[np.ndarray, ...]:
        """Pass ``lo``: from the checkpoint when it holds it, else verified (and kept there)."""
        name = f"pass-{lo:012d}"
        kept = ck.load(name) if ck else None
        if kept is not None:
            return tuple(kept[f"v{i}"] for i in range(len(kept)))
        out = verify(lo)
        if ck:
            ck.save(name, **{f"v{i}": v for i, v in enumerate(out)})
        done = min(len(a), lo + per_pass)
        spent = time.perf_counter() - t1
        log.info(
            "verified %d of %d candidate pairs (%.0f%%), %d matches so far, %.0f s",
            done,
            len(a),
            100 * done / max(1, len(a)),
            len(out[0]) + sum(len(p[0]) for p in passes),
            spent,
        )
        return out

    passes: list[tuple[np.ndarray, ...]] = []
    for lo in range(0, max(1, len(a)), per_pass):
        passes.append(verified(lo))
    good, sim, par, rev, other, other_sim, cpar, crev, corner, whole, cornered = (
        np.concatenate(v) for v in zip(*passes, strict=True)
    )
    t2 = time.perf_counter()
    a, b, f = a[good], b[good], f[good]
    n_thumb = len(a)
    n_by_corner = 0
    n_line_refused = 0
    if images is not None and len(a):
        one = images(np.asarray(a[:1]))
        if len(one) != 1:
            raise ValueError(f"images(rows) gave {len(one)} images for 1 row")
        # pairs of full-resolution images gathered at once: two uint8 images and ~8 float32
        # working copies of their grey planes each (full_residual)
        full_pass = s.pairs_per_pass(2 * one[0].nbytes + 2 * 8 * 4 * one.shape[1] ** 2)
        # the images themselves are fetched for a span of pairs at a time, at most verify_mb
        # of them: many pairs can match on the thumbnails (the natural-like stand-in at
        # 1.28 M images: 3.5 % of its 27.9 M candidates), far more images than memory holds
        span = max(full_pass, s.pairs_per_pass(2 * one[0].nbytes))
        del one
        # the direction of the fit: the one with the higher similarity, then, for the pairs
        # it does not pass, the other one (two fits of a copy can both be right within noise
        # while only one lines up at full resolution: a combo copy of the real-photo test set
        # came out of the two at block residuals 0.32 and 0.43); a pair passes when either does
        ok = np.zeros(len(a), bool)
        refused = np.zeros(len(a), bool)

        def full_check(lo: int, hi: int) -> int:
            """The full-resolution tests of pairs lo..hi, with their images fetched at once;
            the number of pairs that passed without a corner."""
            matched = np.unique(np.concatenate([a[lo:hi], b[lo:hi]]))  # not ``rows``
            img = images(matched)
            if len(img) != len(matched):
                raise ValueError(f"images(rows) gave {len(img)} images for {len(matched)} rows")
            ia, ib = np.searchsorted(matched, a[lo:hi]), np.searchsorted(matched, b[lo:hi])
            line = structure(img)  # a line pair: either image's structure runs one way
            lined = np.minimum(line[ia], line[ib]) < s.line_structure

            def check(
                sel: np.ndarray, p_: np.ndarray, r_: np.ndarray, c_: np.ndarray | None = None
            ) -> None:
                """Pairs ``sel`` with fits p_ (len(sel), 6) in directions r_ (without corners
                c_): the block, local and new-structure tests, then the coarse blocks for those
                that pass, then the line pairs' closer limits."""
                ja, jb = img[ia[sel - lo]], img[ib[sel - lo]]

                def residuals(rows: np.ndarray, **how) -> np.ndarray:
                    """full_residual of pairs ``rows`` of ``sel`` on the luma, and on the
                    channels' mean for those the luma does not pass (``both_greys``)."""
                    c = None if c_ is None else c_[rows]
                    args = (ja[rows], jb[rows], f[sel][rows], p_[rows], r_[rows])

                    def run(pick: np.ndarray | slice, limits=None, **more) -> np.ndarray:
                        return full_residual(
                            *(v[pick] for v in args),
                            threads=s.threads,
                            corner=None if c is None else c[pick],
                            limits=limits,
                            **how,
                            **more,
                        )

                    # the coarse blocks have one column: no window test to leave out
                    limit = (
                        None
                        if how.get("only_global")
                        else np.array([s.max_residual, s.max_local_residual])
                    )
                    return both_greys(run, len(rows), passes, limit)

                def passes(r: np.ndarray) -> np.ndarray:
                    if r.shape[1] == 1:  # the coarse blocks
                        limit = (
                            s.max_coarse_residual if c_ is None else s.max_corner_coarse_residual
                        )
                        return r[:, 0] <= limit
                    return (
                        (r[:, 0] <= s.max_residual)
                        & (r[:, 1] <= s.max_local_residual)
                        & (r[:, 2] <= s.max_new_structure)
                    )

                resid = residuals(np.arange(len(sel)))
                keep = np.flatnonzero(passes(resid))
                coarse = residuals(keep, sigma=COARSE_SIGMA, blur_match=NO_BLUR, only_global=True)
                keep = keep[passes(coarse)]
                stretch = np.abs(np.log(p_[keep, 0] / p_[keep, 2]))
                too_far = lined[sel[keep] - lo] & (
                    (resid[keep, 1] > s.line_local_residual) | (stretch > LINE_ANISOTROPY)
                )
                refused[sel[keep[too_far]]] = True
                ok[sel[keep[~too_far]]] = True

            def check_in_passes(
                sel: np.ndarray, p_: np.ndarray, r_: np.ndarray, c_: np.ndarray | None = None
            ) -> None:
                for k in range(0, len(sel), full_pass):
                    part = slice(k, k + full_pass)
                    check(sel[part], p_[part], r_[part], None if c_ is None else c_[part])

            plain = lo + np.flatnonzero(whole[lo:hi])
            check_in_passes(plain, par[plain], rev[plain])
            rest = plain[~ok[plain]]  # the other direction (similarity fitted it for every match)
            rest = rest[(other_sim[rest] > -1) & consistent(other[rest])]  # a fit a copy can need
            check_in_passes(rest, other[rest], ~rev[rest])
            # then without the corner an overlay covers, for the pairs the whole picture did
            # not pass and whose images both have two-dimensional structure outside that
            # corner: a flat sky or a single wall line matches any other without one
            rest = lo + np.flatnonzero(cornered[lo:hi] & ~ok[lo:hi])
            dst = np.where(crev[rest], ia[rest - lo], ib[rest - lo])
            src = np.where(crev[rest], ib[rest - lo], ia[rest - lo])
            # (the source image's corner: the same, or its mirror image's for a mirrored pair)
            rest = rest[
                np.minimum(
                    structure(img[dst], corner=corner[rest]),
                    structure(img[src], corner=np.where(f[rest], corner[rest] ^ 1, corner[rest])),
                )
                >= s.line_structure
            ]
            check_in_passes(rest, cpar[rest], crev[rest], corner[rest])
            return int(ok[rest].sum())

        for lo in range(0, len(a), span):
            n_by_corner += full_check(lo, min(len(a), lo + span))
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
        "n_matched_without_a_corner": n_by_corner,
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


class Checkpoint:
    """A near-copy search's work on disk (``near_copies(checkpoint=)``): the candidate pairs and
    each finished verification pass, one ``.npz`` each, written atomically. The folder belongs
    to one search: ``fingerprint.txt`` holds the fingerprint of its inputs, settings and code
    (``search_fingerprint``); a folder with another one is emptied first, so a changed data set
    or setting never reuses old work. The caller removes the folder once the result is
    written."""

    def __init__(self, folder: str | Path, fingerprint: str):
        self.folder = Path(folder)
        stamp = self.folder / "fingerprint.txt"
        if not stamp.exists() or stamp.read_text().strip() != fingerprint:
            old = sorted(self.folder.glob("*.npz"))
            if old:
                log.info("checkpoint %s is of another search: %d file(s) removed", folder, len(old))
            for p in old:
                p.unlink()
            write_text(stamp, fingerprint + "\n")
        n = len(list(self.folder.glob("pass-*.npz")))
        if n:
            log.info("checkpoint %s: %d verification pass(es) done before", folder, n)

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``name`` (None when not saved yet, or unreadable: a killed write)."""
        path = self.folder / f"{name}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:  # unreadable: done again
            log.warning("checkpoint file %s unreadable (%s): computed again", path, e)
            return None

    def save(self, name: str, **arrays: np.ndarray) -> None:
        write_npz(self.folder / f"{name}.npz", **arrays)


def both_greys(
    run: Callable[..., np.ndarray],
    n: int,
    passes: Callable[[np.ndarray], np.ndarray],
    limit: np.ndarray | None = None,
) -> np.ndarray:
    """The full-resolution residuals (``full_residual``'s columns) of n pairs on the luma, and
    on the channels' mean (``intensity``: kept by a hue or saturation change) for the pairs
    the luma does not pass (``passes``: which rows of scores pass); the smaller of both,
    criterion by criterion. ``run(rows, limits, grey=...)`` gives full_residual of pairs
    ``rows`` (an index or a slice) with those ``limits`` (None: all), on the luma unless
    ``grey`` is given.

    ``limit`` (2,): the two block-residual limits, given to leave the new-structure score, the
    costliest test, out where it cannot decide: most pairs that the thumbnails match and the
    full resolution refuses fail a block residual already (the natural-like stand-in: 95 %).
    It is then computed for the luma where both its block residuals pass; for the channels'
    mean where both pass in the smaller of the two greys; and for the luma once more for the
    pairs that the channels' mean made pass them (a hue or saturation copy). A pair passes
    exactly when it would with every score computed, with the same three numbers; a refused
    pair may get inf for its score. None (the coarse blocks' one column): every score."""
    out = run(slice(None), None if limit is None else np.broadcast_to(limit, (n, 2)))
    again = np.flatnonzero(~passes(out))
    if not len(again):
        return out
    if limit is None:
        out[again] = np.minimum(out[again], run(again, grey=intensity))
        return out
    luma_within = out[again, :2] <= limit  # no limit for a residual the luma passes already
    out[again] = np.minimum(
        out[again], run(again, np.where(luma_within, np.inf, limit), grey=intensity)
    )
    late = again[~luma_within.all(1) & (out[again, :2] <= limit).all(1)]  # luma score skipped
    if len(late):
        out[late, 2] = np.minimum(out[late, 2], run(late)[:, 2])
    return out


def search_fingerprint(
    t: Thumbs,
    labels: np.ndarray,
    s: NearSettings,
    rows: np.ndarray | None,
    pairs: tuple[np.ndarray, ...] | None,
) -> str:
    """SHA-256 of what a near-copy search's result depends on: thumbnails, labels, searched
    rows, given pairs, settings (not ``threads``: any number gives the same pairs) and the
    source of the modules that compute it."""
    import hashlib

    from errorless.quality import alignment, candidates, fullres, nearsettings

    h = hashlib.sha256()
    for source in (alignment, candidates, fullres, nearsettings):
        h.update(Path(source.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(repr(sorted((k, v) for k, v in vars(s).items() if k != "threads")).encode())
    arrays = {"grey": t.grey, "colour": t.colour, "contrast": t.contrast, "labels": labels}
    if rows is not None:
        arrays["rows"] = rows
    if pairs is not None:
        arrays.update(zip(("a", "b", "flipped"), pairs, strict=True))
    h.update(arrays_digest({k: np.asarray(v) for k, v in arrays.items()}).encode())
    return h.hexdigest()
