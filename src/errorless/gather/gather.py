"""Gather every training job's files into ``weights.parquet`` and ``training.parquet``.

A job is one (model, feature, module, submodule); its files are
``{results}/fnn/{model}/{feature}/{module}_{submodule}.weights.npz`` and ``.metrics.json``
(docs/ARCHITECTURE.md). Every job of the grid must be present and readable: one missing or
broken job stops the gather with a :class:`DataError` naming it, and no table is written
(both writes are atomic; ``weights.parquet`` is streamed into a temporary file first).

``weights.parquet`` holds one row per (proto, feature, module, submodule, layer, kind) and one
Parquet row group per (proto, module): every feature and submodule of one module of one
proto-model, so that a pyarrow filter on proto and module reads that row group alone (its
statistics name one proto and one module). The writer streams: it reads the jobs of one
(module, model) at a time and writes their row groups, so its memory is about one module's
weights of one architecture (all methods), not the grid's (2,720 jobs of the paper: ~8 GB).
Module and submodule are stored as wildcard names (``m01``, ``s1``). Readers: :func:`load_fnn`
(one FNN, exact arrays), :func:`load_proto` (all FNNs of one proto-model, or of some of its
modules, stacked for batched evaluation) and :func:`modules_in`. A table written by an older
gather (row groups per (proto, feature)) reads the same, only slower per module.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from errorless.errors import DataError
from errorless.grid import fnn_jobs
from errorless.io import arrays_digest, atomic_path, write_parquet
from errorless.names import is_number_name, number, proto_name, shard_name, split_model, split_shard

log = logging.getLogger(__name__)

WEIGHTS_SCHEMA = pa.schema(
    [
        ("proto", pa.string()),
        ("method", pa.string()),
        ("model", pa.string()),
        ("arch", pa.string()),
        ("replicate", pa.int64()),
        ("feature", pa.string()),
        ("module", pa.string()),
        ("submodule", pa.string()),
        ("layer", pa.int64()),
        ("kind", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("values", pa.list_(pa.float32())),
        ("label_lo", pa.int64()),
        ("n_labels", pa.int64()),
        ("settings", pa.string()),
        ("module_labels", pa.list_(pa.int64())),  # the module's global labels (output order)
    ]
)


def _training_fields() -> dict[str, pa.DataType]:
    """The metrics fields with a fixed Arrow type, in column order (docs/ARCHITECTURE.md);
    any other field is stored as a JSON string column."""
    by_type = {
        pa.string(): "proto method model arch feature module submodule gdt_stop_reason status",
        pa.int64(): "replicate n_images n_inputs n_labels label_lo n_params epochs gdt_rounds "
        "accepted rejected gdt_steps consolidation_steps seed",
        pa.float64(): "accuracy accuracy_sgd seconds_sgd seconds_gdt",
        pa.list_(
            pa.int64()
        ): "hidden module_labels steps_path residual_labels residual_predicted no_anchor_labels",
        pa.list_(pa.float64()): "lambda_path delta_path",
        pa.list_(pa.bool_()): "accepted_path",
        pa.list_(pa.string()): "round_ends residual_ids",
    }
    type_of = {name: t for t, names in by_type.items() for name in names.split()}
    order = (
        "proto method model arch replicate feature module submodule n_images n_inputs n_labels "
        "label_lo module_labels hidden n_params accuracy accuracy_sgd epochs gdt_rounds accepted rejected "
        "lambda_path delta_path accepted_path steps_path gdt_steps consolidation_steps round_ends "
        "gdt_stop_reason residual_ids residual_labels residual_predicted no_anchor_labels status "
        "seconds_sgd seconds_gdt seed"
    )
    return {name: type_of[name] for name in order.split()}


TRAINING_FIELDS = _training_fields()
JSON_FIELDS = ("conflicts", "settings")  # nested objects kept as JSON strings


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


def gather(
    jobs: Sequence[Job], weights_out: str | Path, training_out: str | Path
) -> tuple[int, int]:
    """Write both tables; return (weight rows, training rows). All-or-nothing."""
    if not jobs:
        raise DataError("no training jobs to gather")
    check_jobs(jobs)
    records_by_job = {j: read_metrics(j) for j in jobs}
    # one row group per (proto, module): read the jobs of one (module, model) together
    by_mm: dict[tuple[int, str, str], list[Job]] = defaultdict(list)
    for j in jobs:
        by_mm[(_order(j.module), j.module, j.model)].append(j)
    n_rows = 0
    with atomic_path(weights_out) as tmp:
        with pq.ParquetWriter(tmp, WEIGHTS_SCHEMA) as writer:
            for key in sorted(by_mm):
                n_rows += _write_module(writer, by_mm[key], records_by_job)
    records = [r for j in jobs for r in records_by_job[j]]
    write_parquet(training_out, training_table(records))
    return n_rows, len(records)


def _order(name: str) -> int:
    return number(name) if name[1:].isdigit() else 0


def _write_module(writer: pq.ParquetWriter, group: list[Job], records_by_job) -> int:
    """The row groups of one (module, model): one per proto-model; returns the rows written."""
    per_proto: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = defaultdict(list)
    for job in sorted(group, key=lambda j: (j.feature, _order(j.submodule), j.submodule)):
        recs = records_by_job[job]
        digest = metrics_digest(job, recs)
        weights = read_weights(job, [r["method"] for r in recs], digest)
        for rec in recs:
            per_proto[rec["proto"]].extend(_weight_rows(job, rec, weights[rec["method"]]))
        del weights
    n = 0
    for proto in sorted(per_proto):
        rows = per_proto.pop(proto)  # free each proto's arrays once written
        writer.write_table(weights_table(rows), row_group_size=len(rows))
        n += len(rows)
    return n


def weights_table(rows: list[tuple[dict[str, Any], np.ndarray]]) -> pa.Table:
    """Rows of (metadata, array) -> a table of WEIGHTS_SCHEMA, built columnwise (no per-float Python)."""
    flats = [np.ascontiguousarray(a, dtype=np.float32).ravel() for _, a in rows]
    offsets = np.zeros(len(flats) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(f) for f in flats])
    values = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(np.concatenate(flats) if flats else np.zeros(0, np.float32))
    )
    cols = {}
    for field in WEIGHTS_SCHEMA:
        if field.name == "values":
            cols["values"] = values
        elif field.name == "shape":
            cols["shape"] = pa.array([list(a.shape) for _, a in rows], type=field.type)
        elif field.name == "module_labels":  # may be absent: null = the range from label_lo
            cols[field.name] = pa.array([m.get(field.name) for m, _ in rows], type=field.type)
        else:
            cols[field.name] = pa.array([m[field.name] for m, _ in rows], type=field.type)
    return pa.table(cols, schema=WEIGHTS_SCHEMA)


def _weight_rows(job: Job, rec: dict[str, Any], layers) -> list[tuple[dict[str, Any], np.ndarray]]:
    settings = rec.get("settings")
    settings_json = settings if isinstance(settings, str) else json.dumps(settings, sort_keys=True)
    n_labels = int(rec.get("n_labels") or layers[-1][0].shape[1])
    base = {
        "proto": rec["proto"],
        "method": rec["method"],
        "model": job.model,
        "arch": rec["arch"],
        "replicate": rec["replicate"],
        "feature": job.feature,
        "module": job.module,
        "submodule": job.submodule,
        "label_lo": int(rec.get("label_lo") or 0),
        "n_labels": n_labels,
        "settings": settings_json,
        "module_labels": record_labels(rec, n_labels),
    }
    if layers[-1][0].shape[1] != n_labels:
        raise DataError(
            f"{job}: {rec['method']} output width {layers[-1][0].shape[1]} != n_labels {n_labels}"
        )
    rows = []
    for i, (W, b) in enumerate(layers, start=1):
        for kind, a in (("W", W), ("b", b)):
            rows.append(({**base, "layer": i, "kind": kind}, np.asarray(a, dtype=np.float32)))
    return rows


def record_labels(rec: dict[str, Any], n_labels: int) -> list[int]:
    """The FNN's global label of each output: the record's ``module_labels`` (label groups),
    else the contiguous range from ``label_lo`` (records written before groups existed)."""
    labels = rec.get("module_labels")
    if labels is None or (hasattr(labels, "__len__") and len(labels) == 0):
        lo = int(rec.get("label_lo") or 0)
        return list(range(lo, lo + n_labels))
    return [int(v) for v in labels]


def training_table(records: list[dict[str, Any]]) -> pa.Table:
    """One row per (proto, feature, module, submodule); unknown fields become JSON columns."""
    extra = sorted({k for r in records for k in r} - set(TRAINING_FIELDS) - set(JSON_FIELDS))
    cols: dict[str, pa.Array] = {}
    for name, typ in TRAINING_FIELDS.items():
        try:
            cols[name] = pa.array([r.get(name) for r in records], type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            bad = next((r for r in records if r.get(name) is not None), {})
            raise DataError(
                f"metrics field {name!r} has an unexpected type (e.g. proto {bad.get('proto')}, "
                f"{bad.get('feature')} {bad.get('module')}_{bad.get('submodule')}): {e}"
            ) from None
    for name in (*JSON_FIELDS, *extra):
        cols[name] = pa.array([_json_or_none(r, name) for r in records], type=pa.string())
    table = pa.table(cols)
    keys = ["proto", "feature", "module", "submodule"]
    seen: set[tuple] = set()
    for key in zip(*(table.column(k).to_pylist() for k in keys), strict=True):
        if key in seen:
            raise DataError(
                f"two metrics records for the same FNN {dict(zip(keys, key, strict=True))}"
            )
        seen.add(key)
    return table.sort_by([(k, "ascending") for k in keys])


def _json_or_none(rec: dict[str, Any], name: str) -> str | None:
    if name not in rec or rec[name] is None:
        return None
    v = rec[name]
    return (
        v
        if isinstance(v, str) and name == "settings"
        else json.dumps(v, sort_keys=True, default=str)
    )


# ---------------------------------------------------------------- readers


def _as_table(source: str | Path | pa.Table, filters, columns=None) -> pa.Table:
    if isinstance(source, pa.Table):
        t = source
        for col, op, val in filters:
            t = t.filter(pc.field(col).isin(val) if op == "in" else pc.field(col) == val)
        return t.select(columns) if columns else t
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: weights table missing (run the gather step)")
    try:
        return pq.read_table(path, filters=filters, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: unreadable weights table: {e}") from None


def _arrays(table: pa.Table) -> list[np.ndarray]:
    """The ``values`` of every row reshaped to its ``shape`` (views into one flat buffer)."""
    values = table.column("values").combine_chunks()
    flat = values.values.to_numpy(zero_copy_only=False)  # float32 (total,)
    offsets = values.offsets.to_numpy()
    shapes = table.column("shape").to_pylist()
    return [flat[offsets[i] : offsets[i + 1]].reshape(s) for i, s in enumerate(shapes)]


def load_fnn(
    weights: str | Path | pa.Table, proto: str, feature: str, module: str, submodule: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The saved layers ``[(W1, b1), ..., (Wq, bq)]`` of one FNN, float32, exactly as trained."""
    filters = [
        ("proto", "=", proto),
        ("feature", "=", feature),
        ("module", "=", module),
        ("submodule", "=", submodule),
    ]
    t = _as_table(weights, filters, ["layer", "kind", "shape", "values"])
    if t.num_rows == 0:
        raise DataError(f"no weights for FNN proto={proto} feature={feature} {module}_{submodule}")
    t = t.sort_by([("layer", "ascending"), ("kind", "ascending")])  # W before b
    arrays = _arrays(t)
    layers = t.column("layer").to_pylist()
    kinds = t.column("kind").to_pylist()
    by = {(layer, kind): a for layer, kind, a in zip(layers, kinds, arrays, strict=True)}
    return [(by[(i, "W")], by[(i, "b")]) for i in range(1, max(layers) + 1)]


@dataclass
class ProtoWeights:
    """All FNNs of one proto-model, stacked: FNN (f, g) is feature f, group g = (module, submodule)."""

    proto: str
    features: list[str]
    groups: list[tuple[str, str]]  # (module, submodule), sorted
    label_map: np.ndarray  # int64 (G, c): each group's global label of every output, -1 padding
    layers: list[tuple[np.ndarray, np.ndarray]]  # W (F, G, in, out), b (F, G, out), float32
    settings: dict[str, Any]

    def __post_init__(self):
        self.label_map = np.asarray(self.label_map, dtype=np.int64)
        if self.label_map.ndim == 1:  # the first labels of contiguous modules
            c = self.layers[-1][0].shape[-1]
            self.label_map = self.label_map[:, None] + np.arange(c)

    @property
    def label_lo(self) -> np.ndarray:
        """int64 (G,): each group's first label."""
        return self.label_map[:, 0]

    @property
    def module_sizes(self) -> np.ndarray:
        """int64 (G,): each group's own number of labels (c where no module is padded)."""
        return (self.label_map >= 0).sum(axis=1)

    @property
    def n_labels(self) -> int:
        return int(self.layers[-1][0].shape[-1])

    @property
    def n_inputs(self) -> int:
        return int(self.layers[0][0].shape[2])


def protos_in(weights: str | Path) -> list[str]:
    """Proto-model names present in a weights table."""
    if isinstance(weights, pa.Table):
        return sorted(set(weights.column("proto").unique().to_pylist()))
    path = Path(weights)
    if not path.exists():
        raise DataError(f"{path}: weights table missing (run the gather step)")
    return sorted(set(pq.read_table(path, columns=["proto"]).column("proto").unique().to_pylist()))


def modules_in(weights: str | Path | pa.Table, proto: str) -> list[str]:
    """The modules of one proto-model in a weights table, in module order (reads two columns)."""
    t = _as_table(weights, [("proto", "=", proto)], ["proto", "module"])
    return sorted(set(t.column("module").to_pylist()), key=lambda m: (_order(m), m))


def module_sizes(weights: str | Path | pa.Table, proto: str) -> dict[str, int]:
    """Bytes of float32 weights per module of one proto-model, in module order (reads the
    ``shape`` column, not the weights)."""
    t = _as_table(weights, [("proto", "=", proto)], ["module", "shape"])
    if t.num_rows == 0:
        raise DataError(
            f"proto-model {proto!r} not in the weights table (has {protos_in(weights)})"
        )
    sizes: dict[str, int] = defaultdict(int)
    for m, shape in zip(t.column("module").to_pylist(), t.column("shape").to_pylist(), strict=True):
        sizes[m] += 4 * int(np.prod(shape))
    return {m: sizes[m] for m in sorted(sizes, key=lambda m: (_order(m), m))}


def load_proto(
    weights: str | Path | pa.Table,
    proto: str,
    features: Sequence[str] | None = None,
    modules: Sequence[str] | None = None,
) -> ProtoWeights:
    """Read the proto's rows once (pyarrow filter on ``proto``, and on ``modules`` when given:
    only those modules' row groups are read) and stack them per layer."""
    filters: list = [("proto", "=", proto)]
    if modules is not None:
        filters.append(("module", "in", list(modules)))
    t = _as_table(weights, filters)
    if t.num_rows == 0:
        known = protos_in(weights)
        if modules is not None and proto in known:
            have = modules_in(weights, proto)
            raise DataError(
                f"proto-model {proto}: no weights for modules {list(modules)} (has {have})"
            )
        raise DataError(f"proto-model {proto!r} not in the weights table (has {known})")
    have = sorted(set(t.column("feature").to_pylist()))
    feats = list(features) if features is not None else have
    missing = [f for f in feats if f not in have]
    if missing:
        raise DataError(f"proto-model {proto}: no weights for feature(s) {missing} (has {have})")
    t = t.filter(pc.is_in(t.column("feature"), pa.array(feats)))
    pairs = zip(t.column("module").to_pylist(), t.column("submodule").to_pylist(), strict=True)
    groups = sorted(set(pairs), key=lambda ms: (number(ms[0]), number(ms[1])))
    fi = {f: i for i, f in enumerate(feats)}
    gi = {g: i for i, g in enumerate(groups)}
    F, G = len(feats), len(groups)
    cols = {
        c: t.column(c).to_pylist()
        for c in ("feature", "module", "submodule", "layer", "kind", "label_lo", "n_labels")
    }
    given = (
        t.column("module_labels").to_pylist()
        if "module_labels" in t.column_names
        else [None] * t.num_rows
    )
    arrays = _arrays(t)
    q = max(cols["layer"])
    seen = np.zeros((F, G, q, 2), dtype=bool)
    # modules of label groups differ in size: the output layer is padded to the widest module,
    # W with zeros and b with -inf (a padded output's softmax is 0; fnn.SharedGroup)
    width: dict[tuple[int, str], int] = {}
    for key, a in zip(zip(cols["layer"], cols["kind"], strict=True), arrays, strict=True):
        width[key] = max(width.get(key, 0), a.shape[-1])
    stacks: dict[tuple[int, str], np.ndarray] = {}
    label_map = np.full((G, width[(q, "b")]), -1, dtype=np.int64)
    for r, a in enumerate(arrays):
        f, g = fi[cols["feature"][r]], gi[(cols["module"][r], cols["submodule"][r])]
        key = (cols["layer"][r], cols["kind"][r])
        full = (*a.shape[:-1], width[key])
        if key not in stacks:
            fill = -np.inf if key == (q, "b") else 0.0
            stacks[key] = np.full((F, G, *full), fill, dtype=np.float32)
        if stacks[key].shape[2:] != full or (a.shape[-1] != width[key] and key[0] != q):
            raise DataError(
                f"proto-model {proto}: FNN {cols['feature'][r]} {groups[g][0]}_{groups[g][1]} layer "
                f"{key[0]} {key[1]} has shape {a.shape}, others {stacks[key].shape[2:]}"
            )
        stacks[key][f, g, ..., : a.shape[-1]] = a
        seen[f, g, key[0] - 1, 0 if key[1] == "W" else 1] = True
        labels = record_labels(
            {"module_labels": given[r], "label_lo": cols["label_lo"][r]}, int(cols["n_labels"][r])
        )
        label_map[g, : len(labels)] = labels
    settings_json = t.column("settings")[0].as_py()
    settings = json.loads(settings_json) if settings_json else {}
    layers = [(stacks[(i, "W")], stacks[(i, "b")]) for i in range(1, q + 1)]
    return ProtoWeights(proto, feats, groups, label_map, layers, settings)


# ---------------------------------------------------------------- CLI


def gather_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jobs-file", help="TSV with columns model, feature, module, submodule")
    src.add_argument(
        "--manifest", help="shards/manifest.tsv: the grid is config models x features x shards"
    )
    src.add_argument(
        "--jobs",
        nargs="+",
        metavar="PATH",
        help="job prefixes or their .weights.npz / .metrics.json files",
    )
    p.add_argument(
        "--results", default="results", help="results folder (with --jobs-file/--manifest)"
    )
    p.add_argument("--config", help="config YAML (needed with --manifest)")
    p.add_argument("--weights-out", required=True, help="weights.parquet to write")
    p.add_argument("--training-out", required=True, help="training.parquet to write")


def gather_main(args: argparse.Namespace) -> int:
    t0 = time.time()
    if args.jobs_file:
        jobs = jobs_from_file(args.jobs_file, args.results)
    elif args.manifest:
        from errorless.config import load_config

        jobs = jobs_from_manifest(args.manifest, load_config(args.config), args.results)
    else:
        seen: dict[Path, Job] = {}
        for path in args.jobs:
            j = job_from_path(path)
            seen.setdefault(j.prefix, j)
        jobs = list(seen.values())
        check_grid(jobs)
    n_w, n_t = gather(jobs, args.weights_out, args.training_out)
    log.info(
        "gathered %d jobs: %d weight rows -> %s, %d FNN records -> %s in %.1f s",
        len(jobs),
        n_w,
        args.weights_out,
        n_t,
        args.training_out,
        time.time() - t0,
    )
    return 0
