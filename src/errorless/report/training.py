"""The report's training section: Table 2 side by side, the error-free grid, the GDT path of one
FNN and the confusion wheel."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from errorless.errors import DataError
from errorless.io import atomic_path, write_text
from errorless.names import number, proto_key
from errorless.report.confusion_figures import confusion_wheel_figure
from errorless.report.figures import (
    empty_figure,
    error_free_grid_figure,
    gdt_path_figure,
    proto_title,
)
from errorless.report.htmltables import html_page, html_table, note
from errorless.report.inputs import _config, read_table

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- training section


TABLE_ROWS = [
    ("FNNs", "fnns", "d"),
    ("min accuracy %", "min", "f"),
    ("mean accuracy %", "mean", "f"),
    ("median accuracy %", "median", "f"),
    ("max accuracy %", "max", "f"),
    ("error-free FNNs", "error_free_fnns_text", "s"),
    ("fully error-free partitions", "error_free_partitions_text", "s"),
    ("T-FNNs left with conflicts only", "conflict_fnns", "d"),
    ("T-FNNs whose search gave up (residual errors)", "residual_fnns", "d"),
    ("T-FNNs stopped on a GDT budget", "budget_fnns", "d"),
]


def training_side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """evaluation/training.csv (one row per proto) -> metrics × proto-models (S, S′, T columns)."""
    t = table.copy()
    if "error_free_fnns_text" not in t:
        t["error_free_fnns_text"] = [
            f"{a}/{b}" for a, b in zip(t["error_free_fnns"], t["fnns"], strict=True)
        ]
    if "error_free_partitions_text" not in t:
        t["error_free_partitions_text"] = [
            f"{a}/{b}" for a, b in zip(t["error_free_partitions"], t["partitions"], strict=True)
        ]
    protos = sorted(t["proto"], key=proto_key)
    t = t.set_index("proto").loc[protos]
    out: dict[str, list[str]] = {}
    for proto in protos:
        r = t.loc[proto]
        col = []
        for _, key, kind in TABLE_ROWS:
            v = r.get(key)
            col.append(
                "–"
                if v is None or pd.isna(v)
                else f"{float(v):.3f}"
                if kind == "f"
                else str(int(v))
                if kind == "d"
                else str(v)
            )
        if "check_decimals" in t and "cut_predictions_changed" in t:
            col.append(str(int(r["cut_predictions_changed"])))
        out[proto_title(proto)] = col
    index = [name for name, _, _ in TABLE_ROWS]
    if "check_decimals" in t and "cut_predictions_changed" in t:
        dec = int(t["check_decimals"].iloc[0])
        index.append(f"predictions changed, weights cut to {dec} decimals")
    return pd.DataFrame(out, index=pd.Index(index, name="metric"))


def choose_gdt_fnn(training: pd.DataFrame) -> pd.Series | None:
    """The T-FNN whose λ-path is shown (see the module docstring)."""
    t = training[(training["method"] == "T")].copy()
    if t.empty:
        return None
    t["_steps"] = [len(p) if p is not None else 0 for p in t["lambda_path"]]
    t = t[t["_steps"] > 0]
    if t.empty:
        return None
    t["_m"], t["_s"] = t["module"].map(number), t["submodule"].map(number)
    t = t.sort_values(
        ["rejected", "_steps", "proto", "_m", "_s", "feature"],
        ascending=[False, False, True, True, True, True],
        kind="stable",
    )
    return t.iloc[0]


def wheel_figure(wheel: Path, path: Path) -> dict[str, str] | None:
    """The confusion wheel from the data the training evaluation wrote (evaluation/wheel.npz)."""
    if not wheel.exists():
        raise DataError(f"{wheel}: confusion-wheel data missing (run evaluate-training first)")
    with np.load(wheel) as z:
        d = {k: z[k] for k in z.files}
    if len(d["protos"]) == 0:
        empty_figure(path, "Confusion wheel", str(d["note"]))
        return None
    pick = {k: str(d[k]) for k in ("model", "feature", "module", "submodule")}
    lo, hi, local = int(d["label_lo"]), int(d["label_hi"]), d["labels"]
    held = d.get("module_labels", np.arange(lo, hi))
    shown = f"{lo}–{hi - 1}" if len(held) == hi - lo else ", ".join(map(str, held))
    title = (
        f"Confusion wheel of FNN {pick['feature']} {pick['module']}_{pick['submodule']} "
        f"({len(local)} training images, labels {shown}): each output vector mapped onto "
        "one spoke per label"
    )
    panels = [(str(p), probs) for p, probs in zip(d["protos"], d["probs"], strict=True)]
    confusion_wheel_figure(panels, local, held, title, path)
    return pick


def training_section(args: argparse.Namespace, out: Path) -> None:
    cfg = _config(args)
    training = read_table(args.training, "training table")
    table = read_table(args.training_table, "training evaluation table (evaluation/training.csv)")
    side = training_side_by_side(table)
    with atomic_path(out / "training_table.csv") as tmp:
        side.to_csv(tmp)
    body = html_table(side, index=True) + note(
        "Accuracies are final training accuracies of the saved weights on each FNN's own shard, "
        "over all FNNs of a proto-model. An error-free FNN has 100 % training accuracy; a fully "
        "error-free partition is a (module, submodule) where the FNNs of every feature are error-free."
    )
    write_text(out / "training_table.html", html_page("Training evaluation (paper Table 2)", body))
    features = cfg.get("features") or sorted(training["feature"].unique())
    error_free_grid_figure(training, features, out / "error_free_grid.png")
    rec = choose_gdt_fnn(training)
    gdt_path_figure(rec, out / "gdt_path.png")
    pick = wheel_figure(Path(args.wheel), out / "confusion_wheel.png")
    log.info(
        "training section: wheel FNN %s, GDT path FNN %s",
        pick,
        None
        if rec is None
        else f"{rec['proto']} {rec['feature']} {rec['module']}_{rec['submodule']}",
    )
