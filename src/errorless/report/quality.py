"""The report's data-quality section: double-labelling suspects, the planted check, label issues."""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import pandas as pd

from errorless.io import write_text
from errorless.names import shard_name, split_ids
from errorless.report.htmltables import html_page, html_table, note
from errorless.report.inputs import _config, read_table

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
            "images": col("ids", "").map(lambda v: "; ".join(split_ids(v))),
            "labels": col("labels", "").map(lambda v: "; ".join(split_ids(v))),
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
