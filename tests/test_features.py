"""The transform of docs/method.md#features-and-the-input-transform against values computed by
hand, and against a plain loop."""

import numpy as np
import pytest

from errorless.config import FEATURES
from errorless.errors import ConfigError
from errorless.features import output_side, transform


def test_hand_computed_tiny_image():
    # 4x4 RGB image, no pooling (<= 32 px), trim 1 keeps the centre 2x2.
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, 1:3, 1:3, 0] = [[10, 20], [30, 40]]  # R
    img[0, 1:3, 1:3, 1] = [[0, 0], [0, 100]]  # G
    # feature RG = 0.5 R + 0.5 G: [[5, 10], [15, 70]]; mean 25 -> [[-20, -15], [-10, 45]]
    # max |v| = 45 -> [-0.4444, -0.3333, -0.2222, 1.0]
    out = transform(img, "RG", pool=2, trim=1, decimals=4)
    np.testing.assert_array_equal(out, np.array([[-0.4444, -0.3333, -0.2222, 1.0]], np.float32))
    # feature B (all zeros inside): constant image -> zeros, never NaN
    out_b = transform(img, "B")
    assert out_b.shape == (1, 4) and not np.isnan(out_b).any() and (out_b == 0).all()


def test_pooling_64px_by_hand():
    # 64x64 constant blocks of 2x2: pooling must average each block exactly.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    out = transform(img, "R", decimals=8)
    assert out.shape == (2, 900)
    # oracle: plain loops over pixels
    for n in range(2):
        pooled = np.zeros((32, 32))
        for i in range(32):
            for j in range(32):
                pooled[i, j] = img[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 0].astype(float).mean()
        v = pooled[1:31, 1:31].ravel()
        v = v - v.mean()
        v = v / np.abs(v).max()
        np.testing.assert_allclose(out[n], np.round(v, 8), atol=1e-6)


@pytest.mark.parametrize("feature", list(FEATURES))
def test_every_feature_equals_loop_oracle(feature):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    out = transform(img, feature)
    w = FEATURES[feature]
    for n in range(3):
        x = img[n, 1:31, 1:31].astype(float)
        v = (w[0] * x[..., 0] + w[1] * x[..., 1] + w[2] * x[..., 2]).ravel()
        v = v - v.mean()
        v = v / np.abs(v).max()
        np.testing.assert_allclose(out[n], np.round(v, 4), atol=1e-4)
    assert out.shape == (3, 900) and np.abs(out).max() == 1.0


def test_sizes_and_grey():
    assert output_side(64) == 30 and output_side(32) == 30 and output_side(8) == 6
    grey = np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1)
    out = transform(grey, "gray")
    assert out.shape == (1, 36)
    const = np.full((2, 64, 64, 3), 77, np.uint8)
    assert (transform(const, "Y") == 0).all()


def test_bad_feature_names():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="unknown feature 'Q'"):
        transform(img, "Q")
    with pytest.raises(ConfigError, match="grey data"):
        transform(np.zeros((1, 8, 8, 1), np.uint8), "R")
    with pytest.raises(ConfigError, match="colour data"):
        transform(img, "gray")


def test_transform_many_is_bit_identical_to_transform():
    # evaluation uses transform_many; training uses transform: inputs must match exactly
    from errorless.features import transform_many

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(2100, 64, 64, 3), dtype=np.uint8)  # > one chunk
    many = transform_many(img, list(FEATURES))
    for f, x in zip(FEATURES, many, strict=True):
        assert np.array_equal(x, transform(img, f)), f
