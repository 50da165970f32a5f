"""The paper's run rehearsed at full size on one machine (issue 15; config/rehearsal.yaml).

Steps (each prints its figures; run them in this order, each needs the ones before):

  data      the data stage through the workflow: synthesize (streaming, 1.28 M 64-px images)
            and modularize; times and max RSS from Snakemake's benchmark files
  sample    a few real training jobs (``snakemake`` targets), timed: the measured sample
  fake      every other job's weights.npz / metrics.json, with the paper's shapes (h1 900x256 +
            256x25, h2 900x256 + 256x77 + 77x25; S, Sp and T per job), random weights rounded to
            4 decimals, metrics copied from a sampled job of the same architecture (identity,
            label_lo and weights_sha256 rewritten; residual-error lists cut to the paper's
            outcome: 2 % of the shard for S, 1 % for Sp, none for T -- the tiny budget leaves
            ~60 %, 1.2 MB of JSON a job): what the 2,720 jobs would leave, cheaply
  gather    ``errorless gather`` on the whole grid: wall, peak RSS (/usr/bin/time), file size
  evaluate  one full source batch through all 6 proto-models (8,160 FNNs), in a child process:
            the batch is loaded whole and the predictions table is built for every image, but
            the FNN forward pass runs on the first --eval-images only and its votes are tiled
            to the batch (2 shared CPU cores cannot push 128 k images through 8,160 FNNs in
            the time); images/s = those images / their seconds; peak RSS of the whole job
  dryrun    ``snakemake -n`` on the full DAG: time and Snakemake's peak RSS, the jobs of
            train.group fnn and shard, and the submissions with profiles/slurm-packed
  relabel   3 labels changed in module m02 (batch 1), the data stage rerun: which shards were
            rewritten, and what ``snakemake -n --rerun-triggers mtime`` plans (mtime only:
            the bench-made jobs carry no Snakemake records). Changes the data: run it last

    python bench/rehearsal_bench.py --dir /tmp/rehearsal data sample fake gather evaluate dryrun
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from record import record, record_argument  # noqa: E402  (bench/record.py)

SAMPLE = [  # (model, feature, module, submodule): both architectures, two features
    ("h1_m1", "R", "m01", "s1"),
    ("h1_m1", "eRGB", "m02", "s2"),
    ("h2_m1", "R", "m01", "s1"),
    ("h2_m1", "eRGB", "m02", "s2"),
]


def load(a):
    from errorless.config import load_config

    return load_config(
        ROOT / "config" / "rehearsal.yaml",
        overrides={"results": str(a.results), "dataset": {"path": str(a.data)}},
    )


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def smk(a, *args, cores: int = 1) -> list[str]:
    return [
        "snakemake",
        "--cores",
        str(cores),
        "--configfile",
        "config/rehearsal.yaml",
        str(a.paths),
        *args,
    ]


def timed(cmd: list[str], **kw) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, peak RSS MB of the command and its children as /usr/bin/time sees it, result)"""
    t = time.time()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True, cwd=ROOT, **kw
    )
    rss = [int(m) for m in re.findall(r"MAXRSS (\d+)", p.stderr)]
    if p.returncode:
        sys.exit(f"{' '.join(cmd[:6])} ...: rc {p.returncode}\n{p.stderr[-3000:]}")
    return time.time() - t, (rss[-1] / 1024 if rss else float("nan")), p


def bench_tsv(path: Path) -> dict:
    head, row = path.read_text().splitlines()[:2]
    return dict(zip(head.split("\t"), row.split("\t"), strict=True))


def step_data(a):
    wall, rss, _ = timed(smk(a, "--", f"{a.results}/shards/manifest.tsv"))
    for name in ("synthesize", "modularize"):
        b = bench_tsv(a.results / "benchmarks" / f"{name}.tsv")
        print(f"data: {name}: {float(b['s']):.0f} s, max_rss {float(b['max_rss']):.0f} MB")
    size = sum(f.stat().st_size for f in a.data.iterdir()) / 1e9
    print(f"data: the stage {wall:.0f} s wall, data {size:.1f} GB, load {uptime()}")


def step_sample(a):
    from errorless.gather.jobs import job_at

    targets = [str(job_at(a.results, *j).metrics) for j in SAMPLE]
    wall, rss, _ = timed(smk(a, "--config", "train={group: fnn}", "--", *targets))
    for j in SAMPLE:
        b = bench_tsv(a.results / "benchmarks" / "train" / j[0] / j[1] / f"{j[2]}_{j[3]}.tsv")
        m = json.loads(job_at(a.results, *j).metrics.read_text())["records"]
        acc = {r["method"]: round(r["accuracy"], 3) for r in m}
        print(
            f"sample: {j}: {float(b['s']):.1f} s, max_rss {float(b['max_rss']):.0f} MB, "
            f"accuracy {acc}"
        )
    print(f"sample: {len(SAMPLE)} jobs in {wall:.0f} s wall (one core), load {uptime()}")


def step_fake(a):
    from errorless.gather.jobs import jobs_from_manifest
    from errorless.io import arrays_digest

    cfg = load(a)
    jobs = jobs_from_manifest(a.results / "shards" / "manifest.tsv", cfg, a.results)
    templates = {}
    for j in SAMPLE:
        from errorless.gather.jobs import job_at

        templates[j[0]] = json.loads(job_at(a.results, *j).metrics.read_text())
    rng = np.random.default_rng(0)
    archs = cfg["models"]["architectures"]
    c = cfg["modules"]["labels_per_module"]
    t, n = time.time(), 0
    for job in jobs:
        if job.metrics.exists() and job.weights.exists():
            continue
        doc = json.loads(json.dumps(templates[job.model]))
        sizes = [900, *archs[job.model.split("_")[0]], c]
        arrays = {}
        for rec in doc["records"]:
            for i, (p, q) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
                W = rng.random((p, q), dtype=np.float32)
                W -= 0.5
                W *= 0.2
                arrays[f"{rec['method']}/W{i}"] = W.round(4)
                arrays[f"{rec['method']}/b{i}"] = (rng.random(q, dtype=np.float32) - 0.5).round(4)
            # the paper's outcome, not the tiny budget's: S and Sp stop at the 98 % threshold
            # (2 % / 1 % of the shard left as residual errors), T error-free
            keep = {"S": 0.02, "Sp": 0.01}.get(rec["method"], 0.0)
            n_res = int(keep * rec.get("n_images", 0))
            for key in ("residual_ids", "residual_labels", "residual_predicted"):
                if isinstance(rec.get(key), list):
                    rec[key] = rec[key][:n_res]
            rec.update(
                feature=job.feature,
                module=job.module,
                submodule=job.submodule,
                label_lo=(int(job.module[1:]) - 1) * c,
            )
        doc["job"]["weights_sha256"] = arrays_digest(arrays)
        job.prefix.parent.mkdir(parents=True, exist_ok=True)
        np.savez(job.weights, **arrays)
        job.metrics.write_text(json.dumps(doc))
        n += 1
    size = sum(j.weights.stat().st_size for j in jobs) / 1e9
    print(
        f"fake: {n} jobs written in {time.time() - t:.0f} s; {len(jobs)} jobs, weights.npz "
        f"{size:.2f} GB in all, load {uptime()}"
    )


def step_gather(a):
    out = a.results / "weights.parquet"
    cmd = [sys.executable, "-m", "errorless", "gather", "--manifest"]
    cmd += [str(a.results / "shards" / "manifest.tsv"), "--config", str(a.cfgfile)]
    cmd += ["--results", str(a.results), "--weights-out", str(out)]
    cmd += ["--training-out", str(a.results / "training.parquet")]
    wall, rss, _ = timed(cmd)
    import pyarrow.parquet as pq

    md = pq.ParquetFile(out).metadata
    print(
        f"gather: 2,720 jobs: {wall:.0f} s wall, peak RSS {rss:.0f} MB, weights.parquet "
        f"{out.stat().st_size / 1e9:.2f} GB ({md.num_row_groups} row groups, {md.num_rows} rows), "
        f"training.parquet {(a.results / 'training.parquet').stat().st_size / 1e6:.1f} MB, "
        f"load {uptime()}"
    )


def step_evaluate(a):
    code = f"""
import json, sys, time, numpy as np
sys.path.insert(0, {str(ROOT / "src")!r})
from errorless.evaluate import cli as evaluate
from errorless.evaluate import inference
from errorless.evaluate import vote
from errorless.gather import gather
from errorless.gather import load
from errorless.io import write_parquet
cfg = json.loads(open({str(a.cfgfile)!r}).read())
cfg["evaluation"]["weights_mb"] = {a.weights_mb or None}
real = inference.proto_votes
M, LAST = {a.eval_images}, {a.last_images or a.eval_images}
protos = load.protos_in({str(a.results / "weights.parquet")!r})
spent = []
def sampled(images, weights, proto, *args, **kw):  # the forward pass on the first M images
    t = time.perf_counter()                         # (LAST for the last proto), tiled to all
    m = LAST if proto == protos[-1] else M
    votes, groups, fnns, n = real(images[:m], weights, proto, *args, **kw)
    spent.append((time.perf_counter() - t, fnns, m))
    reps = -(-len(images) // m)
    tile = lambda x: np.tile(x, reps)[: len(images)]
    return {{k: vote.Vote(*(tile(getattr(v, f)) for f in ("label", "votes", "group",
        "super_majority", "variance", "distance"))) for k, v in votes.items()}}, groups, fnns, n
inference.proto_votes = sampled
load_proto, loading = load.load_proto, []
def timed_load(*args, **kw):  # reading weights.parquet, apart from the forward pass
    t = time.perf_counter()
    out = load_proto(*args, **kw)
    loading.append(time.perf_counter() - t)
    return out
load.load_proto = timed_load
t = time.perf_counter()
table, speed = inference.evaluate_batch(cfg, {a.batch!r}, {str(a.results / "weights.parquet")!r})
write_parquet({str(a.results / "eval_bench.parquet")!r}, table)
sec = sum(s for s, _, _ in spent)
rd = sum(loading)
rate = f"{{M / (sec - rd):.2f}} images/s" if LAST == M else "images/s: see the seconds per proto"
print(f"EVAL images {{len(table) // (len(spent) * 12)}} rows {{len(table)}} forward {{M}} images "
      f"({{LAST}} for the last) x {{len(spent)}} protos ({{sum(f for _, f, _ in spent)}} FNNs) in "
      f"{{sec:.1f}} s (per proto {{[round(s) for s, _, _ in spent]}}), of which reading weights "
      f"{{rd:.1f}} s ({{len(loading)}} reads): {{rate}} with all FNNs (forward + vote); "
      f"job {{time.perf_counter() - t:.0f}} s")
"""
    wall, rss, p = timed([sys.executable, "-c", code])
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("EVAL")][-1]
    print(
        f"evaluate: {a.batch}: {line[5:]}; peak RSS {rss:.0f} MB (weights_mb {a.weights_mb}, "
        f"batch_size {load(a)['evaluation']['batch_size']}), torch threads default, load {uptime()}"
    )


def count_jobs(stdout: str) -> dict[str, int]:
    stats = stdout.split("Job stats:")[-1].strip().splitlines()
    return {ln.split()[0]: int(ln.split()[1]) for ln in stats[2:] if len(ln.split()) == 2}


def step_dryrun(a):
    for extra, label in (
        ([], "train.group fnn"),
        (["--config", "train={group: shard}"], "train.group shard"),
    ):
        wall, rss, p = timed(smk(a, "-n", *extra))
        print(
            f"dryrun: {label}: snakemake -n {wall:.0f} s, peak RSS {rss:.0f} MB, jobs "
            f"{count_jobs(p.stdout)}, load {uptime()}"
        )
    # packing: the slurm profiles (dry run, nothing submitted)
    for extra, label in (
        (["--workflow-profile", "profiles/slurm"], "slurm"),
        (
            ["--workflow-profile", "profiles/slurm", "--profile", "profiles/slurm-packed"],
            "slurm + slurm-packed",
        ),
        (
            [
                "--workflow-profile",
                "profiles/slurm",
                "--profile",
                "profiles/slurm-packed",
                "--config",
                "train={group: shard}",
            ],
            "slurm + slurm-packed, train.group shard",
        ),  # fmt: skip
    ):
        wall, rss, p = timed(smk(a, "-n", *extra))
        out = p.stdout + p.stderr
        groups = len(re.findall(r"Group job ", out))
        jobs = count_jobs(p.stdout)
        print(f"dryrun: {label}: {wall:.0f} s, group jobs {groups}, jobs {jobs}")


def step_relabel(a):
    import pickle

    path = a.data / "train_data_batch_1"
    d = pickle.loads(path.read_bytes())
    rows = [i for i, v in enumerate(d["labels"]) if v == 27][:3]  # 1-based: label 26, m02
    for i in rows:
        d["labels"][i] = 28
    with open(path.with_suffix(".tmp"), "wb") as fh:
        pickle.dump(d, fh, protocol=5)
    del d
    path.with_suffix(".tmp").replace(path)
    shards = a.results / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.npz")}
    mtime = ["--rerun-triggers", "mtime"]
    wall, rss, _ = timed(smk(a, *mtime, "--", f"{shards}/manifest.tsv"))
    changed = [
        p.name for p in sorted(shards.glob("*.npz")) if p.stat().st_mtime_ns != before[p.name]
    ]
    print(
        f"relabel: rows {rows} of batch 1; modularize {wall:.0f} s, {rss:.0f} MB; rewrote {changed}"
    )
    wall, rss, p = timed(smk(a, "-n", *mtime, "--", f"{a.results}/weights.parquet"))
    print(
        f"relabel: snakemake -n plans {count_jobs(p.stdout)} ({wall:.0f} s, {rss:.0f} MB), load {uptime()}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "steps",
        nargs="+",
        choices=["data", "sample", "fake", "gather", "evaluate", "dryrun", "relabel"],
    )
    ap.add_argument("--dir", default="/tmp/rehearsal", help="big scratch folder")
    ap.add_argument("--batch", default="train_data_batch_1")
    ap.add_argument("--eval-images", type=int, default=1024)
    ap.add_argument(
        "--last-images",
        type=int,
        default=0,
        help="forward images of the last proto-model (whose forward pass runs with every other "
        "proto-model's predictions held: the peak); 0 = --eval-images",
    )
    ap.add_argument("--weights-mb", type=float, default=500, help="0: a whole proto-model at once")
    record_argument(ap)
    a = ap.parse_args()
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    a.results, a.data = base / "results", base / "data"
    a.paths, a.cfgfile = base / "paths.yaml", base / "settings.json"
    a.paths.write_text(json.dumps({"results": str(a.results), "dataset": {"path": str(a.data)}}))
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    a.cfgfile.write_text(json.dumps(load(a)))  # the validated settings, for the child processes
    lines = Lines()
    with contextlib.redirect_stdout(lines):
        for step in a.steps:
            globals()[f"step_{step}"](a)
    if a.record:
        record(
            "rehearsal_bench-" + "-".join(a.steps),
            f"Rehearsal of the paper's run at full size: {', '.join(a.steps)}",
            "config/rehearsal.yaml: the paper's grid (1,000 labels, 40 modules x 2 submodules x "
            "17 features x h1/h2) on 1,280,000 synthetic 64-px training images + 50,000 held out",
            [(ln.split(":", 1)[0], ln.split(":", 1)[-1].strip()) for ln in lines.kept],
        )
    return 0


class Lines(io.TextIOBase):
    """stdout that is also kept, line by line (the figures of the steps)."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self._out = sys.stdout

    def write(self, text: str) -> int:
        self._out.write(text)
        self._out.flush()
        self.kept += [ln for ln in text.splitlines() if ln.strip()]
        return len(text)


if __name__ == "__main__":
    raise SystemExit(main())
