"""The data stage at ImageNet size: time and peak memory of `errorless modularize`.

Writes N images in the real downsampled-ImageNet pickle layout (`train_data_batch_1..B`,
`data` (n, 3*S*S) uint8 planes, `labels` 1..L; one batch at a time, so the writer holds one
batch), then runs `python -m errorless modularize` on it twice in a child process -- the first
run writes every shard, the second finds them unchanged -- and prints wall time and the child's
peak RSS (getrusage). Then `snakemake -n` on the paper's grid (config/imagenet64.yaml) over that
folder, timed, with the shards in place.

    python bench/modularize_bench.py --n 1280000 --size 64 --dir /tmp/in64
    python bench/modularize_bench.py --n 1280000 --size 64 --data synthetic  # class patterns
    python bench/modularize_bench.py --record     # docs/benchmarks/modularize_bench-<n>-<size>.md
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from record import record, record_argument  # noqa: E402


def write_layout(out: Path, n: int, size: int, labels: int, batches: int, seed: int) -> None:
    """Random smooth-ish images (content does not matter to modularize), labels cycling."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = np.full(batches, n // batches)
    per[: n % batches] += 1
    for b, m in enumerate(per, start=1):
        path = out / f"train_data_batch_{b}"
        if path.exists():
            continue
        t = time.time()
        data = rng.integers(0, 256, (m, 3 * size * size), dtype=np.uint8)
        y = rng.permutation(np.arange(m) % labels) + 1  # 1..L, as the files hold them
        with open(path.with_suffix(".tmp"), "wb") as fh:
            pickle.dump({"data": data, "labels": y.tolist()}, fh, protocol=4)
        path.with_suffix(".tmp").rename(path)
        del data
        print(f"  wrote {path.name}: {m} images in {time.time() - t:.1f} s", flush=True)
    val = out / "val_data"
    if not val.exists():
        data = rng.integers(0, 256, (labels, 3 * size * size), dtype=np.uint8)
        with open(val, "wb") as fh:
            pickle.dump({"data": data, "labels": list(range(1, labels + 1))}, fh, protocol=4)


def write_synthetic(out: Path, n: int, size: int, labels: int, batches: int, seed: int) -> None:
    """The streaming synthetic generator instead (class patterns, planted pairs; n rounded
    down to labels x batches x k images)."""
    from errorless.config import load_config
    from errorless.data import synthetic

    per = max(2, n // (labels * batches))
    cfg = load_config(
        overrides={
            "synthetic": {
                "labels": labels,
                "image_size": size,
                "images_per_label": per,
                "batches": batches,
                "validation_per_label": 1,
                "seed": seed,
                "stream": True,
            },
            "modules": {"labels_per_module": 25, "submodules": 2},
        }
    )
    synthetic.write_streaming(cfg, out)


def child_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_modularize(settings: dict, results: Path) -> tuple[float, str]:
    t = time.time()
    cmd = [
        sys.executable,
        "-m",
        "errorless",
        "modularize",
        "--settings",
        json.dumps(settings),
        "--out",
        str(results / "shards"),
        "--manifest",
        str(results / "shards" / "manifest.tsv"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    return time.time() - t, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=128_000, help="training images (ImageNet: 1,281,167)")
    ap.add_argument("--size", type=int, default=64, choices=(32, 64))
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument(
        "--dir", default="/tmp/errorless-modularize-bench", help="data + results folder"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-dry-run", action="store_true", help="skip the snakemake -n timing")
    ap.add_argument(
        "--data",
        choices=("random", "synthetic"),
        default="random",
        help="random pixels, or the streaming synthetic generator (errorless.data.synthetic)",
    )
    record_argument(ap)
    a = ap.parse_args()
    figures: list[tuple[str, object]] = []

    sys.path.insert(0, str(ROOT / "src"))
    from errorless.config import load_config

    base = Path(a.dir)
    data, results = base / f"imagenet{a.size}", base / f"results{a.size}"
    print(f"writing {a.n:,} {a.size}-px images in {a.batches} pickle batches to {data}", flush=True)
    t = time.time()
    if a.data == "synthetic" and not (data / "val_data").exists():
        write_synthetic(data, a.n, a.size, a.labels, a.batches, a.seed)
    else:
        write_layout(data, a.n, a.size, a.labels, a.batches, a.seed)
    print(f"data written in {time.time() - t:.0f} s", flush=True)

    overrides = {
        "dataset": {
            "format": f"imagenet{a.size}",
            "path": str(data),
            "batches": a.batches,
            "labels": a.labels,
        },
        "results": str(results),
    }
    extra = base / "bench.yaml"
    extra.write_text(json.dumps(overrides))  # JSON is YAML
    smk = ["snakemake", "--cores", "2", "--configfile", "config/imagenet64.yaml", str(extra), "--"]

    # the data stage through the workflow (checkpoint modularize), as a user runs it; the
    # results of an earlier run go first, or Snakemake would find the shards done
    shutil.rmtree(results, ignore_errors=True)
    t = time.time()
    p = subprocess.run(
        smk + [f"{results}/shards/manifest.tsv"], capture_output=True, text=True, cwd=ROOT
    )
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    bench = (results / "benchmarks" / "modularize.tsv").read_text().splitlines()
    row = dict(zip(bench[0].split("\t"), bench[1].split("\t"), strict=True))
    figures += [
        ("modularize through snakemake, first run: wall s incl. start-up", time.time() - t),
        ("... rule seconds (Snakemake benchmark)", float(row["s"])),
        ("... rule max RSS MB", float(row["max_rss"])),
    ]
    print(
        f"modularize (snakemake, first run): {time.time() - t:.0f} s wall incl. start-up; "
        f"rule {float(row['s']):.0f} s, max_rss {float(row['max_rss']):.0f} MB",
        flush=True,
    )

    cfg = load_config(ROOT / "config" / "imagenet64.yaml", overrides=overrides)
    wall, last = run_modularize(cfg, results)
    figures += [
        ("modularize again, every shard unchanged: wall s", wall),
        ("... peak RSS MB", child_peak_mb()),
    ]
    print(
        f"modularize again (every shard unchanged): {wall:.0f} s wall, peak RSS "
        f"{child_peak_mb():.0f} MB -- {last}",
        flush=True,
    )

    if not a.no_dry_run:
        t = time.time()
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M"] + smk[:1] + ["-n"] + smk[1:],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        stats = p.stdout.split("Job stats:")[-1].strip().splitlines()
        jobs = {ln.split()[0]: ln.split()[1] for ln in stats[2:] if len(ln.split()) == 2}
        figures += [
            ("snakemake -n on the paper's grid after the data stage: s", time.time() - t),
            ("... peak RSS MB", int(p.stderr.strip().splitlines()[-1]) / 1024),
            ("... jobs planned", jobs.get("total", "")),
            ("... train jobs planned", jobs.get("train", "")),
        ]
        print(
            f"snakemake -n on the paper's grid after the data stage: {time.time() - t:.0f} s, "
            f"{int(p.stderr.strip().splitlines()[-1]) / 1024:.0f} MB peak, rc {p.returncode}, "
            f"jobs {jobs}",
            flush=True,
        )
    if a.record:
        record(
            f"modularize_bench-{a.n}-{a.size}",
            f"Data stage: {a.n:,} {a.size}-px images through modularize",
            f"{a.n:,} {'random-pixel' if a.data == 'random' else 'synthetic'} {a.size}-px images "
            f"in the imagenet{a.size} pickle layout, {a.labels:,} labels, {a.batches} batches; "
            "the paper's grid (config/imagenet64.yaml: 25 labels per module, 2 submodules)",
            figures,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
