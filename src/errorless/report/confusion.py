"""The report's confusion section: heat maps per module, the module matrix, the most confused
pairs with thumbnails marked by the quality evidence."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.evaluate.confusion import module_block
from errorless.io import write_text
from errorless.names import proto_key, split_ids
from errorless.report.figures import empty_figure, proto_title
from errorless.report.htmltables import html_page, html_table, note
from errorless.report.inputs import read_table

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- confusion section

# modules drawn as heatmaps (those with the most errors inside them)
HEATMAP_MODULES = 9
# pairs shown with thumbnails
THUMBNAIL_PAIRS = 8


def main_key(summary: pd.DataFrame) -> dict[str, Any]:
    """The run the confusion figures show: the first model's last method (T before S′ before
    S), its largest featured model, top-1, on the training split (the thumbnails come from
    the shards) when it has one."""
    first = sorted(summary["proto"].unique(), key=proto_key)
    model = proto_key(first[0])[0]
    proto = [p for p in first if proto_key(p)[0] == model][-1]
    s = summary[summary["proto"] == proto]
    split = "train" if (s["split"] == "train").any() else s["split"].iloc[0]
    protocol = "top1" if (s["protocol"] == "top1").any() else s["protocol"].iloc[0]
    return {"proto": proto, "p": int(s["p"].max()), "protocol": protocol, "split": split}


def _select(table: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for k, v in key.items():
        mask &= (table[k] == v).to_numpy()
    return table[mask]


def _marks(args: argparse.Namespace) -> tuple[set[str], set[str]]:
    """Image ids of the double-labelling suspects and of the flagged label issues."""
    suspects: set[str] = set()
    issues: set[str] = set()
    if args.suspects and Path(args.suspects).exists():
        report = read_table(args.suspects, "double-labelling report (double_labeling.parquet)")
        for ids in report.get("ids", pd.Series(dtype=str)):
            suspects.update(split_ids(ids))
    if args.issues and Path(args.issues).exists():
        li = read_table(args.issues, "label issues (quality/label_issues.parquet)")
        issues = set(li.loc[li["flagged"].astype(bool), "image_id"].astype(str))
    return suspects, issues


def mark_text(image_id: str, suspects: set[str], issues: set[str]) -> str:
    """'' / ' [D]' (double-labelling suspect) / ' [L]' (label issue) / ' [D L]'."""
    marks = [m for m, on in (("D", image_id in suspects), ("L", image_id in issues)) if on]
    return f" [{' '.join(marks)}]" if marks else ""


def confusion_section(args: argparse.Namespace, out: Path) -> None:
    from errorless.report.confusion_figures import (
        confusion_heatmaps_figure,
        module_matrix_figure,
        pair_thumbnails_figure,
    )

    folder = Path(args.confusion)
    counts = read_table(folder / "counts.parquet", "confusion counts")
    modules = read_table(folder / "modules.parquet", "confusion module matrix")
    pairs = read_table(folder / "pairs.csv", "confusion pairs")
    summary = read_table(folder / "summary.csv", "confusion summary")
    labels = read_table(folder / "labels.csv", "confusion labels").fillna({"group": ""})
    names = labels["name"].astype(str).tolist()
    key = main_key(summary)
    what = f"{proto_title(key['proto'])}, Model-{key['p']}, {key['protocol']}, {key['split']} split"
    suspects, issues = _marks(args)

    # the table of the top pairs (main key) and the summary of every key
    top = _select(pairs, key).copy()
    show = pd.DataFrame(
        {
            "rank": top["rank"],
            "a": [f"{a} {names[a]}" for a in top["a"]],
            "b": [f"{b} {names[b]}" for b in top["b"]],
            "errors": top["count"],
            "a → b": top["a_to_b"],
            "rate a → b": [f"{100 * v:.2f} %" for v in top["rate_a_to_b"]],
            "b → a": top["b_to_a"],
            "rate b → a": [f"{100 * v:.2f} %" for v in top["rate_b_to_a"]],
            "same module": np.where(top["same_module"].astype(bool), "yes", "no"),
        }
    )
    if "same_group" in top:
        show["same group"] = np.where(top["same_group"].astype(bool), "yes", "no")
    ex = []
    for r in top.itertuples():
        ids = [i for col in (r.examples_a_to_b, r.examples_b_to_a) for i in split_ids(col)]
        ex.append(" ".join(i + mark_text(i, suspects, issues) for i in ids))
    show["images (first of each direction)"] = ex
    body = html_table(show, left=["a", "b"], wrap=["images (first of each direction)"])
    body += note(
        f"The most confused label pairs of {what}: errors = images given a predicted b plus "
        "images given b predicted a; a rate is over the images given that label. Images marked "
        "[D] are double-labelling suspects, [L] flagged label issues. Every proto-model, featured "
        "model, protocol and split: evaluation/confusion/pairs.csv."
    )
    summ = summary.copy()
    summ.insert(1, "featured_model", summ["p"].map(lambda p: f"Model-{p}"))
    summ = summ.drop(columns=["p"])
    body += "<h3>Errors inside modules</h3>" + html_table(
        summ, left=["proto", "featured_model", "protocol", "split"]
    )
    body += note(
        "within_module_pct = share of the errors whose predicted label lies in the module of "
        "the given label (within_group_pct: in its label group, modules.groups)."
    )
    write_text(out / "confusion_pairs.html", html_page("Most confused label pairs", body))

    # thumbnails of the images behind the top pairs
    from errorless.data.shards import manifest_shards
    from errorless.quality.gallery import fetch_images

    rows = []
    for r in top.head(THUMBNAIL_PAIRS).itertuples():
        thumbs = []
        for col, (g, p) in ((r.examples_a_to_b, (r.a, r.b)), (r.examples_b_to_a, (r.b, r.a))):
            for i in split_ids(col)[:2]:
                thumbs.append(
                    (i, f"{i}{mark_text(i, suspects, issues)}\ngiven {names[g]} → {names[p]}")
                )
        rows.append((f"#{r.rank}: {names[r.a]} ↔ {names[r.b]}\n{r.count} errors", thumbs))
    path = out / "confusion_pairs.png"
    if rows:
        shards = list(manifest_shards(args.manifest).values()) if args.manifest else []
        images = fetch_images(shards, {i for _, t in rows for i, _ in t})
        pair_thumbnails_figure(
            rows,
            images,
            path,
            f"images behind the most confused pairs ({what}; [D] double-"
            "labelling suspect, [L] label issue)",
        )
    else:
        empty_figure(path, "most confused pairs", f"no errors in {what}")

    # a heatmap per module (the modules with the most errors inside them)
    c = _select(counts, key)
    blocks = []
    for module, labs in labels.groupby("module", sort=True)["label"]:
        block = module_block(c, labs.to_numpy()) if len(c) else np.zeros((len(labs),) * 2, int)
        blocks.append((module, [names[i] for i in labs], block))
    blocks.sort(key=lambda b: -(b[2].sum() - np.trace(b[2])))
    shown = sorted(blocks[:HEATMAP_MODULES], key=lambda b: b[0])
    more = (
        f" ({len(shown)} of {len(blocks)} modules: the most errors)"
        if len(blocks) > len(shown)
        else ""
    )
    confusion_heatmaps_figure(
        shown, out / "confusion_modules.png", f"confusion per module, {what}{more}"
    )

    # the module × module matrix of the errors over all labels
    names_m = sorted(labels["module"].unique())
    pos = {m: i for i, m in enumerate(names_m)}
    mm = _select(modules, key)
    matrix = np.zeros((len(names_m), len(names_m)), dtype=np.int64)
    np.add.at(
        matrix,
        (mm["given_module"].map(pos).to_numpy(), mm["predicted_module"].map(pos).to_numpy()),
        mm["errors"].to_numpy(),
    )
    module_matrix_figure(
        matrix, names_m, out / "confusion_module_matrix.png", f"module × module, {what}"
    )
    log.info("confusion section: %s, %d pairs, %d modules", what, len(top), len(blocks))
