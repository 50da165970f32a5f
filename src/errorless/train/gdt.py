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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from errorless import fnn
from errorless.config import GDTSettings
from errorless.train.gdtmath import (
    descend,
    find_conflicts,
    homotopy_inputs,
    pick_anchors,
    select_anchors,
)
from errorless.train.gdtstate import (
    END_FLOOR,
    END_LAMBDA_1,
    END_LAMBDA_BUDGET,
    END_TIME,
    STOP_ERROR_FREE,
    STOP_LAMBDA_BUDGET,
    STOP_NOTHING_LEFT,
    STOP_ROUNDS,
    STOP_TIME_BUDGET,
    GDTResult,
    GDTState,
    Step,
)

log = logging.getLogger(__name__)


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
        if s.conflict_precheck:
            self.conflicts = find_conflicts(x.cpu().numpy(), self.y_np)
        else:
            self.conflicts = []
        self.in_conflict = np.zeros(x.shape[0], dtype=bool)
        for g in self.conflicts:
            self.in_conflict[g] = True
        best = fnn.clone(params)
        self.state = GDTState(  # the loop state: what a checkpoint holds
            best=best,
            best_acc=fnn.accuracy(best, x, y),
            theta_ok=fnn.clone(params),
            gen=torch.Generator().manual_seed(int(seed)),
            delta=s.delta0,
        )
        self.resumed = False
        self.tag = f"[{name}] " if name else ""  # log prefix of a group member
        # (x rows, labels, row weights) views while run_group holds the member in stacked buffers
        self.slot: tuple[Tensor, Tensor, Tensor] | None = None
        self.step: Step | None = None  # the λ-step under way (run_group)
        # (start, charged): when this process began the run, and a stacked member's share of
        # the group's wall time (None: the run's own wall time counts)
        self.clock: tuple[float | None, float | None] = (None, None)

    # -- checkpoint -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return self.state.to_dict(seconds=self.elapsed())

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.state = GDTState.from_dict(st, self.x.device)
        self.resumed = True
        if self.state.in_round:
            self.build_batch()

    def elapsed(self) -> float:
        """Seconds spent (carried over a resume); a group member counts its share of the group."""
        start, charged = self.clock
        if charged is not None:
            return self.state.seconds + charged
        return self.state.seconds + (time.perf_counter() - start if start is not None else 0.0)

    # -- rounds -----------------------------------------------------------------

    def _start_round(self) -> bool:
        """New E, anchors and homotopy pairs from the best weights; False if nothing to do."""
        logits = fnn.logits_of(self.state.best, self.x)
        pred = logits.argmax(dim=1).cpu().numpy()
        dist = fnn.distance(logits).cpu().numpy()
        y = self.y_np
        correct = (pred == y) & ~self.in_conflict
        errors = np.flatnonzero((pred != y) & ~self.in_conflict)
        if errors.size == 0:
            self.state.stop_reason = (
                STOP_ERROR_FREE if not self.in_conflict.any() else STOP_NOTHING_LEFT
            )
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
            self.state.no_anchor.update(int(c) for c in lacking)
        work = errors[has]
        if work.size == 0:
            self.state.stop_reason = STOP_NOTHING_LEFT
            return False
        self.state.round += 1
        self.state.in_round = True
        self.state.cont_c = np.flatnonzero(correct)
        self.state.cont_e = work
        self.state.anchor_of = pick_anchors(y[work], anchors, self.state.gen)
        self.state.lam_ok, self.state.delta, self.state.streak, self.state.round_steps = (
            0.0,
            self.s.delta0,
            0,
            0,
        )
        self.state.theta_ok = fnn.clone(self.state.best)
        self.state.round_starts.append(len(self.state.lambda_path))
        self.build_batch()
        self._consolidate()
        log.info(
            "%sGDT round %d: accuracy %.5f, %d errors on homotopy paths, %d correct kept, %d conflict "
            "members left out",
            self.tag,
            self.state.round,
            self.state.best_acc,
            work.size,
            self.state.cont_c.size,
            int(self.in_conflict.sum()),
        )
        return True

    def build_batch(self) -> None:
        """Continuation batch: rows [C | E]; the E rows are rewritten at every λ. In a group
        (:func:`run_group`) the rows and θ live in the group's stacked buffers."""
        dev = self.x.device
        c = torch.as_tensor(self.state.cont_c, device=dev)
        e = torch.as_tensor(self.state.cont_e, device=dev)
        a = torch.as_tensor(self.state.anchor_of, device=dev)
        self.n_c = int(c.shape[0])
        self.xa, self.xe = self.x[a], self.x[e]
        if self.slot is None:
            self.xb = torch.cat([self.x[c], self.xa])  # (n_c + |E|, D); E rows = λ=0
            self.yb = torch.cat([self.y[c], self.y[e]])
            self.theta = fnn.clone(self.state.theta_ok)  # work buffers
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
        fnn.copy_into(self.theta, self.state.theta_ok)

    def _end_round(self) -> None:
        self.state.in_round = False
        acc = fnn.accuracy(self.state.theta_ok, self.x, self.y)
        if acc >= self.state.best_acc:
            self.state.best, self.state.best_acc = fnn.clone(self.state.theta_ok), acc
        log.info(
            "%sGDT round %d ends at λ=%.6f (Δ=%.3g, %d λ-steps): real accuracy %.5f, best %.5f",
            self.tag,
            self.state.round,
            self.state.lam_ok,
            self.state.delta,
            self.state.round_steps,
            acc,
            self.state.best_acc,
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
        fnn.copy_into(self.theta, self.state.theta_ok)

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
        self.state.consolidation_steps += used
        if ok:
            fnn.copy_into(self.state.theta_ok, self.theta)
        log.debug(
            "%sGDT round %d: consolidation at λ=0, %d steps, %s",
            self.tag,
            self.state.round,
            used,
            "kept" if ok else "dropped (batch not 100 % correct)",
        )

    def _next_lambda(self) -> float | None:
        """Before a λ-step: stop (rounds or time spent, nothing to fit: None) or start a round
        when none is open; returns the λ of the next attempt."""
        s = self.s
        if self.state.finished:
            return None
        if not self.state.in_round:
            if self.state.round >= s.rounds:
                exhausted = all(e in (END_LAMBDA_1, END_FLOOR) for e in self.state.round_ends)
                self.state.stop_reason = STOP_ROUNDS if exhausted else STOP_LAMBDA_BUDGET
                self.state.finished = True
                return None
            if self.elapsed() >= s.max_seconds:
                self.state.stop_reason, self.state.finished = STOP_TIME_BUDGET, True
                return None
            if not self._start_round():
                self.state.finished = True
                return None
        return min(1.0, self.state.lam_ok + self.state.delta)

    def _conclude(self, lam: float, ok: bool, used: int) -> None:
        """Book a finished λ-step attempt (θ holds its end point): accept or reject, Δ and the
        streak, and close the round (and the run) when it ended."""
        s = self.s
        self.state.steps_path.append(used)
        self.state.lambda_path.append(lam)
        self.state.delta_path.append(self.state.delta)
        self.state.accepted_path.append(ok)
        self.state.round_steps += 1
        if ok:
            self.state.accepted += 1
            self.state.lam_ok = lam
            fnn.copy_into(self.state.theta_ok, self.theta)
            self.state.streak += 1
            if self.state.streak >= s.streak:
                self.state.delta *= s.factor
                self.state.streak = 0
        else:
            self.state.rejected += 1
            self.state.streak = 0
            self.state.delta /= s.factor
        log.debug(
            "%sλ-step %d: λ=%.6f %s, Δ→%.4g",
            self.tag,
            len(self.state.lambda_path),
            lam,
            "accept" if ok else "reject",
            self.state.delta,
        )
        out_of_time = self.elapsed() >= s.max_seconds
        end = (
            END_LAMBDA_1
            if self.state.lam_ok >= 1.0
            else END_FLOOR
            if self.state.delta < s.delta_floor
            else END_LAMBDA_BUDGET
            if self.state.round_steps >= s.max_lambda_steps
            else END_TIME
            if out_of_time
            else None
        )
        if end is not None:
            log.info("%sGDT round %d ends: %s", self.tag, self.state.round, end)
            self.state.round_ends.append(end)
            self._end_round()
            if self.state.lam_ok >= 1.0 and self.state.best_acc >= 1.0:
                self.state.stop_reason, self.state.finished = STOP_ERROR_FREE, True
            elif out_of_time:
                self.state.stop_reason, self.state.finished = STOP_TIME_BUDGET, True

    def log_progress(self) -> None:
        log.info(
            "%sGDT round %d, λ-step %d: λ_ok=%.6f Δ=%.4g (%d accepted, %d rejected, %.0f s)",
            self.tag,
            self.state.round,
            self.state.round_steps,
            self.state.lam_ok,
            self.state.delta,
            self.state.accepted,
            self.state.rejected,
            self.elapsed(),
        )

    def result(self) -> GDTResult:
        return GDTResult(
            params=fnn.clone(self.state.best),
            accuracy=self.state.best_acc,
            rounds=self.state.round,
            accepted=self.state.accepted,
            rejected=self.state.rejected,
            lambda_path=list(self.state.lambda_path),
            delta_path=list(self.state.delta_path),
            accepted_path=list(self.state.accepted_path),
            round_starts=list(self.state.round_starts),
            round_ends=list(self.state.round_ends),
            steps_path=list(self.state.steps_path),
            steps_taken=self.state.consolidation_steps + sum(self.state.steps_path),
            consolidation_steps=self.state.consolidation_steps,
            conflicts=list(self.conflicts),
            no_anchor=sorted(self.state.no_anchor),
            stop_reason=self.state.stop_reason,
            seconds=self.elapsed(),
            resumed=self.resumed,
        )

    # -- one member's steps, driven by run_group ----------------------------------

    def start_clock(self, t0: float, shared: bool) -> None:
        """Time the run from ``t0``; a member of a stacked group is charged its share instead."""
        self.clock = (t0, 0.0 if shared else None)

    def charge(self, seconds: float) -> None:
        """Add ``seconds`` of the group's wall time to a stacked member's time."""
        start, charged = self.clock
        self.clock = (start, (charged or 0.0) + seconds)

    def begin_step(self) -> bool:
        """Start the next λ-step (a new round if none is open); False: the run has finished."""
        lam = self._next_lambda()
        if lam is None:
            return False
        self._begin(lam)
        self.step = Step(lam, 0, max(self.s.max_steps, self.s.steps))
        return True

    def after_chunk(self, k: int, batch_ok: bool) -> tuple[bool, bool]:
        """Book ``k`` gradient steps of the current λ-step whose batch test gave ``batch_ok``;
        returns (whether the λ-step concluded, whether the member goes on)."""
        st = self.step
        st.done += k
        good = batch_ok and self._rounded_correct(st.lam)
        if good or st.done + k > st.cap:
            self._conclude(st.lam, good, st.done)
            return True, self.begin_step()
        return False, True

    def attach(self, slot: tuple[Tensor, Tensor, Tensor], theta: fnn.Params) -> None:
        """Hold θ and the batch rows in a group's stacked buffers (``slot``: x rows, labels,
        row weights); a member re-attached after a restack keeps its batch."""
        rows = self.xb.shape[0] if self.slot is not None else None
        self.slot, self.theta = slot, theta
        if rows is not None:
            self.xb, self.yb = slot[0][:rows], slot[1][:rows]

    def detach(self) -> None:
        """Leave the stacked buffers, with copies of θ (not views)."""
        if self.slot is not None:
            self.theta = fnn.clone(self.theta)
            self.slot = None
