"""Gather: the training jobs' files — which jobs a run holds (``Job``, from paths, a file list or
the shard manifest), their metrics and weights read and checked against the grid."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorless.errors import DataError
from errorless.grid import fnn_jobs
from errorless.io import arrays_digest
from errorless.names import is_number_name, number, proto_name, shard_name, split_model, split_shard

# ---------------------------------------------------------------- job identity


@dataclass(frozen=True)
class Job:
    model: str  # h1_m1
    feature: str
    module: str  # m01
    submodule: str  # s1
    prefix: Path  # {results}/fnn/{model}/{feature}/{module}_{submodule}

    @property
    def weights(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".weights.npz")

    @property
    def metrics(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".metrics.json")

    def __str__(self) -> str:
        return f"job model={self.model} feature={self.feature} module={self.module} submodule={self.submodule}"


def job_at(results: str | Path, model: str, feature: str, module: str, submodule: str) -> Job:
    prefix = Path(results) / "fnn" / model / feature / shard_name(module, submodule)
    return Job(model, feature, module, submodule, prefix)


def job_from_path(path: str | Path) -> Job:
    """A job from its prefix or either of its files: ``.../fnn/{model}/{feature}/{m}_{s}[...]``."""
    p = Path(path)
    name = p.name
    for suffix in (".weights.npz", ".metrics.json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    try:
        module, submodule = split_shard(name)
    except DataError:
        module = None
    if module is None or len(p.parts) < 3:
        raise DataError(f"{path}: not a job path .../fnn/<model>/<feature>/<module>_<submodule>")
    prefix = p.with_name(name)
    return Job(p.parent.parent.name, p.parent.name, module, submodule, prefix)


def jobs_from_file(path: str | Path, results: str | Path) -> list[Job]:
    """Jobs from a TSV with a header naming at least model, feature, module, submodule."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: jobs file missing")
    df = pd.read_csv(path, sep="\t", dtype=str)
    need = ["model", "feature", "module", "submodule"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"{path}: jobs file lacks column(s) {missing} (has {list(df.columns)})")
    return [job_at(results, r.model, r.feature, r.module, r.submodule) for r in df.itertuples()]


def jobs_from_manifest(manifest: str | Path, cfg: dict[str, Any], results: str | Path) -> list[Job]:
    """The full job grid: config models × config features × the shards of ``manifest.tsv``."""
    import pandas as pd

    from errorless.config import proto_names

    manifest = Path(manifest)
    if not manifest.exists():
        raise DataError(f"{manifest}: shard manifest missing (run the modularize step)")
    df = pd.read_csv(manifest, sep="\t", dtype=str)
    shards = zip(df["module"], df["submodule"], strict=True)
    return [job_at(results, *job) for job in fnn_jobs(proto_names(cfg), cfg["features"], shards)]


# ---------------------------------------------------------------- reading one job


def read_metrics(job: Job) -> list[dict[str, Any]]:
    """The job's metrics records, checked against the job's identity."""
    if not job.metrics.exists():
        raise DataError(f"{job}: metrics file missing: {job.metrics}")
    try:
        doc = json.loads(job.metrics.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{job}: unreadable metrics file {job.metrics}: {e}") from None
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not records:
        raise DataError(f"{job}: {job.metrics} has no 'records' list")
    out = []
    for rec in records:
        if not isinstance(rec, dict) or "method" not in rec:
            raise DataError(f"{job}: {job.metrics}: a record without 'method'")
        rec = dict(rec)
        for key, want in (
            ("feature", job.feature),
            ("module", job.module),
            ("submodule", job.submodule),
        ):
            if key in rec and not _same_name(rec[key], want):
                raise DataError(
                    f"{job}: {job.metrics} says {key}={rec[key]!r}, its path says {want!r}"
                )
            rec[key] = want
        rec["model"] = job.model
        rec.setdefault("proto", proto_name(rec["method"], job.model))
        arch, rep = split_model(job.model)
        rec.setdefault("arch", arch)
        rec.setdefault("replicate", rep)
        rec["job"] = doc.get("job")
        out.append(rec)
    return out


def _same_name(value: Any, name: str) -> bool:
    """``m01`` == ``m01`` == 1; ``s2`` == 2 (metrics may carry 1-based ints)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return is_number_name(name) and number(name) == int(value)
    return str(value) == name


def read_weights(
    job: Job, methods: Iterable[str], digest: str | None = None
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{method: [(W1, b1), ..., (Wq, bq)]}`` from the job's ``weights.npz`` (exact arrays).
    With ``digest`` (the metrics file's ``weights_sha256``) the file must hold exactly the
    arrays its metrics file was written with: a weights file of another run is refused."""
    if not job.weights.exists():
        raise DataError(f"{job}: weights file missing: {job.weights}")
    try:
        with np.load(job.weights, allow_pickle=False) as z:
            files = set(z.files)
            if digest is not None and arrays_digest({k: z[k] for k in files}) != digest:
                raise DataError(
                    f"{job}: {job.weights} does not belong to {job.metrics} (its arrays differ "
                    f"from the weights_sha256 the training job recorded); rerun this job"
                )
            out = {}
            for method in methods:
                q = 0
                while f"{method}/W{q + 1}" in files:
                    q += 1
                if q == 0:
                    raise DataError(
                        f"{job}: {job.weights} has no '{method}/W1' (keys {sorted(files)})"
                    )
                layers = []
                for i in range(1, q + 1):
                    if f"{method}/b{i}" not in files:
                        raise DataError(f"{job}: {job.weights} lacks '{method}/b{i}'")
                    W, b = z[f"{method}/W{i}"], z[f"{method}/b{i}"]
                    if W.ndim != 2 or b.shape != (W.shape[1],):
                        raise DataError(
                            f"{job}: {job.weights} '{method}' layer {i}: W {W.shape}, b {b.shape}"
                        )
                    if layers and layers[-1][0].shape[1] != W.shape[0]:
                        raise DataError(f"{job}: {job.weights} '{method}' layer {i} does not chain")
                    layers.append((W, b))
                out[method] = layers
            return out
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{job}: unreadable weights file {job.weights}: {e}") from None


# ---------------------------------------------------------------- gather


def metrics_digest(job: Job, records: list[dict[str, Any]]) -> str:
    """The ``weights_sha256`` a training job wrote into its metrics file."""
    info = records[0].get("job") if records else None
    digest = info.get("weights_sha256") if isinstance(info, dict) else None
    if not isinstance(digest, str):
        raise DataError(
            f"{job}: {job.metrics} has no job.weights_sha256 (written by an older errorless, or "
            f"not by `errorless train`): cannot tell whether its weights file belongs to it; rerun it"
        )
    return digest


def check_grid(jobs: Sequence[Job]) -> None:
    """Jobs named by paths (a shell glob) must cover the whole grid they span: every model x
    feature x shard, the shards from ``{results}/shards/manifest.tsv`` when it is there. A glob
    silently drops a job whose file is missing; this puts the hole back in view."""
    import pandas as pd

    models = sorted({j.model for j in jobs})
    features = sorted({j.feature for j in jobs})
    shards = {(j.module, j.submodule) for j in jobs}
    roots = {j.prefix.parents[3] for j in jobs if len(j.prefix.parents) > 3}
    source = "the paths given"
    if len(roots) == 1:
        manifest = next(iter(roots)) / "shards" / "manifest.tsv"
        if manifest.is_file():
            try:
                df = pd.read_csv(manifest, sep="\t", dtype=str)
                shards |= set(zip(df["module"], df["submodule"], strict=True))
                source = f"the paths given and {manifest}"
            except (OSError, ValueError, KeyError, pd.errors.ParserError):
                pass  # an unreadable manifest adds nothing; the spanned grid still applies
    have = {(j.model, j.feature, j.module, j.submodule) for j in jobs}
    missing = [job for job in fnn_jobs(models, features, sorted(shards)) if job not in have]
    if missing:
        head = "; ".join(f"model={m} feature={f} {mod}_{sub}" for m, f, mod, sub in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        total = len(models) * len(features) * len(shards)
        raise DataError(
            f"{len(missing)} of {total} training jobs of the grid spanned by {source} are "
            f"missing from the job list (a glob skips a job whose file is missing): {head}{more}"
        )


def check_jobs(jobs: Sequence[Job]) -> None:
    """Fail before writing anything when any job's files are missing."""
    missing = [j for j in jobs if not (j.weights.exists() and j.metrics.exists())]
    if missing:
        head = "; ".join(
            f"{j} ({j.weights if not j.weights.exists() else j.metrics})" for j in missing[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} of {len(jobs)} training jobs have no output: {head}{more}")
    dup = {j.prefix for j in jobs}
    if len(dup) != len(jobs):
        raise DataError("the job list names a job twice")
