"""GDT's records: the statuses and stop reasons (``classify_status``), a run's result
(``GDTResult``), and its checkpointed loop state (``GDTState``, serialised once)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from errorless import fnn

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


@dataclass
class GDTState:
    """The loop state of one GDT run: everything a checkpoint holds, serialised once
    (:meth:`to_dict`, :meth:`from_dict`: one entry per field, under the field's name)."""

    best: fnn.Params  # best weights so far (unrounded) and their real accuracy
    best_acc: float
    theta_ok: fnn.Params  # θ at the last accepted λ of the open round
    gen: torch.Generator = field(metadata={"key": "gen_state"})  # anchors' random draws
    round: int = 0  # rounds started
    in_round: bool = False
    finished: bool = False
    stop_reason: str = ""
    lam_ok: float = 0.0
    delta: float = 0.0
    streak: int = 0
    round_steps: int = 0
    accepted: int = 0
    rejected: int = 0
    lambda_path: list[float] = field(default_factory=list)
    delta_path: list[float] = field(default_factory=list)
    accepted_path: list[bool] = field(default_factory=list)
    round_starts: list[int] = field(default_factory=list)
    round_ends: list[str] = field(default_factory=list)  # why each round ended (END_*)
    steps_path: list[int] = field(default_factory=list)  # gradient steps per λ-step (K, 2K, …)
    consolidation_steps: int = 0
    no_anchor: set[int] = field(default_factory=set)
    cont_c: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # kept at X[i]
    cont_e: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # on paths
    anchor_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # a(e)
    seconds: float = 0.0  # seconds spent before this process (carried over a resume)

    def to_dict(self, seconds: float) -> dict[str, Any]:
        """The checkpoint form: tensors on the CPU, copies of the arrays and lists, the
        generator's state, and ``seconds`` spent so far."""
        out = {f.metadata.get("key", f.name): _saved(getattr(self, f.name)) for f in fields(self)}
        out["seconds"] = float(seconds)
        return out

    @classmethod
    def from_dict(cls, st: dict[str, Any], device: torch.device) -> GDTState:
        """The state a checkpoint (:meth:`to_dict`) holds, its weights on ``device``."""
        missing = [f.metadata.get("key", f.name) for f in fields(cls)]
        missing = [k for k in missing if k not in st]
        if missing:
            raise ValueError(f"GDT checkpoint state lacks {missing}: written by another version")
        values = {}
        for f in fields(cls):
            v = st[f.metadata.get("key", f.name)]
            if f.name in ("best", "theta_ok"):
                v = [(w.to(device), b.to(device)) for w, b in v]
            elif f.name == "gen":
                v = torch.Generator().set_state(v)
            elif f.name == "no_anchor":
                v = set(v)
            elif f.name == "seconds":
                v = float(v)
            values[f.name] = v
        return cls(**values)


def _saved(v: Any) -> Any:
    """One field's checkpoint form (:meth:`GDTState.to_dict`)."""
    if isinstance(v, torch.Generator):
        return v.get_state()
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, set):
        return sorted(v)
    if isinstance(v, list) and v and isinstance(v[0], tuple):  # weights: [(W, b), ...]
        return [(w.cpu().clone(), b.cpu().clone()) for w, b in v]
    return list(v) if isinstance(v, list) else v


@dataclass
class Step:
    """The λ-step a member is in: its λ, the gradient steps done and the most it may take."""

    lam: float
    done: int
    cap: int
