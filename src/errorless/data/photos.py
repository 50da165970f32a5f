"""Real photographs as a data set: crops of the photos bundled with scikit-image and scikit-learn.

The synthetic patterns are too easy and hide failures; these are real images that need no
download. Sources (a fixed list, in label order; every one loads offline from the installed
package): the colour photos of ``skimage.data`` (astronaut, coffee, chelsea, rocket,
hubble_deep_field, immunohistochemistry, colorwheel, logo with its alpha channel dropped),
scikit-learn's ``load_sample_images()`` (china, flower), then grey ``skimage.data`` photos
repeated into three equal channels (camera, coins, brick, grass, gravel, cell, page, text).
Left out: ``cat`` (the same photo as chelsea), and retina, moon and clock, whose parts are
all mostly flat (see below).

**Labels** are (photo, part): each photo is cut into non-overlapping parts, a 2 × 2 grid where
a side is at least ``2 * MIN_PART`` pixels and halves (or the whole side) otherwise, so every
part is at least ``MIN_PART`` = 160 px on each side. Parts that are mostly flat (fewer than
half of their 64-px windows have a grey standard deviation of ``MIN_STD``) are dropped: flat
crops from two labels would be the same picture with two labels, i.e. unplanted double
labels. That leaves ``available_labels() == 58`` labels (the 35 colour parts first, so 25 labels
are all colour photos).

**Images** are ``size`` × ``size`` uint8 RGB crops of a label's part: a random square of side
``U{crop_min..crop_max}`` (clipped to the part's shorter side) at a random position inside
the part, resized with Pillow's anti-aliased bilinear filter, mirrored left-right with
probability 1/2; crops flatter than ``MIN_STD`` are redrawn. Crops of different labels never
share a source pixel. Deterministic for a seed (same seed, same bytes).

Python API (no disk):
- :func:`source_photos` ``() -> tuple of (name, uint8 (H, W, 3))``;
- :func:`parts` ``() -> list[Part]`` — label ``i`` is ``parts()[i]`` (name, photo, box);
- :func:`make_crops` ``(labels, per_label, size=64, seed=0, crop=(48, 160), flip=True)
  -> (images uint8 (N, S, S, 3), labels int64 (N,), boxes int64 (N, 4))`` with boxes
  ``(y0, x0, y1, x1)`` in the pixels of photo ``parts()[label].photo``, label-major order;
- :func:`crops` — the same for a given array of labels and a given generator.

As a pipeline data format (``dataset.format: photos``, settings ``photos:``; ``errorless
photos --out DIR``), :func:`write` writes the crops in the imagenet64 (or 32) pickle layout
(``train_data_batch_1..N``, ``val_data``) with the planted double labels of
:mod:`errorless.data.synthetic` (``planted.csv``, same batch layout, planting and writing
functions) and ``labels.csv`` (each label's photo and part box).
"""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorless.config import settings_arguments, settings_from_args
from errorless.data import synthetic
from errorless.errors import ConfigError
from errorless.io import write_text

log = logging.getLogger(__name__)

# (name, source): colour photos first, then grey ones; the order is the label order
PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "skimage"),
    ("coffee", "skimage"),
    ("chelsea", "skimage"),
    ("rocket", "skimage"),
    ("hubble_deep_field", "skimage"),
    ("immunohistochemistry", "skimage"),
    ("colorwheel", "skimage"),
    ("logo", "skimage"),
    ("china", "sklearn"),
    ("flower", "sklearn"),
    ("camera", "skimage"),
    ("coins", "skimage"),
    ("brick", "skimage"),
    ("grass", "skimage"),
    ("gravel", "skimage"),
    ("cell", "skimage"),
    ("page", "skimage"),
    ("text", "skimage"),
)
# drawings, not photographs: their quadrants share shapes (mirror-image arcs, single-channel
# gradients), so crops of two of their labels can be near-identical inputs in one feature
GRAPHICS = ("colorwheel", "logo")
MIN_PART = 160  # every part is at least this many pixels on each side
MIN_STD = 8.0  # grey standard deviation below which a crop counts as flat
MIN_CONTENT = 0.5  # a part needs this share of non-flat 64-px windows
CONTENT_WINDOW, CONTENT_STRIDE = 64, 16
MAX_REDRAWS = 200


@dataclass(frozen=True)
class Part:
    name: str  # "astronaut/top-left"
    photo: int  # index into source_photos()
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1) in the photo's pixels, end exclusive


@functools.cache
def source_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, read-only uint8 (H, W, 3) array) of every photograph, in label order (loaded once)."""
    out = []
    for name, source in PHOTOS:
        if source == "sklearn":
            from sklearn.datasets import load_sample_image

            a = load_sample_image(f"{name}.jpg")
        else:
            from skimage import data

            a = getattr(data, name)()
        a = np.asarray(a)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = np.ascontiguousarray(a[..., :3], dtype=np.uint8)  # logo: drop alpha (all opaque)
        a.flags.writeable = False
        out.append((name, a))
    return tuple(out)


def _grid(n: int) -> list[tuple[int, int, str]]:
    """Cut a side of n pixels into two halves when both are at least MIN_PART, else keep it."""
    if n >= 2 * MIN_PART:
        return [(0, n // 2, "a"), (n // 2, n, "b")]
    return [(0, n, "")]


@functools.cache
def _integrals(photo: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed-area tables (H+1, W+1) of the grey photo and of its square (for box std)."""
    g = source_photos()[photo][1].astype(np.float64).mean(axis=2)
    s1 = np.zeros((g.shape[0] + 1, g.shape[1] + 1))
    s2 = np.zeros_like(s1)
    s1[1:, 1:] = g.cumsum(0).cumsum(1)
    s2[1:, 1:] = (g * g).cumsum(0).cumsum(1)
    return s1, s2


def box_std(photo: int, boxes: np.ndarray) -> np.ndarray:
    """Grey standard deviation of each box (M, 4) = (y0, x0, y1, x1) of one photo."""
    s1, s2 = _integrals(photo)
    y0, x0, y1, x1 = boxes.T

    def total(s):
        return s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]

    n = (y1 - y0) * (x1 - x0)
    mean = total(s1) / n
    return np.sqrt(np.maximum(total(s2) / n - mean * mean, 0.0))


@functools.cache
def parts() -> tuple[Part, ...]:
    """Every label's part, in label order (see the module docstring for the rule)."""
    names = {"a": "top", "b": "bottom"}, {"a": "left", "b": "right"}
    out = []
    for p, (name, a) in enumerate(source_photos()):
        H, W = a.shape[:2]
        for y0, y1, ry in _grid(H):
            for x0, x1, rx in _grid(W):
                where = "-".join(filter(None, (names[0].get(ry), names[1].get(rx))))
                box = (y0, x0, y1, x1)
                if _content(p, box) >= MIN_CONTENT:
                    out.append(Part(f"{name}/{where or 'whole'}", p, box))
    return tuple(out)


def _content(photo: int, box: tuple[int, int, int, int]) -> float:
    """Share of the part's CONTENT_WINDOW windows (on a stride grid) that are not flat."""
    y0, x0, y1, x1 = box
    ys = np.arange(y0, y1 - CONTENT_WINDOW + 1, CONTENT_STRIDE)
    xs = np.arange(x0, x1 - CONTENT_WINDOW + 1, CONTENT_STRIDE)
    yy, xx = (v.ravel() for v in np.meshgrid(ys, xs, indexing="ij"))
    w = np.stack([yy, xx, yy + CONTENT_WINDOW, xx + CONTENT_WINDOW], axis=1)
    return float((box_std(photo, w) >= MIN_STD).mean())


def available_labels() -> int:
    return len(parts())


def photograph_labels() -> list[int]:
    """Labels whose part comes from a photograph (not one of the ``GRAPHICS``), in label order:
    a hard but consistent real-data task in every feature (used by ``bench/train_one.py``)."""
    names = [name for name, _ in source_photos()]
    return [i for i, p in enumerate(parts()) if names[p.photo] not in GRAPHICS]


def label_names(labels: int) -> list[str]:
    return [p.name for p in parts()[:labels]]


def check_labels(labels: int, where: str = "config key photos.labels") -> None:
    """Stop with an error naming ``where`` unless 1 <= labels <= available_labels()."""
    n = available_labels()
    if labels > n:
        raise ConfigError(
            f"{where}: {labels} labels asked, the bundled photos give {n} (photo parts)"
        )
    if labels < 1:
        raise ConfigError(f"{where}: needs at least 1 label, got {labels}")


def sample_boxes(
    rng: np.random.Generator, labels: np.ndarray, crop: tuple[int, int] = (48, 160)
) -> np.ndarray:
    """Random non-flat square boxes (N, 4) = (y0, x0, y1, x1) inside each label's part."""
    lo, hi = crop
    if not 1 <= lo <= hi:
        raise ConfigError(
            f"config key photos.crop_min/crop_max: need 1 <= crop_min <= crop_max, got {lo}, {hi}"
        )
    table = np.array([p.box for p in parts()], dtype=np.int64)  # (L, 4)
    photo = np.array([p.photo for p in parts()], dtype=np.int64)
    n = len(labels)
    boxes = np.zeros((n, 4), dtype=np.int64)
    todo = np.arange(n)
    for _ in range(MAX_REDRAWS):
        if not len(todo):
            return boxes
        y0, x0, y1, x1 = table[labels[todo]].T
        short = np.minimum(y1 - y0, x1 - x0)
        side = np.minimum(rng.integers(lo, hi + 1, size=len(todo)), short)
        top = y0 + np.floor(rng.random(len(todo)) * (y1 - y0 - side + 1)).astype(np.int64)
        left = x0 + np.floor(rng.random(len(todo)) * (x1 - x0 - side + 1)).astype(np.int64)
        boxes[todo] = np.stack([top, left, top + side, left + side], axis=1)
        flat = np.zeros(len(todo), bool)
        ph = photo[labels[todo]]
        for p in np.unique(ph):
            m = ph == p
            flat[m] = box_std(int(p), boxes[todo[m]]) < MIN_STD
        todo = todo[flat]
    raise ConfigError(
        f"photos: could not draw non-flat crops for labels {sorted(set(labels[todo].tolist()))[:5]}; raise photos.crop_min"
    )


def crops(
    rng: np.random.Generator,
    labels: np.ndarray,
    size: int = 64,
    crop: tuple[int, int] = (48, 160),
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Crops (N, size, size, 3) uint8 of the given labels (0-based) and their boxes (N, 4)."""
    from PIL import Image

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels):
        check_labels(int(labels.max()) + 1, "photos.crops: labels")
    boxes = sample_boxes(rng, labels, crop)
    mirror = rng.random(len(labels)) < 0.5 if flip else np.zeros(len(labels), bool)
    photos = [Image.fromarray(np.asarray(a)) for _, a in source_photos()]
    photo = np.array([p.photo for p in parts()], dtype=np.int64)[labels]
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, (p, (y0, x0, y1, x1)) in enumerate(zip(photo.tolist(), boxes.tolist(), strict=True)):
        # crop first: resize(box=...) would let the filter read pixels outside the box (another
        # label's part); Pillow's bilinear filter widens its kernel when shrinking (anti-aliased)
        im = photos[p].crop((x0, y0, x1, y1)).resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(size, size, 3)
    out[mirror] = out[mirror, :, ::-1]
    return out, boxes


def make_crops(
    labels: int,
    per_label: int,
    size: int = 64,
    seed: int = 0,
    crop: tuple[int, int] = (48, 160),
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_label`` crops of each of the first ``labels`` labels, label-major:
    (images uint8 (N, size, size, 3), labels int64 (N,), boxes int64 (N, 4))."""
    check_labels(labels, "photos.make_crops: labels")
    y = np.repeat(np.arange(labels, dtype=np.int64), per_label)
    images, boxes = crops(np.random.default_rng(seed), y, size, crop, flip)
    return images, y, boxes


# ---------------------------------------------------------------- the pipeline data format


def generate(cfg: dict[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """Return {batch name: (images, labels 0-based)} and the planted pairs (settings ``photos``)."""
    s = cfg["photos"]
    check_labels(s["labels"])
    rng = np.random.default_rng(s["seed"])
    crop = (s["crop_min"], s["crop_max"])

    def draw(labels: np.ndarray) -> np.ndarray:
        return crops(rng, labels, s["image_size"], crop, s["flip"])[0]

    return synthetic.draw_batches(rng, cfg, "photos", draw)


def write(cfg: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the batches (imagenet pickle layout), planted.csv and labels.csv (what each label is)."""
    batches, planted = generate(cfg)
    written = synthetic.write_batches(out_dir, batches, planted)
    L = cfg["photos"]["labels"]
    rows = ["label,name,photo,y0,x0,y1,x1"]  # label 0-based, as in planted.csv
    for i, p in enumerate(parts()[:L]):
        rows.append(",".join(map(str, (i, p.name, source_photos()[p.photo][0], *p.box))))
    write_text(out_dir / "labels.csv", "\n".join(rows) + "\n")
    log.info(
        "photos: %d batches, %d labels, %d planted pairs -> %s",
        len(batches),
        L,
        len(planted),
        out_dir,
    )
    return written


def photos_arguments(p: argparse.ArgumentParser) -> None:
    settings_arguments(p)
    p.add_argument(
        "--out", required=True, help="folder to write the batches, planted.csv and labels.csv into"
    )


def photos_main(args: argparse.Namespace) -> int:
    write(settings_from_args(args), Path(args.out))
    return 0
