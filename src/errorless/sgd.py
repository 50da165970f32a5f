"""SGD phase (SPEC §6): mini-batch SGD with momentum until the whole-shard threshold.

Produces the S weights (stop at ``threshold`` or ``max_epochs``) and, with a released
threshold, the Sp weights (``released_epochs`` more epochs continuing from S with the same
momentum buffer and shuffling stream, as if the stop had not happened).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import fnn
from .config import SGDSettings

log = logging.getLogger(__name__)
LOG_EVERY_S = 2.0  # progress lines at most this often (plus the first and the last)


@dataclass
class SGDResult:
    params: fnn.Params
    epochs: int
    accuracy: float  # whole-shard accuracy of ``params`` (unrounded)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch, loss, acc)
    seconds: float = 0.0
    reached: bool = False  # threshold reached (False: stopped at max_epochs)


class _Trainer:
    """Holds the momentum buffers and the shuffling generator between the S and Sp parts."""

    def __init__(self, params: fnn.Params, x: Tensor, y: Tensor, s: SGDSettings, gen: torch.Generator):
        self.params, self.x, self.y, self.s, self.gen = params, x, y, s, gen
        self.vel = [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in params]

    def epoch(self) -> float:
        """One pass over the shuffled shard; returns the mean mini-batch loss (one sync)."""
        n, bs = self.x.shape[0], self.s.batch_size
        order = torch.randperm(n, generator=self.gen).to(self.x.device)
        total = torch.zeros((), device=self.x.device)
        lr, mom = self.s.lr, self.s.momentum
        for lo in range(0, n, bs):
            idx = order[lo : lo + bs]
            value, grads = fnn.loss_and_grads(self.params, self.x[idx], self.y[idx], self.s.loss, self.s.temperature)
            total += value * idx.shape[0]
            for (w, b), (gw, gb), (vw, vb) in zip(self.params, grads, self.vel, strict=True):
                vw.mul_(mom).add_(gw)
                vb.mul_(mom).add_(gb)
                w.sub_(vw, alpha=lr)
                b.sub_(vb, alpha=lr)
        return float(total.item()) / n


def train_sgd(
    params: fnn.Params, x: Tensor, y: Tensor, s: SGDSettings, gen: torch.Generator
) -> tuple[SGDResult, SGDResult | None]:
    """Train ``params`` in place; return (S, Sp or None). Deterministic given ``gen``'s state."""
    t0 = time.perf_counter()
    tr = _Trainer(params, x, y, s, gen)
    hist: list[tuple[int, float, float]] = []
    last_log = -1e9
    acc, epoch = 0.0, 0
    while epoch < s.max_epochs:
        epoch += 1
        loss = tr.epoch()
        acc = fnn.accuracy(params, x, y)
        hist.append((epoch, loss, acc))
        done = acc >= s.threshold or epoch == s.max_epochs
        now = time.perf_counter()
        if epoch == 1 or done or now - last_log >= LOG_EVERY_S:
            log.info("SGD epoch %d: loss %.5f, accuracy %.5f", epoch, loss, acc)
            last_log = now
        if acc >= s.threshold:
            break
    reached = acc >= s.threshold
    if not reached:
        log.warning("SGD stopped at max_epochs=%d with accuracy %.5f < threshold %.4f", epoch, acc, s.threshold)
    sres = SGDResult(fnn.clone(params), epoch, acc, hist, time.perf_counter() - t0, reached)
    if s.released_epochs <= 0:
        return sres, None
    # Released threshold: keep going from S (same momentum/shuffle stream).
    t1 = time.perf_counter()
    phist = list(hist)
    for k in range(1, s.released_epochs + 1):
        loss = tr.epoch()
        acc = fnn.accuracy(params, x, y)
        phist.append((epoch + k, loss, acc))
        if k == s.released_epochs or time.perf_counter() - last_log >= LOG_EVERY_S:
            log.info("SGD released epoch %d: loss %.5f, accuracy %.5f", epoch + k, loss, acc)
            last_log = time.perf_counter()
    spres = SGDResult(
        fnn.clone(params), epoch + s.released_epochs, acc, phist, sres.seconds + time.perf_counter() - t1, reached
    )
    return sres, spres
