"""The workflow on a live Slurm cluster (marker `slurm`; skipped when `scontrol ping` gets no answer).

    tests/slurm/cluster.sh start && pytest -m slurm tests/slurm; tests/slurm/cluster.sh stop

The small config (tests/slurm/small.yaml) has 2 modules x 2 submodules x 2 features = 8 training jobs.
What ran is read from Snakemake's own output: one "submitted with SLURM jobid" line per sbatch
call (rule and wildcards in the Slurm log path) and the final "N of M steps done".
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import HERE, PROFILES, TARGETS, copy_workdir, snakemake

pytestmark = pytest.mark.slurm

FEATURES = ["R", "G"]
SHARDS = ["m01_s1", "m01_s2", "m02_s1", "m02_s2"]


def train_jobs(run) -> list[str]:
    return sorted(run.submitted_for("train"))


def test_base_run_submits_training_as_one_array(base_run):
    # synthesize + modularize + gather each their own sbatch; the 8 trainings one array
    # (profiles/slurm: `slurm-array-jobs: train`): 4 sbatch calls for 11 steps
    assert base_run.steps == (11, 11), base_run.tail()
    assert len(train_jobs(base_run)) == len(FEATURES) * len(SHARDS)
    assert list(base_run.arrays.values()) == [train_jobs(base_run)], base_run.tail()
    assert base_run.sbatch_calls == 4
    assert "SLURM status is" not in base_run.output  # nothing failed or retried
    nothing = snakemake(base_run.workdir, HERE / "small.yaml", *TARGETS, "--dry-run", timeout=120)
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.output, nothing.tail()


def test_failed_job_then_fix_reruns_only_the_failed_jobs(base_run, tmp_path):
    """A corrupt shard fails its training jobs (a DataError naming the file); the other jobs
    are unaffected; after restoring the shard (same bytes and mtime) exactly the failed jobs run."""
    wd = copy_workdir(base_run.workdir, tmp_path / "wd")
    shard = wd / "results/shards/m01_s1.npz"
    saved = tmp_path / "m01_s1.npz"
    shutil.copy2(shard, saved)
    shard.write_bytes(shard.read_bytes()[:100])  # truncated: newer mtime -> its 2 trainings rerun

    broken = snakemake(wd, HERE / "small.yaml", *TARGETS, "--retries", "0", timeout=180)
    assert broken.returncode != 0, broken.tail()
    # the 2 trainings of the shard went out as one array, both tasks failed
    assert list(broken.arrays.values()) == [train_jobs(broken)], broken.tail()
    assert "Error in rule train" in broken.output
    log = (wd / "results/logs/train/h1_m1/R/m01_s1.log").read_text()
    assert "m01_s1.npz: unreadable shard" in log, log
    assert not (wd / "results/fnn/h1_m1/R/m01_s1.metrics.json").exists()

    shutil.copy2(saved, shard)  # the fix: the original bytes, the original mtime
    fixed = snakemake(wd, HERE / "small.yaml", *TARGETS, timeout=180)
    assert fixed.returncode == 0, fixed.tail()
    # exactly the failed array tasks, again as an array of their own
    assert train_jobs(fixed) == ["h1_m1_G_m01_s1", "h1_m1_R_m01_s1"], fixed.tail()
    assert list(fixed.arrays.values()) == [train_jobs(fixed)], fixed.tail()
    assert {r for r, _, _ in fixed.submitted} == {"train", "gather"}  # no synthesize/modularize
    assert fixed.steps == (3, 3), fixed.tail()  # 2 train + gather


def swap_labels(path: Path, a: int, b: int) -> None:
    """Swap the labels of the first image labelled a and the first labelled b (1-based imagenet
    labels in the pickle) -- a relabelling inside one module."""
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    labels = d["labels"]
    i, j = labels.index(a), labels.index(b)
    labels[i], labels[j] = labels[j], labels[i]
    with open(path, "wb") as fh:
        pickle.dump(d, fh)


def test_changed_labels_of_one_module_retrain_only_that_module(base_run, tmp_path):
    wd = copy_workdir(base_run.workdir, tmp_path / "wd")
    data = wd / "results/data/synthetic"
    # labels 6 and 7 (0-based 5 and 6) both belong to module m02; one swap per training batch
    # touches both of its submodules (a submodule is a contiguous run of source batches)
    for batch in ("train_data_batch_1", "train_data_batch_2"):
        swap_labels(data / batch, 6, 7)

    run = snakemake(wd, HERE / "small.yaml", *TARGETS, timeout=180)
    assert run.returncode == 0, run.tail()
    expected = sorted(f"h1_m1_{f}_{s}" for f in FEATURES for s in ("m02_s1", "m02_s2"))
    assert train_jobs(run) == expected, run.tail()
    assert run.submitted_for("modularize") == [""] and not run.submitted_for("synthesize")
    assert run.submitted_for("gather") == [""]
    # 1 modularize + 4 train + gather; the "Job stats" table printed at the start still says 8
    # train jobs: it is computed before the checkpoint tells which shards changed
    assert run.steps == (6, 6), run.tail()
    manifest = (wd / "results/shards/manifest.tsv").read_text().splitlines()
    changed = {
        line.split("\t")[0] + "_" + line.split("\t")[1]
        for line in manifest[1:]
        if line.split("\t")[5] == "True"
    }
    assert changed == {"m02_s1", "m02_s2"}


def test_forcerun_one_module_plans_only_its_jobs(base_run):
    """The documented way to retrain one module by hand: --forcerun its training outputs."""
    wd = base_run.workdir
    targets = sorted(str(p.relative_to(wd)) for p in wd.glob("results/fnn/*/*/m01_*.metrics.json"))
    assert len(targets) == 4
    run = snakemake(
        wd, HERE / "small.yaml", *TARGETS, "--dry-run", "--forcerun", *targets, timeout=120
    )
    assert run.returncode == 0, run.tail()
    assert run.job_stats() == {"train": 4, "gather": 1, "total": 5}, run.tail()


def test_killed_array_tasks_resume_from_checkpoint(tmp_path):
    """Two trainings as one array (tests/slurm/timeout.yaml with features R and G): attempt 1
    gets runtime=1 min (resources.train_min_minutes 1) and Slurm kills both tasks (TIMEOUT) in
    the middle of GDT; each is resubmitted alone (attempt 2, 2 minutes), resumes from its own
    checkpoint and finishes: GDT's 110 s budget counts across the restart."""
    wd = tmp_path / "wd"
    wd.mkdir()
    targets = [f"results/fnn/h1_m1/{f}/m01_s1.metrics.json" for f in FEATURES]
    run = snakemake(wd, HERE / "timeout.yaml", *targets, "--config", "features=[R,G]", timeout=480)
    assert run.returncode == 0, run.tail()
    assert "SLURM status is: 'TIMEOUT'" in run.output, run.tail()
    assert "Trying to restart job" in run.output, run.tail()
    assert list(run.arrays.values())[0] == ["h1_m1_G_m01_s1", "h1_m1_R_m01_s1"], run.tail()
    assert len(train_jobs(run)) == 4, run.tail()  # 2 killed array tasks + 2 resubmissions
    for f in FEATURES:
        log = (wd / f"results/logs/train/h1_m1/{f}/m01_s1.log").read_text()
        assert "resuming from checkpoint" in log and "GDT resumes at round" in log, log
        metrics = json.loads((wd / f"results/fnn/h1_m1/{f}/m01_s1.metrics.json").read_text())
        assert metrics["job"]["gdt_resumed"] is True
        assert metrics["job"]["gdt_stop_reason"] == "time_budget"
        assert not (wd / f"results/checkpoints/h1_m1/{f}/m01_s1.pt").exists()  # removed once done


def test_packed_profile_submits_fewer_jobs(base_run, tmp_path, small_config):
    """The same DAG through profiles/slurm-packed: the 8 trainings go out as 2 group jobs."""
    wd = tmp_path / "wd"
    wd.mkdir()
    run = snakemake(
        wd,
        small_config,
        *TARGETS,
        "--group-components",
        "fnn=4",
        "--cores",
        "2",
        profile="slurm-packed",
        timeout=300,
    )
    assert run.returncode == 0, run.tail()
    assert run.steps == base_run.steps == (11, 11)
    groups = [s for s in run.submitted if s[0].startswith("group_fnn")]
    assert len(groups) == 2, run.tail()
    assert run.sbatch_calls == 5 and base_run.steps == (11, 11)
    for f in FEATURES:
        for s in SHARDS:
            assert (wd / f"results/fnn/h1_m1/{f}/{s}.metrics.json").exists()


def test_packed_profile_holds_only_the_packing():
    """profiles/slurm-packed is layered on profiles/slurm (--profile next to --workflow-profile):
    it holds the groups and nothing of the Slurm profile."""
    plain = yaml.safe_load((PROFILES / "slurm/config.yaml").read_text())
    packed = yaml.safe_load((PROFILES / "slurm-packed/config.yaml").read_text())
    assert set(packed) == {"groups", "group-components", "cores"} and not set(packed) & set(plain)
    assert packed["groups"] == {"train": "fnn"} and packed["group-components"]["fnn"] >= 2


@pytest.mark.skipif(os.geteuid() != 0, reason="cluster.sh needs root")
def test_cluster_script_refuses_to_start_twice():
    p = subprocess.run([str(HERE / "cluster.sh"), "start"], capture_output=True, text=True)
    assert p.returncode == 1 and "already running" in p.stderr
