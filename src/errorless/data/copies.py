"""What real data sets do to copies of an image (docs/method.md#double-labelling-evidence): the
near-copy kinds that the
synthetic generator plants and the duplicate bench measures.

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
    if kind == "combo":
        first, second = rng.choice(len(SINGLE_KINDS), size=2, replace=False)
        return transform_copy(
            transform_copy(img, SINGLE_KINDS[first], rng), SINGLE_KINDS[second], rng
        )
    if kind == "jpeg":
        buf = io.BytesIO()
        _pil(img).save(buf, format="JPEG", quality=int(rng.integers(30, 76)))
        return _back(Image.open(io.BytesIO(buf.getvalue())), c)
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
        raise ValueError(f"unknown near-copy kind {kind!r}; known: {', '.join(NEAR_KINDS)}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
