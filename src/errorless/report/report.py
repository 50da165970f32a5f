"""Figures and tables for Snakemake's HTML report (docs/method.md#outputs), one command per report
section.

``errorless report-figures --section S --out-dir DIR [inputs]`` writes fixed file names into
DIR (the rules in ``workflow/rules/report.smk`` flag them with ``report(...)``):

* ``training``: ``training_table.html``/``.csv`` (Table 2 with the proto-models S, S′, T side
  by side), ``error_free_grid.png`` (features × (module, submodule), coloured by final training
  accuracy, error-free cells marked), ``gdt_path.png`` (λ and Δ against the continuation step
  of one T-FNN), ``confusion_wheel.png`` (the paper's Figure 2 for one FNN, one panel per
  method).
* ``evaluation``: ``accuracy_vs_features.html``/``.csv``/``.png`` (accuracy and Top-1 rate
  against the number of features p, top-1 and top-3 protocols), ``perfect_labels.html``/``.png``
  (labels whose images are all predicted correctly, per batch and in every batch).
* ``quality``: ``suspects.html`` (the ranked double-labelling suspects) and
  ``planted_check.html`` (precision and recall against the planted truth when known); the
  thumbnails are ``quality/suspects.png`` of the double-labeling rule.
* ``run``: ``run_facts.html`` (data set, settings, jobs, compute time per phase from the
  benchmark files) and ``compute_time.png``.

Tables are written as small self-contained HTML pages because the report shows HTML inline
and offers CSV files only as downloads.

Choices (config-free and deterministic):

* Confusion wheel FNN: in (module, submodule) order, then feature order, the first FNN whose
  S accuracy is below 100 % and whose T-FNN is error-free (the paper's case: SGD errors that
  GDT removes); else the first with S below 100 %; else the first FNN. First model (h1_m1).
* GDT path FNN: the T-FNN with the most rejected λ-steps, then the most λ-steps, then the
  first in (module, submodule, feature) order.
* Wheel geometry (paper Figure 2): the c labels of the module are spokes
  u_k = (cos θ_k, sin θ_k), θ_k = 90° − 360°·k/c; an image's softmax output y maps to
  Σ_k y_k u_k. A confident correct output sits near its label's spoke tip; a misclassified
  image lies outside its label's sector.
"""

from __future__ import annotations

import argparse
import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.data.datasets import GENERATED
from errorless.errors import DataError
from errorless.evaluate.confusion import module_block
from errorless.io import atomic_path, write_text
from errorless.names import number, proto_key, shard_name
from errorless.report.figures import (
    accuracy_figure,
    compute_figure,
    confusion_wheel_figure,
    empty_figure,
    error_free_grid_figure,
    gdt_path_figure,
    perfect_figure,
    proto_title,
)
from errorless.report.htmltables import html_page, html_table, note

log = logging.getLogger(__name__)

SECTIONS = ("training", "evaluation", "quality", "confusion", "run")
OUTPUTS = {
    "training": [
        "training_table.html",
        "training_table.csv",
        "error_free_grid.png",
        "gdt_path.png",
        "confusion_wheel.png",
    ],
    "evaluation": [
        "accuracy_vs_features.html",
        "accuracy_vs_features.csv",
        "accuracy_vs_features.png",
        "perfect_labels.html",
        "perfect_labels.png",
    ],
    "quality": ["suspects.html", "planted_check.html"],
    "confusion": [
        "confusion_pairs.html",
        "confusion_pairs.png",
        "confusion_modules.png",
        "confusion_module_matrix.png",
    ],
    "run": ["run_facts.html", "compute_time.png"],
}


# ---------------------------------------------------------------- small helpers


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} missing (run the step that writes it first)")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as e:  # pragma: no cover - corrupt input
        raise DataError(f"{path}: unreadable {what}: {e}") from None


# ---------------------------------------------------------------- training section


TABLE_ROWS = [
    ("FNNs", "fnns", "d"),
    ("min accuracy %", "min", "f"),
    ("mean accuracy %", "mean", "f"),
    ("median accuracy %", "median", "f"),
    ("max accuracy %", "max", "f"),
    ("error-free FNNs", "error_free_fnns_text", "s"),
    ("fully error-free partitions", "error_free_partitions_text", "s"),
    ("T-FNNs left with conflicts only", "conflict_fnns", "d"),
    ("T-FNNs whose search gave up (residual errors)", "residual_fnns", "d"),
    ("T-FNNs stopped on a GDT budget", "budget_fnns", "d"),
]


def training_side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """evaluation/training.csv (one row per proto) -> metrics × proto-models (S, S′, T columns)."""
    t = table.copy()
    if "error_free_fnns_text" not in t:
        t["error_free_fnns_text"] = [
            f"{a}/{b}" for a, b in zip(t["error_free_fnns"], t["fnns"], strict=True)
        ]
    if "error_free_partitions_text" not in t:
        t["error_free_partitions_text"] = [
            f"{a}/{b}" for a, b in zip(t["error_free_partitions"], t["partitions"], strict=True)
        ]
    protos = sorted(t["proto"], key=proto_key)
    t = t.set_index("proto").loc[protos]
    out: dict[str, list[str]] = {}
    for proto in protos:
        r = t.loc[proto]
        col = []
        for _, key, kind in TABLE_ROWS:
            v = r.get(key)
            col.append(
                "–"
                if v is None or pd.isna(v)
                else f"{float(v):.3f}"
                if kind == "f"
                else str(int(v))
                if kind == "d"
                else str(v)
            )
        if "check_decimals" in t and "cut_predictions_changed" in t:
            col.append(str(int(r["cut_predictions_changed"])))
        out[proto_title(proto)] = col
    index = [name for name, _, _ in TABLE_ROWS]
    if "check_decimals" in t and "cut_predictions_changed" in t:
        dec = int(t["check_decimals"].iloc[0])
        index.append(f"predictions changed, weights cut to {dec} decimals")
    return pd.DataFrame(out, index=pd.Index(index, name="metric"))


def choose_gdt_fnn(training: pd.DataFrame) -> pd.Series | None:
    """The T-FNN whose λ-path is shown (see the module docstring)."""
    t = training[(training["method"] == "T")].copy()
    if t.empty:
        return None
    t["_steps"] = [len(p) if p is not None else 0 for p in t["lambda_path"]]
    t = t[t["_steps"] > 0]
    if t.empty:
        return None
    t["_m"], t["_s"] = t["module"].map(number), t["submodule"].map(number)
    t = t.sort_values(
        ["rejected", "_steps", "proto", "_m", "_s", "feature"],
        ascending=[False, False, True, True, True, True],
        kind="stable",
    )
    return t.iloc[0]


def wheel_figure(wheel: Path, path: Path) -> dict[str, str] | None:
    """The confusion wheel from the data the training evaluation wrote (evaluation/wheel.npz)."""
    if not wheel.exists():
        raise DataError(f"{wheel}: confusion-wheel data missing (run evaluate-training first)")
    with np.load(wheel) as z:
        d = {k: z[k] for k in z.files}
    if len(d["protos"]) == 0:
        empty_figure(path, "Confusion wheel", str(d["note"]))
        return None
    pick = {k: str(d[k]) for k in ("model", "feature", "module", "submodule")}
    lo, hi, local = int(d["label_lo"]), int(d["label_hi"]), d["labels"]
    held = d.get("module_labels", np.arange(lo, hi))
    shown = f"{lo}–{hi - 1}" if len(held) == hi - lo else ", ".join(map(str, held))
    title = (
        f"Confusion wheel of FNN {pick['feature']} {pick['module']}_{pick['submodule']} "
        f"({len(local)} training images, labels {shown}): each output vector mapped onto "
        "one spoke per label"
    )
    panels = [(str(p), probs) for p, probs in zip(d["protos"], d["probs"], strict=True)]
    confusion_wheel_figure(panels, local, held, title, path)
    return pick


def training_section(args: argparse.Namespace, out: Path) -> None:
    cfg = _config(args)
    training = read_table(args.training, "training table")
    table = read_table(args.training_table, "training evaluation table (evaluation/training.csv)")
    side = training_side_by_side(table)
    with atomic_path(out / "training_table.csv") as tmp:
        side.to_csv(tmp)
    body = html_table(side, index=True) + note(
        "Accuracies are final training accuracies of the saved weights on each FNN's own shard, "
        "over all FNNs of a proto-model. An error-free FNN has 100 % training accuracy; a fully "
        "error-free partition is a (module, submodule) where the FNNs of every feature are error-free."
    )
    write_text(out / "training_table.html", html_page("Training evaluation (paper Table 2)", body))
    features = cfg.get("features") or sorted(training["feature"].unique())
    error_free_grid_figure(training, features, out / "error_free_grid.png")
    rec = choose_gdt_fnn(training)
    gdt_path_figure(rec, out / "gdt_path.png")
    pick = wheel_figure(Path(args.wheel), out / "confusion_wheel.png")
    log.info(
        "training section: wheel FNN %s, GDT path FNN %s",
        pick,
        None
        if rec is None
        else f"{rec['proto']} {rec['feature']} {rec['module']}_{rec['submodule']}",
    )


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


# ---------------------------------------------------------------- quality section


def suspects_display(report: pd.DataFrame) -> pd.DataFrame:
    """double_labeling rows -> a compact readable table (one line per suspect)."""

    def col(name, default=None):
        return (
            report[name]
            if name in report
            else pd.Series([default] * len(report), index=report.index)
        )

    shard = [
        " / ".join(
            dict.fromkeys(shard_name(m, s) for m, s in ((ma, sa), (mb, sb)) if isinstance(m, str))
        )
        for ma, sa, mb, sb in zip(
            col("module_a"), col("submodule_a"), col("module_b"), col("submodule_b"), strict=True
        )
    ]
    failed = [
        "–" if pd.isna(f) or pd.isna(n) or not n else f"{int(f)}/{int(n)}"
        for f, n in zip(col("n_features_failed"), col("n_features"), strict=True)
    ]
    return pd.DataFrame(
        {
            "rank": col("rank"),
            "score": col("score"),
            "match": col("kind", "").fillna("residual only").astype(str),
            "similarity": col("similarity"),
            "evidence": col("evidence", "").astype(str).str.replace("+", " + ", regex=False),
            "images": col("ids", "").astype(str).str.replace(";", "; ", regex=False),
            "labels": col("labels", "").astype(str).str.replace(";", "; ", regex=False),
            "shards": shard,
            "T-features failed": failed,
        }
    )


def quality_section(args: argparse.Namespace, out: Path) -> None:
    report = read_table(args.suspects, "double-labelling report (double_labeling.parquet)")
    top = int(args.top)
    counts = report["evidence"].value_counts() if len(report) else pd.Series(dtype=int)
    body = (
        f"<p>{len(report)} suspect row(s). By evidence: "
        + (", ".join(f"{html.escape(str(k))}: {int(v)}" for k, v in counts.items()) or "none")
        + "</p>"
    )
    body += html_table(
        suspects_display(report.head(top)), left=["evidence", "shards"], wrap=["images", "labels"]
    )
    if len(report) > top:
        body += note(f"Showing the top {top} of {len(report)} rows.")
    body += note(
        "match = how the two images match: exact (same bytes), near (the same picture after JPEG, "
        "rescaling, crops, shifts, brightness/contrast; similarity = aligned correlation of the images, "
        "1 = identical), mirrored (the same via a left-right mirror), or 'indistinguishable in feature X' "
        "(different images whose inputs of that feature are identical: that FNN cannot fit them, but they "
        "are not a double label). "
        "score = image-match evidence (3 exact or a match that is also a pre-check conflict, 1–2 near) + residual evidence "
        "(1 + share of the partition's features whose T-FNN failed on the image). "
        "ids are image ids (source batch:row); labels are 0-based. The full list is double_labeling.csv."
    )
    write_text(out / "suspects.html", html_page("Double-labelling suspects", body))
    check = read_table(args.planted_check, "planted check (quality/planted_check.csv)")
    c = check.copy()
    for col in ("precision", "recall"):
        if col in c:
            c[col] = c[col].map(lambda v: "–" if pd.isna(v) else f"{100 * float(v):.1f} %")
    c = c.astype(object).where(c.notna(), "")
    body = html_table(c, left=["kind"], wrap=["note"]) + note(
        "Against the planted double-labelled pairs of the synthetic data: precision = correct suspect "
        "rows / reported rows, recall = planted pairs found / planted pairs. Real data sets have no "
        "ground truth (see note)."
    )
    write_text(
        out / "planted_check.html",
        html_page("Double labelling: precision and recall against the planted truth", body),
    )
    thumbnails_figures(args, report)


def thumbnails_figures(args: argparse.Namespace, report: pd.DataFrame) -> None:
    """The thumbnail figures of the double-labelling suspects and the label issues: drawn here
    (not by the rules that rank them) so that double_labeling.thumbnails reruns only the report."""
    if not (args.suspects_figure or args.issues_figure):
        return
    from errorless.quality.doublelabel import suspects_figure
    from errorless.quality.labelissues import issues_figure
    from errorless.quality.planted import flip_ids, read_planted

    top = int(_config(args)["double_labeling"]["thumbnails"])
    from errorless.data.shards import manifest_shards

    shards = list(manifest_shards(args.manifest).values()) if args.manifest else []
    if args.suspects_figure:
        suspects_figure(report, shards, Path(args.suspects_figure), top)
    if args.issues_figure:
        issues = read_table(args.issues, "label issues (quality/label_issues.parquet)")
        planted = read_planted(Path(args.planted)) if args.planted else None
        issues_figure(
            issues,
            shards,
            Path(args.issues_figure),
            top,
            flip_ids(planted) if planted is not None else None,
        )


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
            suspects.update(str(ids).split(";"))
    if args.issues and Path(args.issues).exists():
        li = read_table(args.issues, "label issues (quality/label_issues.parquet)")
        issues = set(li.loc[li["flagged"].astype(bool), "image_id"].astype(str))
    return suspects, issues


def mark_text(image_id: str, suspects: set[str], issues: set[str]) -> str:
    """'' / ' [D]' (double-labelling suspect) / ' [L]' (label issue) / ' [D L]'."""
    marks = [m for m, on in (("D", image_id in suspects), ("L", image_id in issues)) if on]
    return f" [{' '.join(marks)}]" if marks else ""


def confusion_section(args: argparse.Namespace, out: Path) -> None:
    from errorless.report.figures import (
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
        ids = [
            i for col in (r.examples_a_to_b, r.examples_b_to_a) for i in str(col or "").split(";")
        ]
        ex.append(" ".join(i + mark_text(i, suspects, issues) for i in ids if i and i != "nan"))
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
            for i in [i for i in str(col or "").split(";") if i and i != "nan"][:2]:
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


# ---------------------------------------------------------------- run section


def read_benchmarks(root: Path) -> pd.DataFrame:
    """Every ``benchmarks/**/*.tsv`` with its phase (first folder or file stem under ``root``)."""
    rows = []
    for p in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        try:
            d = pd.read_csv(p, sep="\t")
        except Exception as e:
            log.warning("%s: unreadable benchmark (%s)", p, e)
            continue
        if d.empty or "s" not in d:
            continue
        rel = p.relative_to(root)
        phase = rel.parts[0] if len(rel.parts) > 1 else p.stem
        r = d.iloc[-1]
        rows.append(
            {
                "phase": phase,
                "job": str(rel.with_suffix("")),
                "seconds": float(r["s"]),
                "cpu_seconds": float(pd.to_numeric(r.get("cpu_time"), errors="coerce")),
                "max_rss_mb": float(pd.to_numeric(r.get("max_rss"), errors="coerce")),
            }
        )
    return pd.DataFrame(rows, columns=["phase", "job", "seconds", "cpu_seconds", "max_rss_mb"])


def phase_table(bench: pd.DataFrame) -> pd.DataFrame:
    if bench.empty:
        return pd.DataFrame(
            columns=["phase", "jobs", "wall s (sum)", "CPU s (sum)", "slowest job s", "peak RSS MB"]
        )
    g = bench.groupby("phase", sort=False)
    t = pd.DataFrame(
        {
            "jobs": g.size(),
            "wall s (sum)": g["seconds"].sum(),
            "CPU s (sum)": g["cpu_seconds"].sum(),
            "slowest job s": g["seconds"].max(),
            "peak RSS MB": g["max_rss_mb"].max(),
        }
    ).sort_values("wall s (sum)", ascending=False)
    total = pd.DataFrame(
        {
            "jobs": [int(t["jobs"].sum())],
            "wall s (sum)": [t["wall s (sum)"].sum()],
            "CPU s (sum)": [t["CPU s (sum)"].sum()],
            "slowest job s": [t["slowest job s"].max()],
            "peak RSS MB": [t["peak RSS MB"].max()],
        },
        index=["total"],
    )
    out = pd.concat([t, total])
    out.index.name = "phase"
    out["jobs"] = out["jobs"].astype(int)
    return out.reset_index()


def run_facts(
    cfg: dict[str, Any], training: pd.DataFrame, manifest: pd.DataFrame | None
) -> pd.DataFrame:
    ds, sgd, gdt = cfg.get("dataset", {}), cfg.get("sgd", {}), cfg.get("gdt", {})
    facts = [
        ("data set format", ds.get("format")),
        ("data set path", ds.get("path")),
    ]
    if manifest is not None and len(manifest):
        facts += [
            ("training images (sharded)", int(manifest["images"].sum())),
            ("labels L", int(manifest["label_hi"].max())),
            (
                "modules × submodules",
                f"{manifest['module'].nunique()} × {manifest['submodule'].nunique()}",
            ),
        ]
    if ds.get("format") in GENERATED:
        fmt = ds["format"]
        syn = cfg.get(fmt, {})
        facts.append(
            (
                f"{fmt}: batches × labels × images per label",
                f"{syn.get('batches')} × {syn.get('labels')} × {syn.get('images_per_label')}",
            )
        )
    arch = cfg.get("models", {})
    facts += [
        ("features", ", ".join(cfg.get("features", []))),
        ("featured models (p)", ", ".join(str(p) for p in cfg.get("featured_models", []))),
        (
            "architectures used",
            ", ".join(f"{a} {arch.get('architectures', {}).get(a)}" for a in arch.get("use", [])),
        ),
        ("replicates", arch.get("replicates")),
        ("proto-models", ", ".join(sorted(training["proto"].unique(), key=proto_key))),
        (
            "FNNs trained (jobs)",
            int(training[["model", "feature", "module", "submodule"]].drop_duplicates().shape[0]),
        ),
        (
            "SGD: threshold, max epochs, batch, lr, loss",
            f"{sgd.get('threshold')}, {sgd.get('max_epochs')}, {sgd.get('batch_size')}, {sgd.get('lr')}, {sgd.get('loss')}",
        ),
        ("SGD released epochs (S′)", sgd.get("released_epochs")),
        (
            "GDT: enabled, conflict pre-check, rounds, max λ-steps, max seconds",
            f"{gdt.get('enabled')}, {gdt.get('conflict_precheck')}, {gdt.get('rounds')}, "
            f"{gdt.get('max_lambda_steps')}, {gdt.get('max_seconds')}",
        ),
        ("seed", cfg.get("seed")),
    ]
    one = training.drop_duplicates(["model", "feature", "module", "submodule"])
    t = training[training["method"] == "T"]
    facts += [
        ("training time in SGD (sum over FNNs, s)", round(float(one["seconds_sgd"].sum()), 1)),
        ("training time in GDT (sum over FNNs, s)", round(float(t["seconds_gdt"].sum()), 1)),
        (
            "GDT λ-steps accepted / rejected",
            f"{int(t['accepted'].sum())} / {int(t['rejected'].sum())}",
        ),
        (
            "T-FNN status counts",
            ", ".join(f"{k}: {v}" for k, v in t["status"].value_counts().items()),
        ),
    ]
    return pd.DataFrame(facts, columns=["fact", "value"]).astype({"value": str})


def run_section(args: argparse.Namespace, out: Path) -> None:
    cfg = _config(args)
    training = read_table(args.training, "training table")
    manifest = None
    if args.manifest and Path(args.manifest).exists():
        manifest = pd.read_csv(args.manifest, sep="\t")
    facts = run_facts(cfg, training, manifest)
    phases = phase_table(read_benchmarks(Path(args.benchmarks)))
    body = "<h3>Data set and settings</h3>" + html_table(facts, left=["fact"], wrap=["value"])
    body += "<h3>Compute time per phase (benchmark files)</h3>" + html_table(phases, left=["phase"])
    body += note(
        "Phases are the benchmarked rules (folders or files under benchmarks/); light rules "
        "without a benchmark are not counted. CPU seconds can exceed wall seconds for "
        "multi-threaded jobs. SGD/GDT seconds are measured inside the training jobs."
    )
    write_text(out / "run_facts.html", html_page("Run facts", body))
    compute_figure(phases, out / "compute_time.png")


# ---------------------------------------------------------------- CLI


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "settings", None):
        from errorless.config import parse_settings

        return parse_settings(args.settings)
    if not getattr(args, "config", None):
        return {}
    import yaml

    path = Path(args.config)
    if not path.exists():
        raise DataError(f"{path}: config missing (rule write_config writes it)")
    return yaml.safe_load(path.read_text()) or {}


NEEDS = {
    "training": ["training", "training_table", "wheel"],
    "evaluation": ["accuracy", "perfect", "perfect_per_batch"],
    "quality": ["suspects", "planted_check"],
    "confusion": ["confusion"],
    "run": ["training", "benchmarks"],
}


def figures_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--section", required=True, choices=SECTIONS, help="which report section to write"
    )
    p.add_argument("--out-dir", required=True, help="folder for the figures and tables")
    p.add_argument(
        "--config", help="the results folder's config.yaml (features, transform, settings)"
    )
    p.add_argument(
        "--settings", help="the settings the section reads, as JSON (wins over --config)"
    )
    p.add_argument("--training", help="training.parquet")
    p.add_argument("--training-table", help="evaluation/training.csv")
    p.add_argument("--wheel", help="evaluation/wheel.npz (the confusion wheel's data)")
    p.add_argument("--manifest", help="shards/manifest.tsv (run facts; the thumbnails' shards)")
    p.add_argument("--accuracy", help="evaluation/accuracy.csv")
    p.add_argument("--perfect", help="evaluation/perfect_labels.csv")
    p.add_argument("--perfect-per-batch", help="evaluation/perfect_labels_per_batch.csv")
    p.add_argument("--suspects", help="double_labeling.parquet")
    p.add_argument("--planted-check", help="quality/planted_check.csv")
    p.add_argument(
        "--suspects-figure", help="quality: suspect thumbnails PNG to draw (needs --manifest)"
    )
    p.add_argument("--issues", help="quality: quality/label_issues.parquet (for --issues-figure)")
    p.add_argument("--issues-figure", help="quality: label-issue thumbnails PNG to draw")
    p.add_argument("--planted", help="quality: planted truth CSV (marks the planted flips)")
    p.add_argument(
        "--confusion",
        help="confusion: the folder errorless confusion wrote (results/evaluation/confusion)",
    )
    p.add_argument(
        "--top", type=int, default=100, help="suspect rows shown in the table (default 100)"
    )
    p.add_argument(
        "--benchmarks", default="benchmarks", help="benchmark folder (default benchmarks)"
    )


def figures_main(args: argparse.Namespace) -> int:
    missing = [f"--{k.replace('_', '-')}" for k in NEEDS[args.section] if not getattr(args, k)]
    if missing:
        raise DataError(f"section {args.section} needs {', '.join(missing)}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    {
        "training": training_section,
        "evaluation": evaluation_section,
        "quality": quality_section,
        "confusion": confusion_section,
        "run": run_section,
    }[args.section](args, out)
    log.info(
        "section %s: wrote %s", args.section, ", ".join(str(out / f) for f in OUTPUTS[args.section])
    )
    return 0
