# Config validation, the job grid (one source of truth), and resource helpers.
import json
import math
import os

from snakemake.exceptions import WorkflowError

from errorless import config as ecfg
from errorless.data import datasets
from errorless.quality.duplicates import planned_minutes
from errorless.errors import ErrorlessError
from errorless.grid import job_grid
from errorless.names import fold_names, split_model

# The one validation (errorless.config.validate, also used by every CLI command): it reads
# the strings Snakemake makes of nested --config values (sgd='{threshold: 0.9}') as typed
# values, names the offending key in one line and fills the schema defaults.
try:
    ecfg.validate(config)
except ErrorlessError as e:
    raise WorkflowError(str(e))

RESULTS = config["results"]
DATA = config["dataset"]["path"]
FORMAT = config["dataset"]["format"]
# the generator's settings section (synthetic, photos) is read with the dataset section
DATA_SECTIONS = [FORMAT] if FORMAT in datasets.GENERATED else []

# Rules run `python -m errorless` from this checkout (the Snakefile puts src/ on PYTHONPATH).
# The device is a machine setting: the commands get it as --device "$ERRORLESS_DEVICE" (not as
# params), so that changing it reruns nothing.
shell.prefix(f"set -euo pipefail; export ERRORLESS_DEVICE={config['device']}; ")

# ---------------------------------------------------------------- the job grid
# errorless.grid.job_grid is also what `errorless info` shows
try:
    GRID = job_grid(config)
except ErrorlessError as e:
    raise WorkflowError(str(e))
NUM_LABELS = GRID.labels
C = GRID.labels_per_module
MODULES = GRID.modules  # m01, m02, ...
SUBMODULES = GRID.submodules  # s1, s2, ...
FEATURES = GRID.features
MODELS = GRID.models  # h1_m1, h2_m1, ...
PROTOS = GRID.protos  # S_h1_m1, T_h1_m1, ...
TRAIN_BATCHES = datasets.train_batches(config)
try:  # a missing data folder or held-out file stops here, in one line
    datasets.check_source(config)
    VAL_BATCH = datasets.validation_batch(config)
except ErrorlessError as e:
    raise WorkflowError(str(e))
EVAL_BATCHES = TRAIN_BATCHES + ([VAL_BATCH] if VAL_BATCH else [])
# cross-fitted label-issue evidence (errorless.quality.crossfit): one job per (module, fold)
CROSSFIT = (
    config["label_issues"]["enabled"]
    and config["label_issues"]["crossfit"]["folds"] >= 2
)
FOLDS = fold_names(config["label_issues"]["crossfit"]["folds"]) if CROSSFIT else []


wildcard_constraints:
    model="|".join(MODELS),
    feature="|".join(FEATURES),
    mod="|".join(MODULES),
    sub="|".join(SUBMODULES),
    batch="|".join(EVAL_BATCHES),
    fold=r"f\d+",


def fnn_outputs(kind):
    """Every training job's output of one kind (weights.npz or metrics.json)."""
    return [
        f"{RESULTS}/fnn/{model}/{feature}/{mod}_{sub}.{kind}"
        for model, feature, mod, sub in GRID.jobs()
    ]


# Machine settings: how and where a job runs, never what it computes. No rule's params carry
# them, so changing them reruns nothing (the device reaches the commands as --device).
MACHINE_KEYS = ("resources", "device")


def settings_json(*keys, **extra):
    """The validated config cut to ``keys`` (sections, or dotted ``section.key``) as JSON: a
    rule's params, so that a change of these settings, and only these, reruns the rule's jobs
    (Snakemake's params rerun trigger). The ``_only`` list makes the command refuse to read any
    other key (errorless.config.parse_settings) instead of silently using its default.
    """
    sub = {}
    for key in keys:
        section, _, leaf = key.partition(".")
        if leaf:
            sub.setdefault(section, {})[leaf] = config[section][leaf]
        else:
            sub[section] = config[section]
    sub.update(extra)
    sub["_only"] = sorted([*keys, *extra])
    return json.dumps(sub, sort_keys=True)


def groups_file():
    """The label groups file (modules.groups) as a list: one path or none."""
    return [config["modules"]["groups"]] if config["modules"]["groups"] else []


def data_inputs():
    """Source batch files the shards are cut from (synthetic, photos: written by rule
    synthesize) and the label groups file (modules.groups) when given."""
    return [str(p) for p in datasets.batch_files(config)] + groups_file()


def final_targets():
    # the training outputs are named too: a job that failed after an earlier complete run is
    # redone even though the gathered tables from that run still exist
    return fnn_outputs("metrics.json") + [
        f"{RESULTS}/config.yaml",  # provenance: no rule reads it
        f"{RESULTS}/evaluation/training.csv",
        f"{RESULTS}/evaluation/accuracy.csv",
        f"{RESULTS}/double_labeling.csv",
        f"{RESULTS}/quality/label_issues.csv",
        *REPORT_TARGETS,  # defined in report.smk (included after this file)
    ]


def double_labeling_inputs(wildcards):
    """Training records, duplicate pairs, shards; the planted truth for generated data."""
    files = {
        "training": f"{RESULTS}/training.parquet",
        "duplicates": f"{RESULTS}/quality/duplicates.parquet",
        "manifest": f"{RESULTS}/shards/manifest.tsv",
    }
    if FORMAT in datasets.GENERATED:
        files["planted"] = f"{DATA}/planted.csv"
    return files


def crossfit_tables():
    """Every (module, fold) cross-fit table (none when cross-fitting is off)."""
    return [
        f"{RESULTS}/quality/crossfit/{mod}_{fold}.parquet"
        for mod in MODULES
        for fold in FOLDS
    ]


def label_issues_inputs(wildcards):
    """Out-of-sample predictions, the training-set vote (predictions of the training
    batches), the user's pred_probs when given; the planted truth for generated data."""
    files = {
        "oos": f"{RESULTS}/quality/out_of_sample.parquet",
        "predictions": [
            f"{RESULTS}/evaluation/predictions/{batch}.parquet"
            for batch in TRAIN_BATCHES
        ],
    }
    if config["label_issues"]["pred_probs"]:
        files["pred_probs"] = config["label_issues"]["pred_probs"]
    if FORMAT in datasets.GENERATED:
        files["planted"] = f"{DATA}/planted.csv"
    return files


def report_quality_inputs(wildcards):
    """Suspects and label issues with the shards (thumbnails); the planted truth (flips)."""
    files = {
        "suspects": f"{RESULTS}/double_labeling.parquet",
        "check": f"{RESULTS}/quality/planted_check.csv",
        "issues": f"{RESULTS}/quality/label_issues.parquet",
        "manifest": f"{RESULTS}/shards/manifest.tsv",
    }
    if FORMAT in datasets.GENERATED:
        files["planted"] = f"{DATA}/planted.csv"
    return files


def confusion_inputs(wildcards):
    """Every batch's predictions; the files that name the labels and group them, when given."""
    files = {
        "predictions": [
            f"{RESULTS}/evaluation/predictions/{batch}.parquet"
            for batch in EVAL_BATCHES
        ]
    }
    if config["dataset"]["label_names"]:
        files["names"] = config["dataset"]["label_names"]
    if config["modules"]["groups"]:
        files["groups"] = config["modules"]["groups"]
    return files


def report_confusion_inputs(wildcards):
    """The confusion tables (their folder is read), the shards (thumbnails), the
    double-labelling and label-issue tables (marks on the thumbnails)."""
    return {
        "counts": f"{RESULTS}/evaluation/confusion/counts.parquet",
        "tables": [
            f"{RESULTS}/evaluation/confusion/{name}"
            for name in ("modules.parquet", "pairs.csv", "summary.csv", "labels.csv")
        ],
        "manifest": f"{RESULTS}/shards/manifest.tsv",
        "suspects": f"{RESULTS}/double_labeling.parquet",
        "issues": f"{RESULTS}/quality/label_issues.parquet",
    }


def evaluation_inputs(wildcards):
    """One source batch's data files (none for digits, two for an IDX pair) and the weights."""
    return {
        "weights": f"{RESULTS}/weights.parquet",
        "data": [str(p) for p in datasets.source_files(config, wildcards.batch)],
    }


# ---------------------------------------------------------------- training inputs


def shard_of(wildcards):
    checkpoints.modularize.get()  # shards exist once the checkpoint ran
    return f"{RESULTS}/shards/{wildcards.mod}_{wildcards.sub}.npz"


def train_settings(wildcards):
    """Only what changes an FNN: a change elsewhere in the config retrains nothing."""
    arch = split_model(wildcards.model)[0]
    models = {
        "architectures": {arch: config["models"]["architectures"][arch]},
        "use": [arch],
    }
    return settings_json("seed", "transform", "sgd", "gdt", "weights", models=models)


# ---------------------------------------------------------------- resources
# Estimates from the shard size and the architecture; every retry multiplies them by the
# attempt, so a job killed by its time or memory limit comes back with more.


def shard_images(wildcards):
    """Images in one shard, estimated from its file size (12,288 bytes per 64-px image);
    before the shards exist (planning the DAG) the paper's 15,000-image shard is assumed.
    """
    path = f"{RESULTS}/shards/{wildcards.mod}_{wildcards.sub}.npz"
    if not os.path.exists(path):
        return 15000
    return max(1, os.path.getsize(path) // 12400)


def arch_cost(wildcards):
    """Relative cost of an architecture (hidden units over h1's 256)."""
    arch = split_model(wildcards.model)[0]
    return max(1.0, sum(config["models"]["architectures"][arch]) / 256)


def train_runtime(wildcards, attempt):
    """Minutes: SGD + GDT grow with the shard size; GDT can run for hours on 15,000 images."""
    r = config["resources"]
    minutes = (
        r["train_minutes_per_kimage"]
        * shard_images(wildcards)
        / 1000
        * arch_cost(wildcards)
    )
    if not config["gdt"]["enabled"]:
        minutes /= 4
    return int(attempt * max(r["train_min_minutes"], math.ceil(minutes)))


def train_mem_mb(wildcards, attempt):
    """MB: the python/torch baseline plus images, transformed inputs and activations."""
    n = shard_images(wildcards)
    hidden = sum(config["models"]["architectures"][split_model(wildcards.model)[0]])
    mb = 700 + n * (12288 + 4 * 900 * 3 + 4 * hidden * 4) / 1e6
    return int(attempt * math.ceil(mb / 100) * 100)


def shard_group_mem_mb(wildcards, attempt):
    """A shard group (train.group: shard): one FNN job's estimate plus, per further feature,
    its inputs, activations and stacked GDT batch."""
    n = shard_images(wildcards)
    hidden = sum(config["models"]["architectures"][split_model(wildcards.model)[0]])
    extra = (len(FEATURES) - 1) * n * (4 * 900 * 3 + 4 * hidden * 4) / 1e6
    return train_mem_mb(wildcards, attempt) + int(
        attempt * math.ceil(extra / 100) * 100
    )


def shard_group_runtime(wildcards, attempt):
    """Minutes of a shard group: its FNNs one after another (a CPU bound; a GPU is faster)."""
    return len(FEATURES) * train_runtime(wildcards, attempt)


def n_params():
    """Parameters of all FNNs of one proto-model (largest architecture)."""
    side = 30  # 900 inputs for 64- and 32-px images
    widths = max(config["models"]["architectures"][a] for a in config["models"]["use"])
    sizes = [side * side, *widths, C]
    per_fnn = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return per_fnn * len(FEATURES) * len(MODULES) * len(SUBMODULES)


def crossfit_mem_mb(wildcards, attempt):
    """MB: the module's images (read and one augmented copy) and every member's transformed
    inputs (features x replicates, float32) and activations."""
    cf = config["label_issues"]["crossfit"]
    n = TRAIN_IMAGES / len(MODULES)
    members = len(FEATURES) * cf["replicates"]
    hidden = sum(config["models"]["architectures"][config["models"]["use"][0]])
    mb = 800 + n * (2 * 12288 + members * 4 * (900 + 2 * hidden)) / 1e6
    return int(attempt * math.ceil(mb / 100) * 100)


def crossfit_runtime(wildcards, attempt):
    """Minutes: epochs x members x the module's images (measured: 9 s for 20 epochs of one
    FNN on 8,000 28-px images, 2-core machine; 64-px images cost about the same after pooling).
    """
    cf = config["label_issues"]["crossfit"]
    n = TRAIN_IMAGES / len(MODULES)
    work = cf["epochs"] * len(FEATURES) * cf["replicates"] * n
    return int(attempt * max(10, math.ceil(3 * work / 160000 / 60)))


def scaled(base_mb, base_min):
    """Resource helpers for light rules: (mem_mb(attempt), runtime(attempt))."""

    def mem(wildcards, attempt):
        return base_mb * attempt

    def runtime(wildcards, attempt):
        return base_min * attempt

    return mem, runtime


LIGHT_MEM, LIGHT_MIN = scaled(1000, 10)
TRAIN_IMAGES = (
    NUM_LABELS * 1300
)  # an upper estimate: ImageNet has ~1,281 images per label
# weights are 4 bytes each; gather holds one module's weights of one architecture (a few
# copies while writing Parquet; measured on the paper's grid: 0.87 GB peak, docs/performance.md), evaluate
# one proto-model at a time
_PROTO_MB = math.ceil(n_params() * 4 * 3 / 1e6)
GATHER_MEM, GATHER_MIN = scaled(
    2000 + math.ceil(_PROTO_MB * len(PROTOS) / len(MODULES)), 30
)
# the duplicate search holds every training image's thumbnails (32x32 grey float16 + 16x16x3
# uint8 = 2,816 bytes) plus keys, descriptors and the index (measured: 1.28 M images, see
# docs/performance.md), and one verification pass of double_labeling.verify_mb whatever the
# number of candidates; its time grows with the candidate pairs to verify
# (errorless.quality.duplicates.planned_minutes)
DUP_MEM, DUP_MIN = scaled(
    1500
    + math.ceil(config["double_labeling"]["verify_mb"])
    + math.ceil(TRAIN_IMAGES * 2816 * 1.5 / 1e6),
    planned_minutes(TRAIN_IMAGES),
)
# evaluate: one source batch (its bytes and its images) and ~3 copies of the weights it holds
# at once: a proto-model, or evaluation.weights_mb of it (measured on the paper's grid: 6.3 GB
# with 500 MB, 9.8 GB with a whole proto-model; docs/performance.md)
_EVAL_HELD_MB = _PROTO_MB / 3
if config["evaluation"].get("weights_mb"):
    _EVAL_HELD_MB = min(_EVAL_HELD_MB, config["evaluation"]["weights_mb"])
EVAL_MEM, EVAL_MIN = scaled(
    math.ceil(
        3000 + 2 * TRAIN_IMAGES / len(TRAIN_BATCHES) * 12288 / 1e6 + 3 * _EVAL_HELD_MB
    ),
    240 if NUM_LABELS >= 1000 else 30,
)
