"""Figures and tables for Snakemake's HTML report (SPEC §9), one command per report section.

``errorless report-figures --section S --out-dir DIR [inputs]`` writes fixed file names into
DIR (the rules in ``workflow/rules/report.smk`` flag them with ``report(...)``):

* ``training``: ``training_table.html``/``.csv`` (Table 2 with the proto-models S, S′, T side
  by side), ``error_free_grid.png`` (features × (module, submodule), coloured by final training
  accuracy, error-free cells marked), ``gdt_path.png`` (λ and Δ against the continuation step
  of one T-FNN), ``confusion_wheel.png`` (the paper's Figure 2 for one FNN, one panel per
  method).
* ``evaluation``: ``accuracy_vs_features.html``/``.csv``/``.png`` (accuracy and Top-1 rate
  against the number of features p, top-1 and top-3 protocols), ``perfect_labels.html``/``.png``
  (labels whose images are all predicted correctly, per batch and in every batch).
* ``quality``: ``suspects.html`` (the ranked double-labelling suspects) and
  ``planted_check.html`` (precision and recall against the planted truth when known); the
  thumbnails are ``quality/suspects.png`` of the double-labeling rule.
* ``run``: ``run_facts.html`` (data set, settings, jobs, compute time per phase from the
  benchmark files) and ``compute_time.png``.

Tables are written as small self-contained HTML pages because the report shows HTML inline
and offers CSV files only as downloads.

Choices (config-free and deterministic):

* Confusion wheel FNN: in (module, submodule) order, then feature order, the first FNN whose
  S accuracy is below 100 % and whose T-FNN is error-free (the paper's case: SGD errors that
  GDT removes); else the first with S below 100 %; else the first FNN. First model (h1_m1).
* GDT path FNN: the T-FNN with the most rejected λ-steps, then the most λ-steps, then the
  first in (module, submodule, feature) order.
* Wheel geometry (paper Figure 2): the c labels of the module are spokes
  u_k = (cos θ_k, sin θ_k), θ_k = 90° − 360°·k/c; an image's softmax output y maps to
  Σ_k y_k u_k. A confident correct output sits near its label's spoke tip; a misclassified
  image lies outside its label's sector.
"""

from __future__ import annotations

import argparse
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datasets import GENERATED
from .errors import DataError
from .io import atomic_path, write_text
from .names import featured_number, number, proto_key, shard_name, split_proto

log = logging.getLogger(__name__)

SECTIONS = ("training", "evaluation", "quality", "run")
OUTPUTS = {
    "training": [
        "training_table.html",
        "training_table.csv",
        "error_free_grid.png",
        "gdt_path.png",
        "confusion_wheel.png",
    ],
    "evaluation": [
        "accuracy_vs_features.html",
        "accuracy_vs_features.csv",
        "accuracy_vs_features.png",
        "perfect_labels.html",
        "perfect_labels.png",
    ],
    "quality": ["suspects.html", "planted_check.html"],
    "run": ["run_facts.html", "compute_time.png"],
}
METHOD_TITLE = {"S": "S (SGD to threshold)", "Sp": "S′ (released threshold)", "T": "T (GDT)"}
DPI = 110


# ---------------------------------------------------------------- small helpers


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def proto_title(proto: str) -> str:
    method, _ = split_proto(proto)
    prime = {"Sp": "S′"}.get(method, method)
    return f"{prime} ({proto})"


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} missing (run the step that writes it first)")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as e:  # pragma: no cover - corrupt input
        raise DataError(f"{path}: unreadable {what}: {e}") from None


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:12px;color:#222}
h2{font-size:16px;margin:4px 0 8px} h3{font-size:14px;margin:14px 0 6px}
p.note{font-size:12px;color:#555;max-width:70em}
table{border-collapse:collapse;font-size:13px;margin-bottom:10px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#eef2f7;white-space:normal} td.l,th.l{text-align:left}
td.w{white-space:normal;min-width:14em;max-width:40em}
tr:nth-child(even) td{background:#fafafa}
"""


def html_table(
    df: pd.DataFrame, left: Sequence[str] = (), index: bool = False, wrap: Sequence[str] = ()
) -> str:
    """A plain HTML table; columns in ``left`` (and the index) are left-aligned, cells of
    ``wrap`` columns may wrap (long lists), the others stay on one line."""
    cols = list(df.columns)
    cls = {
        c: " ".join(k for k, on in (("l", c in left or c in wrap), ("w", c in wrap)) if on)
        for c in cols
    }
    head = (
        f'<th class="l">{html.escape(str(df.index.name or ""))}</th>' if index else ""
    ) + "".join(f'<th class="{cls[c]}">{html.escape(str(c))}</th>' for c in cols)
    rows = []
    for idx, r in zip(df.index, df.itertuples(index=False), strict=True):
        cells = (f'<td class="l"><b>{html.escape(str(idx))}</b></td>' if index else "") + "".join(
            f'<td class="{cls[c]}">{html.escape(_fmt(v))}</td>'
            for c, v in zip(cols, r, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.2f}"
    return str(v)


def html_page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _empty_figure(path: Path, title: str, message: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.8))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=11)
    _save(fig, path)


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


def error_free_grid_figure(training: pd.DataFrame, features: Sequence[str], path: Path) -> None:
    """Features × (module, submodule) heat map of final training accuracy, one panel per proto."""
    plt = _plt()
    from matplotlib.lines import Line2D

    protos = sorted(training["proto"].unique(), key=proto_key)
    feats = [f for f in features if f in set(training["feature"])] or sorted(
        training["feature"].unique()
    )
    groups = sorted(
        set(zip(training["module"], training["submodule"], strict=True)),
        key=lambda g: (number(g[0]), number(g[1])),
    )
    gi = {g: i for i, g in enumerate(groups)}
    fi = {f: i for i, f in enumerate(feats)}
    acc = training["accuracy"].astype(float) * 100
    vmin = min(float(acc.min()), 99.0)
    ncol = len(groups)
    width = min(40.0, max(7.5, 0.55 * ncol + 3))
    height = max(2.2, 0.34 * len(feats) + 1.0)
    fig, axes = plt.subplots(
        len(protos),
        1,
        figsize=(width, height * len(protos) + 1.6),
        squeeze=False,
        layout="constrained",
    )
    im = None
    annotate = ncol <= 24 and len(feats) <= 20
    for ax, proto in zip(axes[:, 0], protos, strict=True):
        sub = training[training["proto"] == proto]
        grid = np.full((len(feats), ncol), np.nan)
        for f, m, s, a in zip(
            sub["feature"], sub["module"], sub["submodule"], sub["accuracy"], strict=True
        ):
            if f in fi:
                grid[fi[f], gi[(m, s)]] = float(a) * 100
        im = ax.imshow(
            grid, cmap="viridis", vmin=vmin, vmax=100, aspect="auto", interpolation="nearest"
        )
        free = grid >= 100.0 - 1e-9
        ef = np.argwhere(free)
        ax.scatter(
            ef[:, 1],
            ef[:, 0],
            marker="o",
            s=40 if ncol <= 40 else 8,
            facecolors="white",
            edgecolors="black",
            linewidths=0.7,
            zorder=3,
        )
        if annotate:
            for i, j in np.argwhere(np.isfinite(grid) & ~free):
                v = grid[i, j]
                ax.text(
                    j,
                    i,
                    f"{v:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < vmin + 0.6 * (100 - vmin) else "black",
                )
        full = [i for i in range(ncol) if np.all(free[:, i])]
        ax.set_title(
            f"{proto_title(proto)}: {int(free.sum())}/{int(np.isfinite(grid).sum())} FNNs error-free, "
            f"{len(full)}/{ncol} partitions fully error-free (★)",
            fontsize=10,
        )
        ax.set_yticks(range(len(feats)), feats, fontsize=8)
        ax.set_ylabel("feature")
        step = max(1, ncol // 40)
        ticks = list(range(0, ncol, step))
        ax.set_xticks(
            ticks,
            [f"{groups[i][0]}/{groups[i][1]}" + (" ★" if i in full else "") for i in ticks],
            rotation=90,
            fontsize=7,
        )
    axes[-1, 0].set_xlabel("partition (module/submodule); ★ = every feature error-free")
    cb = fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01)
    cb.set_label("final training accuracy (%)")
    handle = Line2D(
        [],
        [],
        marker="o",
        linestyle="",
        markerfacecolor="white",
        markeredgecolor="black",
        label="error-free FNN (100 %); numbers: accuracy % of the others",
    )
    fig.legend(handles=[handle], loc="outside lower center", fontsize=8, frameon=False)
    fig.suptitle("Error-free grid: final training accuracy of every FNN", fontsize=12)
    _save(fig, path)


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


def gdt_path_figure(rec: pd.Series | None, path: Path) -> None:
    """λ and Δ against the continuation step; accepted and rejected steps marked differently."""
    if rec is None:
        _empty_figure(
            path, "GDT λ-path", "no GDT λ-steps recorded (gdt.enabled false or no errors)"
        )
        return
    plt = _plt()
    lam = np.asarray(rec["lambda_path"], dtype=float)
    delta = np.asarray(rec["delta_path"], dtype=float)
    ok = np.asarray(rec["accepted_path"], dtype=bool)
    step = np.arange(1, len(lam) + 1)
    lam_ok = np.maximum.accumulate(np.where(ok, lam, 0.0)) if len(lam) else lam
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    a1.step(step, lam_ok, where="post", color="0.5", lw=1, label="accepted λ so far (λ_ok)")
    a1.plot(step[ok], lam[ok], "o", color="tab:green", label=f"accepted step ({ok.sum()})")
    a1.plot(
        step[~ok],
        lam[~ok],
        "x",
        color="tab:red",
        ms=8,
        mew=2,
        label=f"rejected step ({(~ok).sum()})",
    )
    a1.set_ylabel("λ tried")
    a1.set_ylim(-0.03, 1.05)
    a1.legend(fontsize=8, loc="lower right")
    a1.grid(alpha=0.3)
    a2.plot(step, delta, "-", color="0.6", lw=1)
    a2.plot(step[ok], delta[ok], "o", color="tab:green", label="accepted")
    a2.plot(step[~ok], delta[~ok], "x", color="tab:red", ms=8, mew=2, label="rejected")
    a2.set_ylabel("step Δ")
    a2.set_xlabel("continuation step")
    if len(delta) and delta.max() / max(delta.min(), 1e-12) > 20:
        a2.set_yscale("log")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    name = f"{rec['proto']} {rec['feature']} {rec['module']}_{rec['submodule']}"
    fig.suptitle(
        f"GDT λ-path of FNN {name}\nstatus {rec['status']}, training accuracy "
        f"{100 * float(rec['accuracy_sgd']):.2f} % after SGD → {100 * float(rec['accuracy']):.2f} % after GDT, "
        f"{int(rec['gdt_rounds'])} round(s)",
        fontsize=10,
    )
    fig.tight_layout()
    _save(fig, path)


def spokes(c: int) -> np.ndarray:
    """(c, 2) unit vectors, label 0 at the top, clockwise."""
    theta = np.pi / 2 - 2 * np.pi * np.arange(c) / c
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def wheel_points(probs: np.ndarray) -> np.ndarray:
    """Output vectors (N, c) -> points (N, 2) in the unit disc: Σ_k y_k · spoke_k."""
    return probs @ spokes(probs.shape[1])


def confusion_wheel_figure(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    label_lo: int,
    title: str,
    path: Path,
) -> None:
    """One wheel per (proto, softmax outputs (N, c)); ``labels`` are local (0..c-1)."""
    plt = _plt()
    from matplotlib.lines import Line2D

    c = panels[0][1].shape[1]
    sp = spokes(c)
    cmap = plt.get_cmap("tab10" if c <= 10 else "tab20" if c <= 20 else "hsv")
    colours = [cmap(k / c if c > 20 else k) for k in range(c)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 1.8, 6.0), squeeze=False)
    for ax, (proto, probs) in zip(axes[0], panels, strict=True):
        pts = wheel_points(probs)
        pred = probs.argmax(axis=1)
        wrong = pred != labels
        circle = np.linspace(0, 2 * np.pi, 361)
        ax.plot(np.cos(circle), np.sin(circle), color="0.6", lw=0.8)
        for k in range(c):
            half = np.pi / c  # sector boundaries halfway between spokes
            th = np.arctan2(sp[k, 1], sp[k, 0]) + half
            ax.plot([0, np.cos(th)], [0, np.sin(th)], color="0.88", lw=0.6, zorder=0)
            ax.plot([0, sp[k, 0]], [0, sp[k, 1]], color=colours[k], lw=1.2, alpha=0.8, zorder=1)
            ax.text(
                1.1 * sp[k, 0],
                1.1 * sp[k, 1],
                str(label_lo + k),
                ha="center",
                va="center",
                fontsize=8 if c <= 30 else 6,
                color=colours[k],
                fontweight="bold",
            )
        ax.scatter(
            pts[~wrong, 0],
            pts[~wrong, 1],
            s=10,
            c=[colours[y] for y in labels[~wrong]],
            alpha=0.6,
            linewidths=0,
            zorder=2,
        )
        if wrong.any():
            ax.scatter(
                pts[wrong, 0],
                pts[wrong, 1],
                s=60,
                c=[colours[y] for y in labels[wrong]],
                marker="X",
                edgecolors="black",
                linewidths=0.8,
                zorder=4,
            )
        ax.set_title(
            f"{proto_title(proto)}\ntraining accuracy {100 * (1 - wrong.mean()):.2f} %, "
            f"{int(wrong.sum())} misclassified of {len(labels)}",
            fontsize=10,
        )
        ax.set_aspect("equal")
        ax.set_xlim(-1.25, 1.25)
        ax.set_ylim(-1.25, 1.25)
        ax.set_xlabel("spoke coordinate x")
        ax.set_ylabel("spoke coordinate y")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[k], label=f"label {label_lo + k}")
        for k in range(c)
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="X",
            linestyle="",
            markerfacecolor="0.7",
            markeredgecolor="black",
            markersize=8,
            label="misclassified image",
        )
    )
    fig.legend(
        handles=handles,
        loc="center right",
        fontsize=8,
        title="true label",
        ncol=1 if c <= 26 else 2,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / (5.6 * len(panels) + 1.8), 0.95))
    _save(fig, path)


def wheel_figure(wheel: Path, path: Path) -> dict[str, str] | None:
    """The confusion wheel from the data the training evaluation wrote (evaluation/wheel.npz)."""
    if not wheel.exists():
        raise DataError(f"{wheel}: confusion-wheel data missing (run evaluate-training first)")
    with np.load(wheel) as z:
        d = {k: z[k] for k in z.files}
    if len(d["protos"]) == 0:
        _empty_figure(path, "Confusion wheel", str(d["note"]))
        return None
    pick = {k: str(d[k]) for k in ("model", "feature", "module", "submodule")}
    lo, hi, local = int(d["label_lo"]), int(d["label_hi"]), d["labels"]
    title = (
        f"Confusion wheel of FNN {pick['feature']} {pick['module']}_{pick['submodule']} "
        f"({len(local)} training images, labels {lo}–{hi - 1}): each output vector mapped onto "
        "one spoke per label"
    )
    panels = [(str(p), probs) for p, probs in zip(d["protos"], d["probs"], strict=True)]
    confusion_wheel_figure(panels, local, lo, title, path)
    return pick


def training_section(args: argparse.Namespace, out: Path) -> None:
    cfg = _config(args)
    training = read_table(args.training, "training table")
    table = read_table(args.training_table, "training evaluation table (evaluation/training.csv)")
    side = training_side_by_side(table)
    with atomic_path(out / "training_table.csv") as tmp:
        side.to_csv(tmp)
    body = html_table(side, index=True) + _note(
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


# ---------------------------------------------------------------- evaluation section


def accuracy_vs_features(acc: pd.DataFrame) -> pd.DataFrame:
    """accuracy.csv -> rows (split, protocol, featured model), columns per proto: accuracy, Top-1."""
    protos = sorted(acc["proto"].unique(), key=proto_key)
    idx = ["split", "protocol", "p", "featured_model"]
    wide = acc.pivot_table(
        index=idx, columns="proto", values=["accuracy_pct", "top1_rate_pct"], aggfunc="first"
    )
    out = wide.index.to_frame(index=False)
    split_order = {"train": 0, "heldout": 1}
    for proto in protos:
        out[f"{proto} accuracy %"] = wide[("accuracy_pct", proto)].to_numpy()
        out[f"{proto} Top-1 %"] = wide[("top1_rate_pct", proto)].to_numpy()
    out["_s"] = out["split"].map(lambda s: split_order.get(s, 2))
    out = out.sort_values(["_s", "protocol", "p"], kind="stable").drop(columns="_s")
    return out.rename(columns={"featured_model": "model", "p": "features p"}).reset_index(drop=True)


def accuracy_figure(acc: pd.DataFrame, path: Path) -> None:
    """Accuracy and Top-1 rate against the number of features (one line per proto × protocol)."""
    plt = _plt()
    splits = [s for s in ("train", "heldout") if s in set(acc["split"])] or sorted(
        acc["split"].unique()
    )
    protos = sorted(acc["proto"].unique(), key=proto_key)
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(protos)}
    styles = {"top1": ("-", "o"), "top3": ("--", "s")}
    fig, axes = plt.subplots(len(splits), 2, figsize=(11, 3.8 * len(splits)), squeeze=False)
    ps = sorted(acc["p"].unique())
    names = acc.drop_duplicates("p").set_index("p")["featured_model"].to_dict()
    for row, split in enumerate(splits):
        for col, (metric, label) in enumerate(
            (("accuracy_pct", "accuracy (%)"), ("top1_rate_pct", "Top-1 rate (%)"))
        ):
            ax = axes[row, col]
            for proto in protos:
                for protocol in sorted(acc["protocol"].unique()):
                    d = acc[
                        (acc["proto"] == proto)
                        & (acc["protocol"] == protocol)
                        & (acc["split"] == split)
                    ]
                    if d.empty:
                        continue
                    d = d.sort_values("p")
                    ls, mk = styles.get(protocol, (":", "^"))
                    ax.plot(
                        d["p"],
                        d[metric],
                        linestyle=ls,
                        marker=mk,
                        color=colours[proto],
                        label=f"{proto_title(proto)}, {protocol}",
                    )
            ax.set_xticks(ps, [f"{names[p]}\n(p={p})" for p in ps], fontsize=8)
            ax.set_xlabel("featured model (number of features p)")
            ax.set_ylabel(label)
            ax.set_title(
                f"{label.split(' (')[0]} vs features — {'training images' if split == 'train' else split + ' images'}",
                fontsize=10,
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(
        "Majority-vote accuracy and Top-1 rate against the number of features", fontsize=12
    )
    fig.tight_layout()
    _save(fig, path)


def perfect_table(perfect: pd.DataFrame, per_batch: pd.DataFrame) -> pd.DataFrame:
    """One row per (proto, model, protocol, split): per-batch perfect counts and the every-batch labels."""
    keys = ["proto", "featured_model", "protocol", "split"]
    wide = per_batch.pivot_table(
        index=keys, columns="batch", values="perfect_labels", aggfunc="first"
    )
    present = per_batch.groupby(keys)["labels_present"].max()
    base = perfect.set_index(keys)
    out = wide.copy()
    out.columns = [f"perfect in {b}" for b in out.columns]
    out.insert(0, "labels present", present.reindex(out.index))
    out["mean per batch"] = base["mean_perfect_per_batch"].reindex(out.index)
    out["perfect in every batch"] = base["perfect_all_batches"].reindex(out.index)
    out["labels perfect in every batch"] = (
        base["perfect_all_batches_labels"]
        .reindex(out.index)
        .fillna("")
        .astype(str)
        .replace("", "–")
    )
    out = out.reset_index()
    out["_k"] = out["proto"].map(proto_key)
    out["_s"] = out["split"].map({"train": 0, "heldout": 1})
    out = out.sort_values(["_s", "protocol", "_k", "featured_model"], kind="stable").drop(
        columns=["_k", "_s"]
    )
    out = out.rename(columns={"featured_model": "model"}).reset_index(drop=True)
    for c in out.columns:
        if c.startswith("perfect in ") and c != "perfect in every batch":
            out[c] = out[c].map(lambda v: "–" if pd.isna(v) else str(int(v)))
    return out


def perfect_figure(per_batch: pd.DataFrame, path: Path) -> None:
    """Per-batch perfect-label counts (top-1 protocol), one bar group per batch."""
    plt = _plt()
    d = (
        per_batch[per_batch["protocol"] == "top1"]
        if "top1" in set(per_batch["protocol"])
        else per_batch
    )
    batches = list(
        dict.fromkeys(d.sort_values(["split", "batch"], ascending=[False, True])["batch"])
    )
    series = sorted(
        {(p, m) for p, m in zip(d["proto"], d["featured_model"], strict=True)},
        key=lambda pm: (proto_key(pm[0]), featured_number(pm[1])),
    )
    if not series:
        _empty_figure(path, "Perfect labels", "no predictions")
        return
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(batches) * max(1, len(series)) / 3 + 3), 4.2))
    w = 0.8 / len(series)
    cmap = plt.get_cmap("tab20")
    for i, (proto, model) in enumerate(series):
        s = d[(d["proto"] == proto) & (d["featured_model"] == model)].set_index("batch")
        vals = [float(s["perfect_labels"].get(b, np.nan)) for b in batches]
        ax.bar(
            np.arange(len(batches)) + (i - (len(series) - 1) / 2) * w,
            vals,
            width=w,
            color=cmap(i % 20),
            label=f"{proto_title(proto)}, {model}",
        )
    present = d.groupby("batch")["labels_present"].max()
    for j, b in enumerate(batches):
        ax.hlines(present.get(b, np.nan), j - 0.45, j + 0.45, colors="black", linestyles=":", lw=1)
    ax.plot([], [], "k:", label="labels present in the batch")
    ax.set_xticks(range(len(batches)), batches, fontsize=8, rotation=15)
    ax.set_xlabel("source batch")
    ax.set_ylabel("perfect labels (all images correct)")
    ax.set_title("Perfect labels per batch, top-1 protocol", fontsize=11)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def evaluation_section(args: argparse.Namespace, out: Path) -> None:
    acc = read_table(args.accuracy, "accuracy table (evaluation/accuracy.csv)")
    table = accuracy_vs_features(acc)
    with atomic_path(out / "accuracy_vs_features.csv") as tmp:
        table.to_csv(tmp, index=False)
    body = ""
    for split in table["split"].unique():
        for protocol in table["protocol"].unique():
            part = table[(table["split"] == split) & (table["protocol"] == protocol)]
            if part.empty:
                continue
            body += f"<h3>{html.escape(split)} images, {html.escape(protocol)} protocol</h3>"
            body += html_table(part.drop(columns=["split", "protocol"]), left=["model"])
    body += _note(
        "Accuracy = correct predictions / images. Top-1 rate = share of the correct "
        "predictions won by a super-majority (all p features agree). Model-p votes with "
        "the first p configured features; top3 = every FNN votes for its three best labels."
    )
    write_text(
        out / "accuracy_vs_features.html",
        html_page("Accuracy and Top-1 against the number of features", body),
    )
    accuracy_figure(acc, out / "accuracy_vs_features.png")

    perfect = read_table(args.perfect, "perfect-labels table")
    per_batch = read_table(args.perfect_per_batch, "per-batch perfect-labels table")
    pt = perfect_table(perfect, per_batch)
    body = html_table(
        pt, left=["proto", "model", "protocol", "split"], wrap=["labels perfect in every batch"]
    )
    body += _note(
        "A label is perfect in a batch when every image of it in that batch is predicted "
        "correctly. Labels are 0-based global label numbers."
    )
    write_text(out / "perfect_labels.html", html_page("Perfect labels (paper Table 4)", body))
    perfect_figure(per_batch, out / "perfect_labels.png")


# ---------------------------------------------------------------- quality section


def suspects_display(report: pd.DataFrame) -> pd.DataFrame:
    """double_labeling rows -> a compact readable table (one line per suspect)."""

    def col(name, default=None):
        return (
            report[name]
            if name in report
            else pd.Series([default] * len(report), index=report.index)
        )

    shard = [
        " / ".join(
            dict.fromkeys(shard_name(m, s) for m, s in ((ma, sa), (mb, sb)) if isinstance(m, str))
        )
        for ma, sa, mb, sb in zip(
            col("module_a"), col("submodule_a"), col("module_b"), col("submodule_b"), strict=True
        )
    ]
    failed = [
        "–" if pd.isna(f) or pd.isna(n) or not n else f"{int(f)}/{int(n)}"
        for f, n in zip(col("n_features_failed"), col("n_features"), strict=True)
    ]
    return pd.DataFrame(
        {
            "rank": col("rank"),
            "score": col("score"),
            "match": col("kind", "").fillna("residual only").astype(str),
            "similarity": col("similarity"),
            "evidence": col("evidence", "").astype(str).str.replace("+", " + ", regex=False),
            "images": col("ids", "").astype(str).str.replace(";", "; ", regex=False),
            "labels": col("labels", "").astype(str).str.replace(";", "; ", regex=False),
            "shards": shard,
            "T-features failed": failed,
        }
    )


def quality_section(args: argparse.Namespace, out: Path) -> None:
    report = read_table(args.suspects, "double-labelling report (double_labeling.parquet)")
    top = int(args.top)
    counts = report["evidence"].value_counts() if len(report) else pd.Series(dtype=int)
    body = (
        f"<p>{len(report)} suspect row(s). By evidence: "
        + (", ".join(f"{html.escape(str(k))}: {int(v)}" for k, v in counts.items()) or "none")
        + "</p>"
    )
    body += html_table(
        suspects_display(report.head(top)), left=["evidence", "shards"], wrap=["images", "labels"]
    )
    if len(report) > top:
        body += _note(f"Showing the top {top} of {len(report)} rows.")
    body += _note(
        "match = how the two images match: exact (same bytes), near (the same picture after JPEG, "
        "rescaling, crops, shifts, brightness/contrast; similarity = aligned correlation of the images, "
        "1 = identical), mirrored (the same via a left-right mirror), or 'indistinguishable in feature X' "
        "(different images whose inputs of that feature are identical: that FNN cannot fit them, but they "
        "are not a double label). "
        "score = image-match evidence (3 exact or a match that is also a pre-check conflict, 1–2 near) + residual evidence "
        "(1 + share of the partition's features whose T-FNN failed on the image). "
        "ids are image ids (source batch:row); labels are 0-based. The full list is double_labeling.csv."
    )
    write_text(out / "suspects.html", html_page("Double-labelling suspects", body))
    check = read_table(args.planted_check, "planted check (quality/planted_check.csv)")
    c = check.copy()
    for col in ("precision", "recall"):
        if col in c:
            c[col] = c[col].map(lambda v: "–" if pd.isna(v) else f"{100 * float(v):.1f} %")
    c = c.astype(object).where(c.notna(), "")
    body = html_table(c, left=["kind"], wrap=["note"]) + _note(
        "Against the planted double-labelled pairs of the synthetic data: precision = correct suspect "
        "rows / reported rows, recall = planted pairs found / planted pairs. Real data sets have no "
        "ground truth (see note)."
    )
    write_text(
        out / "planted_check.html",
        html_page("Double labelling: precision and recall against the planted truth", body),
    )
    thumbnails_figures(args, report)


def thumbnails_figures(args: argparse.Namespace, report: pd.DataFrame) -> None:
    """The thumbnail figures of the double-labelling suspects and the label issues: drawn here
    (not by the rules that rank them) so that double_labeling.thumbnails reruns only the report."""
    if not (args.suspects_figure or args.issues_figure):
        return
    from .doublelabel import read_planted, suspects_figure
    from .labelissues import flip_ids, issues_figure

    top = int(_config(args)["double_labeling"]["thumbnails"])
    shards = Path(args.shards or ".")
    if args.suspects_figure:
        suspects_figure(report, shards, Path(args.suspects_figure), top)
    if args.issues_figure:
        issues = read_table(args.issues, "label issues (quality/label_issues.parquet)")
        planted = read_planted(Path(args.planted)) if args.planted else None
        issues_figure(
            issues,
            shards,
            Path(args.issues_figure),
            top,
            flip_ids(planted) if planted is not None else None,
        )


# ---------------------------------------------------------------- run section


def read_benchmarks(root: Path) -> pd.DataFrame:
    """Every ``benchmarks/**/*.tsv`` with its phase (first folder or file stem under ``root``)."""
    rows = []
    for p in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        try:
            d = pd.read_csv(p, sep="\t")
        except Exception as e:
            log.warning("%s: unreadable benchmark (%s)", p, e)
            continue
        if d.empty or "s" not in d:
            continue
        rel = p.relative_to(root)
        phase = rel.parts[0] if len(rel.parts) > 1 else p.stem
        r = d.iloc[-1]
        rows.append(
            {
                "phase": phase,
                "job": str(rel.with_suffix("")),
                "seconds": float(r["s"]),
                "cpu_seconds": float(pd.to_numeric(r.get("cpu_time"), errors="coerce")),
                "max_rss_mb": float(pd.to_numeric(r.get("max_rss"), errors="coerce")),
            }
        )
    return pd.DataFrame(rows, columns=["phase", "job", "seconds", "cpu_seconds", "max_rss_mb"])


def phase_table(bench: pd.DataFrame) -> pd.DataFrame:
    if bench.empty:
        return pd.DataFrame(
            columns=["phase", "jobs", "wall s (sum)", "CPU s (sum)", "slowest job s", "peak RSS MB"]
        )
    g = bench.groupby("phase", sort=False)
    t = pd.DataFrame(
        {
            "jobs": g.size(),
            "wall s (sum)": g["seconds"].sum(),
            "CPU s (sum)": g["cpu_seconds"].sum(),
            "slowest job s": g["seconds"].max(),
            "peak RSS MB": g["max_rss_mb"].max(),
        }
    ).sort_values("wall s (sum)", ascending=False)
    total = pd.DataFrame(
        {
            "jobs": [int(t["jobs"].sum())],
            "wall s (sum)": [t["wall s (sum)"].sum()],
            "CPU s (sum)": [t["CPU s (sum)"].sum()],
            "slowest job s": [t["slowest job s"].max()],
            "peak RSS MB": [t["peak RSS MB"].max()],
        },
        index=["total"],
    )
    out = pd.concat([t, total])
    out.index.name = "phase"
    out["jobs"] = out["jobs"].astype(int)
    return out.reset_index()


def run_facts(
    cfg: dict[str, Any], training: pd.DataFrame, manifest: pd.DataFrame | None
) -> pd.DataFrame:
    ds, sgd, gdt = cfg.get("dataset", {}), cfg.get("sgd", {}), cfg.get("gdt", {})
    facts = [
        ("data set format", ds.get("format")),
        ("data set path", ds.get("path")),
    ]
    if manifest is not None and len(manifest):
        facts += [
            ("training images (sharded)", int(manifest["images"].sum())),
            ("labels L", int(manifest["label_hi"].max())),
            (
                "modules × submodules",
                f"{manifest['module'].nunique()} × {manifest['submodule'].nunique()}",
            ),
        ]
    if ds.get("format") in GENERATED:
        fmt = ds["format"]
        syn = cfg.get(fmt, {})
        facts.append(
            (
                f"{fmt}: batches × labels × images per label",
                f"{syn.get('batches')} × {syn.get('labels')} × {syn.get('images_per_label')}",
            )
        )
    arch = cfg.get("models", {})
    facts += [
        ("features", ", ".join(cfg.get("features", []))),
        ("featured models (p)", ", ".join(str(p) for p in cfg.get("featured_models", []))),
        (
            "architectures used",
            ", ".join(f"{a} {arch.get('architectures', {}).get(a)}" for a in arch.get("use", [])),
        ),
        ("replicates", arch.get("replicates")),
        ("proto-models", ", ".join(sorted(training["proto"].unique(), key=proto_key))),
        (
            "FNNs trained (jobs)",
            int(training[["model", "feature", "module", "submodule"]].drop_duplicates().shape[0]),
        ),
        (
            "SGD: threshold, max epochs, batch, lr, loss",
            f"{sgd.get('threshold')}, {sgd.get('max_epochs')}, {sgd.get('batch_size')}, {sgd.get('lr')}, {sgd.get('loss')}",
        ),
        ("SGD released epochs (S′)", sgd.get("released_epochs")),
        (
            "GDT: enabled, conflict pre-check, rounds, max λ-steps, max seconds",
            f"{gdt.get('enabled')}, {gdt.get('conflict_precheck')}, {gdt.get('rounds')}, "
            f"{gdt.get('max_lambda_steps')}, {gdt.get('max_seconds')}",
        ),
        ("seed", cfg.get("seed")),
    ]
    one = training.drop_duplicates(["model", "feature", "module", "submodule"])
    t = training[training["method"] == "T"]
    facts += [
        ("training time in SGD (sum over FNNs, s)", round(float(one["seconds_sgd"].sum()), 1)),
        ("training time in GDT (sum over FNNs, s)", round(float(t["seconds_gdt"].sum()), 1)),
        (
            "GDT λ-steps accepted / rejected",
            f"{int(t['accepted'].sum())} / {int(t['rejected'].sum())}",
        ),
        (
            "T-FNN status counts",
            ", ".join(f"{k}: {v}" for k, v in t["status"].value_counts().items()),
        ),
    ]
    return pd.DataFrame(facts, columns=["fact", "value"]).astype({"value": str})


def compute_figure(phases: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    d = phases[phases["phase"] != "total"]
    if d.empty:
        _empty_figure(path, "Compute time per phase", "no benchmark files found")
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(d) + 1.6))
    y = np.arange(len(d))
    ax.barh(
        y - 0.2,
        d["wall s (sum)"],
        height=0.4,
        color="tab:blue",
        label="wall-clock s (sum over jobs)",
    )
    ax.barh(
        y + 0.2, d["CPU s (sum)"], height=0.4, color="tab:orange", label="CPU s (sum over jobs)"
    )
    ax.set_yticks(
        y,
        [
            f"{p} ({j} job{'s' if j != 1 else ''})"
            for p, j in zip(d["phase"], d["jobs"], strict=True)
        ],
    )
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Compute time per phase (Snakemake benchmark files)", fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def run_section(args: argparse.Namespace, out: Path) -> None:
    cfg = _config(args)
    training = read_table(args.training, "training table")
    manifest = None
    if args.manifest and Path(args.manifest).exists():
        manifest = pd.read_csv(args.manifest, sep="\t")
    facts = run_facts(cfg, training, manifest)
    phases = phase_table(read_benchmarks(Path(args.benchmarks)))
    body = "<h3>Data set and settings</h3>" + html_table(facts, left=["fact"], wrap=["value"])
    body += "<h3>Compute time per phase (benchmark files)</h3>" + html_table(phases, left=["phase"])
    body += _note(
        "Phases are the benchmarked rules (folders or files under benchmarks/); light rules "
        "without a benchmark are not counted. CPU seconds can exceed wall seconds for "
        "multi-threaded jobs. SGD/GDT seconds are measured inside the training jobs."
    )
    write_text(out / "run_facts.html", html_page("Run facts", body))
    compute_figure(phases, out / "compute_time.png")


# ---------------------------------------------------------------- CLI


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "settings", None):
        from .config import parse_settings

        return parse_settings(args.settings)
    if not getattr(args, "config", None):
        return {}
    import yaml

    path = Path(args.config)
    if not path.exists():
        raise DataError(f"{path}: config missing (rule write_config writes it)")
    return yaml.safe_load(path.read_text()) or {}


NEEDS = {
    "training": ["training", "training_table", "wheel"],
    "evaluation": ["accuracy", "perfect", "perfect_per_batch"],
    "quality": ["suspects", "planted_check"],
    "run": ["training", "benchmarks"],
}


def figures_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--section", required=True, choices=SECTIONS, help="which report section to write"
    )
    p.add_argument("--out-dir", required=True, help="folder for the figures and tables")
    p.add_argument(
        "--config", help="the results folder's config.yaml (features, transform, settings)"
    )
    p.add_argument(
        "--settings", help="the settings the section reads, as JSON (wins over --config)"
    )
    p.add_argument("--training", help="training.parquet")
    p.add_argument("--training-table", help="evaluation/training.csv")
    p.add_argument("--wheel", help="evaluation/wheel.npz (the confusion wheel's data)")
    p.add_argument("--shards", help="shard folder")
    p.add_argument("--manifest", help="shards/manifest.tsv (run facts)")
    p.add_argument("--accuracy", help="evaluation/accuracy.csv")
    p.add_argument("--perfect", help="evaluation/perfect_labels.csv")
    p.add_argument("--perfect-per-batch", help="evaluation/perfect_labels_per_batch.csv")
    p.add_argument("--suspects", help="double_labeling.parquet")
    p.add_argument("--planted-check", help="quality/planted_check.csv")
    p.add_argument(
        "--suspects-figure", help="quality: suspect thumbnails PNG to draw (needs --shards)"
    )
    p.add_argument("--issues", help="quality: quality/label_issues.parquet (for --issues-figure)")
    p.add_argument("--issues-figure", help="quality: label-issue thumbnails PNG to draw")
    p.add_argument("--planted", help="quality: planted truth CSV (marks the planted flips)")
    p.add_argument(
        "--top", type=int, default=100, help="suspect rows shown in the table (default 100)"
    )
    p.add_argument(
        "--benchmarks", default="benchmarks", help="benchmark folder (default benchmarks)"
    )


def figures_main(args: argparse.Namespace) -> int:
    missing = [f"--{k.replace('_', '-')}" for k in NEEDS[args.section] if not getattr(args, k)]
    if missing:
        raise DataError(f"section {args.section} needs {', '.join(missing)}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    {
        "training": training_section,
        "evaluation": evaluation_section,
        "quality": quality_section,
        "run": run_section,
    }[args.section](args, out)
    log.info(
        "section %s: wrote %s", args.section, ", ".join(str(out / f) for f in OUTPUTS[args.section])
    )
    return 0
