"""Submissions and wall time of the default run on Slurm: arrays, packed groups, one job per FNN.

Runs `config.yaml` (the default run, 48 trainings) three times on the live cluster, each in a
fresh working directory, and prints the figures; with --record writes docs/benchmarks/slurm-modes.md. Needs a running
cluster (tests/slurm/cluster.sh start) and the Slurm executor plugin; takes tens of minutes.

    python bench/slurm_modes.py [--modes arrays,groups,per-fnn] [--workdir /tmp/errorless-modes] [--record]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from record import record, record_argument  # bench/record.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
ARRAY = re.compile(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)")
STEPS = re.compile(r"(\d+) of (\d+) steps \(\d+%\) done")
FAST = ["--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "2"]
FAST += ["--seconds-between-status-checks", "2"]
MODES = {
    "arrays": [],  # profiles/slurm as it is
    "groups": ["--profile", str(ROOT / "profiles/slurm-packed"), "--cores", str(os.cpu_count())],
    "per-fnn": ["--slurm-array-jobs", "none"],
}


def run(mode: str, workdir: Path, timeout: int) -> dict:
    wd = workdir / mode
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd)]
    cmd += ["--configfile", str(ROOT / "config.yaml"), "--workflow-profile"]
    cmd += [str(ROOT / "profiles/slurm"), *FAST, *MODES[mode]]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    p = subprocess.run(
        ["timeout", "-k", "30", str(timeout), *cmd], cwd=wd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    out = p.stdout + p.stderr
    (wd / "snakemake.log").write_text(" ".join(cmd) + "\n" + out)
    single = SUBMITTED.findall(out)
    arrays = ARRAY.findall(out)
    steps = STEPS.findall(out)
    return {
        "mode": mode,
        "rc": p.returncode,
        "wall_s": wall,
        "sbatch": len(single) + len(arrays),
        "slurm_jobs": len(single) + sum(len(ids.split(",")) for ids, _ in arrays),
        "steps": f"{steps[-1][0]}/{steps[-1][1]}" if steps else "?",
        "command": " ".join(["snakemake", *cmd[3:]]).replace(str(ROOT) + "/", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="arrays,groups,per-fnn")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/errorless-modes"))
    ap.add_argument("--timeout", type=int, default=3000, help="seconds per run")
    record_argument(ap)
    a = ap.parse_args()
    rows = [run(m, a.workdir, a.timeout) for m in a.modes.split(",")]
    figures = []
    for r in rows:
        m = r["mode"]
        figures += [
            (f"{m}: exit status", r["rc"]),
            (f"{m}: sbatch calls", r["sbatch"]),
            (f"{m}: Slurm jobs + array tasks", r["slurm_jobs"]),
            (f"{m}: Snakemake steps done", r["steps"]),
            (f"{m}: wall time (s)", round(r["wall_s"])),
        ]
    for k, v in figures:
        print(f"{k:40s} {v}")
    for r in rows:
        print(f"{r['mode']}: {r['command']}")
    if a.record:
        cmds = "; ".join(f"{r['mode']}: `{r['command']}`" for r in rows)
        record(
            "slurm-modes",
            "Slurm submission modes: the default run as arrays, packed groups, one job per FNN",
            "the default config.yaml (synthetic, 48 trainings), one-node Slurm cluster on this "
            "machine (tests/slurm/cluster.sh), each mode in a fresh working directory",
            figures,
            notes=f"Each mode's snakemake command: {cmds}. Wall time is from the first "
            "submission to the end of the run, every stage of the default run included.",
        )


if __name__ == "__main__":
    main()
