"""``ImageSet``: images, labels and where each image comes from (source batch, row), the form every
loader returns (docs/ARCHITECTURE.md, "Data")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from errorless.errors import DataError
from errorless.names import image_ids


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,), 0-based global
    batch: np.ndarray  # str (N,), source batch name
    row: np.ndarray  # int64 (N,), row within its source batch
    num_labels: int
    names: np.ndarray | None = None  # optional ids given by the data set itself (npz "ids")

    @property
    def ids(self) -> np.ndarray:
        return self.names if self.names is not None else image_ids(self.batch, self.row)

    def __len__(self) -> int:
        return len(self.labels)


def concat(sets: list[ImageSet]) -> ImageSet:
    shapes = {s.images.shape[1:] for s in sets}
    if len(shapes) > 1:
        raise DataError(f"source batches have different image shapes: {sorted(shapes)}")
    names = None
    if any(s.names is not None for s in sets):
        names = np.concatenate([s.ids for s in sets])
    return ImageSet(
        images=np.concatenate([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        batch=np.concatenate([s.batch for s in sets]),
        row=np.concatenate([s.row for s in sets]),
        num_labels=sets[0].num_labels,
        names=names,
    )
