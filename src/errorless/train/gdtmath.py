"""GDT's pieces of arithmetic (docs/method.md#gradient-descent-tunneling): the step length, the
conflict pre-check, the anchors, the homotopy inputs x(λ), the normalised descent and its FLOPs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from errorless import fnn
from errorless.config import GDTSettings
from errorless.identical import mixed_groups, row_groups

# ---------------------------------------------------------------- pure pieces


def step_length(gnorm: Tensor, a: float, b: float) -> Tensor:
    """η = a (1 + b s/(1+s)) / ||g||, s = exp(-||g||); η·||g|| lies in [a, a(1 + b/2)]."""
    s = torch.exp(-gnorm)
    return a * (1 + b * s / (1 + s)) / gnorm.clamp_min(1e-30)


def find_conflicts(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Groups (sorted shard indices) of byte-identical input rows carrying more than one label."""
    xc = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    return mixed_groups(row_groups(xc), y)[1]


@dataclass(frozen=True)
class Anchors:
    """Per class c: ``flat[start[c] : start[c] + count[c]]`` = its anchors (shard indices)."""

    flat: np.ndarray  # int64 (sum count,)
    start: np.ndarray  # int64 (n_classes,)
    count: np.ndarray  # int64 (n_classes,)


def select_anchors(
    y: np.ndarray, dist: np.ndarray, eligible: np.ndarray, m: int, n_classes: int
) -> Anchors:
    """Up to ``m`` eligible samples per class with the smallest distance (ties: lower index)."""
    idx = np.flatnonzero(eligible)
    idx = idx[np.lexsort((idx, dist[idx], y[idx]))]  # by class, then distance, then index
    cls = y[idx]
    first = np.searchsorted(cls, np.arange(n_classes), side="left")
    total = np.searchsorted(cls, np.arange(n_classes), side="right") - first
    count = np.minimum(total, m)
    keep = (
        np.concatenate([idx[f : f + k] for f, k in zip(first, count, strict=True)])
        if idx.size
        else idx
    )
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return Anchors(keep.astype(np.int64), start, count.astype(np.int64))


def pick_anchors(labels: np.ndarray, anchors: Anchors, gen: torch.Generator) -> np.ndarray:
    """One random anchor (shard index) of each label's class; every label must have anchors."""
    cnt = anchors.count[labels]
    u = torch.rand(labels.shape[0], generator=gen, dtype=torch.float64).numpy()
    k = np.minimum((u * cnt).astype(np.int64), cnt - 1)
    return anchors.flat[anchors.start[labels] + k]


def homotopy_inputs(xa: Tensor, xe: Tensor, lam: float, out: Tensor | None = None) -> Tensor:
    """x_e(λ) = (1-λ) X[a(e)] + λ X[e], rows of ``xa``/``xe`` (|E|, D)."""
    return torch.lerp(xa, xe, lam, out=out) if out is not None else torch.lerp(xa, xe, lam)


def descend(
    params: fnn.Params,
    x: Tensor,
    y: Tensor,
    steps: int,
    s: GDTSettings,
    loss: fnn.Loss,
    weights: Tensor | None = None,
) -> None:
    """``steps`` full-batch normalised steps θ ← θ − η g in place (η from :func:`step_length`
    with ``s.eta_min``, ``s.eta_gain``).

    No host synchronisation inside: ||g|| and η stay 0-d tensors on the device. A stacked
    group (``fnn``'s module docstring) takes one η per member; ``weights`` as in
    :func:`fnn.loss_and_grads` (0 on a member's padding rows).
    """
    for _ in range(steps):
        _, grads = fnn.loss_and_grads(params, x, y, loss, weights)
        eta = step_length(fnn.flat_norm(grads), s.eta_min, s.eta_gain)
        for (w, bb), (gw, gb) in zip(params, grads, strict=True):
            w.sub_(gw.mul_(eta.reshape(eta.shape + (1,) * (gw.dim() - eta.dim()))))
            bb.sub_(gb.mul_(eta.reshape(eta.shape + (1,) * (gb.dim() - eta.dim()))))


def flops_per_step(n: int, sizes: list[int]) -> float:
    """Multiply-add FLOPs of one full-batch forward+backward (no input gradient)."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    fwd = sum(2.0 * n * a * b for a, b in layers)
    bwd_w = sum(2.0 * n * a * b for a, b in layers)
    bwd_x = sum(2.0 * n * a * b for a, b in layers[1:])
    return fwd + bwd_w + bwd_x
