"""Label issues: the check against the planted flips of a generated data set (precision and
recall per flag rule and for the top-k ranking)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from errorless.quality.flags import FLAGS, flag_rule
from errorless.quality.planted import copy_ids, flip_ids, rate

CHECK_COLUMNS = [
    "evidence",
    "used",
    "planted",
    "flagged",
    "correct",
    "precision",
    "recall",
    "flagged_copies",
    "note",
]


# ---------------------------------------------------------------- planted check


def score_flags(flagged_ids: set[str], ranked_ids: list[str], flips: set[str]) -> dict[str, float]:
    """Precision / recall of a flagged set and of the top-k ranked (k = number of flips)."""
    k = len(flips)
    top = set(ranked_ids[:k])
    hit = len(flagged_ids & flips)
    return {
        "flagged": len(flagged_ids),
        "correct": hit,
        "precision": rate(hit, len(flagged_ids)),
        "recall": rate(hit, k),
        "topk_correct": len(top & flips),
        "topk_precision": rate(len(top & flips), k),
    }


def planted_check(issues: pd.DataFrame, planted: pd.DataFrame, flag: str) -> pd.DataFrame:
    """Per flag rule and for the top-k ranking: precision and recall against the planted flips."""
    flips, copies = flip_ids(planted), copy_ids(planted)
    out = []
    for rule in FLAGS:
        sel = set(
            issues.loc[
                flag_rule(
                    issues["cleanlab_issue"].to_numpy(), issues["vote_against"].to_numpy(), rule
                ),
                "image_id",
            ]
        )
        note = (
            "flagged images that carry a planted copy are not flips: they count against precision"
        )
        out.append(check_row(rule, rule == flag, flips, sel, copies, note))
    for kind, column, note in (
        ("train_vote", "train_vote_wrong", "the training-set vote of label_issues.proto is wrong"),
        ("pred_probs", "user_issue", "cleanlab on the user's label_issues.pred_probs"),
    ):
        if kind == "pred_probs" and issues["user_quality"].isna().all():
            continue
        sel = set(issues.loc[issues[column].astype(bool), "image_id"])
        out.append(check_row(kind, False, flips, sel, copies, note))
    ranked = issues.sort_values(["label_quality", "image_id"], kind="stable")["image_id"].tolist()
    top = set(ranked[: len(flips)])
    k = len(flips)
    note = "ranking by cleanlab's label quality alone"
    out.append(check_row(f"top_k (k = {k}, lowest label quality)", False, flips, top, copies, note))
    return pd.DataFrame(out, columns=CHECK_COLUMNS)


def check_row(
    evidence: str, used: bool, flips: set[str], flagged: set[str], copies: set[str], note: str
) -> dict[str, Any]:
    """One row of the label-issue check (CHECK_COLUMNS): precision = correct / flagged,
    recall = correct / planted flips (NaN when undefined)."""
    s = score_flags(flagged, [], flips)
    values = (evidence, used, len(flips), s["flagged"], s["correct"], s["precision"], s["recall"])
    return dict(zip(CHECK_COLUMNS, (*values, len(flagged & copies), note), strict=True))


def no_check(reason: str) -> pd.DataFrame:
    return pd.DataFrame(
        [check_row("none", False, set(), set(), set(), reason)], columns=CHECK_COLUMNS
    )
