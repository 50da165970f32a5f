"""The report's run section: the run's facts (data, grid, settings) and the compute time per
phase from Snakemake's benchmark files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from errorless.data.datasets import GENERATED
from errorless.io import write_text
from errorless.names import proto_key
from errorless.report.figures import compute_figure
from errorless.report.htmltables import html_page, html_table, note
from errorless.report.inputs import _config, read_table

log = logging.getLogger(__name__)


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
