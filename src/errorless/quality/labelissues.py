"""Single mislabelled images (not duplicates): out-of-sample probabilities, ranked with cleanlab.

GDT residuals and the duplicate search only see images that occur twice; a single image with
a wrong label is simply memorised by its own submodule's FNNs. What finds it is a prediction
made **without** that image: an out-of-sample (cross-validated) probability, the input of
confident learning (Northcutt et al., 2021). Two sources (docs/label-issues.md):

* **cross-fitted FNNs** (``errorless.quality.crossfit``, on by default: ``label_issues.crossfit.folds``
  K ≥ 2): per module, each fold's images predicted by FNNs trained on the other folds, with
  augmentation; the strongest evidence the method's own FNNs give;
* **the other submodules' FNNs** of the trained model: every image of module j lies in one
  submodule s, and the FNNs (·, j, s') of the other submodules never saw it (needs
  ``modules.submodules`` ≥ 2). They give the ``vote`` evidence and, with cross-fitting off,
  the probabilities.

``out-of-sample`` (rule ``out_of_sample``): one row per training image (OOS_COLUMNS): ``probs``
over the module's c labels (``source``: crossfit or submodules), and the other submodules'
``predicted``, ``votes``, ``super_majority`` (all p features of one other submodule agree),
``agreement`` = votes / p, ``label_votes``. Written to ``{results}/quality/out_of_sample.parquet``.

``label-issues`` (rule ``label_issues``): per module (labels local 0..c−1)
``cleanlab.filter.find_label_issues(labels, probs)`` (prune by noise rate) and
``cleanlab.rank.get_label_quality_scores`` (self-confidence; lower = more suspicious); beside
them the **training-set vote's own mistakes** (the proto-model's vote, docs/method.md#the-vote, on
its own
training images is not the given label, although every FNN fitted its own images: read from
``evaluation/predictions``) and, when given, **the user's out-of-sample probabilities**
(``label_issues.pred_probs``, cleanlab's ``pred_probs``: (N, L), the data set's order), ranked
with cleanlab too. An image is flagged by ``label_issues.flag`` (``cleanlab`` default, ``vote``,
``either``, ``both``) or by cleanlab on the user's probabilities. Ranked by (flagged, label
quality; ``rank_by``). Kept apart from the duplicate and GDT evidence: its own tables
``quality/label_issues.{parquet,csv}``, thumbnails and planted check
``quality/label_issues_check.csv`` (precision / recall of every kind of evidence against the
planted ``label_flip`` images, and at top-k = the number of flips).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from errorless.config import device_argument, settings_arguments, settings_from_args
from errorless.data.shards import manifest_shards
from errorless.errors import ConfigError
from errorless.io import atomic_path, write_parquet, write_text
from errorless.quality.flags import ISSUE_COLUMNS, find_issues, load_pred_probs
from errorless.quality.issue_check import no_check, planted_check
from errorless.quality.out_of_sample import default_proto, empty_oos, out_of_sample, train_votes
from errorless.quality.planted import flip_ids

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- figure


def issues_figure(
    issues: pd.DataFrame,
    shards: Sequence[Path],
    path: Path,
    top: int,
    planted: set[str] | None = None,
) -> None:
    """Thumbnails of the top flagged images: given label, the out-of-sample vote, evidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from errorless.quality.gallery import fetch_images, show_image

    show = issues[issues["flagged"]].head(top)
    if len(show) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no label issues flagged", ha="center", va="center", fontsize=12)
    else:
        cols = min(6, len(show))
        rows = -(-len(show) // cols)
        images = fetch_images(shards, set(show["image_id"]))
        fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 3.0 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, r in zip(axes.flat, show.to_dict("records"), strict=False):
            img = images.get(r["image_id"])
            if img is not None:
                show_image(ax, img)
            mark = " (planted flip)" if planted and r["image_id"] in planted else ""
            ax.set_title(
                f"#{r['rank']} {r['image_id']}{mark}\ngiven {r['label']}, vote {r['predicted']} "
                f"({r['votes']}/{r['p']})\n{r['evidence']}, q {r['label_quality']:.2f}",
                fontsize=6,
            )
        fig.suptitle(
            "label issues: out-of-sample vote of the other submodule against the given label",
            fontsize=9,
        )
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI


def oos_arguments(p: argparse.ArgumentParser) -> None:
    from errorless.evaluate.cli import fnn_arguments

    settings_arguments(p)
    fnn_arguments(p, "shards/manifest.tsv (the run's shards)", shards_required=True)
    p.add_argument(
        "--proto", help="proto-model whose FNNs vote (default: config label_issues.proto)"
    )
    p.add_argument(
        "--crossfit",
        nargs="*",
        default=[],
        help="the cross-fit tables of every (module, fold) (quality/crossfit/*.parquet)",
    )
    device_argument(p)
    p.add_argument(
        "--out", required=True, help="out-of-sample Parquet (results/quality/out_of_sample.parquet)"
    )


def oos_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    paths = list(manifest_shards(args.manifest).values())
    if not cfg["label_issues"]["enabled"]:
        log.warning("label_issues.enabled is false: label-issue evidence skipped")
        df = empty_oos()
    else:
        df = out_of_sample(cfg, args.weights, paths, args.proto, args.crossfit)
    write_parquet(Path(args.out), df)
    if len(df):
        log.info(
            "%d images -> %s (probabilities: %s); out-of-sample accuracy %.4f",
            len(df),
            args.out,
            ", ".join(sorted(set(df["source"]))),
            float(np.mean(df["predicted_prob"] == df["label"])),
        )
    return 0


def issues_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument("--oos", required=True, help="out_of_sample.parquet")
    p.add_argument("--manifest", help="shards/manifest.tsv: the shards, for the thumbnails")
    p.add_argument("--planted", help="planted truth CSV (flips have kind label_flip)")
    p.add_argument("--out", required=True, help="label issues Parquet (every image, ranked)")
    p.add_argument("--csv", required=True, help="label issues CSV (flagged images only)")
    p.add_argument("--check", required=True, help="planted check CSV")
    p.add_argument("--figure", help="thumbnails PNG")
    p.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        help="evaluation/predictions/{batch}.parquet of the training batches (the training-set vote)",
    )
    p.add_argument(
        "--batches",
        nargs="*",
        default=[],
        help="the training batches in the data set's order (for label_issues.pred_probs)",
    )
    p.add_argument(
        "--labels", type=int, help="L, the data set's labels (for label_issues.pred_probs)"
    )


def issues_main(args: argparse.Namespace) -> int:
    from errorless.quality.planted import read_planted

    cfg = settings_from_args(args)
    flag = cfg["label_issues"]["flag"]
    oos = pd.read_parquet(args.oos)
    planted = read_planted(Path(args.planted)) if args.planted else None
    if len(oos) == 0:
        reason = (
            "skipped: modules.submodules < 2 (no FNN is out of sample)"
            if cfg["modules"]["submodules"] < 2
            else "skipped: no out-of-sample predictions (label_issues.enabled false?)"
        )
        log.warning("label issues %s", reason)
        issues = pd.DataFrame(columns=ISSUE_COLUMNS)
        check = no_check(reason)
    else:
        li = cfg["label_issues"]
        votes = (
            train_votes(args.predictions, li["proto"] or default_proto(cfg))
            if args.predictions
            else None
        )
        user = None
        if li["pred_probs"]:
            if not args.labels or not args.batches:
                raise ConfigError("label_issues.pred_probs needs --labels and --batches")
            user = load_pred_probs(li["pred_probs"], oos, args.batches, args.labels)
        issues = find_issues(oos, flag, votes, user, li["rank_by"])
        check = (
            planted_check(issues, planted, flag)
            if planted is not None
            else no_check("no ground truth: real data set (no planted.csv)")
        )
    write_parquet(Path(args.out), issues)
    flagged = issues[issues["flagged"].astype(bool)] if len(issues) else issues
    write_text(Path(args.csv), flagged.to_csv(index=False, float_format="%.4f"))
    write_text(Path(args.check), check.to_csv(index=False, float_format="%.4f"))
    if args.figure:
        issues_figure(
            issues,
            list(manifest_shards(args.manifest).values()) if args.manifest else [],
            Path(args.figure),
            cfg["double_labeling"]["thumbnails"],
            flip_ids(planted) if planted is not None else None,
        )
    log.info(
        "%d images, %d flagged (rule %s: %s)",
        len(issues),
        len(flagged),
        flag,
        flagged["evidence"].value_counts().to_dict() if len(flagged) else {},
    )
    for line in check.to_dict("records"):
        log.info("planted check %s", line)
    return 0
