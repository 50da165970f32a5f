"""The input transform of docs/method.md#features-and-the-input-transform: pool, trim, combine
colour planes, centre, scale, round.

All steps are whole-array numpy operations; images are processed in chunks so that a
15,000-image shard never needs more than a few hundred MB of float64 scratch space.
"""

from __future__ import annotations

import numpy as np

from errorless.config import FEATURES, GREY_FEATURE
from errorless.errors import ConfigError, DataError

POOL_ABOVE = 32  # inputs larger than this are pooled (64 -> 32); 32-px inputs are not
CHUNK = 2048


def feature_weights(feature: str, channels: int) -> np.ndarray:
    """Plane weights (C,) of ``feature`` for data with ``channels`` colour planes."""
    if feature == GREY_FEATURE:
        if channels != 1:
            raise ConfigError(
                "config key features: 'gray' asked of colour data; use colour features (R, G, ...)"
            )
        return np.ones(1)
    if feature not in FEATURES:
        raise ConfigError(
            f"config key features: unknown feature {feature!r}; known: {list(FEATURES)} or 'gray'"
        )
    if channels != 3:
        raise ConfigError(
            f"config key features: colour feature {feature!r} asked of grey data "
            f"({channels} plane); grey data has the single feature 'gray'"
        )
    return np.asarray(FEATURES[feature], dtype=np.float64)


def output_side(side: int, pool: int = 2, trim: int = 1) -> int:
    """Side of the transformed image for a square input of ``side`` pixels."""
    if side > POOL_ABOVE and pool > 1:
        side //= pool
    return side - 2 * trim


def transform(
    images: np.ndarray, feature: str, *, pool: int = 2, trim: int = 1, decimals: int = 4
) -> np.ndarray:
    """Transform uint8 images (N, H, W, C) into float32 inputs (N, D) for one feature.

    1. mean-pool non-overlapping pool×pool blocks (only for inputs larger than 32 px);
    2. trim ``trim`` pixels on every border; 3. combine planes with the feature's weights;
    4. subtract the image mean, divide by its max |value| (constant image -> zeros), round;
    5. flatten row-major.
    """
    return transform_many(images, [feature], pool=pool, trim=trim, decimals=decimals)[0]


def transform_many(
    images: np.ndarray, features: list[str], *, pool: int = 2, trim: int = 1, decimals: int = 4
) -> list[np.ndarray]:
    """:func:`transform` for several features at once: pooling and trimming are done once per
    chunk of images, then every feature combines the same planes. Each result is identical
    to ``transform(images, feature)`` (one code path)."""
    if images.ndim != 4:
        raise DataError(f"images must be (N, H, W, C), got shape {images.shape}")
    n, h, w, c = images.shape
    weights = [feature_weights(f, c) for f in features]
    side = output_side(min(h, w), pool, trim)
    if h != w or side < 1:
        raise DataError(
            f"images of {h}x{w} px are too small or not square for pool={pool}, trim={trim}"
        )
    outs = [np.empty((n, side * side), dtype=np.float32) for _ in features]
    for lo in range(0, n, CHUNK):
        planes = _pool_trim(images[lo : lo + CHUNK], pool, trim)  # (n', s, s, C) float64
        for out, wts in zip(outs, weights, strict=True):
            out[lo : lo + CHUNK] = _combine_scale(planes, wts, decimals)
    return outs


def _pool_trim(x: np.ndarray, pool: int, trim: int) -> np.ndarray:
    n, h, w, c = x.shape
    x = x.astype(np.float64)
    if h > POOL_ABOVE and pool > 1:
        x = x[:, : h - h % pool, : w - w % pool]
        x = x.reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))  # (N, h', w', C)
    if trim:
        x = x[:, trim:-trim, trim:-trim]
    return x


def _combine_scale(planes: np.ndarray, weights: np.ndarray, decimals: int) -> np.ndarray:
    n = len(planes)
    v = planes[..., 0] * weights[0]  # (N, s, s); planes summed in a fixed order
    for ch in range(1, len(weights)):
        if weights[ch]:
            v = v + planes[..., ch] * weights[ch]
    v = v.reshape(n, -1)
    v = v - v.mean(axis=1, keepdims=True)
    scale = np.abs(v).max(axis=1, keepdims=True)
    v = np.divide(v, scale, out=np.zeros_like(v), where=scale > 0)
    return np.round(v, decimals).astype(np.float32)
