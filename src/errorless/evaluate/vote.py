"""The majority vote (docs/method.md#the-vote): per group, across groups, merged over passes;
accuracy and Top-1 rate.

The vote (docs/method.md#the-vote), choices where the paper is silent
------------------------------------------------------------
* An FNN's *distance* for a label ℓ is ‖softmax − e_ℓ‖₂ (docs/method.md#the-fnn). In the top-1
  protocol each
  FNN casts one vote (its argmax); in the expanded top-3 protocol (paper Table 5) it casts one
  vote for each of its three best labels, each with its own distance, so a label's count in a
  group is still at most p and a super-majority is still a count of p.
* Step 2 (per group): most votes; ties -> smaller mean distance of the votes for that label;
  exact ties -> smaller label number.
* Step 3 (across groups): largest count; ties -> smallest variance (population variance) of the
  group's p FNN distances (each FNN's top-1 distance, in both protocols: the paper's "variance
  of the loss values over the features"); remaining exact ties (e.g. p = 1, where every
  variance is 0) -> smaller mean distance of the group's winning label, then the first group
  in (module, submodule) order. (Exact ties between groups with the same distances in a
  different feature order can resolve differently on CPU and GPU: reduction order. With real
  float distances such ties do not occur; CPU and H100 gave identical votes on 4096 images.)
* Accuracy = correct / images. Top-1 rate = share of the correct predictions won with a
  super-majority (NaN when nothing is correct).
* Perfect labels: a label is perfect in a batch when it has at least one image there and all
  are predicted correctly; "perfect in every batch" (Table 4 "all") = perfect in every batch
  of the split that holds the label, i.e. all its images of the split are correct.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

PROTOCOLS = ("top1", "top3")


# ---------------------------------------------------------------- the vote (pure)


@dataclass
class Vote:
    """Result of the three-step vote for N images."""

    label: np.ndarray  # int64 (N,) predicted global label
    votes: np.ndarray  # int64 (N,) winning count
    group: np.ndarray  # int64 (N,) index of the winning (module, submodule) group
    super_majority: np.ndarray  # bool (N,) votes == p
    # the winner's step-3 keys (after votes): variance of its p FNN distances, mean distance of
    # its label's votes -- what merge_votes needs to join votes over disjoint sets of groups
    variance: np.ndarray | None = None  # float64 (N,)
    distance: np.ndarray | None = None  # float64 (N,)


def vote(labels, distances, fnn_distances=None) -> Vote:
    """Three-step majority vote, vectorised over images.

    ``labels``/``distances``: (F, G, N) (top-1 protocol) or (F, G, N, T) (each FNN's T best
    labels, global numbers, with their distances); F = p features, G = (module, submodule)
    groups. ``fnn_distances`` (F, G, N): each FNN's own (top-1) distance, whose variance over
    the features breaks ties between groups; default ``distances[..., 0]``.
    Accepts numpy arrays or torch tensors; returns numpy arrays.
    """
    lab = torch.as_tensor(labels)
    dist = torch.as_tensor(distances).to(torch.float64)
    if lab.ndim == 3:
        lab, dist = lab[..., None], dist[..., None]
    if lab.ndim != 4 or lab.shape != dist.shape:
        raise ValueError(
            f"labels {tuple(lab.shape)} and distances {tuple(dist.shape)} must be (F, G, N[, T])"
        )
    F, G, N, T = lab.shape
    fd = dist[..., 0] if fnn_distances is None else torch.as_tensor(fnn_distances).to(torch.float64)
    if N == 0:
        e, f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return Vote(e, e, e, np.zeros(0, dtype=bool), f, f)
    lab = lab.to(torch.int64)
    # step 2: count votes per label inside each group, on labels shifted to 0..width-1;
    # the label axis goes first so that the scatter needs no copy for T = 1
    lo = lab.amin(dim=(0, 3))  # (G, N)
    loc = (lab - lo[None, :, :, None]).movedim(3, 1).reshape(F * T, G, N)  # (F*T, G, N)
    width = int(loc.max()) + 1
    counts = torch.zeros(width, G, N, dtype=torch.float32, device=lab.device)
    counts.scatter_add_(0, loc, torch.ones(1, 1, 1, device=lab.device).expand(F * T, G, N))
    sums = torch.zeros(width, G, N, dtype=torch.float64, device=lab.device)
    sums.scatter_add_(0, loc, dist.movedim(3, 1).reshape(F * T, G, N))
    v = counts.amax(dim=0)  # (G, N)
    mean = torch.where(counts == v, sums / counts.clamp(min=1), torch.inf)  # (width, G, N)
    gmean, gloc = mean.min(dim=0)  # min returns the first index on exact ties: smaller label
    glabel = gloc + lo  # (G, N)
    # step 3: most votes, then smallest variance of the p FNN distances, then mean distance
    var = ((fd - fd.mean(dim=0)) ** 2).mean(dim=0)  # (G, N) population variance, two-pass
    best = v == v.amax(dim=0, keepdim=True)
    var_b = torch.where(best, var, torch.inf)
    best &= var_b == var_b.amin(dim=0, keepdim=True)
    win = torch.where(best, gmean, torch.inf).argmin(dim=0)  # (N,) first group on exact ties
    idx = win[None]
    votes = v.gather(0, idx)[0].to(torch.int64)
    return Vote(
        label=glabel.gather(0, idx)[0].cpu().numpy(),
        votes=votes.cpu().numpy(),
        group=win.cpu().numpy(),
        super_majority=(votes == F).cpu().numpy(),
        variance=var.gather(0, idx)[0].cpu().numpy(),
        distance=gmean.gather(0, idx)[0].cpu().numpy(),
    )


def merge_votes(a: Vote | None, b: Vote, offset: int) -> Vote:
    """Step 3 over the union of two disjoint sets of groups: ``a`` voted over groups
    ``0..offset-1``, ``b`` over the next ones (its group numbers are shifted by ``offset``).
    Equal to one vote over all groups: step 3 is the lexicographic minimum of (-votes,
    variance, mean distance, group number), and a minimum can be taken set by set."""
    b = dataclasses.replace(b, group=b.group + offset)
    if a is None:
        return b
    take = (b.votes > a.votes) | (
        (b.votes == a.votes)
        & ((b.variance < a.variance) | ((b.variance == a.variance) & (b.distance < a.distance)))
    )
    return Vote(
        *(np.where(take, getattr(b, f.name), getattr(a, f.name)) for f in dataclasses.fields(Vote))
    )


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images predicted correctly (NaN for no images)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return float(np.mean(predicted == labels)) if len(labels) else float("nan")


def top1_rate(correct: np.ndarray, super_majority: np.ndarray) -> float:
    """Among the correct predictions, the fraction won by a super-majority (NaN if none correct)."""
    correct = np.asarray(correct, dtype=bool)
    n = int(correct.sum())
    return float(np.asarray(super_majority, dtype=bool)[correct].sum() / n) if n else float("nan")
