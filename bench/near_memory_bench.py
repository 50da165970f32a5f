"""Peak memory of the near-copy search against the number of images and of candidate pairs,
with the verification in passes of ``double_labeling.verify_mb`` and in one pass.

Each setting runs ``bench/duplicates_bench.py`` (real-photo crops, 64×64, planted copies of
every kind) in a process of its own, so each peak RSS is that setting's alone. The peak
includes the bench's own images (N × 12 KB) and thumbnails; what the passes bound is the part
that grows with the candidates (two thumbnails per candidate pair gathered at once).

    python bench/near_memory_bench.py --n 20000 40000 --verify-mb 256 1000000 --record
"""

from __future__ import annotations

import argparse

from duplicates_bench import in_process  # bench/duplicates_bench.py (the script's folder)
from record import record, record_argument  # bench/record.py (the script's folder)


def run(n: int, verify_mb: float, per_kind: int, seed: int) -> dict:
    return in_process(
        "--n",
        str(n),
        "--per-kind",
        str(per_kind),
        "--seed",
        str(seed),
        "--verify-mb",
        str(verify_mb),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[20_000, 40_000], help="unplanted crops")
    p.add_argument("--verify-mb", type=float, nargs="+", default=[256, 1_000_000])
    p.add_argument("--per-kind", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    record_argument(p)
    a = p.parse_args()
    rows = []
    for n in a.n:
        for v in a.verify_mb:
            r = run(n, v, a.per_kind, a.seed)
            row = {
                "images": r["unplanted_crops"] + r["planted_copies"],
                "verify_mb": v,
                "candidates": r["n_candidates"],
                "candidates_per_image": r["candidates_per_image"],
                "passes": r["verification_passes"],
                "peak_rss_mb": r["peak_rss_mb"],
                "search_s": r["seconds_search_total"],
                "verified_pairs": r["n_verified_pairs"],
                "false_pairs": r["false_pairs"],
            }
            rows.append(row)
            print("  ".join(f"{k} {v_}" for k, v_ in row.items()), flush=True)
    if a.record:
        figures = [
            (
                f"{r['images']:,} images, verify_mb {r['verify_mb']:g}",
                f"peak {r['peak_rss_mb']:,} MB; {r['candidates']:,} candidates "
                f"({r['candidates_per_image']} per image) in {r['passes']} passes; "
                f"{r['verified_pairs']} pairs, {r['false_pairs']} false; search {r['search_s']} s",
            )
            for r in rows
        ]
        record(
            "near_memory",
            "Near-copy search: peak memory against images and candidates",
            f"errorless.data.photos crops, 64x64, photographs only, seed {a.seed}, "
            f"{a.per_kind} planted copies of each kind",
            figures,
            notes="Same pairs in every row of one size (the passes change the memory, not the "
            "result); the peak includes the bench's own images and thumbnails.",
        )


if __name__ == "__main__":
    main()
