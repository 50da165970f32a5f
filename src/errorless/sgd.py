"""SGD phase (SPEC §6): mini-batch SGD with momentum until the whole-shard threshold.

Produces the S weights (stop at ``threshold`` or ``max_epochs``) and, with a released
threshold, the Sp weights (``released_epochs`` more epochs continuing from S with the same
momentum buffer and shuffling stream, as if the stop had not happened).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        self.lr = s.lr  # lowered on a plateau (``lr_patience``, ``lr_decay``)
        self.best_acc, self.since_best = -1.0, 0

    def after_epoch(self, acc: float) -> None:
        """Plateau rule: ``lr_patience`` epochs without a new best whole-shard accuracy
        multiply the learning rate by ``lr_decay`` (a fixed rate makes SGD hover a few % below
        the threshold on real photographs; see the README's "Choices")."""
        if acc > self.best_acc:
            self.best_acc, self.since_best = acc, 0
            return
        self.since_best += 1
        if self.s.lr_decay < 1.0 and self.since_best >= self.s.lr_patience:
            self.lr *= self.s.lr_decay
            self.since_best = 0
            log.info("SGD: no better accuracy for %d epochs, learning rate lowered to %.4g",
                     self.s.lr_patience, self.lr)

    def state(self, epoch: int, acc: float, hist: list, seconds: float, sres: SGDResult | None) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors copied to the CPU)."""
        return {
            "epoch": epoch, "accuracy": acc, "history": list(hist), "seconds": seconds,
            "params": [(w.cpu().clone(), b.cpu().clone()) for w, b in self.params],
            "velocity": [(w.cpu().clone(), b.cpu().clone()) for w, b in self.vel],
            "generator": self.gen.get_state(),
            "lr": self.lr, "best_acc": self.best_acc, "since_best": self.since_best,
            "S": pack_result(sres),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        for (w, b), (sw, sb) in zip(self.params, st["params"], strict=True):
            w.copy_(sw)
            b.copy_(sb)
        for (w, b), (sw, sb) in zip(self.vel, st["velocity"], strict=True):
            w.copy_(sw)
            b.copy_(sb)
        self.gen.set_state(st["generator"])
        self.lr, self.best_acc, self.since_best = st["lr"], st["best_acc"], st["since_best"]

    def epoch(self) -> float:
        """One pass over the shuffled shard; returns the mean mini-batch loss (one sync)."""
        n, bs = self.x.shape[0], self.s.batch_size
        order = torch.randperm(n, generator=self.gen).to(self.x.device)
        total = torch.zeros((), device=self.x.device)
        lr, mom = self.lr, self.s.momentum
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
    params: fnn.Params,
    x: Tensor,
    y: Tensor,
    s: SGDSettings,
    gen: torch.Generator,
    *,
    resume: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    every: float = float("inf"),
) -> tuple[SGDResult, SGDResult | None]:
    """Train ``params`` in place; return (S, Sp or None). Deterministic given ``gen``'s state.

    ``on_progress(state)`` is called after an epoch at most every ``every`` seconds with the
    whole loop state (weights, momentum, generator, history); ``resume=state`` continues from
    it and ends with the same weights as an uninterrupted run.
    """
    tr = _Trainer(params, x, y, s, gen)
    hist: list[tuple[int, float, float]] = []
    acc, epoch, before = 0.0, 0, 0.0
    sres: SGDResult | None = None
    if resume is not None:
        tr.load_state(resume)
        hist, acc, epoch, before = list(resume["history"]), resume["accuracy"], resume["epoch"], resume["seconds"]
        sres = unpack_result(resume["S"], params[0][0].device)
        log.info("SGD resumed at epoch %d (accuracy %.5f)", epoch, acc)
    t0 = time.perf_counter() - before
    last_log, last_ck = -1e9, time.perf_counter()

    def checkpoint() -> None:
        nonlocal last_ck
        if on_progress is not None and time.perf_counter() - last_ck >= every:
            on_progress(tr.state(epoch, acc, hist, time.perf_counter() - t0, sres))
            last_ck = time.perf_counter()

    while sres is None and epoch < s.max_epochs:
        epoch += 1
        loss = tr.epoch()
        acc = fnn.accuracy(params, x, y)
        tr.after_epoch(acc)
        hist.append((epoch, loss, acc))
        done = acc >= s.threshold or epoch == s.max_epochs
        now = time.perf_counter()
        if epoch == 1 or done or now - last_log >= LOG_EVERY_S:
            log.info("SGD epoch %d: loss %.5f, accuracy %.5f", epoch, loss, acc)
            last_log = now
        if acc >= s.threshold:
            break
        checkpoint()
    if sres is None:
        reached = acc >= s.threshold
        if not reached:
            log.warning("SGD stopped at max_epochs=%d with accuracy %.5f < threshold %.4f", epoch, acc, s.threshold)
        sres = SGDResult(fnn.clone(params), epoch, acc, list(hist), time.perf_counter() - t0, reached)
    if s.released_epochs <= 0:
        return sres, None
    # Released threshold: keep going from S (same momentum/shuffle stream).
    while epoch < sres.epochs + s.released_epochs:
        epoch += 1
        loss = tr.epoch()
        acc = fnn.accuracy(params, x, y)
        tr.after_epoch(acc)
        hist.append((epoch, loss, acc))
        if epoch == sres.epochs + s.released_epochs or time.perf_counter() - last_log >= LOG_EVERY_S:
            log.info("SGD released epoch %d: loss %.5f, accuracy %.5f", epoch, loss, acc)
            last_log = time.perf_counter()
        checkpoint()
    spres = SGDResult(fnn.clone(params), epoch, acc, list(hist), time.perf_counter() - t0, sres.reached)
    return sres, spres


def pack_result(r: SGDResult | None) -> dict[str, Any] | None:
    """An SGDResult as plain CPU data (for checkpoints)."""
    if r is None:
        return None
    return {"params": [(w.cpu().clone(), b.cpu().clone()) for w, b in r.params], "epochs": r.epochs,
            "accuracy": r.accuracy, "history": list(r.history), "seconds": r.seconds, "reached": r.reached}


def unpack_result(d: dict[str, Any] | None, device) -> SGDResult | None:
    if d is None:
        return None
    params = [(w.to(device), b.to(device)) for w, b in d["params"]]
    return SGDResult(params, d["epochs"], d["accuracy"], list(d["history"]), d["seconds"], d["reached"])
