"""Submissions and wall time of the default run on Slurm: arrays, packed groups, one job per FNN.

Runs `config.yaml` (the default run, 48 trainings) three times on the live cluster, each in a
fresh working directory, and prints and writes docs/benchmarks/slurm-modes.md. Needs a running
cluster (tests/slurm/cluster.sh start) and the Slurm executor plugin; takes tens of minutes.

    python bench/slurm_modes.py [--modes arrays,groups,per-fnn] [--workdir /tmp/errorless-modes]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

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
    ap.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/slurm-modes.md")
    a = ap.parse_args()
    rows = [run(m, a.workdir, a.timeout) for m in a.modes.split(",")]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    head = (
        f"Date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, machine "
        f"{platform.node()} ({os.cpu_count()} CPUs, one-node Slurm, tests/slurm/cluster.sh), "
        "data set: the default config.yaml (synthetic, 48 trainings).\n"
        f"Command: `python bench/slurm_modes.py --modes {a.modes}`\n"
    )
    table = [
        "| mode | rc | sbatch calls | Slurm jobs/tasks | steps | wall (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    table += [
        f"| {r['mode']} | {r['rc']} | {r['sbatch']} | {r['slurm_jobs']} | {r['steps']} "
        f"| {r['wall_s']:.0f} |"
        for r in rows
    ]
    cmds = "\n".join(f"- {r['mode']}: `{r['command']}`" for r in rows)
    text = f"# Slurm modes: measured\n\n{head}\n" + "\n".join(table) + f"\n\nRuns:\n{cmds}\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
