"""Double labelling: the check against the planted truth of a generated data set (precision and
recall per planted kind, ``double_labeling_check.csv``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from errorless.names import split_ids
from errorless.quality.evidence import TrainingEvidence
from errorless.quality.planted import rate

EXACT_PLANTS = ("same_shard", "cross_module")
CHECK_COLUMNS = [
    "kind",
    "planted",
    "found",
    "reported",
    "correct",
    "precision",
    "recall",
    "flagged_by_training",
    "note",
]
DETAIL_COLUMNS = [
    "kind",
    "id_a",
    "id_b",
    "found",
    "rank",
    "evidence",
    "match",
    "similarity",
    "flagged_by_training",
]


def _is_match(evidence: str) -> bool:
    return "exact_duplicate" in evidence or "near_duplicate" in evidence


def planted_check(
    report: pd.DataFrame, planted: pd.DataFrame, ev: TrainingEvidence
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per kind + overall, one line per plant). See the module docstring."""
    planted = planted[
        planted["kind"] != "label_flip"
    ]  # single-image label flips: errorless.quality.labelissues checks them
    plants = [
        (str(k), frozenset((str(a), str(b))))
        for k, a, b in zip(planted["kind"], planted["id_a"], planted["id_b"], strict=True)
    ]
    rows = [(split_ids(r["ids"]), r) for r in report.to_dict("records")]
    pair_rows = [(set(ids), r) for ids, r in rows if len(ids) >= 2 and _is_match(r["evidence"])]
    detail = []
    for (kind, ids), (_, pl) in zip(plants, planted.iterrows(), strict=True):
        hit = next((r for s, r in pair_rows if ids <= s), None)
        flagged = (
            any(ids <= set(c) for c in ev.conflicts)
            or bool(ids & ev.residual_ids)
            or bool(ids & set(ev.failed))
        )
        detail.append(
            {
                "kind": kind,
                "id_a": pl["id_a"],
                "id_b": pl["id_b"],
                "found": hit is not None,
                "rank": None if hit is None else int(hit["rank"]),
                "evidence": None if hit is None else hit["evidence"],
                "match": None if hit is None else hit["kind"],
                "similarity": np.nan if hit is None else hit["similarity"],
                "flagged_by_training": flagged,
            }
        )
    detail_df = pd.DataFrame(detail, columns=DETAIL_COLUMNS)
    detail_df["rank"] = detail_df["rank"].astype("Int64")
    judged = []  # (plant kinds inside the row, correct)
    for s, _ in pair_rows:
        inside = [(k, p) for k, p in plants if p <= s]
        correct = bool(inside) and set().union(*(p for _, p in inside)) == s
        judged.append(({k for k, _ in inside}, correct))
    kinds = list(dict.fromkeys([*EXACT_PLANTS, *(k for k, _ in plants)]))
    out = []
    for kind in (*kinds, "overall"):
        sel = detail_df if kind == "overall" else detail_df[detail_df["kind"] == kind]
        rep = [c for k, c in judged if kind == "overall" or kind in k]
        planted_n, found_n, reported, correct = (
            len(sel),
            int(sel["found"].sum()),
            len(rep),
            int(sum(rep)),
        )
        note = ""
        if kind not in (*EXACT_PLANTS, "overall") and len(sel):
            matches = sel["match"].dropna().value_counts().to_dict()
            note = (
                "matched as " + ", ".join(f"{m} {n}" for m, n in matches.items()) if matches else ""
            )
        flagged = int(sel["flagged_by_training"].sum())
        out.append(check_row(kind, note, (planted_n, found_n, reported, correct), flagged))
    unplanted = sum(1 for k, _ in judged if not k)
    out[-1]["note"] = (
        f"precision counts every reported pair; {unplanted} reported row(s) hold no plant"
    )
    out.append(
        count_row(
            "not_planted",
            unplanted,
            "image matches that are not planted (false pairs, or copies in the data themselves)",
        )
    )
    n_indist = sum(1 for ids, r in rows if "indistinguishable" in r["evidence"])
    out.append(
        count_row(
            "indistinguishable",
            n_indist,
            "different images with identical inputs in one feature; not double labels, in no precision",
        )
    )
    n_budget = sum(1 for ids, r in rows if len(ids) < 2 and r["evidence"] == "gdt_budget")
    n_single = sum(1 for ids, _ in rows if len(ids) < 2) - n_budget
    out.append(
        count_row(
            "budget_only",
            n_budget,
            "single images left by a GDT that stopped on its budget; weak evidence, in no precision",
        )
    )
    out.append(
        count_row(
            "residual_only",
            n_single,
            "single images a T-FNN could not fit; not pairs, in no precision",
        )
    )
    return pd.DataFrame(out, columns=CHECK_COLUMNS), detail_df


def check_row(
    kind: str,
    note: str,
    counts: tuple[int, int, int, int] = (0, 0, 0, 0),
    flagged: int = 0,
) -> dict[str, Any]:
    """One row of the planted check (CHECK_COLUMNS) from ``counts`` = (planted, found,
    reported, correct): precision = correct / reported, recall = found / planted (NaN when
    undefined)."""
    planted, found, reported, correct = counts
    values = (
        kind,
        planted,
        found,
        reported,
        correct,
        rate(correct, reported),
        rate(found, planted),
    )
    values = (*values, flagged, note)
    return dict(zip(CHECK_COLUMNS, values, strict=True))


def count_row(kind: str, reported: int, note: str) -> dict[str, Any]:
    """A row of the planted check that only counts reported rows (no precision or recall)."""
    return {**check_row(kind, note), "reported": reported}


def no_ground_truth(reason: str) -> pd.DataFrame:
    return pd.DataFrame([check_row("overall", f"no ground truth: {reason}")], columns=CHECK_COLUMNS)
