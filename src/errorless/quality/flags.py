"""Label issues: cleanlab on the out-of-sample probabilities, the vote against the given label,
the user's ``pred_probs``, and the flag rule (``ISSUE_COLUMNS``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from errorless.errors import ConfigError, DataError
from errorless.quality.out_of_sample import IMAGE_COLUMNS

log = logging.getLogger(__name__)


ISSUE_COLUMNS = [
    "rank",
    *IMAGE_COLUMNS,
    "predicted",
    "votes",
    "p",
    "super_majority",
    "agreement",
    "prob_given",
    "label_quality",
    "cleanlab_issue",
    "vote_against",
    "train_vote",
    "train_vote_wrong",
    "user_quality",
    "user_issue",
    "flagged",
    "evidence",
    "source",
]
FLAGS = ("either", "cleanlab", "vote", "both")
SOURCES = ("crossfit", "submodules")


def load_pred_probs(
    path: str | Path, oos: pd.DataFrame, batches: Sequence[str], num_labels: int
) -> pd.DataFrame:
    """A user's out-of-sample probabilities (cleanlab's ``pred_probs``): a .npy (N, L), one row
    per training image in the data set's order (``batches`` in order, each by row). Returns
    image_id, user_probs (L,) for the images of ``oos``; any mismatch is a one-line error."""
    key = f"config key label_issues.pred_probs: {path}"
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key} does not exist")
    try:
        P = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as e:  # noqa: BLE001 - not a .npy file, truncated, pickled objects, ...
        raise DataError(f"{key}: not a readable .npy array ({type(e).__name__}: {e})") from None
    n = len(oos)
    if P.ndim != 2 or P.shape != (n, num_labels) or P.dtype.kind not in "fiu":
        raise DataError(
            f"{key}: expected numbers of shape ({n}, {num_labels}) (training images x labels, "
            f"in the data set's order), got {P.dtype} {P.shape}"
        )
    P = np.asarray(P, dtype=np.float64)
    if not np.isfinite(P).all() or (P < 0).any():
        raise DataError(f"{key}: probabilities must be finite and non-negative")
    sums = P.sum(axis=1)
    if (np.abs(sums - 1) > 1e-3).any():
        i = int(np.argmax(np.abs(sums - 1)))
        raise DataError(f"{key}: row {i} sums to {sums[i]:.4f}, not 1 (softmax outputs expected)")
    order = {b: i for i, b in enumerate(batches)}
    unknown = set(oos["batch"]) - set(order)
    if unknown:
        raise DataError(f"{key}: images of batch {sorted(unknown)[0]!r}, not a training batch")
    sizes = oos.groupby("batch")["row"].agg(["count", "max"])
    if (sizes["max"] + 1 != sizes["count"]).any():
        raise DataError(f"{key}: the training images' rows are not 0..n-1 per batch")
    offset = np.cumsum([0] + [int(sizes["count"].get(b, 0)) for b in batches])
    index = offset[oos["batch"].map(order).to_numpy()] + oos["row"].to_numpy(np.int64)
    return pd.DataFrame({"image_id": oos["image_id"].to_numpy(), "user_probs": list(P[index])})


def _cleanlab(labels: np.ndarray, P: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(self-confidence label quality, find_label_issues mask) of one set of probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    P = P / P.sum(axis=1, keepdims=True)
    quality = get_label_quality_scores(labels, P)
    issue = np.zeros(len(labels), dtype=bool)
    if len(np.unique(labels)) < P.shape[1]:
        log.warning("%s: not every label has an image; cleanlab's issue filter skipped there", what)
        return quality, issue
    try:
        issue = find_label_issues(labels, P, n_jobs=1)
    except (ValueError, ZeroDivisionError) as e:  # degenerate (e.g. one image per label)
        log.warning("%s: cleanlab find_label_issues failed (%s); no issue flags there", what, e)
    return quality, issue


def find_issues(
    oos: pd.DataFrame,
    flag: str = "cleanlab",
    train_vote: pd.DataFrame | None = None,
    user: pd.DataFrame | None = None,
    rank_by: str = "auto",
) -> pd.DataFrame:
    """Every image with its label quality and flags, ranked (ISSUE_COLUMNS).

    ``train_vote`` (image_id, train_vote): the training-set vote, :func:`train_votes`;
    ``user`` (image_id, user_probs): :func:`load_pred_probs`."""
    if flag not in FLAGS:
        raise DataError(f"config key label_issues.flag: {flag!r} not in {FLAGS}")
    df = oos.copy()
    df["label_quality"] = np.nan
    df["cleanlab_issue"] = False
    for m, idx in df.groupby("module", sort=True).groups.items():
        sub = df.loc[idx]
        quality, issue = _cleanlab(
            sub["label_local"].to_numpy(np.int64),
            np.stack(sub["probs"].to_numpy()).astype(np.float64),  # (n, c)
            f"module {m}",
        )
        df.loc[idx, "label_quality"] = quality
        df.loc[idx, "cleanlab_issue"] = issue
    df["cleanlab_issue"] = df["cleanlab_issue"].astype(bool)
    df["vote_against"] = df["super_majority"].astype(bool) & (df["predicted"] != df["label"])
    df["train_vote"] = np.int64(-1)
    if train_vote is not None:
        tv = train_vote.set_index("image_id")["train_vote"]
        df["train_vote"] = df["image_id"].map(tv).fillna(-1).astype(np.int64)
    df["train_vote_wrong"] = (df["train_vote"] >= 0) & (df["train_vote"] != df["label"])
    df["user_quality"], df["user_issue"] = np.nan, False
    if user is not None:
        P = np.stack(df["image_id"].map(user.set_index("image_id")["user_probs"]).to_numpy())
        df["user_quality"], df["user_issue"] = _cleanlab(
            df["label"].to_numpy(np.int64), P, "label_issues.pred_probs"
        )
    own = flag_rule(df["cleanlab_issue"].to_numpy(), df["vote_against"].to_numpy(), flag)
    df["flagged"] = own | df["user_issue"].to_numpy(bool)
    kinds = [
        ("cleanlab", df["cleanlab_issue"]),
        ("vote", df["vote_against"]),
        ("train_vote", df["train_vote_wrong"]),
        ("pred_probs", df["user_issue"]),
    ]
    df["evidence"] = [
        "+".join(k for (k, _), hit in zip(kinds, row, strict=True) if hit)
        for row in zip(*(v.to_numpy(bool) for _, v in kinds), strict=True)
    ]
    key = (
        "user_quality"
        if rank_by == "pred_probs" or (rank_by == "auto" and user is not None)
        else "label_quality"
    )
    df = df.sort_values(["flagged", key, "image_id"], ascending=[False, True, True], kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1, dtype=np.int64))
    return df[ISSUE_COLUMNS].reset_index(drop=True)


def flag_rule(cleanlab_issue: np.ndarray, vote_against: np.ndarray, flag: str) -> np.ndarray:
    return {
        "either": cleanlab_issue | vote_against,
        "both": cleanlab_issue & vote_against,
        "cleanlab": cleanlab_issue,
        "vote": vote_against,
    }[flag]
