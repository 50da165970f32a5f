"""The copy kinds of errorless.data.copies: what each does to an image (oracles on small images)."""

from __future__ import annotations

import numpy as np
import pytest

from errorless.data.copies import ALL_KINDS, NEAR_KINDS, REAL_KINDS, transform_copy


def mid_grey_image(seed: int = 0) -> np.ndarray:
    """A colour image away from 0 and 255, so that no change below clips."""
    rng = np.random.default_rng(seed)
    return rng.integers(70, 186, size=(32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_every_kind_keeps_shape_and_dtype_and_is_seeded(kind):
    img = mid_grey_image()
    a = transform_copy(img, kind, np.random.default_rng(1))
    b = transform_copy(img, kind, np.random.default_rng(1))
    assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    if kind in REAL_KINDS:  # (a brightness or contrast factor near 1 may round to no change)
        assert not np.array_equal(a, img)


@pytest.mark.parametrize("kind", ["hue", "saturation"])
def test_hue_and_saturation_keep_each_pixels_grey(kind):
    # a rotation about the grey axis and a scaling of the distance to it leave the grey (the
    # channel mean) of every pixel as it was, up to the rounding to integers
    img = mid_grey_image()
    out = transform_copy(img, kind, np.random.default_rng(2))
    assert np.abs(out.mean(-1) - img.mean(-1)).max() <= 1.0
    assert np.abs(out.astype(int) - img).max() >= 3  # the colours did change


def test_gain_scales_each_channel_on_its_own():
    img = mid_grey_image()
    out = transform_copy(img, "gain", np.random.default_rng(3)).astype(float)
    gains = (out / img).reshape(-1, 3)
    assert np.allclose(gains, np.median(gains, axis=0), atol=0.02)  # one factor per channel
    assert (np.median(gains, axis=0) >= 0.84).all() and (np.median(gains, axis=0) <= 1.16).all()


def test_overlay_changes_one_corner_box_only():
    img = mid_grey_image()
    out = transform_copy(img, "overlay", np.random.default_rng(4))
    ys, xs = np.nonzero((out != img).any(-1))
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    assert 3 <= side <= 7  # 10-20 % of 32 px
    assert ys.min() in (0, 32 - side) or ys.max() in (side - 1, 31)
    assert xs.min() in (0, 32 - side) or xs.max() in (side - 1, 31)
    box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].reshape(-1, 3)
    assert (box == box[0]).all()  # one colour


def test_aspect_stretches_one_axis():
    # a horizontal ramp stretched in y stays as it was; stretched in x by f (1.05-1.25) its
    # slope falls to 1/f of it (0.8-0.95); every row stays alike either way
    ramp = np.tile(np.linspace(40, 200, 32)[None, :, None], (32, 1, 3)).astype(np.uint8)
    ratios = []
    for seed in range(6):
        out = transform_copy(ramp, "aspect", np.random.default_rng(seed)).astype(int)
        assert (np.abs(out - out[:1]) <= 1).all()  # no change along y
        ratios.append(
            np.diff(out[0, 4:-4, 0]).mean() / np.diff(ramp[0, 4:-4, 0].astype(int)).mean()
        )
    assert all(r == 1.0 or 0.78 <= r <= 0.96 for r in ratios), ratios
    assert any(r < 1.0 for r in ratios) and any(r == 1.0 for r in ratios)  # both axes drawn


def test_grey_images_have_no_colour_to_change():
    grey = mid_grey_image()[..., :1]
    for kind in ("hue", "saturation", "gain"):
        assert np.array_equal(transform_copy(grey, kind, np.random.default_rng(0)), grey)


def test_the_generators_plant_the_classic_kinds_only():
    assert not set(NEAR_KINDS) & set(REAL_KINDS)
    with pytest.raises(ValueError, match="unknown near-copy kind 'sepia'"):
        transform_copy(mid_grey_image(), "sepia", np.random.default_rng(0))
