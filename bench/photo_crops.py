"""Real-photo crops for the duplicate bench and tests, until errorless.photos lands."""
from __future__ import annotations
import numpy as np

def source_photos() -> list[np.ndarray]:
    import skimage.data as d
    from sklearn.datasets import load_sample_images
    names = ["astronaut", "chelsea", "coffee", "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina", "rocket"]
    return [np.ascontiguousarray(getattr(d, n)()[..., :3]) for n in names] + list(load_sample_images().images)

def photo_crops(n: int, seed: int = 0, size: int = 64, grid: int = 4):
    """n crops (size×size uint8) of random square boxes (size..3·size px) of the photos;
    label = photo × cell of a grid×grid partition holding the box centre."""
    from PIL import Image
    photos = source_photos()
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64); photo = np.empty(n, np.int64); boxes = np.empty((n, 4), np.int64)
    which = rng.integers(0, len(photos), n)
    for i, p in enumerate(which):
        img = photos[p]; h, w = img.shape[:2]
        side = int(rng.integers(size, min(3 * size, h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out[i] = np.asarray(Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
        cy, cx = min(grid - 1, (y + side // 2) * grid // h), min(grid - 1, (x + side // 2) * grid // w)
        labels[i] = p * grid * grid + cy * grid + cx; photo[i] = p; boxes[i] = (x, y, x + side, y + side)
    return out, labels, photo, boxes
