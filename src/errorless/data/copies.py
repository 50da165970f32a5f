"""What real data sets do to copies of an image (docs/method.md#double-labelling-evidence): the
near-copy kinds that both generators plant and the duplicate bench measures.

Each kind is one transformation with its parameters drawn from the documented range; ``combo``
applies two different kinds in a row. Works on one uint8 image (H, W, 3) at a time (planting
makes a handful of copies; the search itself never loops per image).
"""

from __future__ import annotations

import io

import numpy as np

# kind -> what it does (docs/double-labelling.md lists the same ranges)
NEAR_KINDS = {
    "jpeg": "JPEG re-encoding, quality 30-75",
    "rescale": "downscaled 0.5-0.8x and back up",
    "crop": "2-10 % cut off each side, resized back",
    "shift": "content moved 1-4 px in x and y (edge pixels repeated)",
    "flip": "left-right mirror",
    "brightness": "pixel values x0.8-1.2",
    "contrast": "distance to the mean grey x0.8-1.2",
    "combo": "two different kinds of the above in a row",
}
SINGLE_KINDS = [k for k in NEAR_KINDS if k != "combo"]

# What copies in real data sets also show: planted by both generators when ``near_kinds``
# names them (config/photos.yaml plants every kind), accepted by the verification (an overlay
# without its corner, hue and saturation on the channels' mean; docs/double-labelling.md);
# bench/copy_kinds_bench.py measures recall per kind on seeds the limits never saw.
REAL_KINDS = {
    "hue": "hue rotated by 10-30 degrees either way",
    "saturation": "saturation x0.6-1.4 (distance of each channel to the pixel's grey)",
    "gain": "each channel x0.85-1.15 on its own",
    "aspect": "stretched 1.05-1.25x in x or y (a centre crop resized back)",
    "overlay": "a coloured box of 10-20 % of the side in a corner",
    "triple": "three different kinds of NEAR_KINDS and these in a row",
}
ALL_KINDS = {**NEAR_KINDS, **REAL_KINDS}
_TRIPLE_FROM = SINGLE_KINDS + ["hue", "saturation", "gain", "aspect", "overlay"]


def _pil(img: np.ndarray):
    from PIL import Image

    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def _back(pil, channels: int) -> np.ndarray:
    a = np.asarray(pil, dtype=np.uint8)
    return a[..., None] if channels == 1 else a


def transform_copy(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``img`` (H, W, C uint8) changed by one near-copy kind (see NEAR_KINDS)."""
    from PIL import Image

    h, w, c = img.shape
    if kind == "triple":
        out = img
        for k in rng.choice(len(_TRIPLE_FROM), size=3, replace=False):
            out = transform_copy(out, _TRIPLE_FROM[k], rng)
        return out
    if kind in ("hue", "saturation", "gain") and c == 3:
        return _colour(img, kind, rng)
    if kind in ("hue", "saturation", "gain"):  # a grey image has no colour to change
        return img.copy()
    if kind == "aspect":
        f = rng.uniform(1.05, 1.25)
        if rng.random() < 0.5:
            cut = w * (1 - 1 / f) / 2
            box = (cut, 0, w - cut, h)
        else:
            cut = h * (1 - 1 / f) / 2
            box = (0, cut, w, h - cut)
        return _back(_pil(img).resize((w, h), Image.BILINEAR, box=box), c)
    if kind == "overlay":
        side = int(round(rng.uniform(0.10, 0.20) * min(h, w)))
        out = img.copy()
        ys = slice(0, side) if rng.random() < 0.5 else slice(h - side, h)
        xs = slice(0, side) if rng.random() < 0.5 else slice(w - side, w)
        out[ys, xs] = rng.integers(0, 256, size=c, dtype=np.uint8)
        return out
    if kind == "combo":
        first, second = rng.choice(len(SINGLE_KINDS), size=2, replace=False)
        return transform_copy(
            transform_copy(img, SINGLE_KINDS[first], rng), SINGLE_KINDS[second], rng
        )
    if kind == "jpeg":
        return jpeg(img, int(rng.integers(30, 76)))
    if kind == "rescale":
        f = rng.uniform(0.5, 0.8)
        small = _pil(img).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR)
        return _back(small.resize((w, h), Image.BILINEAR), c)
    if kind == "crop":
        left, top, right, bottom = rng.uniform(0.02, 0.10, size=4) * [w, h, w, h]
        box = (left, top, w - right, h - bottom)
        return _back(_pil(img).resize((w, h), Image.BILINEAR, box=box), c)
    if kind == "shift":
        dy, dx = rng.integers(1, 5, size=2) * rng.choice([-1, 1], size=2)
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        return np.ascontiguousarray(img[rows][:, cols])
    if kind == "flip":
        return np.ascontiguousarray(img[:, ::-1])
    x = img.astype(np.float64)
    if kind == "brightness":
        x = x * rng.uniform(0.8, 1.2)
    elif kind == "contrast":
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.2) + mean
    else:
        raise ValueError(f"unknown near-copy kind {kind!r}; known: {', '.join(ALL_KINDS)}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (H, W, C uint8) re-encoded as JPEG at ``quality`` and decoded again."""
    from PIL import Image

    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=quality)
    return _back(Image.open(io.BytesIO(buf.getvalue())), img.shape[-1])


def _colour(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A colour change of an RGB image that keeps the picture: hue rotation (about the grey
    axis), saturation (each channel's distance to the pixel's grey scaled) or per-channel gain."""
    x = img.astype(np.float64)
    if kind == "gain":
        x = x * rng.uniform(0.85, 1.15, size=3)
    elif kind == "saturation":
        grey = x.mean(axis=-1, keepdims=True)
        x = grey + (x - grey) * rng.uniform(0.6, 1.4)
    else:  # hue: rotation about the (1, 1, 1) axis (Rodrigues)
        t = np.deg2rad(rng.uniform(10, 30) * rng.choice([-1, 1]))
        k = np.ones(3) / np.sqrt(3)
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        r = np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx
        x = x @ r.T
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def plant(
    images: np.ndarray,
    labels: np.ndarray,
    per_kind: int,
    rng: np.random.Generator,
    offset: int = 0,
    kinds: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, str]]]:
    """Copies of random images of ``images`` (N, H, W, C uint8), ``per_kind`` of each of
    ``kinds`` (default NEAR_KINDS), appended with a new label each (above ``labels``' largest).
    Returns (images + copies, labels + copy labels, [(source row, copy row, kind)]), rows
    shifted by ``offset`` (the block's first row in a larger set)."""
    kinds = list(NEAR_KINDS) if kinds is None else kinds
    src = rng.choice(len(images), size=per_kind * len(kinds), replace=False)
    copies = np.stack(
        [transform_copy(images[s], kinds[i // per_kind], rng) for i, s in enumerate(src)]
    )
    new_labels = labels.max() + 1 + np.arange(len(src))  # every copy carries a label of its own
    truth = [
        (offset + int(s), offset + len(images) + i, kinds[i // per_kind]) for i, s in enumerate(src)
    ]
    return np.concatenate([images, copies]), np.concatenate([labels, new_labels]), truth
