"""How the workflow runs the package: this checkout's ``src/``, for Snakemake and every job.

One mechanism (docs/ARCHITECTURE.md, "Deployment"): the Snakefile puts ``src/`` first on
``sys.path`` and calls :func:`use_checkout`, which puts it first on ``PYTHONPATH`` and the
interpreter that runs Snakemake first on ``PATH`` in the environment every job inherits (a
Slurm job re-reads the Snakefile, which does the same there). With
``--software-deployment-method conda`` the environment's activation comes later and puts its
own python first; that environment does not install the package, ``PYTHONPATH`` brings it.
"""

from __future__ import annotations

import os
import sys


def use_checkout(src: str) -> None:
    """``src`` first on PYTHONPATH and this interpreter's folder first on PATH (idempotent)."""
    for var, first in (("PYTHONPATH", src), ("PATH", os.path.dirname(sys.executable))):
        rest = [p for p in os.environ.get(var, "").split(os.pathsep) if p and p != first]
        os.environ[var] = os.pathsep.join([first, *rest])
