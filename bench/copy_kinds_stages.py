"""Where the near-copy search loses each copy kind: candidate stage or thumbnail verification.

Plants ``--per-kind`` copies of each kind into ``--n`` photo crops (seed ``--seed``; the
default 6 is a held-out seed), then prints per kind the share of planted pairs that are
candidates, and of those the share passing each thumbnail check (similarity, detail, colour,
consistent fit) and the thumbnail stage as a whole, on the first fit only: the search's second
fit (``nearcopy.near_copies``, the other orientation) recovers some of these, so the thumbnail
figures are lower bounds. A kind whose end-to-end recall (``bench/copy_kinds_bench.py``) is well
below its thumbnail figure is lost at the full-resolution residual checks.

    python bench/copy_kinds_stages.py --n 1000 --per-kind 30
"""

from __future__ import annotations

import argparse

import numpy as np

from errorless.data import photos
from errorless.data.copies import REAL_KINDS, plant
from errorless.quality.alignment import both_ways, consistent
from errorless.quality.candidates import candidates
from errorless.quality.duplicates import describe
from errorless.quality.nearsettings import NearSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--per-kind", type=int, default=30)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--kinds", nargs="+", default=list(REAL_KINDS))
    a = p.parse_args()
    chosen = photos.photograph_labels()
    y = np.repeat(np.asarray(chosen, dtype=np.int64), -(-a.n // len(chosen)))
    images, _ = photos.crops(np.random.default_rng(a.seed), y, size=64)
    rng = np.random.default_rng(a.seed + 1)
    images, y, truth = plant(images, y, a.per_kind, rng, kinds=a.kinds)
    _, t = describe(images)
    s = NearSettings()
    ca, cb, f, _ = candidates(t, y, s)
    idx = {pair: i for i, pair in enumerate(zip(ca.tolist(), cb.tolist(), strict=True))}
    for kind in a.kinds:
        planted = [(min(u, v), max(u, v)) for u, v, k in truth if k == kind]
        m = np.array([idx[q] for q in planted if q in idx], dtype=np.int64)
        line = f"{kind}: candidates {len(m) / max(1, len(planted)):.2f}"
        if len(m):
            sims, par, *_ = both_ways(
                t.grey[ca[m]],
                t.grey[cb[m]],
                t.colour[ca[m]],
                t.colour[cb[m]],
                f[m],
                s.block // 4,
                1,
            )
            fs, fd, fc = sims[:, 0] >= s.similarity, sims[:, 1] >= s.detail, sims[:, 2] >= s.colour
            sure = (sims[:, 0] >= s.sure_similarity) & (sims[:, 2] >= s.sure_colour)
            cons = consistent(par)
            good = ((fs & fd & fc) | sure) & cons
            line += (
                f"; of those: similarity {fs.mean():.2f}, detail {fd.mean():.2f}, colour "
                f"{fc.mean():.2f}, consistent {cons.mean():.2f}, thumbnail stage {good.mean():.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
