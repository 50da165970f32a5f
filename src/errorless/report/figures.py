"""The report's figures (matplotlib, PNG): every function draws one figure from tables it is
given and writes it atomically; none reads a file or runs a model (``report.py`` reads the
stage outputs and calls these)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from errorless.io import atomic_path
from errorless.names import featured_number, number, proto_key, split_proto

METHOD_TITLE = {"S": "S (SGD to threshold)", "Sp": "S′ (released threshold)", "T": "T (GDT)"}


def proto_title(proto: str) -> str:
    method, _ = split_proto(proto)
    prime = {"Sp": "S′"}.get(method, method)
    return f"{prime} ({proto})"


DPI = 110


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def empty_figure(path: Path, title: str, message: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.8))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.45, message, ha="center", va="center", fontsize=11)
    save(fig, path)


def error_free_grid_figure(training: pd.DataFrame, features: Sequence[str], path: Path) -> None:
    """Features × (module, submodule) heat map of final training accuracy, one panel per proto."""
    plt = pyplot()
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
    save(fig, path)


def gdt_path_figure(rec: pd.Series | None, path: Path) -> None:
    """λ and Δ against the continuation step; accepted and rejected steps marked differently."""
    if rec is None:
        empty_figure(path, "GDT λ-path", "no GDT λ-steps recorded (gdt.enabled false or no errors)")
        return
    plt = pyplot()
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
    save(fig, path)


def accuracy_figure(acc: pd.DataFrame, path: Path) -> None:
    """Accuracy and Top-1 rate against the number of features (one line per proto × protocol)."""
    plt = pyplot()
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
    save(fig, path)


def perfect_figure(per_batch: pd.DataFrame, path: Path) -> None:
    """Per-batch perfect-label counts (top-1 protocol), one bar group per batch."""
    plt = pyplot()
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
        empty_figure(path, "Perfect labels", "no predictions")
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
    save(fig, path)


def compute_figure(phases: pd.DataFrame, path: Path) -> None:
    plt = pyplot()
    d = phases[phases["phase"] != "total"]
    if d.empty:
        empty_figure(path, "Compute time per phase", "no benchmark files found")
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
    save(fig, path)
