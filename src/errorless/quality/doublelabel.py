"""The double-labelling report of docs/method.md#double-labelling-evidence.

A double label is about *images*: two images that are the same picture with different labels.
Evidence combined per suspect (one report row per suspect pair or group):

* ``exact_duplicate`` / ``near_duplicate``: image matches from ``duplicates.parquet`` (whole
  data set, on the images): every exact group that holds more than one label is one row (all
  its ids, ``kind`` exact); every near pair is one row (``kind`` near or mirrored) with its
  ``similarity`` (aligned correlation of the images, 1 = identical).
* ``conflict``: groups of identical *inputs of one feature* with different labels found by the
  training jobs' pre-check (docs/method.md#the-conflict-pre-check; ``conflicts`` of the T records
  in ``training.parquet``).
  A conflict whose ids all lie in one image-match row marks that row (the strongest evidence:
  the same picture, and no FNN can fit it). Otherwise the images differ and only that
  feature cannot tell them apart (a constant channel maps to zeros after centring; a blue and a
  green gradient share a shape): the row's evidence is ``indistinguishable`` and its kind says
  ``indistinguishable in feature G`` — an FNN that cannot fit, not a double-labelled image.
* ``residual``: an image a T-FNN could not fit (in ``residual_ids`` or in a conflict of some
  T record; conflicts count as residual errors, docs/method.md#the-conflict-pre-check).
  ``n_features_failed`` = the number
  of features of the same (proto, module, submodule) whose T-FNN failed on the image (max
  over the row's images and the T protos), out of ``n_features`` trained there. Residual
  images that are in no other row are rows of their own (group_size 1).
* ``gdt_budget``: an image left wrong by a T-FNN whose GDT stopped on its time or λ-step
  budget (status ``budget``): more budget may well fit it, so it is weak evidence, kept out of
  ``residual`` and ranked below everything else (docs/method.md#double-labelling-evidence).

Ranking score (higher = more suspicious, at most 5)::

    score = D + R
    D = 3                      exact image match (with or without a pre-check conflict)
      = 3                      near/mirrored match that is also a pre-check conflict
      = 1 + (s - t) / (1 - t)  near or mirrored match of similarity s (t = near_similarity), in [1, 2]
      = 0                      otherwise (indistinguishable in a feature, residual only)
    R = 1 + failed / features  residual (failed = n_features_failed, features = n_features), in (1, 2]
      = 0.5                    only budget leftovers (``gdt_budget``)
      = 0                      otherwise

Ties: more failed features, higher similarity, then ids.

Planted-truth check (synthetic and photos data): only rows with an image match
(``exact_duplicate`` or ``near_duplicate``) are reported pairs. A reported row is **correct**
when every one of its images belongs to a planted pair whose two images are both in the row.
A plant is **found** when some reported row contains both of its images. Per plant kind
(``same_shard``, ``cross_module``: exact copies; ``jpeg``, ``rescale``, ``crop``, ``shift``,
``flip``, ``brightness``, ``contrast``, ``combo``: near copies, see ``errorless.data.copies``):
recall = found / planted, and reported / correct count the rows holding a plant of that kind.
``overall``: precision = correct rows / every reported row — a row holding no plant counts
against it (also listed alone as ``not_planted``). ``indistinguishable`` and
``residual_only`` rows are counted on their own lines and in no precision.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from errorless.config import (
    results_arguments,
    results_paths,
    settings_arguments,
    settings_from_args,
)
from errorless.data.datasets import GENERATED
from errorless.data.shards import manifest_shards
from errorless.errors import DataError
from errorless.io import atomic_path, write_text
from errorless.names import split_ids
from errorless.quality.double_check import DETAIL_COLUMNS, no_ground_truth, planted_check
from errorless.quality.evidence import expected_fnns, read_training, training_evidence
from errorless.quality.gallery import fetch_images, thumbnail_cell
from errorless.quality.planted import read_planted
from errorless.quality.suspects import combine, read_duplicates, write_report

log = logging.getLogger(__name__)


def _match_text(r: dict) -> str:
    """'near, similarity 0.973' / 'exact' / 'indistinguishable in feature G' / 'residual only' /
    'GDT budget leftover'."""
    kind = r.get("kind")
    if not isinstance(kind, str) or not kind:
        return "GDT budget leftover" if r.get("evidence") == "gdt_budget" else "residual only"
    sim = r.get("similarity")
    if kind in ("near", "mirrored") and sim is not None and not pd.isna(sim):
        return f"{kind}, similarity {float(sim):.3f}"
    return kind.replace("indistinguishable in ", "indistinguishable\nin ")


def suspects_figure(
    report: pd.DataFrame, shards: Sequence[Path], path: Path, top: int, per_row: int = 4
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = report.head(top)
    if len(show) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no double-labelling suspects found" if top else "thumbnails: 0 (figure disabled)",
            ha="center",
            va="center",
            fontsize=12,
        )
    else:
        groups = [
            (r, split_ids(r["ids"])[:per_row], [str(x) for x in r["labels"]][:per_row])
            for r in show.to_dict("records")
        ]
        images = fetch_images(shards, {i for _, ids, _ in groups for i in ids})
        cols = max(len(ids) for _, ids, _ in groups)
        fig, axes = plt.subplots(
            len(groups), cols, figsize=(2.1 * cols + 1.6, 2.3 * len(groups)), squeeze=False
        )
        for k, (r, ids, labels) in enumerate(groups):
            for c in range(cols):
                if c >= len(ids):
                    axes[k][c].axis("off")
                    continue
                title = f"label {labels[c]}\n{ids[c]}"
                thumbnail_cell(axes[k][c], images.get(ids[c]), title, "image\nnot found", 8, 7)
            more = r["group_size"] - len(ids)
            axes[k][0].set_ylabel(
                f"#{r['rank']}  score {r['score']:.2f}\n"
                + _match_text(r)
                + "\n"
                + r["evidence"].replace("+", "\n")
                + (f"\n(+{more} more)" if more > 0 else ""),
                fontsize=7,
            )
        fig.suptitle(
            "double-labelling suspects by score\n(kind of match and similarity at left)", fontsize=9
        )
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI


def doublelabel_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    results_arguments(p)  # the shard manifest: the FNN grid and the thumbnails' images
    p.add_argument("--training", help="default {results}/training.parquet")
    p.add_argument("--duplicates", help="default {results}/quality/duplicates.parquet")
    p.add_argument(
        "--planted",
        help="planted truth CSV (default: {dataset.path}/planted.csv for synthetic data)",
    )
    p.add_argument("--out", help="report Parquet (default {results}/double_labeling.parquet)")
    p.add_argument("--csv", help="report CSV (default: --out with .csv)")
    p.add_argument("--figure", help="thumbnails PNG (default {results}/quality/suspects.png)")
    p.add_argument(
        "--no-figure", action="store_true", help="draw no thumbnails (the report draws them)"
    )
    p.add_argument(
        "--check", help="planted check CSV (default {results}/quality/planted_check.csv)"
    )
    p.add_argument(
        "--check-detail", help="per-plant CSV (default {results}/quality/planted_pairs.csv)"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="warn (not fail) when training records of expected T-FNNs are missing",
    )


def _planted_path(args: argparse.Namespace, cfg: dict[str, Any]) -> Path | None:
    if args.planted:
        return Path(args.planted)
    if cfg["dataset"]["format"] in GENERATED:
        return Path(cfg["dataset"]["path"]) / "planted.csv"
    return None


def doublelabel_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    results, manifest = results_paths(args, cfg)
    training = Path(args.training) if args.training else results / "training.parquet"
    dup_path = (
        Path(args.duplicates) if args.duplicates else results / "quality" / "duplicates.parquet"
    )
    out = Path(args.out) if args.out else results / "double_labeling.parquet"
    csv = Path(args.csv) if args.csv else out.with_suffix(".csv")
    figure = Path(args.figure) if args.figure else results / "quality" / "suspects.png"
    check = Path(args.check) if args.check else results / "quality" / "planted_check.csv"
    detail = Path(args.check_detail) if args.check_detail else check.with_name("planted_pairs.csv")

    df = read_training(training)
    shards = manifest_shards(manifest)
    shard_names = list(shards)
    ev = training_evidence(df, expected_fnns(cfg, shard_names))
    if ev.missing:
        msg = (
            f"{training}: no training record for {len(ev.missing)} expected T-FNN(s) "
            f"(proto/feature/shard): {', '.join(ev.missing[:10])}"
            + (" ..." if len(ev.missing) > 10 else "")
        )
        if not args.allow_missing:
            raise DataError(msg)
        log.warning("%s", msg)
    if not cfg["gdt"]["enabled"]:
        log.warning("gdt.enabled is false: no T records, no residual evidence")
    dups = read_duplicates(dup_path)
    report = combine(dups, ev, cfg["double_labeling"]["near_similarity"], cfg["features"])
    write_report(report, out, csv)
    if not args.no_figure:
        suspects_figure(report, list(shards.values()), figure, cfg["double_labeling"]["thumbnails"])

    planted = _planted_path(args, cfg)
    if planted is None:
        summary, plants = no_ground_truth("real data set (no planted.csv)"), None
    elif not planted.exists():
        if args.planted:
            raise DataError(f"{planted}: planted truth file (--planted) does not exist")
        summary, plants = no_ground_truth(f"{planted} does not exist"), None
    else:
        summary, plants = planted_check(report, read_planted(planted), ev)
    with atomic_path(check) as tmp:
        summary.to_csv(tmp, index=False)
    if plants is not None:
        with atomic_path(detail) as tmp:
            plants.to_csv(tmp, index=False)
    else:
        write_text(detail, ",".join(DETAIL_COLUMNS) + "\n")
    counts = report["evidence"].value_counts().to_dict()
    log.info("%d suspect row(s) %s -> %s", len(report), counts, out)
    for line in summary.to_dict("records"):
        log.info("planted check %s", {k: v for k, v in line.items() if not _blank(v)})
    return 0


def _blank(v: Any) -> bool:
    return v == "" or (isinstance(v, float) and np.isnan(v))
