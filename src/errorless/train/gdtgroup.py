"""GDT for a group of nets side by side (``run_group``), one net (``run_one``), and the
convenience of a fresh run without checkpoints (``run_gdt``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from errorless import fnn
from errorless.config import GDTSettings
from errorless.train.gdt import GDT
from errorless.train.gdtmath import descend
from errorless.train.gdtstate import GDTResult

log = logging.getLogger(__name__)


LOG_EVERY_S = 2.0


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
    :func:`run_one`: its buffers are the member's own, the numerics those of one net.

    ``on_checkpoint(states)`` gets every member's :meth:`GDT.state_dict` (each at its last
    λ-step boundary) at most every ``checkpoint_seconds``; members resumed from such states
    replay their unfinished λ-steps from θ_ok and end as an uninterrupted run does.
    """
    s = runs[0].s
    stacked = len(runs) > 1
    t0 = time.perf_counter()
    for r in runs:
        r.start_clock(t0, shared=stacked)
        if r.resumed:
            log.info(
                "%sGDT resumes at round %d, λ=%.6f, Δ=%.4g (%d accepted, %d rejected)",
                r.tag,
                r.state.round,
                r.state.lam_ok,
                r.state.delta,
                r.state.accepted,
                r.state.rejected,
            )
        elif r.conflicts:
            log.info(
                "%sGDT conflict pre-check: %d groups of identical inputs with different labels "
                "(%d images) left out",
                r.tag,
                len(r.conflicts),
                int(r.in_conflict.sum()),
            )
    live = [r for r in runs if not r.state.finished]
    theta: fnn.Params = []
    xbuf = ybuf = wbuf = torch.zeros(0)

    def attach() -> None:
        """Point each live member's θ and batch rows at its slice of the stacked buffers."""
        for i, r in enumerate(live):
            r.attach((xbuf[i], ybuf[i], wbuf[i]), fnn.member(theta, i))

    def keep_only(keep: list[int]) -> None:
        nonlocal live, theta, xbuf, ybuf, wbuf
        for i in sorted(set(range(len(live))) - set(keep)):
            live[i].detach()
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

    if stacked and live:
        n, d = live[0].x.shape
        dev = live[0].x.device
        theta = fnn.stack([r.state.theta_ok for r in live])
        xbuf = torch.zeros(len(live), n, d, device=dev)
        ybuf = torch.zeros(len(live), n, dtype=torch.int64, device=dev)
        wbuf = torch.zeros(len(live), n, device=dev)
        attach()
        for r in live:
            if r.state.in_round:  # resumed inside a round: its batch is rebuilt in the buffers
                r.build_batch()
    keep_only([i for i, r in enumerate(live) if r.begin_step()])
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
                r.charge(share)
        else:
            r = live[0]
            descend(r.theta, r.xb, r.yb, k, s, r.loss)
            ok = [bool((fnn.predict(r.theta, r.xb) == r.yb).all().item())]
        concluded, keep = False, []
        for i, r in enumerate(live):
            ended, goes_on = r.after_chunk(k, ok[i])
            concluded = concluded or ended
            if goes_on:
                keep.append(i)
        now = time.perf_counter()
        if concluded and now - last_log >= LOG_EVERY_S:
            for r in live:
                r.log_progress()
            last_log = now
        # Checkpoint after a λ-step, accepted or rejected: both end at a deterministic point
        # (a reject restores θ_ok), so a job that spends hours rejecting steps does not redo
        # them after a kill, and the time budget carries over.
        if (
            on_checkpoint is not None
            and concluded
            and not all(r.state.finished for r in runs)
            and now - last_ckpt >= s.checkpoint_seconds
        ):
            on_checkpoint([r.state_dict() for r in runs])
            last_ckpt = time.perf_counter()
        if len(keep) < len(live):
            keep_only(keep)
    return [r.result() for r in runs]


def run_one(run: GDT, on_checkpoint: Callable[[dict[str, Any]], None] | None = None) -> GDTResult:
    """The whole GDT phase of one net: :func:`run_group` with a group of one."""
    cb = None if on_checkpoint is None else (lambda states: on_checkpoint(states[0]))
    return run_group([run], cb)[0]


def run_gdt(
    params: fnn.Params, x: Tensor, y: Tensor, s: GDTSettings, seed: int, **kw: Any
) -> GDTResult:
    """Convenience: a fresh GDT run without checkpoints."""
    return run_one(GDT(params, x, y, s, seed, **kw))
