"""SIGKILL at a random moment of the default run, then the README's resume commands: the outputs
equal a clean run's (issue #13).

Both runs use `snakemake --cores 2` (the default command, no profile named) on a small config
(8 labels, 1 feature, 4 training jobs, every rule of the default target list). The killed run's
whole process group (Snakemake and its jobs) gets SIGKILL at a seeded random time inside the
clean run's duration; then `snakemake --unlock` and `snakemake --cores 2 --rerun-incomplete`.

Compared (what must be identical; timings are not):
- byte for byte: the synthetic batches, every shard, every evaluation CSV, the planted-truth CSVs,
  double_labeling.csv, report/accuracy_vs_features.csv and report/training_table.csv;
- Arrow tables equal: weights.parquet (every weight value), the predictions of every batch,
  quality/duplicates.parquet, double_labeling.parquet; training.parquet without its timing
  columns (seconds_sgd, seconds_gdt) and its `job` column (thread count, resume flag);
- every job's weights.npz arrays and the weights_sha256 of its metrics.json;
- shards/manifest.tsv without its `changed` column (it says which shards that invocation
  rewrote, which depends on where the kill landed).
Not compared: logs, benchmarks, *.speed.json, run_facts.html and figures (they carry times).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [
    sys.executable,
    "-m",
    "snakemake",
    "-s",
    str(ROOT / "Snakefile"),
    "--configfile",
    "cfg.yaml",
]
CONFIG = {
    "results": "results",
    "dataset": {"format": "synthetic", "path": "results/data/synthetic", "validation": True},
    "synthetic": {
        "labels": 8,
        "image_size": 32,
        "images_per_label": 8,
        "batches": 2,
        "validation_per_label": 2,
        "plant_same_shard": 1,
        "plant_cross_module": 1,
        "plant_near": 1,
    },
    "modules": {"labels_per_module": 4, "submodules": 2},
    "features": ["R"],
    "featured_models": [1],
    "models": {"architectures": {"h1": [16]}, "use": ["h1"], "replicates": 1},
    "sgd": {"threshold": 0.9, "max_epochs": 30},
    # no time budget (a budget stop depends on the machine's load); a checkpoint after every
    # step, so that a kill can land inside a checkpoint write
    "gdt": {"rounds": 2, "max_lambda_steps": 40, "checkpoint_seconds": 0, "max_seconds": 1e6},
}
BYTES = [
    "data/synthetic/*",
    "shards/*.npz",
    "evaluation/*.csv",
    "quality/*.csv",
    "double_labeling.csv",
    "report/accuracy_vs_features.csv",
    "report/training_table.csv",
]
TABLES = [
    "weights.parquet",
    "evaluation/predictions/*.parquet",
    "quality/duplicates.parquet",
    "double_labeling.parquet",
]


def workdir(tmp: Path, name: str) -> Path:
    wd = tmp / name
    wd.mkdir()
    (wd / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    return wd


def run(wd: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([*SNAKEMAKE, *args], cwd=wd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r


def files(results: Path, patterns: list[str]) -> list[str]:
    return sorted(str(p.relative_to(results)) for pat in patterns for p in results.glob(pat))


def assert_same_outputs(a: Path, b: Path) -> None:
    for rel in files(a, BYTES):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert files(a, BYTES) == files(b, BYTES)
    for rel in files(a, TABLES):
        assert pq.read_table(a / rel).equals(pq.read_table(b / rel)), rel
    assert files(a, TABLES) == files(b, TABLES)
    drop = ["seconds_sgd", "seconds_gdt", "job"]
    ta, tb = (pq.read_table(r / "training.parquet").drop_columns(drop) for r in (a, b))
    assert ta.equals(tb)
    for rel in files(a, ["fnn/*/*/*.weights.npz"]):
        with np.load(a / rel) as za, np.load(b / rel) as zb:
            assert sorted(za.files) == sorted(zb.files)
            assert all(np.array_equal(za[k], zb[k]) for k in za.files), rel
        ma, mb = (
            json.loads((r / rel.replace(".weights.npz", ".metrics.json")).read_text())
            for r in (a, b)
        )
        assert ma["job"]["weights_sha256"] == mb["job"]["weights_sha256"]
        assert [r["status"] for r in ma["records"]] == [r["status"] for r in mb["records"]]
    ma, mb = (
        pd.read_csv(r / "shards/manifest.tsv", sep="\t").drop(columns="changed") for r in (a, b)
    )
    pd.testing.assert_frame_equal(ma, mb)


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_equals_a_clean_run(tmp_path):
    seed = int(os.environ.get("ERRORLESS_KILL_SEED", "0"))
    clean = workdir(tmp_path, "clean")
    t0 = time.monotonic()
    run(clean, "--cores", "2")
    duration = time.monotonic() - t0

    killed = workdir(tmp_path, "killed")
    at = float(np.random.default_rng(seed).uniform(0.05, 0.85)) * duration
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2"],
        cwd=killed,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(at)
    assert proc.poll() is None, "the run ended before the kill"
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
    proc.wait()
    print(f"killed after {at:.1f} s of a {duration:.1f} s clean run (seed {seed})")

    # the README's resume commands ("A run was killed")
    run(killed, "--unlock")
    run(killed, "--cores", "2", "--rerun-incomplete")

    assert_same_outputs(clean / "results", killed / "results")
    left = [
        p for p in (killed / "results").rglob("*") if p.name.endswith(".tmp") or p.suffix == ".pt"
    ]
    assert not left, left  # no stale temporary file, no leftover checkpoint
