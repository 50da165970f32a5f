"""Gather: the Parquet tables — ``weights.parquet`` (one file per module, every FNN's rounded
weights) and ``training.parquet`` (one row per FNN: metrics, GDT record)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from errorless.errors import DataError
from errorless.gather.jobs import Job, metrics_digest, read_weights
from errorless.names import number

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


def name_order(name: str) -> int:
    return number(name) if name[1:].isdigit() else 0


def write_module(writer: pq.ParquetWriter, group: list[Job], records_by_job) -> int:
    """The row groups of one (module, model): one per proto-model; returns the rows written."""
    per_proto: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = defaultdict(list)
    for job in sorted(group, key=lambda j: (j.feature, name_order(j.submodule), j.submodule)):
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
