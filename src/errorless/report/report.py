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
import logging
from pathlib import Path

from errorless.errors import DataError
from errorless.report.confusion import confusion_section
from errorless.report.evaluation import evaluation_section
from errorless.report.quality import quality_section
from errorless.report.runfacts import run_section
from errorless.report.training import training_section

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
