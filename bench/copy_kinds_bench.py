"""Recall per copy kind on held-out seeds: the generators' kinds and real data sets' others.

Runs ``bench/duplicates_bench.py --kinds all`` (real-photo crops, every kind of
``errorless.data.copies.NEAR_KINDS`` and ``REAL_KINDS`` planted) once per seed, each in a
process of its own, and prints recall per kind and seed, their minimum and mean, and the false
pairs per 10,000 unplanted crops, for the seeds the search's limits were fitted on (0-5,
``--fit-seeds``) and for seeds they never saw (6-17, ``--seeds``), side by side.

    python bench/copy_kinds_bench.py --seeds $(seq 6 17) --fit-seeds 0 1 2 3 4 5 --record
"""

from __future__ import annotations

import argparse

from duplicates_bench import in_process  # bench/duplicates_bench.py (the script's folder)
from record import record, record_argument  # bench/record.py (the script's folder)

from errorless.data.copies import NEAR_KINDS, REAL_KINDS


def run(seed: int, n: int, per_kind: int) -> dict:
    return in_process(
        "--n", str(n), "--per-kind", str(per_kind), "--seed", str(seed), "--kinds", "all"
    )


def summary(title: str, seeds: list[int], runs: dict) -> list[tuple[str, str]]:
    """Figures of one set of seeds: recall per kind (min / mean, per seed), false pairs."""
    figures = []
    for group, kinds in (("generators'", NEAR_KINDS), ("real data sets'", REAL_KINDS)):
        for k in kinds:
            r = [runs[s][f"recall_{k}"] for s in seeds]
            per = " / ".join(f"{x:.2f}" for x in r)
            figures.append(
                (
                    f"{title} seeds: {group} kind {k}: recall min / mean (per seed)",
                    f"{min(r):.2f} / {sum(r) / len(r):.3f} ({per})",
                )
            )
    false = [runs[s]["false_pairs"] for s in seeds]
    n_crops = sum(runs[s]["unplanted_crops"] for s in seeds)
    secs = sum(runs[s]["seconds_search_total"] for s in seeds) / len(seeds)
    return figures + [
        (f"{title} seeds: false pairs (per seed)", " / ".join(map(str, false))),
        (
            f"{title} seeds: false pairs per 10,000 unplanted crops",
            f"{sum(false) * 1e4 / n_crops:.2f}",
        ),
        (f"{title} seeds: search seconds per seed (mean)", f"{secs:.1f}"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(6, 18)))
    p.add_argument("--fit-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--n", type=int, default=2000, help="unplanted crops per seed")
    p.add_argument("--per-kind", type=int, default=50, help="planted copies per kind and seed")
    record_argument(p)
    a = p.parse_args()
    figures = []
    for title, seeds in (("held-out", a.seeds), ("fit", a.fit_seeds)):
        if seeds:
            figures += summary(title, seeds, {s: run(s, a.n, a.per_kind) for s in seeds})
    for k, v in figures:
        print(f"{k:60s} {v}")
    if a.record:
        record(
            "copy_kinds",
            "Near copies: recall per kind on held-out seeds",
            f"errorless.data.photos crops (64x64, photographs only), {a.n:,} per seed plus "
            f"{a.per_kind} planted copies of each kind; held-out seeds "
            f"{', '.join(map(str, a.seeds))}, fit seeds {', '.join(map(str, a.fit_seeds))} "
            "(the seeds the search's limits were fitted on)",
            figures,
            notes="The real data sets' kinds (errorless.data.copies.REAL_KINDS: hue rotation, "
            "saturation, per-channel gain, aspect-ratio stretch, a coloured box in a corner, "
            "three kinds combined) are planted by both generators on request (config/photos.yaml "
            "plants every kind) and accepted by the verification (docs/double-labelling.md).",
        )


if __name__ == "__main__":
    main()
