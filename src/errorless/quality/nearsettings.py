"""Near copies: the search's settings (``NearSettings``) and the memory a verification pass holds."""

from __future__ import annotations

from dataclasses import dataclass

from errorless.quality.thumbnails import SIDE

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
    max_coarse_residual: float = 0.2  # ... nor, both blurred by COARSE_SIGMA, a block further
    # off than this share of the image's contrast (where a repeating wall's mortar runs).
    # Fitted with the refined full-resolution fit and the border band left out
    # (fullres.EDGE_REACH): 21 of the 3,560 copies of fit seeds 0-5 above it; the brick-wall
    # crops one period apart that pass every other test, 60,000 crops of seed 0: from 0.14 (5
    # below 0.2; the false pairs the search reports there: 9, 10 before)
    max_corner_coarse_residual: float = 0.16  # the same for a pair matched without one corner
    # (an overlay): a copy with an overlay is a copy everywhere else. Fit seeds 0-5: the 295
    # copies that match only so at most 0.15; the brick-wall look-alikes without a corner,
    # 60,000 crops of seed 0: from 0.135 (2 below 0.16)
    line_structure: float = 0.03  # pairs of images whose structure runs one way (a line,
    # stripes: ``structure`` below this) match only closer, block by block ...
    line_local_residual: float = 0.3  # ... than this share of the block's contrast (the line
    # look-alikes of seed 3 in tests/test_duplicates.py: 0.36 with the refined fit)
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
