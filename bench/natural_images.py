"""Natural-like images at any count, made block by block from the real photographs of
``errorless.data.photos`` (the stand-in for a natural 1.28 M set, which does not exist offline).

Each image is one of three kinds, drawn per image with ``mosaic`` the share of the two
composite kinds (half each):

- **crop**: a square crop of side U{48..160} (clipped to the part) at a random position of a
  random photograph part, resized to ``size`` (Pillow's anti-aliased bilinear filter, as
  ``photos.crops``), then turned by a random multiple of 90° and mirrored with probability 1/2
  (flat crops redrawn, as ``photos.sample_boxes``). Label: the part and the turn (4 per part):
  two crops of one part and turn can be the same picture (overlapping boxes at a like scale),
  and a search only compares images of different labels, as the real-photo bench does with
  one label per part; a turned crop is no copy (the search knows mirror images, not turns).
- **mosaic**: 2 × 2 tiles, each a square crop of side U{32..128} of a random part (any photo),
  resized to ``size/2`` and turned at random. Label: one of 1,000 of its own (1000-1999).
- **strip**: two halves side by side (or one above the other), each the half of a square crop
  of side U{48..160} of a random part, resized to ``size`` × ``size/2`` (aspect kept), turned by
  0° or 180°. Label: as a mosaic.

So no two images of different labels share a source region at the same scale and turn:
every pair of unplanted images with different labels that the search reports is false.

Block ``b`` has a generator of its own (``default_rng([seed, b])``), so a block can be made
again when the search asks for its images; the same seed gives the same bytes. ``plant``
copies of each near-copy kind (``errorless.data.copies.NEAR_KINDS``) of random images of the
block are appended to each block, each under a label of its own (10,000 + its row).
"""

from __future__ import annotations

import functools

import numpy as np

from errorless.data import photos

CROP = (48, 160)  # single crops and strip halves: as photos.crops
TILE = (32, 128)  # mosaic tiles
MOSAIC_LABEL0, COPY_LABEL0 = 1000, 10_000


@functools.cache
def _sources():
    from PIL import Image

    return [Image.fromarray(np.asarray(a)) for _, a in photos.source_photos()]


def _resized(photo: int, box, w: int, h: int) -> np.ndarray:
    from PIL import Image

    y0, x0, y1, x1 = box
    im = _sources()[photo].crop((x0, y0, x1, y1)).resize((w, h), Image.Resampling.BILINEAR)
    return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(h, w, 3)


def natural_images(
    rng: np.random.Generator, n: int, size: int = 64, mosaic: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (n, size, size, 3), labels int64 (n,), kind int8 (n,): 0 crop, 1 mosaic,
    2 strip) — see the module docstring."""
    chosen = np.asarray(photos.photograph_labels(), np.int64)
    photo_of = np.array([p.photo for p in photos.parts()], np.int64)
    kind = rng.choice(3, size=n, p=[1 - mosaic, mosaic / 2, mosaic / 2]).astype(np.int8)
    out = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    half = size // 2

    # single crops
    rows = np.flatnonzero(kind == 0)
    part = rng.choice(chosen, size=len(rows))
    boxes = photos.sample_boxes(rng, part, CROP)
    turn = rng.integers(0, 4, len(rows))
    mirror = rng.random(len(rows)) < 0.5
    for r, p, box, k, m in zip(rows, part, boxes.tolist(), turn, mirror, strict=True):
        img = np.rot90(_resized(int(photo_of[p]), box, size, size), int(k))
        out[r] = img[:, ::-1] if m else img
    labels[rows] = part * 4 + turn

    # 2 x 2 mosaics
    rows = np.flatnonzero(kind == 1)
    part = rng.choice(chosen, size=(len(rows), 4))
    boxes = photos.sample_boxes(rng, part.ravel(), TILE).reshape(len(rows), 4, 4)
    turn = rng.integers(0, 4, (len(rows), 4))
    for r, ps, bs, ks in zip(rows, part, boxes.tolist(), turn, strict=True):
        for t in range(4):
            tile = np.rot90(_resized(int(photo_of[ps[t]]), bs[t], half, half), int(ks[t]))
            out[r, (t // 2) * half : (t // 2 + 1) * half, (t % 2) * half : (t % 2 + 1) * half] = (
                tile
            )
    labels[rows] = rng.integers(MOSAIC_LABEL0, MOSAIC_LABEL0 + 1000, len(rows))

    # strips: two halves side by side, or (transposed) one above the other
    rows = np.flatnonzero(kind == 2)
    part = rng.choice(chosen, size=(len(rows), 2))
    boxes = photos.sample_boxes(rng, part.ravel(), CROP).reshape(len(rows), 2, 4)
    turn = rng.integers(0, 2, (len(rows), 2)) * 2
    upright = rng.random(len(rows)) < 0.5
    for r, ps, bs, ks, u in zip(rows, part, boxes.tolist(), turn, upright, strict=True):
        for t in range(2):
            y0, x0, y1, x1 = bs[t]
            box = (y0, x0, y1, x0 + (x1 - x0) // 2)  # the left half of the square: h = 2 w
            piece = np.rot90(_resized(int(photo_of[ps[t]]), box, half, size), int(ks[t]))
            out[r, :, t * half : (t + 1) * half] = piece
        if u:
            out[r] = out[r].transpose(1, 0, 2)
    labels[rows] = rng.integers(MOSAIC_LABEL0, MOSAIC_LABEL0 + 1000, len(rows))
    return out, labels, kind


def natural_block(
    seed: int, block: int, lo: int, n: int, plant_per_kind: int, size: int = 64, mosaic: float = 0.3
):
    """Images, labels and planted truth [(source row, copy row, kind)] of the block of rows
    starting at ``lo`` (of ``n`` rows in all, ``block`` per block): ``plant_per_kind`` copies of
    each near-copy kind appended to the block's natural images."""
    from errorless.data.copies import NEAR_KINDS, transform_copy

    rng = np.random.default_rng([seed, lo // block])
    m = min(block, n - lo)
    kinds = list(NEAR_KINDS)
    per = min(plant_per_kind, m // (2 * len(kinds)))
    imgs, y, _ = natural_images(rng, m - per * len(kinds), size, mosaic)
    if not per:
        return imgs, y, []
    src = rng.choice(len(imgs), size=per * len(kinds), replace=False)
    copies = np.stack([transform_copy(imgs[s], kinds[i // per], rng) for i, s in enumerate(src)])
    rows = lo + len(imgs) + np.arange(len(src))
    truth = [(lo + int(s), int(rows[i]), kinds[i // per]) for i, s in enumerate(src)]
    return np.concatenate([imgs, copies]), np.concatenate([y, COPY_LABEL0 + rows]), truth
