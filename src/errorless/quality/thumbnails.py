"""Near copies, step 1: thumbnails (``Thumbs``: 32×32 grey, 16×16 colour, grey contrast) and the
small array helpers the other steps share (docs/method.md#double-labelling-evidence; the
steps are described in :mod:`errorless.quality.nearcopy`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SIDE = 32  # thumbnail side
DESC = 8  # descriptor side (DESC² values)
GREY = np.array([0.299, 0.587, 0.114], np.float32)
TRIM = 2  # thumbnail border left out of the verification (shift fill, crop edges)


@dataclass
class Thumbs:
    grey: np.ndarray  # (N, 32, 32) float16, 0..255
    colour: np.ndarray  # (N, 16, 16, 3) uint8
    contrast: np.ndarray  # (N,) float32 grey std

    @staticmethod
    def concat(parts: list[Thumbs]) -> Thumbs:
        return Thumbs(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("grey", "colour", "contrast")
            )
        )

    @staticmethod
    def empty(n: int) -> Thumbs:
        """Room for n images, filled block by block with ``put`` (no second copy, unlike concat)."""
        return Thumbs(
            np.empty((n, SIDE, SIDE), np.float16),
            np.empty((n, SIDE // 2, SIDE // 2, 3), np.uint8),
            np.empty(n, np.float32),
        )

    def put(self, lo: int, part: Thumbs) -> None:
        hi = lo + len(part.grey)
        self.grey[lo:hi], self.colour[lo:hi], self.contrast[lo:hi] = (
            part.grey,
            part.colour,
            part.contrast,
        )

    def take(self, rows: np.ndarray) -> Thumbs:
        return Thumbs(self.grey[rows], self.colour[rows], self.contrast[rows])


def area_matrix(n_in: int, n_out: int, lo: float = 0.0, hi: float | None = None) -> np.ndarray:
    """(n_out, n_in) weights: output pixel i averages the input interval
    [lo + i·w, lo + (i+1)·w), w = (hi − lo)/n_out, with fractional pixel coverage."""
    hi = float(n_in) if hi is None else hi
    edges = lo + (hi - lo) * np.arange(n_out + 1) / n_out
    left, right = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    cover = np.clip(np.minimum(right, px + 1) - np.maximum(left, px), 0, None)
    return (cover / cover.sum(axis=1, keepdims=True)).astype(np.float32)


def _area32(x: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 32, 32, 3) float32 area averages (a reshape when H and W are
    multiples of 32, interpolation matrices otherwise)."""
    b, h, w, _ = x.shape
    if h % SIDE == 0 and w % SIDE == 0:
        fh, fw = h // SIDE, w // SIDE  # sums of strided slices: much faster than a strided mean
        rows = sum(x[:, i::fh].astype(np.uint32) for i in range(fh))  # (B, 32, W, 3)
        acc = sum(rows[:, :, j::fw] for j in range(fw))  # (B, 32, 32, 3)
        return acc.astype(np.float32) * np.float32(1 / (fh * fw))
    rh, rw = area_matrix(h, SIDE), area_matrix(w, SIDE)
    return np.einsum("ih,bhwc,jw->bijc", rh, x.astype(np.float32), rw, optimize=True)


def thumbs(images: np.ndarray, block: int = 4096) -> Thumbs:
    """Grey 32×32 and colour 16×16 thumbnails and grey contrast of uint8 images (N, H, W, C)."""
    n = len(images)
    grey = np.empty((n, SIDE, SIDE), np.float16)
    colour = np.empty((n, SIDE // 2, SIDE // 2, 3), np.uint8)
    contrast = np.empty(n, np.float32)
    for lo in range(0, n, block):
        x = images[lo : lo + block]
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=3)
        col = _area32(x)  # (B, 32, 32, 3)
        g = (
            GREY[0] * col[..., 0] + GREY[1] * col[..., 1] + GREY[2] * col[..., 2]
        )  # (B, 32, 32): grey of the average
        grey[lo : lo + block] = g
        contrast[lo : lo + block] = g.reshape(len(g), -1).std(axis=1)
        small = (
            col[:, ::2, ::2] + col[:, 1::2, ::2] + col[:, ::2, 1::2] + col[:, 1::2, 1::2]
        ) * 0.25
        colour[lo : lo + block] = np.clip(np.rint(small), 0, 255)
    return Thumbs(grey, colour, contrast)


# ---------------------------------------------------------------- verification


def in_blocks(fn: Callable[[int], Any], n: int, block: int, threads: int = 1) -> list:
    """[fn(0), fn(block), fn(2·block), ...] for the blocks of n items, on ``threads`` threads
    (numpy releases the GIL in the array work; blocks are independent, so the result does not
    depend on the number of threads)."""
    starts = range(0, n, block)
    if threads <= 1 or n <= block:
        return [fn(lo) for lo in starts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, starts))


BLUR_MATRIX_MAX = 64  # image sides up to which _blur multiplies by Gaussian matrices


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Images x (P, H, W) each blurred by a Gaussian of ``sigma`` px (edges: the nearest pixel,
    scipy's ``gaussian_filter``). Small float images as B_H · x · B_Wᵀ with the filter's own
    matrices (``_blur_matrix``): batched matrix products, 4-6× faster than the filter on
    32 × 32 thumbnails, equal to it within float32 rounding."""
    if sigma <= 0:
        return x
    h, w = x.shape[1:3]
    if x.ndim == 3 and x.dtype.kind == "f" and max(h, w) <= BLUR_MATRIX_MAX:
        out = _blur_matrix(h, float(sigma)) @ x @ _blur_matrix(w, float(sigma)).T
        return out.astype(x.dtype, copy=False)
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest")


@functools.lru_cache(maxsize=64)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) float32: row i holds the weights of scipy's 1-D Gaussian filter (nearest-pixel
    edges) that make output pixel i from the n input pixels."""
    from scipy.ndimage import gaussian_filter1d

    m = gaussian_filter1d(np.eye(n), sigma, axis=0, mode="nearest").astype(np.float32)
    m.setflags(write=False)
    return m


def _grey(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x[..., 0] if x.shape[-1] == 1 else x @ GREY
