"""SGD phase (docs/method.md#gdt): mini-batch SGD with momentum until the whole-shard threshold.

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

from errorless import fnn
from errorless.config import SGDSettings

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


class Member:
    """One net's SGD state besides its weights: shuffling generator, learning rate and the
    plateau rule, epoch, history, and its S / Sp results once reached."""

    def __init__(self, s: SGDSettings, gen: torch.Generator, name: str = ""):
        self.s, self.gen, self.tag = s, gen, f"[{name}] " if name else ""
        self.lr = s.lr  # lowered on a plateau (``lr_patience``, ``lr_decay``)
        self.best_acc, self.since_best = -1.0, 0
        self.epoch, self.acc, self.seconds = 0, 0.0, 0.0
        self.hist: list[tuple[int, float, float]] = []
        self.sres: SGDResult | None = None
        self.spres: SGDResult | None = None

    def result(self, params: fnn.Params, acc: float, reached: bool) -> SGDResult:
        """This member's weights (a copy) and progress now, as an S or Sp result."""
        return SGDResult(fnn.clone(params), self.epoch, acc, list(self.hist), self.seconds, reached)

    @property
    def done(self) -> bool:
        return self.sres is not None and (self.s.released_epochs <= 0 or self.spres is not None)

    def after_epoch(self, acc: float) -> None:
        """Plateau rule: ``lr_patience`` epochs without a new best whole-shard accuracy
        multiply the learning rate by ``lr_decay`` (a fixed rate makes SGD hover a few % below
        the threshold on real photographs; docs/method.md#sgd)."""
        if acc > self.best_acc:
            self.best_acc, self.since_best = acc, 0
            return
        self.since_best += 1
        if self.s.lr_decay < 1.0 and self.since_best >= self.s.lr_patience:
            self.lr *= self.s.lr_decay
            self.since_best = 0
            log.info(
                "%sSGD: no better accuracy for %d epochs, learning rate lowered to %.4g",
                self.tag,
                self.s.lr_patience,
                self.lr,
            )

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "accuracy": self.acc,
            "history": list(self.hist),
            "seconds": self.seconds,
            "generator": self.gen.get_state(),
            "lr": self.lr,
            "best_acc": self.best_acc,
            "since_best": self.since_best,
            "S": pack_result(self.sres),
            "Sp": pack_result(self.spres),
        }

    def load(self, st: dict[str, Any], device) -> None:
        self.epoch, self.acc, self.hist, self.seconds = (
            st["epoch"],
            st["accuracy"],
            list(st["history"]),
            st["seconds"],
        )
        self.gen.set_state(st["generator"])
        self.lr, self.best_acc, self.since_best = st["lr"], st["best_acc"], st["since_best"]
        self.sres, self.spres = unpack_result(st["S"], device), unpack_result(st["Sp"], device)


class Trainer:
    """M nets trained side by side on stacked weights (``fnn``'s group form) with their
    momentum buffers; every member shuffles with its own generator and keeps its own learning
    rate, so a member's steps are those it would take alone. A member that is done leaves the
    stack (:meth:`keep_only`)."""

    def __init__(
        self, params: fnn.Params, x: Tensor, y: Tensor, s: SGDSettings, members: list[Member]
    ):
        self.params, self.x, self.y, self.s, self.members = params, x, y, s, members
        self.loss = fnn.Loss(s.loss, s.temperature)
        self.vel = [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in params]

    def keep_only(self, keep: list[int]) -> None:
        self.members = [self.members[i] for i in keep]
        if not keep:
            return
        rows = torch.as_tensor(keep, dtype=torch.int64, device=self.x.device)
        self.params, self.vel = fnn.select(self.params, rows), fnn.select(self.vel, rows)
        self.x, self.y = self.x.index_select(0, rows), self.y.index_select(0, rows)

    def epoch(self) -> Tensor:
        """One pass over each member's shuffled shard; returns the mean mini-batch losses (M,)
        on the device (no host synchronisation)."""
        m, n = self.x.shape[0], self.x.shape[1]
        bs, mom, dev = self.s.batch_size, self.s.momentum, self.x.device
        order = torch.stack([torch.randperm(n, generator=mb.gen) for mb in self.members]).to(dev)
        lr = torch.tensor([mb.lr for mb in self.members], dtype=self.x.dtype, device=dev)
        lr_w = [lr.reshape((m,) + (1,) * (w.dim() - 1)) for w, _ in self.params]
        lr_b = [lr.reshape((m,) + (1,) * (b.dim() - 1)) for _, b in self.params]
        total = torch.zeros(m, device=dev)
        sel = torch.arange(m, device=dev).unsqueeze(1)
        for lo in range(0, n, bs):
            idx = order[:, lo : lo + bs]
            value, grads = fnn.loss_and_grads(
                self.params, self.x[sel, idx], self.y[sel, idx], self.loss
            )
            total += value * idx.shape[1]
            for (w, b), (gw, gb), (vw, vb), lw, lb in zip(
                self.params, grads, self.vel, lr_w, lr_b, strict=True
            ):
                vw.mul_(mom).add_(gw)
                vb.mul_(mom).add_(gb)
                w.sub_(vw * lw)
                b.sub_(vb * lb)
        return total / n

    def state(self, all_members: list[Member]) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors copied to the CPU)."""
        slot = {id(mb): i for i, mb in enumerate(self.members)}
        out = []
        for mb in all_members:
            st = mb.state()
            i = slot.get(id(mb))
            st["params"] = (
                None
                if i is None
                else [(w[i].cpu().clone(), b[i].cpu().clone()) for w, b in self.params]
            )
            st["velocity"] = (
                None
                if i is None
                else [(w[i].cpu().clone(), b[i].cpu().clone()) for w, b in self.vel]
            )
            out.append(st)
        return {"members": out}


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

    :func:`train_sgd_group` with a group of one. ``on_progress(state)`` is called after an
    epoch at most every ``every`` seconds with the whole loop state (weights, momentum,
    generator, history); ``resume=state`` continues from it and ends with the same weights as
    an uninterrupted run.
    """
    (res,) = train_sgd_group(
        [params],
        x.unsqueeze(0),
        y.unsqueeze(0),
        s,
        [gen],
        resume=resume,
        on_progress=on_progress,
        every=every,
    )
    for (w, b), (rw, rb) in zip(
        params, res[1].params if res[1] is not None else res[0].params, strict=True
    ):
        w.copy_(rw)  # "in place", as before: the last weights trained
        b.copy_(rb)
    return res


def train_sgd_group(
    params: list[fnn.Params],
    x: Tensor,
    y: Tensor,
    s: SGDSettings,
    gens: list[torch.Generator],
    *,
    names: list[str] | None = None,
    resume: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    every: float = float("inf"),
) -> list[tuple[SGDResult, SGDResult | None]]:
    """SGD for M nets side by side: ``params[m]`` trained on ``x[m]`` (M, N, D), ``y[m]``
    (M, N) with generator ``gens[m]``; returns each member's (S, Sp or None). A member stops at
    its own threshold (or ``max_epochs``) and, with released epochs, goes on to its Sp; done,
    it leaves the stack. Each member takes the steps it would take alone (its own shuffling,
    learning rate and plateau rule); the results agree with single runs up to float rounding.

    One host synchronisation per epoch (every member's loss and whole-shard accuracy).
    ``on_progress``/``resume`` carry every member's state (:func:`train_sgd`).
    """
    names = names or [""] * len(params)
    members = [Member(s, g, nm) for g, nm in zip(gens, names, strict=True)]
    dev = x.device
    start = [fnn.clone(p) for p in params]
    if resume is not None:
        for mb, st, p in zip(members, resume["members"], start, strict=True):
            mb.load(st, dev)
            if st["params"] is not None:
                p[:] = [(w.to(dev), b.to(dev)) for w, b in st["params"]]
        log.info("SGD resumed at epoch %s", ", ".join(f"{mb.tag}{mb.epoch}" for mb in members))
    live = [i for i, mb in enumerate(members) if not mb.done]
    tr = None
    if live:
        if len(live) < len(members):  # resumed with some members done
            rows = torch.as_tensor(live, dtype=torch.int64, device=dev)
            x, y = x.index_select(0, rows), y.index_select(0, rows)
        tr = Trainer(fnn.stack([start[i] for i in live]), x, y, s, [members[i] for i in live])
        if resume is not None:
            vel = fnn.stack(
                [
                    [(w.to(dev), b.to(dev)) for w, b in resume["members"][i]["velocity"]]
                    for i in live
                ]
            )
            fnn.copy_into(tr.vel, vel)
    t0 = time.perf_counter() - (max(mb.seconds for mb in members) if resume is not None else 0.0)
    last_log, last_ck = -1e9, time.perf_counter()
    while tr is not None and tr.members:
        losses = tr.epoch()
        accs = fnn.accuracies(tr.params, tr.x, tr.y)
        both = torch.stack([losses, accs]).cpu().tolist()  # the epoch's one sync
        now = time.perf_counter()
        show = now - last_log >= LOG_EVERY_S
        keep = []
        for i, mb in enumerate(tr.members):
            loss, acc = float(both[0][i]), float(both[1][i])
            mb.epoch += 1
            mb.acc = acc
            mb.after_epoch(acc)
            mb.hist.append((mb.epoch, loss, acc))
            mb.seconds = now - t0
            if mb.sres is None:
                end = acc >= s.threshold or mb.epoch == s.max_epochs
                if mb.epoch == 1 or end or show:
                    log.info(
                        "%sSGD epoch %d: loss %.5f, accuracy %.5f", mb.tag, mb.epoch, loss, acc
                    )
                if end:
                    if acc < s.threshold:
                        log.warning(
                            "%sSGD stopped at max_epochs=%d with accuracy %.5f < threshold %.4f",
                            mb.tag,
                            mb.epoch,
                            acc,
                            s.threshold,
                        )
                    mb.sres = mb.result(fnn.member(tr.params, i), acc, acc >= s.threshold)
            else:  # released threshold: keep going from S (same momentum and shuffle stream)
                end = mb.epoch == mb.sres.epochs + s.released_epochs
                if end or show:
                    log.info(
                        "%sSGD released epoch %d: loss %.5f, accuracy %.5f",
                        mb.tag,
                        mb.epoch,
                        loss,
                        acc,
                    )
                if end:
                    mb.spres = mb.result(fnn.member(tr.params, i), acc, mb.sres.reached)
            if not mb.done:
                keep.append(i)
        if show:
            last_log = now
        if len(keep) < len(tr.members):
            tr.keep_only(keep)
        if on_progress is not None and tr.members and time.perf_counter() - last_ck >= every:
            on_progress(tr.state(members))
            last_ck = time.perf_counter()
    return [(mb.sres, mb.spres) for mb in members]


def pack_result(r: SGDResult | None) -> dict[str, Any] | None:
    """An SGDResult as plain CPU data (for checkpoints)."""
    if r is None:
        return None
    return {
        "params": [(w.cpu().clone(), b.cpu().clone()) for w, b in r.params],
        "epochs": r.epochs,
        "accuracy": r.accuracy,
        "history": list(r.history),
        "seconds": r.seconds,
        "reached": r.reached,
    }


def unpack_result(d: dict[str, Any] | None, device) -> SGDResult | None:
    if d is None:
        return None
    params = [(w.to(device), b.to(device)) for w, b in d["params"]]
    return SGDResult(
        params, d["epochs"], d["accuracy"], list(d["history"]), d["seconds"], d["reached"]
    )
