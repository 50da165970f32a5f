"""The workflow itself: lint, the planned DAG, config errors, the environment file."""

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(*args, cwd, timeout=300):
    return subprocess.run(
        [*SNAKEMAKE, "--configfile", str(ROOT / "config.yaml"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def job_counts(text: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    table = text.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_passes(tmp_path):
    r = snakemake("--lint", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr


def test_dry_run_plans_the_dag(tmp_path):
    r = snakemake("-n", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = job_counts(r.stdout)
    # 1 model x 6 features x 4 modules x 2 submodules
    assert counts["train"] == 48
    assert counts["synthesize"] == 1 and counts["modularize"] == 1
    # train.group: shard -- one job per model x module x submodule trains its 6 features' FNNs
    r = snakemake("-n", "--config", "train={group: shard}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = job_counts(r.stdout)
    assert counts["train_shard"] == 8 and "train" not in counts


def test_wrong_config_key_is_a_clear_error(tmp_path):
    r = snakemake("-n", "--config", "sgd={treshold: 0.9}", cwd=tmp_path)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "config key sgd" in out and "treshold" in out
    assert "Traceback" not in out
    r = snakemake("-n", "--config", "features=[R, Q]", cwd=tmp_path)
    assert r.returncode != 0 and "config key features" in r.stdout + r.stderr


def test_data_stage_runs_quickly(tmp_path):
    t0 = time.time()
    r = snakemake("--cores", "2", "results/shards/manifest.tsv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - t0 < 60
    assert len(list((tmp_path / "results/shards").glob("m*_s*.npz"))) == 8
    log = (tmp_path / "results/logs/modularize.log").read_text()
    assert "8 written" in log


def test_conda_env_in_sync_with_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs/errorless.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(deps)


@pytest.mark.parametrize("cfg", ["config.yaml", "config/imagenet64.yaml", "config/photos.yaml"])
def test_shipped_configs_validate(cfg):
    from errorless.config import load_config

    c = load_config(ROOT / cfg)
    assert c["features"][0] == "R"


def bad_data_config(tmp_path, **dataset) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_data_batch_1").write_bytes(b"\x80\x02}q\x00)R.")  # REDUCE on a dict
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({
        "dataset": {"format": "imagenet32", "path": "data", "batches": 1, "labels": 4, **dataset},
        "modules": {"labels_per_module": 2}, "features": ["R"], "featured_models": [1],
    }))
    return cfg


def test_data_error_is_one_line_on_screen_with_the_default_command(tmp_path):
    """`snakemake --cores 1`, no profile named: profiles/default shows the failed job's log."""
    cfg = bad_data_config(tmp_path, validation=False)
    r = subprocess.run([*SNAKEMAKE, "--configfile", str(cfg), "--cores", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    line = ("errorless modularize: error: data/train_data_batch_1: not a readable pickle batch "
            "(truncated or corrupt?): TypeError: 'dict' object is not callable")
    assert line in out.splitlines() and "Traceback" not in out
    assert (tmp_path / "results/logs/modularize.log").read_text() == line + "\n"
    assert not (tmp_path / "logs").exists() and not (tmp_path / "results/shards").exists()


def test_planning_refuses_a_missing_heldout_file_and_an_empty_results(tmp_path):
    cfg = bad_data_config(tmp_path)  # validation: true (the default) and no val_data
    r = subprocess.run([*SNAKEMAKE, "--configfile", str(cfg), "-n"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert "data/val_data: held-out file missing while dataset.validation is true" in r.stdout + r.stderr
    r = snakemake("-n", "--config", "results=", cwd=tmp_path)
    assert r.returncode != 0 and "config key results" in r.stdout + r.stderr


def test_broken_config_yaml_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("sgd: {threshold: 0.9\n  foo: [\n")
    r = subprocess.run([*SNAKEMAKE, "-n"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "config file config.yaml is not valid YAML (line 2, column 6)" in r.stdout + r.stderr
