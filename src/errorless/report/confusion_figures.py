"""The report's confusion figures: the confusion wheel (paper Figure 2), heat maps per module,
the module matrix and the thumbnails of the most confused pairs; drawn from given tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from errorless.quality.gallery import thumbnail_cell
from errorless.report.figures import proto_title, pyplot, save


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


# ---------------------------------------------------------------- confusion (errorless.evaluate.confusion)


def short_name(name: str, width: int = 14) -> str:
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
            short = [short_name(s) for s in names]
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
