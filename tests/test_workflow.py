"""The workflow itself: lint, the planned DAG, config errors, the environment file."""

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake_with(configfile: Path, *args, cwd, timeout=300):
    """`snakemake` with another config file than the repository's config.yaml."""
    return subprocess.run(
        [*SNAKEMAKE, "--configfile", str(configfile), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snakemake(*args, cwd, timeout=300):
    return snakemake_with(ROOT / "config.yaml", *args, cwd=cwd, timeout=timeout)


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


def test_nested_config_values_are_typed(tmp_path):
    """Snakemake hands nested --config values over as strings; they reach the rules typed."""
    r = snakemake(
        "-n",
        "-p",
        "--config",
        "sgd={threshold: 0.9, lr: 1e-3}",
        "modules={labels_per_module: 4}",
        "gdt={enabled: false}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    counts = job_counts(r.stdout)
    assert counts["train"] == 5 * 6 * 2  # 20 labels / 4 per module = 5 modules
    train = next(line for line in r.stdout.splitlines() if "errorless train" in line)
    assert re.search(r'"threshold": 0\.9[,}]', train) and re.search(r'"lr": 0\.001[,}]', train)
    assert '"enabled": false' in train
    # the string of a string-typed key stays a string, a wrong type still fails in one line
    r = snakemake("-n", "--config", "sgd={threshold: high}", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "config key sgd.threshold: 'high' is not of type 'number'" in out
    assert "Traceback" not in out


def test_data_stage_runs_quickly(tmp_path):
    t0 = time.time()
    r = snakemake("--cores", "2", "results/shards/manifest.tsv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - t0 < 60
    assert len(list((tmp_path / "results/shards").glob("m*_s*.npz"))) == 8
    log = (tmp_path / "results/logs/modularize.log").read_text()
    assert "8 written" in log


def test_packed_profile_layers_on_the_slurm_profile(tmp_path):
    """`--workflow-profile profiles/slurm --profile profiles/slurm-packed`: both are read, the
    training jobs are grouped by the second (a dry run; tests/slurm runs it live)."""
    r = snakemake(
        "-n",
        "--workflow-profile",
        str(ROOT / "profiles/slurm"),
        "--profile",
        str(ROOT / "profiles/slurm-packed"),
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Using profiles" in out and "workflow specific profile" in out
    assert "Group job fnn" in out
    plain = snakemake("-n", "--workflow-profile", str(ROOT / "profiles/slurm"), cwd=tmp_path)
    assert plain.returncode == 0 and "Group job" not in plain.stdout + plain.stderr


def test_conda_env_in_sync_with_pyproject():
    """envs/errorless.yaml: pyproject's dependencies and test extras; torch as conda-forge's
    CPU build (pytorch-cpu, same version range), the rest from pip."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["test"]
    env = yaml.safe_load((ROOT / "envs/errorless.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    torch = next(d for d in deps if d.startswith("torch"))
    assert f"pytorch-cpu{torch.removeprefix('torch')}" in env["dependencies"]
    assert sorted(pip) == sorted(d for d in deps if d != torch)


@pytest.mark.parametrize(
    "cfg", ["config.yaml", "config/imagenet64.yaml", "config/photos.yaml", "config/rehearsal.yaml"]
)
def test_shipped_configs_validate(cfg):
    from errorless.config import load_config

    c = load_config(ROOT / cfg)
    assert c["features"][0] == "R"


def bad_data_config(tmp_path, **dataset) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_data_batch_1").write_bytes(b"\x80\x02}q\x00)R.")  # REDUCE on a dict
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "format": "imagenet32",
                    "path": "data",
                    "batches": 1,
                    "labels": 4,
                    **dataset,
                },
                "modules": {"labels_per_module": 2},
                "features": ["R"],
                "featured_models": [1],
            }
        )
    )
    return cfg


def test_data_error_is_one_line_on_screen_with_the_default_command(tmp_path):
    """`snakemake --cores 1`, no profile named: profiles/default shows the failed job's log."""
    cfg = bad_data_config(tmp_path, validation=False)
    r = snakemake_with(cfg, "--cores", "1", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    line = (
        "errorless modularize: error: data/train_data_batch_1: not a readable pickle batch "
        "(truncated or corrupt?): TypeError: 'dict' object is not callable"
    )
    assert line in out.splitlines() and "Traceback" not in out
    assert (tmp_path / "results/logs/modularize.log").read_text() == line + "\n"
    assert not (tmp_path / "logs").exists() and not (tmp_path / "results/shards").exists()


def test_planning_refuses_a_missing_heldout_file_and_an_empty_results(tmp_path):
    cfg = bad_data_config(tmp_path)  # validation: true (the default) and no val_data
    r = snakemake_with(cfg, "-n", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert (
        "data/val_data: held-out file missing while dataset.validation is true"
        in r.stdout + r.stderr
    )
    r = snakemake("-n", "--config", "results=", cwd=tmp_path)
    assert r.returncode != 0 and "config key results" in r.stdout + r.stderr


def test_missing_data_folder_stops_at_planning_in_one_line(tmp_path):
    """dataset.path at a missing folder: one line naming it and the expected files, also in a
    folder with results of an earlier run (Snakemake would name an old shard instead)."""
    cfg = bad_data_config(tmp_path, path="no/such/folder", batches=2)
    line = (
        "config key dataset.path: no/such/folder does not exist; format imagenet32 expects a "
        "folder with 3 file(s): train_data_batch_1, train_data_batch_2, val_data"
    )
    for earlier in (False, True):
        if earlier:
            shards = tmp_path / "results/shards"
            shards.mkdir(parents=True)
            (shards / "manifest.tsv").write_text("module\tsubmodule\n")
            (shards / "m01_s1.npz").write_bytes(b"old")
        r = snakemake_with(cfg, "-n", cwd=tmp_path)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "Traceback" not in out
        assert line in out.splitlines(), out[-2000:]
        assert "MissingInput" not in out and "m01_s1" not in out
    (tmp_path / "x").mkdir()
    cfg = bad_data_config(tmp_path / "x", batches=2)  # the folder exists, batch 2 is missing
    r = snakemake_with(cfg, "-n", cwd=tmp_path / "x")
    assert (
        "config key dataset.path: data lacks 1 of the 2 training file(s) format imagenet32 expects: "
        "train_data_batch_2" in (r.stdout + r.stderr).splitlines()
    )


def test_broken_config_yaml_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("sgd: {threshold: 0.9\n  foo: [\n")
    r = subprocess.run(
        [*SNAKEMAKE, "-n"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert r.returncode != 0
    assert "config file config.yaml is not valid YAML (line 2, column 6)" in r.stdout + r.stderr


def planned(run: Path, *config: str) -> dict[str, int]:
    """Jobs `snakemake -n` plans in a finished run folder with ``--config`` edits."""
    r = subprocess.run(
        [*SNAKEMAKE, "-d", str(run), "--configfile", str(ROOT / "config.yaml"), "-n"]
        + (["--config", *config] if config else []),
        cwd=run,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    if "Job stats:" not in r.stdout:
        assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
        return {}
    return {k: v for k, v in job_counts(r.stdout).items() if k not in ("all", "total")}


REPORT_RULES = {
    "report_training",
    "report_evaluation",
    "report_quality",
    "report_confusion",
    "report_run",
}


@pytest.mark.slow
def test_a_config_edit_reruns_only_the_rules_that_read_it(default_run):
    """Each rule gets the settings it reads as params (Snakemake's params rerun trigger, on by
    default); results/config.yaml is provenance that no rule reads."""
    assert planned(default_run) == {}
    # a display setting: the report section that draws the thumbnails, report_run (it runs
    # after the other sections) and the provenance file
    assert planned(default_run, "double_labeling={thumbnails: 6}") == {
        "report_quality": 1,
        "report_run": 1,
        "write_config": 1,
    }
    # a training setting: every FNN and everything downstream of training, nothing upstream
    # (data, shards) or beside it (the duplicate search reads the shards only)
    jobs = planned(default_run, "sgd={lr: 0.01}")
    assert jobs.pop("train") == 48 and jobs.pop("evaluate") == 4  # 3 batches + held-out
    assert jobs.pop("cross_fit") == 20  # 4 modules x 5 folds: the evidence FNNs use sgd's rate
    assert set(jobs) == {
        "gather", "evaluate_training", "summarize", "double_labeling", "out_of_sample",
        "label_issues", "confusion", "write_config", *REPORT_RULES,
    }  # fmt: skip
    # a confusion setting: the tables and their report section only
    assert planned(default_run, "confusion={top_pairs: 5}") == {
        "confusion": 1,
        "report_confusion": 1,
        "report_run": 1,
        "write_config": 1,
    }
    # a label-issue setting: the evidence FNNs and what reads them, no training
    assert planned(default_run, "label_issues={crossfit: {epochs: 5}}") == {
        "cross_fit": 20,
        "out_of_sample": 1,
        "label_issues": 1,
        "report_quality": 1,
        "report_confusion": 1,  # marks the label issues on its thumbnails
        "report_run": 1,
        "write_config": 1,
    }
    # machine settings: nothing
    assert planned(default_run, "resources={train_min_minutes: 7}") == {}
    assert planned(default_run, "device=cuda") == {}


# ---------------------------------------------------------------- grey data


def grey_npz_config(tmp_path, images, labels, **over) -> Path:
    """An npz data set of grey images (C = 1) in tmp_path/data and a config reading it."""
    (tmp_path / "data").mkdir(exist_ok=True)
    np.savez(tmp_path / "data" / "train.npz", images=images, labels=labels)
    cfg = {
        "dataset": {"format": "npz", "path": "data/train.npz", "validation": False, "labels": 10},
        "modules": {"labels_per_module": 5, "submodules": 2},
        "features": ["gray"],
        "featured_models": [1],
        **over,
    }
    path = tmp_path / "grey.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_grey_npz_plans_and_colour_features_stop_at_planning(tmp_path):
    """features follow the data's planes, read from the npz header at planning: [gray] plans
    (4 FNNs); colour features on the same grey file stop in one line naming the key."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28, 1), dtype=np.uint8)
    cfg = grey_npz_config(tmp_path, images, np.arange(40) % 10)
    r = snakemake_with(cfg, "-n", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert job_counts(r.stdout)["train"] == 4
    r = snakemake_with(cfg, "-n", "--config", "features=[R, G, B]", cwd=tmp_path)
    out = r.stdout + r.stderr
    line = (
        "config key features: the data is grey (data/train.npz: images (40, 28, 28, 1): 1 "
        "plane), it has the single feature 'gray'; colour feature(s) ['R', 'G', 'B'] need 3 planes"
    )
    assert r.returncode != 0 and "Traceback" not in out
    assert line in out.splitlines(), out[-2000:]


@pytest.mark.slow
def test_grey_npz_runs_end_to_end(tmp_path):
    """scikit-learn's real digits saved as a grey npz (1,797 images of 8x8x1) with an exact and
    a mirrored copy given another label: training, evaluation, the duplicate search, double
    labelling, label issues and the report's figures run on one plane."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
    labels = d.target.copy()
    images[1000], labels[1000] = images[0], (labels[0] + 1) % 10  # exact copy
    images[1500], labels[1500] = images[5][:, ::-1], (labels[5] + 5) % 10  # mirrored copy
    cfg = grey_npz_config(
        tmp_path,
        images,
        labels,
        modules={"labels_per_module": 10, "submodules": 2},  # 2 FNNs: the run stays short
        transform={"pool": 2, "trim": 0, "decimals": 4},
        models={"architectures": {"h1": [32]}, "use": ["h1"]},
        gdt={"max_seconds": 5},
    )
    t0 = time.perf_counter()
    r = snakemake_with(cfg, "--cores", "2", cwd=tmp_path, timeout=600)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = tmp_path / "results"
    import pandas as pd

    pairs = pd.read_csv(res / "double_labeling.csv")
    found = {frozenset((a, b)): k for a, b, k in pairs[["id_a", "id_b", "kind"]].to_numpy()}
    assert found.get(frozenset(("train:0", "train:1000"))) == "exact", pairs
    assert found.get(frozenset(("train:5", "train:1500"))) == "mirrored", pairs
    issues = pd.read_parquet(res / "quality/label_issues.parquet")
    assert len(issues) == len(labels) and issues["image_id"].str.startswith("train:").all()
    acc = pd.read_csv(res / "evaluation/accuracy.csv")
    assert set(acc["split"]) == {"train"} and (acc["images"] == len(labels)).all()
    for png in ("quality/suspects.png", "quality/label_issues.png", "report/confusion_wheel.png"):
        assert (res / png).stat().st_size > 5000, png
    print(f"grey npz end to end: {seconds:.0f} s, {len(pairs)} suspect pair(s)")
