"""The training evaluation (paper Table 2, ``evaluate-training``): per proto-model the training
accuracies recomputed from the saved weights, error-free FNNs, the truncation check, and the
confusion wheel's data."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from errorless import fnn
from errorless.errors import DataError
from errorless.names import number, proto_key, shard_name

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- training evaluation


def shard_path(shards: Mapping[str, Path], module: str, submodule: str) -> Path:
    """The shard file of (module, submodule) among the run's shards (:func:`manifest_shards`)."""
    name = shard_name(module, submodule)
    if name not in shards:
        raise DataError(f"shard {name} is not in the shard manifest (rerun the modularize step)")
    return shards[name]


def training_evaluation(
    training: pd.DataFrame,
    weights: str | Path,
    shards: Mapping[str, Path] | None,
    cfg: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table per proto, table per FNN). Without ``shards`` only the recorded accuracies are used."""
    from errorless.gather.load import load_proto

    check = cfg["weights"]["check_decimals"]
    saved = cfg["weights"]["decimals"]
    rows = []
    for proto, sub in training.groupby("proto", sort=True):
        feats = [f for f in cfg["features"] if f in set(sub["feature"])] or sorted(
            set(sub["feature"])
        )
        recorded = {(r.feature, r.module, r.submodule): r.accuracy for r in sub.itertuples()}
        if shards is None:
            for (f, m, s), acc in recorded.items():
                fnn_key = {"proto": proto, "feature": f, "module": m, "submodule": s}
                rows.append({**fnn_key, "accuracy_recorded": acc, "accuracy": acc})
                rows[-1].update(accuracy_cut=np.nan, changed_predictions=np.nan)
            continue
        from errorless.data.shards import load_shard
        from errorless.features import transform

        pw = load_proto(weights, proto, feats)
        for g, (m, s) in enumerate(pw.groups):
            shard = load_shard(shard_path(shards, m, s))
            local = shard.local_labels
            c = int(pw.module_sizes[g])  # the module's own outputs (no padding)
            for f, feature in enumerate(pw.features):
                x = transform(shard.images, feature, **cfg["transform"])
                layers = [(W[f, g], b[f, g]) for W, b in pw.layers]
                layers[-1] = (layers[-1][0][:, :c], layers[-1][1][:c])
                params = fnn.as_params(layers)
                pred = fnn.predict(params, torch.as_tensor(x)).numpy()
                cut = fnn.truncate_params(params, check, saved)
                pred_cut = fnn.predict(cut, torch.as_tensor(x)).numpy()
                fnn_key = {"proto": proto, "feature": feature, "module": m, "submodule": s}
                rows.append(
                    {
                        **fnn_key,
                        "n_images": len(local),
                        "accuracy_recorded": recorded.get((feature, m, s), np.nan),
                        "accuracy": float(np.mean(pred == local)),
                        "accuracy_cut": float(np.mean(pred_cut == local)),
                        "changed_predictions": int(np.sum(pred != pred_cut)),
                    }
                )
            log.info(
                "%s %s_%s: %d images, %d features checked",
                proto,
                m,
                s,
                len(local),
                len(pw.features),
            )
    per_fnn = pd.DataFrame(rows)
    return training_table(per_fnn, check), per_fnn


def training_table(per_fnn: pd.DataFrame, check_decimals: int) -> pd.DataFrame:
    """Paper Table 2 from the per-FNN accuracies (fractions in, percent out)."""
    out = []
    for proto, d in per_fnn.groupby("proto", sort=True):
        free = d["accuracy"] >= 1.0
        parts = d.assign(free=free).groupby(["module", "submodule"])["free"].all()
        row = dict(proto=proto, fnns=len(d), partitions=len(parts))
        for name, col in (("", "accuracy"), ("cut_", "accuracy_cut")):
            a = 100 * d[col]
            row.update(
                {
                    f"{name}min": a.min(),
                    f"{name}mean": a.mean(),
                    f"{name}median": a.median(),
                    f"{name}max": a.max(),
                }
            )
            if name == "":
                row.update(
                    error_free_fnns=int(free.sum()),
                    error_free_partitions=int(parts.sum()),
                    error_free_fnns_text=f"{int(free.sum())}/{len(d)}",
                    error_free_partitions_text=f"{int(parts.sum())}/{len(parts)}",
                )
        cut_free = d["accuracy_cut"] >= 1.0
        row.update(
            check_decimals=check_decimals,
            cut_error_free_fnns=int(cut_free.sum()),
            cut_fnns_changed=int((d["accuracy_cut"] != d["accuracy"]).sum())
            if d["accuracy_cut"].notna().all()
            else None,
            cut_predictions_changed=int(d["changed_predictions"].sum())
            if d["changed_predictions"].notna().all()
            else None,
            max_abs_diff_recorded=float((d["accuracy"] - d["accuracy_recorded"]).abs().max()),
        )
        row["cut_changed_anything"] = (
            None
            if row["cut_predictions_changed"] is None
            else bool(row["cut_predictions_changed"] > 0)
        )
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- the confusion wheel's data


def choose_wheel_fnn(training: pd.DataFrame, features: Sequence[str]) -> dict[str, str] | None:
    """(model, feature, module, submodule) of the FNN shown on the confusion wheel: in
    (module, submodule) order, then feature order, the first FNN whose S accuracy is below
    100 % and whose T-FNN is error-free (SGD errors that GDT removes); else the first with S
    below 100 %; else the first FNN. First model (h1_m1)."""
    if training.empty:
        return None
    model = sorted(training["model"].unique())[0]
    t = training[training["model"] == model]
    fo = {f: i for i, f in enumerate(features)}
    keys = sorted(
        set(zip(t["feature"], t["module"], t["submodule"], strict=True)),
        key=lambda k: (number(k[1]), number(k[2]), fo.get(k[0], len(fo)), k[0]),
    )
    acc = {(r.method, r.feature, r.module, r.submodule): float(r.accuracy) for r in t.itertuples()}
    for want_t in (True, False):
        for f, m, s in keys:
            sa = acc.get(("S", f, m, s))
            ta = acc.get(("T", f, m, s))
            if sa is not None and sa < 1.0 and (not want_t or (ta is not None and ta >= 1.0)):
                return {"model": model, "feature": f, "module": m, "submodule": s}
    f, m, s = keys[0]
    return {"model": model, "feature": f, "module": m, "submodule": s}


def wheel_data(
    training: pd.DataFrame,
    weights: str | Path,
    shards: Mapping[str, Path] | None,
    cfg: dict[str, Any],
) -> dict[str, np.ndarray]:
    """What the report's confusion wheel draws: the chosen FNN's softmax outputs on its shard,
    one panel per proto-model of its model (``probs`` (P, N, c) float32, ``protos`` (P,)),
    the images' local ``labels`` (N,), ``label_lo``/``label_hi`` and the FNN's names. No
    panels (``protos`` empty) without a trained FNN or without the shards."""
    from errorless.data.shards import load_shard
    from errorless.features import transform
    from errorless.gather.load import load_fnn

    pick = choose_wheel_fnn(training, cfg["features"])
    empty = {"protos": np.array([], dtype=str), "probs": np.zeros((0, 0, 0), np.float32)}
    if pick is None or shards is None:
        return {**empty, "note": np.array("no trained FNN" if pick is None else "no shards")}
    model, f, m, s = pick["model"], pick["feature"], pick["module"], pick["submodule"]
    sh = load_shard(shard_path(shards, m, s))
    x = torch.as_tensor(transform(sh.images, f, **cfg["transform"]))
    protos = sorted(set(training.loc[training["model"] == model, "proto"]), key=proto_key)
    probs = [
        fnn.softmax(fnn.logits_of(fnn.as_params(load_fnn(weights, p, f, m, s)), x)).numpy()
        for p in protos
    ]
    return {
        "protos": np.array(protos, dtype=str),
        "probs": np.stack(probs).astype(np.float32),  # (P, N, c)
        "labels": np.asarray(sh.local_labels, dtype=np.int64),
        "module_labels": np.asarray(sh.module_labels, dtype=np.int64),
        "label_lo": np.int64(sh.label_lo),
        "label_hi": np.int64(sh.label_hi),
        **{k: np.array(v) for k, v in pick.items()},
        "note": np.array(""),
    }


# T statuses counted in Table 2 (gdtstate.classify_status); S/Sp rows get no counts
STATUS_COLUMNS = {
    "conflicts": "conflict_fnns",
    "no_anchor": "no_anchor_fnns",
    "residual_errors": "residual_fnns",
    "budget": "budget_fnns",
}


def with_status_counts(table: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """Table 2 plus, per T proto-model, how many FNNs ended with each non-error-free status —
    so a GDT that stopped on its budget is never read as unfittable data."""
    t = status[status["method"] == "T"]
    counts = t.groupby("proto")["status"].value_counts().unstack(fill_value=0)
    out = table.copy()
    for st, col in STATUS_COLUMNS.items():
        per = counts[st] if st in counts else pd.Series(0, index=counts.index)
        out[col] = pd.array(
            [int(per[p]) if p in per.index else None for p in out["proto"]], dtype="Int64"
        )
    return out
