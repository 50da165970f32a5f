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


# Real data shared beside the repository (not shipped with it): ../shared/data/<name>
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data_or_skip(name: str) -> Path:
    """``../shared/data/<name>``, or the test skips with a one-line reason (a fresh clone has
    no shared folder)."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} absent (shared data folder beside the repository)")
    return path


@pytest.fixture(scope="session")
def mnist_test_dir() -> Path:
    """The MNIST test set as published (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz;
    README.md there), or skip."""
    return shared_data_or_skip("mnist-test")


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
