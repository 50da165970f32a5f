"""The report's evaluation section: accuracy against the number of features, perfect labels."""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import pandas as pd

from errorless.io import atomic_path, write_text
from errorless.names import proto_key
from errorless.report.figures import accuracy_figure, perfect_figure
from errorless.report.htmltables import html_page, html_table, note
from errorless.report.inputs import read_table

# ---------------------------------------------------------------- evaluation section


def accuracy_vs_features(acc: pd.DataFrame) -> pd.DataFrame:
    """accuracy.csv -> rows (split, protocol, featured model), columns per proto: accuracy, Top-1."""
    protos = sorted(acc["proto"].unique(), key=proto_key)
    idx = ["split", "protocol", "p", "featured_model"]
    wide = acc.pivot_table(
        index=idx, columns="proto", values=["accuracy_pct", "top1_rate_pct"], aggfunc="first"
    )
    out = wide.index.to_frame(index=False)
    split_order = {"train": 0, "heldout": 1}
    for proto in protos:
        out[f"{proto} accuracy %"] = wide[("accuracy_pct", proto)].to_numpy()
        out[f"{proto} Top-1 %"] = wide[("top1_rate_pct", proto)].to_numpy()
    out["_s"] = out["split"].map(lambda s: split_order.get(s, 2))
    out = out.sort_values(["_s", "protocol", "p"], kind="stable").drop(columns="_s")
    return out.rename(columns={"featured_model": "model", "p": "features p"}).reset_index(drop=True)


def perfect_table(perfect: pd.DataFrame, per_batch: pd.DataFrame) -> pd.DataFrame:
    """One row per (proto, model, protocol, split): per-batch perfect counts and the every-batch labels."""
    keys = ["proto", "featured_model", "protocol", "split"]
    wide = per_batch.pivot_table(
        index=keys, columns="batch", values="perfect_labels", aggfunc="first"
    )
    present = per_batch.groupby(keys)["labels_present"].max()
    base = perfect.set_index(keys)
    out = wide.copy()
    out.columns = [f"perfect in {b}" for b in out.columns]
    out.insert(0, "labels present", present.reindex(out.index))
    out["mean per batch"] = base["mean_perfect_per_batch"].reindex(out.index)
    out["perfect in every batch"] = base["perfect_all_batches"].reindex(out.index)
    out["labels perfect in every batch"] = (
        base["perfect_all_batches_labels"]
        .reindex(out.index)
        .fillna("")
        .astype(str)
        .replace("", "–")
    )
    out = out.reset_index()
    out["_k"] = out["proto"].map(proto_key)
    out["_s"] = out["split"].map({"train": 0, "heldout": 1})
    out = out.sort_values(["_s", "protocol", "_k", "featured_model"], kind="stable").drop(
        columns=["_k", "_s"]
    )
    out = out.rename(columns={"featured_model": "model"}).reset_index(drop=True)
    for c in out.columns:
        if c.startswith("perfect in ") and c != "perfect in every batch":
            out[c] = out[c].map(lambda v: "–" if pd.isna(v) else str(int(v)))
    return out


def evaluation_section(args: argparse.Namespace, out: Path) -> None:
    acc = read_table(args.accuracy, "accuracy table (evaluation/accuracy.csv)")
    table = accuracy_vs_features(acc)
    with atomic_path(out / "accuracy_vs_features.csv") as tmp:
        table.to_csv(tmp, index=False)
    body = ""
    for split in table["split"].unique():
        for protocol in table["protocol"].unique():
            part = table[(table["split"] == split) & (table["protocol"] == protocol)]
            if part.empty:
                continue
            body += f"<h3>{html.escape(split)} images, {html.escape(protocol)} protocol</h3>"
            body += html_table(part.drop(columns=["split", "protocol"]), left=["model"])
    body += note(
        "Accuracy = correct predictions / images. Top-1 rate = share of the correct "
        "predictions won by a super-majority (all p features agree). Model-p votes with "
        "the first p configured features; top3 = every FNN votes for its three best labels."
    )
    write_text(
        out / "accuracy_vs_features.html",
        html_page("Accuracy and Top-1 against the number of features", body),
    )
    accuracy_figure(acc, out / "accuracy_vs_features.png")

    perfect = read_table(args.perfect, "perfect-labels table")
    per_batch = read_table(args.perfect_per_batch, "per-batch perfect-labels table")
    pt = perfect_table(perfect, per_batch)
    body = html_table(
        pt, left=["proto", "model", "protocol", "split"], wrap=["labels perfect in every batch"]
    )
    body += note(
        "A label is perfect in a batch when every image of it in that batch is predicted "
        "correctly. Labels are 0-based global label numbers."
    )
    write_text(out / "perfect_labels.html", html_page("Perfect labels (paper Table 4)", body))
    perfect_figure(per_batch, out / "perfect_labels.png")
