import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def root() -> Path:
    return ROOT


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """The ONE end-to-end run of the test suite: the default workflow (every report item),
    then `snakemake --report report.html`. Tests that use it only read the folder or dry-run."""
    import subprocess

    run = tmp_path_factory.mktemp("default_run")
    sm = [*SNAKEMAKE, "-d", str(run), "--configfile", str(ROOT / "config.yaml")]
    r = subprocess.run([*sm, "--cores", "2"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    r = subprocess.run(
        [*sm, "--report", "report.html"], cwd=run, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return run
