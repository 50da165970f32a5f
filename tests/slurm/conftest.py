"""Fixtures for the live-Slurm tests: skip unless a cluster answers, run Snakemake with a timeout.

Start a private one-node cluster first (root, Debian 12):
    tests/slurm/cluster.sh start && pytest -m slurm tests/slurm; tests/slurm/cluster.sh stop
Environment: ERRORLESS_SNAKEFILE (default: this checkout's Snakefile) picks the workflow under test;
ERRORLESS_REQUIRE_SLURM=1 (set by .ci/run) turns the skip into an error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SNAKEFILE = Path(os.environ.get("ERRORLESS_SNAKEFILE", ROOT / "Snakefile"))
PROFILES = ROOT / "profiles"
# fast polling on the one-node CI cluster (the profile's values suit a real cluster)
FAST = [
    "--latency-wait",
    "5",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
]

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
# one line per sbatch call of an array (profiles/slurm: `slurm-array-jobs: train`)
ARRAY_SUBMITTED = re.compile(
    r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)"
)
# Snakemake's job blocks: "rule train:" ... "    jobid: 7" ... "    wildcards: proto=h1_m1, ..."
JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", re.M)
STEPS_DONE = re.compile(r"(\d+) of (\d+) steps \(\d+%\) done")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")


def _cluster_answers() -> str | None:
    """None when `scontrol ping` reports the controller UP, else the reason to skip."""
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return (
            "no Slurm client on PATH (apt-get install slurm-client; tests/slurm/cluster.sh start)"
        )
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "`scontrol ping` timed out: no Slurm controller answers"
    if "is UP" not in out.stdout:
        return f"no Slurm controller answers `scontrol ping` ({(out.stdout + out.stderr).strip()!r}); start one with tests/slurm/cluster.sh start"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e .[slurm])"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.slurm)
        if not checked:
            reason, checked = _cluster_answers(), True
        if reason and os.environ.get("ERRORLESS_REQUIRE_SLURM"):
            # CI starts a cluster: a missing one is a failure there, not a skip
            raise pytest.UsageError(f"ERRORLESS_REQUIRE_SLURM is set but {reason}")
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Run:
    """One finished `snakemake` call and what its output says."""

    returncode: int
    output: str
    workdir: Path
    submitted: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # (rule/group, wildcards, slurm id)

    @property
    def sbatch_calls(self) -> int:
        """Distinct Slurm job ids: one per sbatch call (an array's tasks share their job id)."""
        return len({jobid for _, _, jobid in self.submitted})

    @property
    def arrays(self) -> dict[int, list[str]]:
        """Slurm id of each array submission -> the sorted wildcards of its tasks."""
        out: dict[int, list[str]] = {}
        for _rule, wc, jobid in self.submitted:
            out.setdefault(jobid, []).append(wc)
        return {k: sorted(v) for k, v in out.items() if k in self.array_ids}

    array_ids: set[int] = field(default_factory=set)

    def submitted_for(self, rule: str) -> list[str]:
        """Wildcard strings of the submissions of `rule` (group jobs: `group_<name>_<rules>`)."""
        return [wc for r, wc, _ in self.submitted if r == rule]

    @property
    def steps(self) -> tuple[int, int] | None:
        """(done, total) of the last 'N of M steps done' line: the jobs that really ran."""
        m = STEPS_DONE.findall(self.output)
        return (int(m[-1][0]), int(m[-1][1])) if m else None

    def job_stats(self) -> dict[str, int]:
        """The first 'Job stats' table. NOTE: printed before the checkpoint `modularize` reruns,
        so after a data change it lists every train job; count `submitted` for what ran."""
        m = re.search(r"Job stats:\njob\s+count\n[- ]+\n((?:\S+\s+\d+\n)+)", self.output)
        if not m:
            return {}
        return {k: int(v) for k, v in (line.split() for line in m.group(1).splitlines())}

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-n:])


# The tests stop at the gathered training table: the whole chain synthesize -> modularize ->
# train -> gather (the first rule downstream of training) without evaluation and reports,
# to keep the module within minutes on a 2-core machine.
# The training outputs are named as targets too (as `rule all` should, see the report): a
# training job that failed after an earlier complete run would otherwise never be redone, because
# the stale gathered table still looks up to date.
TARGETS = ["results/training.parquet"] + [
    f"results/fnn/h1_m1/{f}/{m}_{s}.metrics.json"
    for f in ("R", "G")
    for m in ("m01", "m02")
    for s in ("s1", "s2")
]


def snakemake(
    workdir: Path, configfile: Path, *extra: str, profile: str = "slurm", timeout: int = 300
) -> Run:
    """Run the workflow on the live cluster in `workdir`, killed after `timeout` s (+30 s KILL)."""
    cmd = [
        "timeout",
        "-k",
        "30",
        str(timeout),
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--workflow-profile",
        str(PROFILES / "slurm"),
        # profiles/slurm-packed is layered on profiles/slurm as the general profile
        *([] if profile == "slurm" else ["--profile", str(PROFILES / profile)]),
        *FAST,
        *extra,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    (workdir / f"snakemake.{len(list(workdir.glob('snakemake.*.log')))}.log").write_text(
        " ".join(cmd) + "\n" + out
    )
    # timed out (124/137, or -9: `timeout -k` KILLs its own process group too): a killed
    # snakemake leaves its Slurm jobs behind
    if p.returncode in (124, 137) or p.returncode < 0:
        for uuid in set(RUN_ID.findall(out)):
            subprocess.run(["scancel", "--name", uuid], check=False)
    subs = []
    for jobid, log in SUBMITTED.findall(out):
        parts = Path(log).parts
        i = parts.index("slurm_logs")
        rule = parts[i + 1].removeprefix("rule_")
        wc = parts[i + 2] if len(parts) > i + 3 else ""
        subs.append((rule, wc, int(jobid)))
    # array tasks: the submission line names Snakemake job ids; their job blocks give rule and
    # wildcards (joined by "_" as in the plugin's log path)
    blocks = {}
    for rule, body in JOB_BLOCK.findall(out):
        jid = re.search(r"^    jobid: (\d+)$", body, re.M)
        wcs = re.search(r"^    wildcards: (.*)$", body, re.M)
        wc = "_".join(kv.split("=", 1)[1] for kv in wcs.group(1).split(", ")) if wcs else ""
        if jid:
            blocks[jid.group(1)] = (rule, wc)
    array_ids = set()
    for ids, jobid in ARRAY_SUBMITTED.findall(out):
        array_ids.add(int(jobid))
        for sid in ids.split(","):
            rule, wc = blocks.get(sid, ("?", sid))
            subs.append((rule, wc, int(jobid)))
    return Run(p.returncode, out, workdir, subs, array_ids)


def copy_workdir(src: Path, dst: Path) -> Path:
    """A copy of a finished working directory with every mtime kept (Snakemake decides by them)."""
    shutil.copytree(
        src,
        dst,
        symlinks=True,
        copy_function=shutil.copy2,
        ignore=shutil.ignore_patterns("snakemake.*.log"),
    )
    return dst


@pytest.fixture(scope="session")
def small_config() -> Path:
    return HERE / "small.yaml"


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, small_config) -> Run:
    """The small workflow run once, unpacked, to completion; tests copy its working directory."""
    wd = tmp_path_factory.mktemp("base")
    run = snakemake(wd, small_config, *TARGETS, timeout=300)
    assert run.returncode == 0, run.tail()
    return run
