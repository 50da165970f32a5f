"""Gradient descent tunneling (docs/method.md#gdt): from the S weights to the error-free T weights.

One *round*: evaluate θ, errors E and correct C; anchors = the m most confident correct
samples per class; every e in E gets a seeded random anchor a(e) of its class and the
homotopy input x_e(λ) = (1-λ) X[a(e)] + λ X[e]; C keeps its real inputs. Continuation in λ
from 0 (100 % by construction) to 1 (the real data) with K full-batch normalised gradient
steps per λ-step, accepting a λ-step only if the whole continuation batch stays 100 %
correct. Rounds restart from the best weights (highest real accuracy) up to R times.

Choices where the paper is silent (docs/method.md#the-continuation) (also in the job's metrics):
- the accept streak resets to 0 after each growth of Δ (so Δ grows at most every 6 accepts)
  and on every reject;
- a λ-step at λ = 1 is accepted only if the weights *rounded to the saved decimals* are
  also 100 % correct on the batch, so that saving does not lose the error-free result;
- ties in real accuracy go to the newer weights (a failed round that did not lose accuracy
  still hands its progress to the next round);
- conflict members and samples of classes without anchors are left out of the batch (and
  are never anchors); they stay residual errors unless the weights happen to fit them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from errorless import fnn
from errorless.config import GDTSettings
from errorless.identical import mixed_groups, row_groups

log = logging.getLogger(__name__)
LOG_EVERY_S = 2.0

# status strings of a T record (S/Sp records use "sgd_only")
ERROR_FREE = "error_free"
CONFLICTS = "conflicts"  # the only residual errors are members of pre-check conflict groups
NO_ANCHOR = "no_anchor"  # some residual errors are in classes that had no anchor
RESIDUAL = (
    "residual_errors"  # consistent samples GDT could not fit: every round ended on the Δ floor
)
BUDGET = "budget"  # GDT stopped on its time or λ-step budget with consistent samples still wrong

# stop reasons of a GDT run (metrics ``gdt_stop_reason``)
STOP_ERROR_FREE = ERROR_FREE
STOP_NOTHING_LEFT = "no_workable_errors"  # only conflict members / classes without anchors wrong
STOP_ROUNDS = "rounds"  # R rounds, each ended with Δ below its floor: the search is exhausted
STOP_LAMBDA_BUDGET = "lambda_budget"  # R rounds spent, some ended on the λ-step budget
STOP_TIME_BUDGET = "time_budget"
BUDGET_STOPS = (STOP_LAMBDA_BUDGET, STOP_TIME_BUDGET)
# why one round ended (``round_ends``)
END_LAMBDA_1, END_FLOOR, END_LAMBDA_BUDGET, END_TIME = (
    "lambda_1",
    "delta_floor",
    "lambda_budget",
    "time_budget",
)


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


def classify_status(
    wrong: np.ndarray,
    in_conflict: np.ndarray,
    y: np.ndarray,
    no_anchor: set[int],
    stop_reason: str = STOP_ROUNDS,
) -> str:
    """Status of final weights from the misclassified mask (all arrays over the shard).

    Residual errors on consistent samples are ``budget`` when GDT stopped on a budget (weak
    evidence: more time may fit them) and ``residual_errors`` when its search was exhausted.
    """
    if not wrong.any():
        return ERROR_FREE
    rest = wrong & ~in_conflict
    if not rest.any():
        return CONFLICTS
    if np.isin(y[rest], sorted(no_anchor)).all():
        return NO_ANCHOR
    return BUDGET if stop_reason in BUDGET_STOPS else RESIDUAL


# ---------------------------------------------------------------- the loop


@dataclass
class GDTResult:
    params: fnn.Params  # best weights (unrounded)
    accuracy: float  # real whole-shard accuracy of ``params`` (unrounded)
    rounds: int
    accepted: int
    rejected: int
    lambda_path: list[float]
    delta_path: list[float]
    accepted_path: list[bool]
    round_starts: list[int]  # index into the paths where each round began
    round_ends: list[str]  # why each round ended (END_*)
    steps_path: list[int]  # gradient steps per λ-step (a multiple of K)
    steps_taken: int  # all gradient steps, consolidations included
    consolidation_steps: int
    conflicts: list[np.ndarray]  # shard index groups
    no_anchor: list[int]  # local labels that lacked anchors in some round
    stop_reason: str  # one of the STOP_* values
    seconds: float
    resumed: bool = False
    log: list[str] = field(default_factory=list)


class GDT:
    """The GDT loop as a resumable state machine; ``state_dict``/``load_state_dict`` checkpoint it."""

    def __init__(
        self,
        params: fnn.Params,
        x: Tensor,
        y: Tensor,
        s: GDTSettings,
        seed: int,
        *,
        loss: fnn.Loss = fnn.CROSS_ENTROPY,
        decimals: int | None = None,
        n_classes: int | None = None,
        name: str = "",
    ):
        self.x, self.y, self.s = x, y, s  # x (N, D) float32, y (N,) local labels
        self.loss, self.decimals = loss, decimals
        self.y_np = y.cpu().numpy()
        self.n_classes = int(n_classes if n_classes is not None else int(self.y_np.max()) + 1)
        self.gen = torch.Generator().manual_seed(int(seed))
        if s.conflict_precheck:
            self.conflicts = find_conflicts(x.cpu().numpy(), self.y_np)
        else:
            self.conflicts = []
        self.in_conflict = np.zeros(x.shape[0], dtype=bool)
        for g in self.conflicts:
            self.in_conflict[g] = True
        # loop state (everything below is checkpointed)
        self.best = fnn.clone(params)
        self.best_acc = fnn.accuracy(self.best, x, y)
        self.theta_ok = fnn.clone(params)
        self.round = 0  # rounds started
        self.in_round = False
        self.finished = False
        self.stop_reason = ""
        self.lam_ok, self.delta, self.streak, self.round_steps = 0.0, s.delta0, 0, 0
        self.accepted = self.rejected = 0
        self.lambda_path: list[float] = []
        self.delta_path: list[float] = []
        self.accepted_path: list[bool] = []
        self.round_starts: list[int] = []
        self.round_ends: list[str] = []  # why each round ended (END_*)
        self.steps_path: list[int] = []  # gradient steps each λ-step took (K, 2K, …)
        self.consolidation_steps = 0
        self.no_anchor: set[int] = set()
        self.cont_c = np.zeros(0, dtype=np.int64)  # correct samples kept at X[i]
        self.cont_e = np.zeros(0, dtype=np.int64)  # errors on homotopy paths
        self.anchor_of = np.zeros(0, dtype=np.int64)  # a(e) per cont_e
        self.seconds_before = 0.0
        self.resumed = False
        self.tag = f"[{name}] " if name else ""  # log prefix of a group member
        # (x rows, labels, row weights) views while run_group holds the member in stacked buffers
        self.slot: tuple[Tensor, Tensor, Tensor] | None = None
        self._charged: float | None = None  # a group member's share of the group's wall time

    # -- checkpoint -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": [(w.cpu().clone(), b.cpu().clone()) for w, b in self.best],
            "best_acc": self.best_acc,
            "theta_ok": [(w.cpu().clone(), b.cpu().clone()) for w, b in self.theta_ok],
            "round": self.round,
            "in_round": self.in_round,
            "finished": self.finished,
            "stop_reason": self.stop_reason,
            "lam_ok": self.lam_ok,
            "delta": self.delta,
            "streak": self.streak,
            "round_steps": self.round_steps,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "lambda_path": list(self.lambda_path),
            "delta_path": list(self.delta_path),
            "accepted_path": list(self.accepted_path),
            "round_starts": list(self.round_starts),
            "round_ends": list(self.round_ends),
            "steps_path": list(self.steps_path),
            "consolidation_steps": self.consolidation_steps,
            "no_anchor": sorted(self.no_anchor),
            "cont_c": self.cont_c.copy(),
            "cont_e": self.cont_e.copy(),
            "anchor_of": self.anchor_of.copy(),
            "seconds": self.elapsed(),
            "gen_state": self.gen.get_state(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        dev = self.x.device
        self.best = [(w.to(dev), b.to(dev)) for w, b in st["best"]]
        self.theta_ok = [(w.to(dev), b.to(dev)) for w, b in st["theta_ok"]]
        for k in (
            "best_acc",
            "round",
            "in_round",
            "finished",
            "stop_reason",
            "lam_ok",
            "delta",
            "streak",
            "round_steps",
            "accepted",
            "rejected",
            "lambda_path",
            "delta_path",
            "accepted_path",
            "round_starts",
            "round_ends",
            "steps_path",
            "consolidation_steps",
            "cont_c",
            "cont_e",
            "anchor_of",
        ):
            setattr(self, k, st[k])
        self.no_anchor = set(st["no_anchor"])
        self.seconds_before = float(st["seconds"])
        self.gen.set_state(st["gen_state"])
        self.resumed = True
        if self.in_round:
            self._build_batch()

    def elapsed(self) -> float:
        """Seconds spent (carried over a resume); a group member counts its share of the group."""
        if self._charged is not None:
            return self.seconds_before + self._charged
        return self.seconds_before + (
            time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0
        )

    # -- rounds -----------------------------------------------------------------

    def _start_round(self) -> bool:
        """New E, anchors and homotopy pairs from the best weights; False if nothing to do."""
        logits = fnn.logits_of(self.best, self.x)
        pred = logits.argmax(dim=1).cpu().numpy()
        dist = fnn.distance(logits).cpu().numpy()
        y = self.y_np
        correct = (pred == y) & ~self.in_conflict
        errors = np.flatnonzero((pred != y) & ~self.in_conflict)
        if errors.size == 0:
            self.stop_reason = STOP_ERROR_FREE if not self.in_conflict.any() else STOP_NOTHING_LEFT
            return False
        anchors = select_anchors(y, dist, correct, self.s.anchors, self.n_classes)
        has = anchors.count[y[errors]] > 0
        lacking = sorted(set(y[errors[~has]].tolist()))
        if lacking:
            log.warning(
                "%sGDT: classes %s have errors but no correctly classified sample (no anchor); "
                "their %d errors stay residual",
                self.tag,
                lacking,
                int((~has).sum()),
            )
            self.no_anchor.update(int(c) for c in lacking)
        work = errors[has]
        if work.size == 0:
            self.stop_reason = STOP_NOTHING_LEFT
            return False
        self.round += 1
        self.in_round = True
        self.cont_c = np.flatnonzero(correct)
        self.cont_e = work
        self.anchor_of = pick_anchors(y[work], anchors, self.gen)
        self.lam_ok, self.delta, self.streak, self.round_steps = 0.0, self.s.delta0, 0, 0
        self.theta_ok = fnn.clone(self.best)
        self.round_starts.append(len(self.lambda_path))
        self._build_batch()
        self._consolidate()
        log.info(
            "%sGDT round %d: accuracy %.5f, %d errors on homotopy paths, %d correct kept, %d conflict "
            "members left out",
            self.tag,
            self.round,
            self.best_acc,
            work.size,
            self.cont_c.size,
            int(self.in_conflict.sum()),
        )
        return True

    def _build_batch(self) -> None:
        """Continuation batch: rows [C | E]; the E rows are rewritten at every λ. In a group
        (:func:`run_group`) the rows and θ live in the group's stacked buffers."""
        dev = self.x.device
        c = torch.as_tensor(self.cont_c, device=dev)
        e = torch.as_tensor(self.cont_e, device=dev)
        a = torch.as_tensor(self.anchor_of, device=dev)
        self.n_c = int(c.shape[0])
        self.xa, self.xe = self.x[a], self.x[e]
        if self.slot is None:
            self.xb = torch.cat([self.x[c], self.xa])  # (n_c + |E|, D); E rows = λ=0
            self.yb = torch.cat([self.y[c], self.y[e]])
            self.theta = fnn.clone(self.theta_ok)  # work buffers
            return
        xbuf, ybuf, wbuf = self.slot
        rows = self.n_c + int(e.shape[0])
        self.xb, self.yb = xbuf[:rows], ybuf[:rows]
        self.xb[: self.n_c] = self.x[c]
        self.xb[self.n_c :] = self.xa
        self.yb[: self.n_c] = self.y[c]
        self.yb[self.n_c :] = self.y[e]
        ybuf[rows:] = 0  # padding rows: any label, weight 0
        wbuf.zero_()
        wbuf[:rows] = 1.0 / rows
        fnn.copy_into(self.theta, self.theta_ok)

    def _end_round(self) -> None:
        self.in_round = False
        acc = fnn.accuracy(self.theta_ok, self.x, self.y)
        if acc >= self.best_acc:
            self.best, self.best_acc = fnn.clone(self.theta_ok), acc
        log.info(
            "%sGDT round %d ends at λ=%.6f (Δ=%.3g, %d λ-steps): real accuracy %.5f, best %.5f",
            self.tag,
            self.round,
            self.lam_ok,
            self.delta,
            self.round_steps,
            acc,
            self.best_acc,
        )

    # -- one λ-step --------------------------------------------------------------

    def _batch_correct(self, lam: float) -> bool:
        """θ is 100 % correct on the continuation batch (at λ = 1 also once rounded as saved)."""
        ok = bool((fnn.predict(self.theta, self.xb) == self.yb).all().item())
        return ok and self._rounded_correct(lam)

    def _rounded_correct(self, lam: float) -> bool:
        """At λ = 1: θ rounded to the saved decimals is also 100 % correct on the batch."""
        if lam < 1.0 or self.decimals is None:
            return True
        rounded = fnn.round_params(self.theta, self.decimals)
        return bool((fnn.predict(rounded, self.xb) == self.yb).all().item())

    def _begin(self, lam: float) -> None:
        """Start a descent at ``lam`` from θ_ok: the E rows moved to x(λ), θ ← θ_ok."""
        homotopy_inputs(self.xa, self.xe, lam, out=self.xb[self.n_c :])
        fnn.copy_into(self.theta, self.theta_ok)

    def _descend(self, lam: float, max_steps: int) -> tuple[bool, int]:
        """From θ_ok, normalised full-batch steps on {x(λ), y} in chunks of K until the batch
        is 100 % correct or ``max_steps`` are spent; returns (correct, steps taken).

        With ``max_steps == K`` this is the paper's test after exactly K steps
        (docs/method.md#robustness-on-real-data). Going on past K
        (§6.8) is what makes GDT hold on real data: the normalised steps move θ by at least
        ``eta_min`` each, which can push correct samples with small margins across the boundary
        for a while before the descent brings them back (docs/method.md#robustness-on-real-data).
        (:func:`run_group` runs the same chunks for every member of a group at once.)
        """
        self._begin(lam)
        k, done = self.s.steps, 0
        while True:
            descend(
                self.theta,
                self.xb,
                self.yb,
                k,
                self.s,
                self.loss,
            )
            done += k
            if self._batch_correct(lam):
                return True, done
            if done + k > max_steps:
                return False, done

    def _consolidate(self) -> None:
        """A descent at λ = 0 before a round's first λ-step, as the authors' code does (§6.8):
        raises the margins of the batch while it is 100 % correct by construction. Kept only
        if the batch is still (or again) 100 % correct within ``consolidate_steps``.
        (In a group this descent runs for the one member alone.)"""
        if self.s.consolidate_steps <= 0:
            return
        ok, used = self._descend(0.0, max(self.s.consolidate_steps, self.s.steps))
        self.consolidation_steps += used
        if ok:
            fnn.copy_into(self.theta_ok, self.theta)
        log.debug(
            "%sGDT round %d: consolidation at λ=0, %d steps, %s",
            self.tag,
            self.round,
            used,
            "kept" if ok else "dropped (batch not 100 % correct)",
        )

    def _next_lambda(self) -> float | None:
        """Before a λ-step: stop (rounds or time spent, nothing to fit: None) or start a round
        when none is open; returns the λ of the next attempt."""
        s = self.s
        if self.finished:
            return None
        if not self.in_round:
            if self.round >= s.rounds:
                exhausted = all(e in (END_LAMBDA_1, END_FLOOR) for e in self.round_ends)
                self.stop_reason = STOP_ROUNDS if exhausted else STOP_LAMBDA_BUDGET
                self.finished = True
                return None
            if self.elapsed() >= s.max_seconds:
                self.stop_reason, self.finished = STOP_TIME_BUDGET, True
                return None
            if not self._start_round():
                self.finished = True
                return None
        return min(1.0, self.lam_ok + self.delta)

    def _conclude(self, lam: float, ok: bool, used: int) -> None:
        """Book a finished λ-step attempt (θ holds its end point): accept or reject, Δ and the
        streak, and close the round (and the run) when it ended."""
        s = self.s
        self.steps_path.append(used)
        self.lambda_path.append(lam)
        self.delta_path.append(self.delta)
        self.accepted_path.append(ok)
        self.round_steps += 1
        if ok:
            self.accepted += 1
            self.lam_ok = lam
            fnn.copy_into(self.theta_ok, self.theta)
            self.streak += 1
            if self.streak >= s.streak:
                self.delta *= s.factor
                self.streak = 0
        else:
            self.rejected += 1
            self.streak = 0
            self.delta /= s.factor
        log.debug(
            "%sλ-step %d: λ=%.6f %s, Δ→%.4g",
            self.tag,
            len(self.lambda_path),
            lam,
            "accept" if ok else "reject",
            self.delta,
        )
        out_of_time = self.elapsed() >= s.max_seconds
        end = (
            END_LAMBDA_1
            if self.lam_ok >= 1.0
            else END_FLOOR
            if self.delta < s.delta_floor
            else END_LAMBDA_BUDGET
            if self.round_steps >= s.max_lambda_steps
            else END_TIME
            if out_of_time
            else None
        )
        if end is not None:
            log.info("%sGDT round %d ends: %s", self.tag, self.round, end)
            self.round_ends.append(end)
            self._end_round()
            if self.lam_ok >= 1.0 and self.best_acc >= 1.0:
                self.stop_reason, self.finished = STOP_ERROR_FREE, True
            elif out_of_time:
                self.stop_reason, self.finished = STOP_TIME_BUDGET, True

    def _log_progress(self) -> None:
        log.info(
            "%sGDT round %d, λ-step %d: λ_ok=%.6f Δ=%.4g (%d accepted, %d rejected, %.0f s)",
            self.tag,
            self.round,
            self.round_steps,
            self.lam_ok,
            self.delta,
            self.accepted,
            self.rejected,
            self.elapsed(),
        )

    def result(self) -> GDTResult:
        return GDTResult(
            params=fnn.clone(self.best),
            accuracy=self.best_acc,
            rounds=self.round,
            accepted=self.accepted,
            rejected=self.rejected,
            lambda_path=list(self.lambda_path),
            delta_path=list(self.delta_path),
            accepted_path=list(self.accepted_path),
            round_starts=list(self.round_starts),
            round_ends=list(self.round_ends),
            steps_path=list(self.steps_path),
            steps_taken=self.consolidation_steps + sum(self.steps_path),
            consolidation_steps=self.consolidation_steps,
            conflicts=list(self.conflicts),
            no_anchor=sorted(self.no_anchor),
            stop_reason=self.stop_reason,
            seconds=self.elapsed(),
            resumed=self.resumed,
        )

    # -- driver ------------------------------------------------------------------

    def run(self, on_checkpoint: Callable[[dict[str, Any]], None] | None = None) -> GDTResult:
        """The whole GDT phase of this net: :func:`run_group` with a group of one."""
        cb = None if on_checkpoint is None else (lambda states: on_checkpoint(states[0]))
        return run_group([self], cb)[0]


def run_group(
    runs: list[GDT], on_checkpoint: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[GDTResult]:
    """GDT for a group of nets side by side: the K-step chunks of every member's current λ-step
    run as one stacked problem (``fnn``'s group form, ``torch.baddbmm``); each member keeps its
    own state (λ, Δ, streak, round, anchors, budgets, paths) in its :class:`GDT`.

    Members need not be in step: after each chunk the batches are tested together (one host
    synchronisation for the group), and a member whose λ-step ended books it and starts its
    next one in the same slot; a member that finishes leaves the stack. Its time budget is
    charged with its share of the group's wall time. The members share the settings and the
    shape of x (same shard: same N; features of one size D). A group of one is
    :meth:`GDT.run`: its buffers are the member's own, the numerics those of one net.

    ``on_checkpoint(states)`` gets every member's :meth:`GDT.state_dict` (each at its last
    λ-step boundary) at most every ``checkpoint_seconds``; members resumed from such states
    replay their unfinished λ-steps from θ_ok and end as an uninterrupted run does.
    """
    s = runs[0].s
    stacked = len(runs) > 1
    t0 = time.perf_counter()
    for r in runs:
        r._t0 = t0
        r._charged = 0.0 if stacked else None
        if r.resumed:
            log.info(
                "%sGDT resumes at round %d, λ=%.6f, Δ=%.4g (%d accepted, %d rejected)",
                r.tag,
                r.round,
                r.lam_ok,
                r.delta,
                r.accepted,
                r.rejected,
            )
        elif r.conflicts:
            log.info(
                "%sGDT conflict pre-check: %d groups of identical inputs with different labels "
                "(%d images) left out",
                r.tag,
                len(r.conflicts),
                int(r.in_conflict.sum()),
            )
    live = [r for r in runs if not r.finished]
    theta: fnn.Params = []
    xbuf = ybuf = wbuf = torch.zeros(0)

    def attach() -> None:
        """Point each live member's θ and batch rows at its slice of the stacked buffers."""
        for i, r in enumerate(live):
            rows = r.xb.shape[0] if r.slot is not None else None  # a restack keeps the batch
            r.slot = (xbuf[i], ybuf[i], wbuf[i])
            r.theta = fnn.member(theta, i)
            if rows is not None:
                r.xb, r.yb = xbuf[i][:rows], ybuf[i][:rows]

    def keep_only(keep: list[int]) -> None:
        nonlocal live, theta, xbuf, ybuf, wbuf
        for i in sorted(set(range(len(live))) - set(keep)):  # leaves with copies, not views
            if live[i].slot is not None:
                live[i].theta = fnn.clone(live[i].theta)
                live[i].slot = None
        live = [live[i] for i in keep]
        if stacked and live:
            rows = torch.as_tensor(keep, dtype=torch.int64, device=xbuf.device)
            theta = fnn.select(theta, rows)
            xbuf, ybuf, wbuf = (
                xbuf.index_select(0, rows),
                ybuf.index_select(0, rows),
                wbuf.index_select(0, rows),
            )
            attach()

    def begin(r: GDT) -> bool:
        """Start the member's next λ-step (a new round if none is open); False: it finished."""
        lam = r._next_lambda()
        if lam is None:
            return False
        r._begin(lam)
        r._cur = (lam, 0, max(s.max_steps, s.steps))
        return True

    if stacked and live:
        n, d = live[0].x.shape
        dev = live[0].x.device
        theta = fnn.stack([r.theta_ok for r in live])
        xbuf = torch.zeros(len(live), n, d, device=dev)
        ybuf = torch.zeros(len(live), n, dtype=torch.int64, device=dev)
        wbuf = torch.zeros(len(live), n, device=dev)
        attach()
        for r in live:
            if r.in_round:  # resumed inside a round: its batch is rebuilt in the buffers
                r._build_batch()
    keep_only([i for i, r in enumerate(live) if begin(r)])
    last_ckpt, last_log = time.perf_counter(), -1e9
    k = s.steps
    while live:
        tick = time.perf_counter()
        if stacked:
            descend(theta, xbuf, ybuf, k, s, live[0].loss, wbuf)
            pred = fnn.predict(theta, xbuf)
            ok = ((pred == ybuf) | (wbuf == 0)).all(dim=1).cpu().tolist()  # the group's one sync
            share = (time.perf_counter() - tick) / len(live)
            for r in live:
                r._charged += share
        else:
            r = live[0]
            descend(r.theta, r.xb, r.yb, k, s, r.loss)
            ok = [bool((fnn.predict(r.theta, r.xb) == r.yb).all().item())]
        concluded, keep = False, []
        for i, r in enumerate(live):
            lam, done, cap = r._cur
            done += k
            good = ok[i] and r._rounded_correct(lam)
            if good or done + k > cap:
                r._conclude(lam, good, done)
                concluded = True
                if begin(r):
                    keep.append(i)
            else:
                r._cur = (lam, done, cap)
                keep.append(i)
        now = time.perf_counter()
        if concluded and now - last_log >= LOG_EVERY_S:
            for r in live:
                r._log_progress()
            last_log = now
        # Checkpoint after a λ-step, accepted or rejected: both end at a deterministic point
        # (a reject restores θ_ok), so a job that spends hours rejecting steps does not redo
        # them after a kill, and the time budget carries over.
        if (
            on_checkpoint is not None
            and concluded
            and not all(r.finished for r in runs)
            and now - last_ckpt >= s.checkpoint_seconds
        ):
            on_checkpoint([r.state_dict() for r in runs])
            last_ckpt = time.perf_counter()
        if len(keep) < len(live):
            keep_only(keep)
    return [r.result() for r in runs]


def run_gdt(
    params: fnn.Params, x: Tensor, y: Tensor, s: GDTSettings, seed: int, **kw: Any
) -> GDTResult:
    """Convenience: a fresh GDT run without checkpoints."""
    return GDT(params, x, y, s, seed, **kw).run()


def flops_per_step(n: int, sizes: list[int]) -> float:
    """Multiply-add FLOPs of one full-batch forward+backward (no input gradient)."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    fwd = sum(2.0 * n * a * b for a, b in layers)
    bwd_w = sum(2.0 * n * a * b for a, b in layers)
    bwd_x = sum(2.0 * n * a * b for a, b in layers[1:])
    return fwd + bwd_w + bwd_x
