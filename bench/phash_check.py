"""Why not imagehash's pHash: Hamming distance of each near-copy kind to its source, and of
distinct photo crops, on 64×64 crops of real photographs (errorless.data.photos).

    python bench/phash_check.py
"""

import imagehash
import numpy as np
from PIL import Image

from errorless.data import photos
from errorless.data.copies import NEAR_KINDS, transform_copy

images, labels, _ = photos.make_crops(58, 20, size=64, seed=3)
rng = np.random.default_rng(2)
h = [imagehash.phash(Image.fromarray(im)) for im in images]
# distinct pairs of different labels: nearest hamming distance per image
H = np.array([np.unpackbits(np.packbits(x.hash.ravel())) for x in h])
d = (H[:, None, :] != H[None, :, :]).sum(2)
diff = labels[:, None] != labels[None, :]
print(
    "pHash: distinct-label pairs with hamming <= t:",
    {t: int(((d <= t) & diff).sum() // 2) for t in (4, 6, 8, 10, 12)},
    "of",
    int(diff.sum() // 2),
)
for k in NEAR_KINDS:
    src = rng.choice(len(images), 50, replace=False)
    dd = [h[s] - imagehash.phash(Image.fromarray(transform_copy(images[s], k, rng))) for s in src]
    print(
        k,
        "hamming quantiles 50/90/max",
        np.percentile(dd, [50, 90, 100]).tolist(),
        "share <=8:",
        np.mean(np.array(dd) <= 8),
    )
