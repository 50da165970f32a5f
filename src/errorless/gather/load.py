"""Reading the gathered weights back: one FNN (``load_fnn``) or every FNN of a proto-model as
stacked arrays (``ProtoWeights``, ``load_proto``), the proto-models and modules a file holds."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from errorless.errors import DataError
from errorless.gather.tables import name_order, record_labels
from errorless.names import number


def as_table(source: str | Path | pa.Table, filters, columns=None) -> pa.Table:
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
    t = as_table(weights, filters, ["layer", "kind", "shape", "values"])
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
    t = as_table(weights, [("proto", "=", proto)], ["proto", "module"])
    return sorted(set(t.column("module").to_pylist()), key=lambda m: (name_order(m), m))


def module_sizes(weights: str | Path | pa.Table, proto: str) -> dict[str, int]:
    """Bytes of float32 weights per module of one proto-model, in module order (reads the
    ``shape`` column, not the weights)."""
    t = as_table(weights, [("proto", "=", proto)], ["module", "shape"])
    if t.num_rows == 0:
        raise DataError(
            f"proto-model {proto!r} not in the weights table (has {protos_in(weights)})"
        )
    sizes: dict[str, int] = defaultdict(int)
    for m, shape in zip(t.column("module").to_pylist(), t.column("shape").to_pylist(), strict=True):
        sizes[m] += 4 * int(np.prod(shape))
    return {m: sizes[m] for m in sorted(sizes, key=lambda m: (name_order(m), m))}


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
    t = as_table(weights, filters)
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
