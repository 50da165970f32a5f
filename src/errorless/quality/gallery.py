"""Thumbnails of images by id for the quality figures: the images fetched from the shards, and
one image drawn as stored."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def fetch_images(shards: Sequence[Path], ids: set[str]) -> dict[str, np.ndarray]:
    """Images by id from the shards (a shard is fully read only if it holds a wanted id)."""
    from errorless.data.shards import load_shard

    out: dict[str, np.ndarray] = {}
    if not ids:
        return out
    for p in shards:
        try:
            with np.load(p, allow_pickle=False) as z:
                sid = z["ids"].astype(str)
        except Exception as e:
            log.warning("%s: cannot read ids (%s); its images are not shown", p, e)
            continue
        want = np.flatnonzero(np.isin(sid, list(ids - out.keys())))
        if len(want):
            sh = load_shard(p)
            for k in want.tolist():
                out[str(sid[k])] = sh.images[k]
        if len(out) == len(ids):
            break
    return out


def show_image(ax, img: np.ndarray) -> None:
    """Draw one image on ``ax`` as stored: grey as grey, no per-image stretch (a darker copy
    looks darker)."""
    ax.imshow(
        img[..., 0] if img.shape[-1] == 1 else img,
        cmap="gray" if img.shape[-1] == 1 else None,
        vmin=0,
        vmax=255,
        interpolation="nearest",
    )


def thumbnail_cell(
    ax, img: np.ndarray | None, title: str, missing: str, missing_size: int, title_size: int
) -> None:
    """One cell of a grid of thumbnails: the image as stored (or ``missing`` where it was not
    found) under ``title``, no ticks."""
    ax.set_xticks([])
    ax.set_yticks([])
    if img is None:
        ax.text(0.5, 0.5, missing, ha="center", va="center", fontsize=missing_size)
    else:
        show_image(ax, img)
    ax.set_title(title, fontsize=title_size)
