"""Summaries of the prediction files: accuracy, Top-1 rate and perfect labels (``summarize``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from errorless.errors import DataError
from errorless.names import featured_model

# ---------------------------------------------------------------- summaries


KEYS = ["proto", "p", "protocol", "split"]


def summarize(pred: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """accuracy, accuracy_per_batch, perfect_labels_per_batch, perfect_labels tables."""
    pred = pred.assign(sm_correct=pred["correct"] & pred["super_majority"])

    def acc_table(keys):
        g = pred.groupby(keys, sort=True)
        t = g.agg(
            images=("correct", "size"),
            correct=("correct", "sum"),
            super_majority_correct=("sm_correct", "sum"),
        ).reset_index()
        t["accuracy_pct"] = 100 * t["correct"] / t["images"]
        t["top1_rate_pct"] = (
            100 * t["super_majority_correct"] / t["correct"].where(t["correct"] > 0)
        )
        t.insert(1, "featured_model", t["p"].map(featured_model))
        return t

    per_label = pred.groupby([*KEYS, "batch", "label"], sort=True)["correct"].all().reset_index()
    pb = (
        per_label.groupby([*KEYS, "batch"], sort=True)
        .agg(labels_present=("label", "size"), perfect_labels=("correct", "sum"))
        .reset_index()
    )
    lists = per_label[per_label["correct"]].groupby([*KEYS, "batch"])["label"].agg(_label_list)
    pb = pb.merge(lists.rename("perfect_label_list").reset_index(), on=[*KEYS, "batch"], how="left")
    pb["perfect_label_list"] = pb["perfect_label_list"].fillna("")
    all_ = per_label.groupby([*KEYS, "label"])["correct"].all().reset_index()
    pa_ = (
        pb.groupby(KEYS)
        .agg(batches=("batch", "size"), mean_perfect_per_batch=("perfect_labels", "mean"))
        .reset_index()
    )
    perfect_all = all_[all_["correct"]].groupby(KEYS)["label"].agg(["size", _label_list])
    perfect_all.columns = ["perfect_all_batches", "perfect_all_batches_labels"]
    pa_ = pa_.merge(perfect_all.reset_index(), on=KEYS, how="left")
    pa_["perfect_all_batches"] = pa_["perfect_all_batches"].fillna(0).astype(int)
    pa_["perfect_all_batches_labels"] = pa_["perfect_all_batches_labels"].fillna("")
    for t in (pb, pa_):
        t.insert(1, "featured_model", t["p"].map(featured_model))
    return {
        "accuracy": acc_table(KEYS),
        "accuracy_per_batch": acc_table([*KEYS, "batch"]),
        "perfect_labels_per_batch": pb,
        "perfect_labels": pa_,
    }


def _label_list(labels: pd.Series) -> str:
    return " ".join(str(int(x)) for x in sorted(labels))


def read_predictions(paths: Sequence[str | Path]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    cols = ["batch", "label", "split", "proto", "p", "protocol", "super_majority", "correct"]
    frames = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: predictions file missing (run the evaluate step)")
        try:
            frames.append(pq.read_table(path, columns=cols).to_pandas())
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: unreadable predictions file: {e}") from None
    if not frames:
        raise DataError("no prediction files to summarize")
    return pd.concat(frames, ignore_index=True)
