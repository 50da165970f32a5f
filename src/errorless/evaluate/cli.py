"""The evaluation commands (docs/method.md#the-vote, paper §4-5): the training table, the
majority vote, the summaries.

Commands
--------
``evaluate-training`` (paper Table 2): per proto-model the min / mean / median / max training
accuracy over its FNNs, error-free FNNs out of all, and (module, submodule) partitions where
every feature is error-free; then the same with every weight *truncated* (cut toward zero, not
rounded) to ``weights.check_decimals`` decimals, and whether any prediction changed.
Accuracies are recomputed from the saved weights on the shards (they should equal the
recorded ``accuracy``; the largest difference is reported).

``evaluate``: one source batch through every proto-model and featured model Model-p (first p
configured features) with the top-1 and the expanded top-3 protocol. Writes
``{results}/evaluation/predictions/{batch}.parquet``, long format, one row per
(image, proto, p, protocol):
``image_id, batch, row, label, split (train|heldout), proto, p, protocol (top1|top3),
predicted, votes, super_majority, module, submodule (the winning group), correct``,
and ``{batch}.speed.json`` beside it (images per second).

``summarize``: from all prediction files, ``accuracy.csv`` (per proto, p, protocol, split:
accuracy and Top-1 rate, in percent), ``accuracy_per_batch.csv``, and the confusion statistics
of Table 4: ``perfect_labels_per_batch.csv`` (labels whose every image in that batch is
predicted correctly) and ``perfect_labels.csv`` (their mean count over the batches of a split,
and the labels perfect in every batch, listed by number).

The vote and its tie rules: :mod:`errorless.evaluate.vote`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from errorless.config import device_argument, settings_arguments, settings_from_args
from errorless.errors import DataError
from errorless.evaluate.inference import evaluate_batch
from errorless.evaluate.summary import read_predictions, summarize
from errorless.evaluate.table2 import training_evaluation, wheel_data, with_status_counts
from errorless.io import write_json, write_npz, write_parquet, write_text

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- CLI


def fnn_arguments(p: argparse.ArgumentParser, shards: str, shards_required: bool = False) -> None:
    """``--weights`` (weights.parquet) and ``--manifest``: the trained FNNs and their data."""
    p.add_argument("--weights", required=True, help="weights.parquet")
    p.add_argument("--manifest", required=shards_required, help=shards)


def shards_of(args: argparse.Namespace) -> dict[str, Path] | None:
    """The shards of ``--manifest`` by name, None without it."""
    from errorless.data.shards import manifest_shards

    return manifest_shards(args.manifest) if args.manifest else None


def training_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    fnn_arguments(p, shards="shards/manifest.tsv (the run's shards); omit to skip recomputing")
    p.add_argument("--training", required=True, help="training.parquet")
    p.add_argument(
        "--out", required=True, help="Table 2 CSV (e.g. results/evaluation/training.csv)"
    )
    p.add_argument("--fnn-out", help="per-FNN CSV (default: <out stem>_fnn.csv)")
    p.add_argument("--wheel", help="the confusion wheel's data (.npz) for the report")


def training_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    path = Path(args.training)
    if not path.exists():
        raise DataError(f"{path}: training table missing (run the gather step)")
    training = pd.read_parquet(
        path, columns=["proto", "method", "model", "feature", "module", "submodule", "accuracy"]
    )
    shards = shards_of(args)
    table, per_fnn = training_evaluation(training, args.weights, shards, cfg)
    if args.wheel:
        write_npz(args.wheel, **wheel_data(training, args.weights, shards, cfg))
    table = with_status_counts(table, pd.read_parquet(path, columns=["proto", "method", "status"]))
    out = Path(args.out)
    fnn_out = Path(args.fnn_out) if args.fnn_out else out.with_name(out.stem + "_fnn.csv")
    write_text(out, table.to_csv(index=False))
    write_text(fnn_out, per_fnn.to_csv(index=False))
    for r in table.itertuples():
        log.info(
            "%s: min %.3f mean %.3f median %.3f max %.3f | error-free %s FNNs, %s partitions | "
            "cut to %d decimals changed %s predictions",
            r.proto,
            r.min,
            r.mean,
            r.median,
            r.max,
            r.error_free_fnns_text,
            r.error_free_partitions_text,
            r.check_decimals,
            r.cut_predictions_changed,
        )
    return 0


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    device_argument(p)
    p.add_argument(
        "--batch", required=True, help="source batch name (e.g. train_data_batch_1, val_data)"
    )
    p.add_argument("--weights", required=True, help="weights.parquet")
    p.add_argument(
        "--out",
        required=True,
        help="predictions Parquet (results/evaluation/predictions/{batch}.parquet)",
    )
    p.add_argument("--speed", help="speed JSON (default: <out without .parquet>.speed.json)")
    p.add_argument(
        "--protos", nargs="+", help="proto-models to evaluate (default: all in the weights table)"
    )


def evaluate_main(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    table, speed = evaluate_batch(cfg, args.batch, args.weights, args.protos)
    out = Path(args.out)
    write_parquet(out, table)
    speed_path = (
        Path(args.speed)
        if args.speed
        else out.with_name(out.name.removesuffix(".parquet") + ".speed.json")
    )
    write_json(speed_path, speed)
    log.info(
        "%s: %d rows -> %s; %.1f images/s per proto-model",
        args.batch,
        len(table),
        out,
        speed["images_per_second_per_proto"] or float("nan"),
    )
    return 0


def summarize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", nargs="+", required=True, help="predictions Parquet files")
    p.add_argument("--out-dir", required=True, help="folder of the CSV tables (results/evaluation)")


def summarize_main(args: argparse.Namespace) -> int:
    tables = summarize(read_predictions(args.predictions))
    out = Path(args.out_dir)
    for name, t in tables.items():
        write_text(out / f"{name}.csv", t.to_csv(index=False, float_format="%.4f"))
    for r in tables["accuracy"].itertuples():
        log.info(
            "%s %s %s %s: accuracy %.3f %% Top-1 %.3f %% (%d images)",
            r.proto,
            r.featured_model,
            r.protocol,
            r.split,
            r.accuracy_pct,
            r.top1_rate_pct,
            r.images,
        )
    return 0
