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
from errorless.quality.gallery import thumbnail_cell

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
    label_lo,
    title: str,
    path: Path,
) -> None:
    """One wheel per (proto, softmax outputs (N, c)); ``labels`` are local (0..c-1);
    ``label_lo``: the module's first global label, or its global labels (label groups)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    c = panels[0][1].shape[1]
    glob = np.asarray(label_lo) if np.ndim(label_lo) else int(label_lo) + np.arange(c)
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
                str(glob[k]),
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
        Line2D([], [], marker="o", linestyle="", color=colours[k], label=f"label {glob[k]}")
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


# ---------------------------------------------------------------- confusion (errorless.evaluate.confusion)


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_heatmaps_figure(
    blocks: Sequence[tuple[str, Sequence[str], np.ndarray]], path: Path, title: str
) -> None:
    """One heatmap per module: given (rows) × predicted (columns) over the module's labels,
    coloured by the share of the row's images (log scale shows the few errors beside the
    diagonal), counts written in the cells of small modules. ``blocks``: (module, label names,
    counts)."""
    plt = pyplot()
    from matplotlib.colors import LogNorm

    n = len(blocks)
    cols = min(3, n)
    rows = -(-n // cols)
    side = max(len(b[1]) for b in blocks)
    cell = 0.42 if side <= 12 else max(0.12, 5.0 / side)
    size = max(3.2, cell * side + 1.6)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (module, names, m) in zip(axes.flat, blocks, strict=False):
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(
            np.where(share > 0, share, np.nan),
            cmap="viridis",
            norm=LogNorm(1e-3, 1.0),
            aspect="equal",
        )
        k = len(names)
        if k <= 25:
            short = [_short(s) for s in names]
            ax.set_xticks(range(k), short, rotation=90, fontsize=6)
            ax.set_yticks(range(k), short, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        if k <= 12:
            for i, j in zip(*np.nonzero(m), strict=True):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if share[i, j] < 0.3 else "black",
                )
        errors = int(m.sum() - np.trace(m))
        ax.set_title(f"{module}: {errors} error(s) inside", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("given", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)


def module_matrix_figure(
    matrix: np.ndarray, modules: Sequence[str], path: Path, title: str
) -> None:
    """Module × module over all labels: errors given in one module (row) and predicted in a
    module (column); the diagonal holds the errors that stay inside their module."""
    plt = pyplot()
    from matplotlib.colors import LogNorm

    k = len(modules)
    size = min(12.0, max(4.0, 0.35 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(
        np.where(matrix > 0, matrix, np.nan),
        cmap="magma_r",
        norm=LogNorm(1, max(2, int(matrix.max()))),
        aspect="equal",
    )
    if k <= 40:
        ax.set_xticks(range(k), modules, rotation=90, fontsize=7)
        ax.set_yticks(range(k), modules, fontsize=7)
    if k <= 12:
        for i, j in zip(*np.nonzero(matrix), strict=True):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color="tab:blue")
    ax.set_xlabel("module of the predicted label")
    ax.set_ylabel("module of the given label")
    inside = int(np.trace(matrix))
    total = int(matrix.sum())
    share = f"{100 * inside / total:.1f} %" if total else "–"
    ax.set_title(f"{title}\nerrors: {total}, inside their module: {inside} ({share})", fontsize=9)
    fig.colorbar(im, ax=ax, label="errors", shrink=0.8)
    fig.tight_layout()
    save(fig, path)


def pair_thumbnails_figure(
    rows: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    images: dict[str, np.ndarray],
    path: Path,
    title: str,
) -> None:
    """A row per confused pair: its title, then thumbnails (image id, caption); a caption
    carries the marks of the image (double-labelling suspect, label issue)."""
    plt = pyplot()
    cols = max(1, max((len(t) for _, t in rows), default=1))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols + 1.8, 2.2 * len(rows)), squeeze=False
    )
    for r, (head, thumbs) in enumerate(rows):
        for c in range(cols):
            if c >= len(thumbs):
                axes[r][c].axis("off")
                continue
            image_id, caption = thumbs[c]
            missing = "image\nnot in a shard"
            thumbnail_cell(axes[r][c], images.get(image_id), caption, missing, 7, 6)
        axes[r][0].set_ylabel(head, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)
