"""Gather every training job's files into ``weights.parquet`` and ``training.parquet``.

A job is one (model, feature, module, submodule); its files are
``{results}/fnn/{model}/{feature}/{module}_{submodule}.weights.npz`` and ``.metrics.json``
(docs/ARCHITECTURE.md). Every job of the grid must be present and readable: one missing or
broken job stops the gather with a :class:`DataError` naming it, and no table is written
(both writes are atomic; ``weights.parquet`` is streamed into a temporary file first).

``weights.parquet`` holds one row per (proto, feature, module, submodule, layer, kind) and one
Parquet row group per (proto, module): every feature and submodule of one module of one
proto-model, so that a pyarrow filter on proto and module reads that row group alone (its
statistics name one proto and one module). The writer streams: it reads the jobs of one
(module, model) at a time and writes their row groups, so its memory is about one module's
weights of one architecture (all methods), not the grid's (2,720 jobs of the paper: ~8 GB).
Module and submodule are stored as wildcard names (``m01``, ``s1``). Readers: :func:`load_fnn`
(one FNN, exact arrays), :func:`load_proto` (all FNNs of one proto-model, or of some of its
modules, stacked for batched evaluation) and :func:`modules_in`. A table written by an older
gather (row groups per (proto, feature)) reads the same, only slower per module.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from errorless.errors import DataError
from errorless.gather.jobs import (
    Job,
    check_grid,
    check_jobs,
    job_from_path,
    jobs_from_file,
    jobs_from_manifest,
    read_metrics,
)
from errorless.gather.tables import WEIGHTS_SCHEMA, name_order, training_table, write_module
from errorless.io import atomic_path, write_parquet

log = logging.getLogger(__name__)


def gather(
    jobs: Sequence[Job], weights_out: str | Path, training_out: str | Path
) -> tuple[int, int]:
    """Write both tables; return (weight rows, training rows). All-or-nothing."""
    if not jobs:
        raise DataError("no training jobs to gather")
    check_jobs(jobs)
    records_by_job = {j: read_metrics(j) for j in jobs}
    # one row group per (proto, module): read the jobs of one (module, model) together
    by_mm: dict[tuple[int, str, str], list[Job]] = defaultdict(list)
    for j in jobs:
        by_mm[(name_order(j.module), j.module, j.model)].append(j)
    n_rows = 0
    with atomic_path(weights_out) as tmp:
        with pq.ParquetWriter(tmp, WEIGHTS_SCHEMA) as writer:
            for key in sorted(by_mm):
                n_rows += write_module(writer, by_mm[key], records_by_job)
    records = [r for j in jobs for r in records_by_job[j]]
    write_parquet(training_out, training_table(records))
    return n_rows, len(records)


# ---------------------------------------------------------------- CLI


def gather_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jobs-file", help="TSV with columns model, feature, module, submodule")
    src.add_argument(
        "--manifest", help="shards/manifest.tsv: the grid is config models x features x shards"
    )
    src.add_argument(
        "--jobs",
        nargs="+",
        metavar="PATH",
        help="job prefixes or their .weights.npz / .metrics.json files",
    )
    p.add_argument(
        "--results", default="results", help="results folder (with --jobs-file/--manifest)"
    )
    p.add_argument("--config", help="config YAML (needed with --manifest)")
    p.add_argument("--weights-out", required=True, help="weights.parquet to write")
    p.add_argument("--training-out", required=True, help="training.parquet to write")


def gather_main(args: argparse.Namespace) -> int:
    t0 = time.time()
    if args.jobs_file:
        jobs = jobs_from_file(args.jobs_file, args.results)
    elif args.manifest:
        from errorless.config import load_config

        jobs = jobs_from_manifest(args.manifest, load_config(args.config), args.results)
    else:
        seen: dict[Path, Job] = {}
        for path in args.jobs:
            j = job_from_path(path)
            seen.setdefault(j.prefix, j)
        jobs = list(seen.values())
        check_grid(jobs)
    n_w, n_t = gather(jobs, args.weights_out, args.training_out)
    log.info(
        "gathered %d jobs: %d weight rows -> %s, %d FNN records -> %s in %.1f s",
        len(jobs),
        n_w,
        args.weights_out,
        n_t,
        args.training_out,
        time.time() - t0,
    )
    return 0
