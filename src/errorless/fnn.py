"""The small feed-forward net of docs/method.md#the-fnn, as plain tensors.

Weights are a list of ``(W (in, out), b (out,))`` float32 pairs; the forward pass is
``relu(X @ W1 + b1) ... @ Wq + bq`` (logits). The backward pass is written by hand (and
tested against autograd) so that SGD and GDT run without graph overhead and with in-place
buffers; the first layer never computes the gradient of its input.

**Members.** Every function also takes a *group* of M nets trained side by side: stacked
weights ``(W (M, in, out), b (M, out))`` with inputs ``(M, N, D)`` and labels ``(M, N)``
(``torch.baddbmm`` instead of ``torch.addmm``); losses, norms and accuracies then come per
member, shape ``(M,)``. One implementation serves one FNN and a group.

**The model module.** This is the one home of the forward pass (training, the evaluation's
vote, the out-of-sample votes, ``predict`` and the confusion wheel all call :func:`forward`),
of the softmax and the distance ‖softmax − e_ℓ‖ (:func:`top_labels`), and of the saved
weights' rounding (:func:`round_params`) and truncation (:func:`truncate`). A group that
evaluates one input for all its members (:class:`SharedGroup`) keeps its first layer as one
wide (D, M·H) matrix, so that the widest product is a single GEMM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

Params = list[tuple[Tensor, Tensor]]
LOSSES = ("cross_entropy", "mse_softmax")


@dataclass(frozen=True)
class Loss:
    """The training loss: ``cross_entropy``, or ``mse_softmax`` at ``temperature``."""

    name: str = "cross_entropy"
    temperature: float = 100.0

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r} (known: {LOSSES})")


CROSS_ENTROPY = Loss()


def layer_sizes(n_inputs: int, hidden: Sequence[int], n_labels: int) -> list[int]:
    return [int(n_inputs), *(int(h) for h in hidden), int(n_labels)]


def n_params(sizes: Sequence[int]) -> int:
    """Parameters of an FNN with these layer sizes: sum of (in + 1) * out."""
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


INITS = ("pytorch", "uniform")


def init_params(
    sizes: Sequence[int],
    seed: int | torch.Generator,
    device: str | torch.device = "cpu",
    kind: str = "pytorch",
    bound: float = 5.0,
) -> Params:
    """Initial weights, drawn on CPU (device-independent).

    ``pytorch``: like ``nn.Linear``, Uniform(±1/sqrt(fan_in)); ``uniform``: every weight and
    bias Uniform(±bound) — the authors' MNIST code uses bound 5 with the ``mse_softmax`` loss.
    """
    if kind not in INITS:
        raise ValueError(f"unknown init {kind!r} (known: {INITS})")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    params: Params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound_i = 1.0 / float(np.sqrt(fan_in)) if kind == "pytorch" else float(bound)
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound_i
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound_i
        params.append((w.to(device), b.to(device)))
    return params


def stack(members: Sequence[Params]) -> Params:
    """M nets of one architecture as one stacked group ``(W (M, in, out), b (M, out))``."""
    return [
        (torch.stack([m[i][0] for m in members]), torch.stack([m[i][1] for m in members]))
        for i in range(len(members[0]))
    ]


def member(params: Params, i: int) -> Params:
    """Net ``i`` of a stacked group (views: writing them writes the group)."""
    return [(w[i], b[i]) for w, b in params]


def select(params: Params, rows: Tensor) -> Params:
    """The members ``rows`` of a stacked group (copies)."""
    return [(w.index_select(0, rows), b.index_select(0, rows)) for w, b in params]


def _affine(b: Tensor, h: Tensor, w: Tensor) -> Tensor:
    """h @ w + b for one net (addmm) or a group (baddbmm, b broadcast over the rows).

    Rows (N, K) entering a group's layer (M, in, out) are the members' blocks of a widened
    layer (K = M·in, see :func:`widen`) or, K = in, one input shared by every member."""
    if w.dim() == 2:
        return torch.addmm(b, h, w)
    if h.dim() == 2:
        m, n = w.shape[0], h.shape[0]
        if h.shape[1] == m * w.shape[1]:
            h = h.view(n, m, w.shape[1]).transpose(0, 1)  # (M, N, in)
        else:
            h = h.expand(m, n, h.shape[1])
    return torch.baddbmm(b.unsqueeze(-2), h, w)


def clone(params: Params) -> Params:
    return [(w.clone(), b.clone()) for w, b in params]


def copy_into(dst: Params, src: Params) -> None:
    """In-place copy (keeps ``dst``'s buffers, so no reallocation in tight loops)."""
    for (wd, bd), (ws, bs) in zip(dst, src, strict=True):
        wd.copy_(ws)
        bd.copy_(bs)


def forward(params: Params, x: Tensor) -> Tensor:
    """Logits (N, c) of inputs (N, D); a group: (M, N, c) of (M, N, D)."""
    h = x
    for w, b in params[:-1]:
        h = torch.relu(_affine(b, h, w))
    w, b = params[-1]
    return _affine(b, h, w)


@torch.no_grad()
def logits_of(params: Params, x: Tensor, block: int = 65536) -> Tensor:
    """Logits in blocks of rows (bounded memory for very large inputs)."""
    n = x.shape[-2]
    if n <= block:
        return forward(params, x)
    return torch.cat(
        [forward(params, x[..., i : i + block, :]) for i in range(0, n, block)], dim=-2
    )


def predict(params: Params, x: Tensor) -> Tensor:
    return logits_of(params, x).argmax(dim=-1)


def softmax(logits: Tensor) -> Tensor:
    """Output vectors over the labels (last dimension)."""
    return torch.softmax(logits, dim=-1)


def top_labels(probs: Tensor, t: int = 1) -> tuple[Tensor, Tensor]:
    """The t best (local) labels of each row of softmax outputs ``probs`` (..., c) and their
    distances ||probs - e_label||_2: (..., t) each (docs/method.md#the-fnn: smaller = surer)."""
    p, idx = probs.topk(min(t, probs.shape[-1]), dim=-1)
    # ||p - e_k||^2 = sum p^2 - 2 p_k + 1
    sq = (probs * probs).sum(dim=-1, keepdim=True)
    return idx, (sq - 2 * p + 1).clamp_(min=0).sqrt_()


def top_real_labels(probs: Tensor, real: Tensor, t: int = 1) -> tuple[Tensor, Tensor]:
    """:func:`top_labels` of a padded stack (modules of unequal size): ``real`` (G, c) marks
    each FNN's own outputs. A padded output comes after every real one (a saturated softmax
    gives real labels a probability of exactly 0, tied with the padding) and only where t
    exceeds the module's size; its distance is inf, so it never wins a vote."""
    ranked = probs.masked_fill(~real[:, None, :], -1.0)
    p, idx = ranked.topk(min(t, probs.shape[-1]), dim=-1)
    sq = (probs * probs).sum(dim=-1, keepdim=True)
    dist = (sq - 2 * p.clamp(min=0) + 1).clamp_(min=0).sqrt_()
    return idx, dist.masked_fill(p < 0, float("inf"))


def distance(logits: Tensor) -> Tensor:
    """||softmax(z) - e_pred||_2 per row: the confidence measure (smaller = surer)."""
    return top_labels(softmax(logits), 1)[1][..., 0]


def widen(params: Params) -> Params:
    """A stacked group (W (M, in, out)) for one input shared by every member: the first layer
    as one (D, M·H) matrix and (M·H,) bias (:func:`_affine` splits its rows into members)."""
    if len(params) < 2:
        return params
    (w1, b1), rest = params[0], params[1:]
    m, d, h = w1.shape
    wide = w1.transpose(0, 1).reshape(d, m * h).contiguous()
    return [(wide, b1.reshape(m * h).contiguous()), *rest]


def as_params(
    layers: Sequence[tuple[np.ndarray, Any]], device: str | torch.device = "cpu"
) -> Params:
    """Weights of saved layers ``[(W, b), ...]`` (numpy, one net or stacked) as tensors."""
    return [
        (torch.as_tensor(w, device=device), torch.as_tensor(b, device=device)) for w, b in layers
    ]


class SharedGroup:
    """G FNNs of one architecture (stacked saved layers) on one input (N, D), on ``device``;
    their outputs are over the module's local labels; ``labels`` makes them global: the first
    label of each contiguous module (G,), or each FNN's global label of every output (G, c) (label
    groups, modules.groups: modules of unequal size are padded to c outputs whose bias is −inf,
    so their softmax is 0 and no top-t list names them before a real label)."""

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]], labels, device="cpu"):
        self.G, self.D = layers[0][0].shape[:2]
        # the saved stacked layers as they are: one input expanded over the members (baddbmm,
        # no copy) equals the widened first layer bit for bit (tests/test_model.py) and skips
        # widen's transposed copy of every first layer (bench/evaluate_bench.py: 1.25 GB)
        self.params = as_params(layers, device)
        labels = torch.as_tensor(labels, dtype=torch.int64, device=device)
        if labels.ndim == 1:  # label_lo: contiguous modules
            c = layers[-1][0].shape[-1]
            labels = labels[:, None] + torch.arange(c, device=device)
        self.labels = labels  # (G, c)
        self.padded = bool((labels < 0).any())

    @torch.no_grad()
    def softmax(self, x: Tensor) -> Tensor:
        """Each FNN's softmax (G, N, c) for inputs x (N, D)."""
        return softmax(forward(self.params, x))

    def top_of(self, s: Tensor, t: int = 1) -> tuple[Tensor, Tensor]:
        """Each FNN's t best global labels and their distances, from its softmax outputs
        ``s`` (G, N, c): (G, N, t) each."""
        if self.padded:
            idx, dist = top_real_labels(s, self.labels >= 0, t)
        else:
            idx, dist = top_labels(s, t)  # (G, N, t) local
        G, N, t = idx.shape
        return self.labels.gather(1, idx.reshape(G, N * t)).reshape(G, N, t), dist

    def top(self, x: Tensor, t: int = 1) -> tuple[Tensor, Tensor]:
        """:meth:`top_of` for inputs x (N, D)."""
        return self.top_of(self.softmax(x), t)


def accuracy(params: Params, x: Tensor, y: Tensor) -> float:
    if x.shape[0] == 0:
        return 1.0
    return float((predict(params, x) == y).float().mean().item())


def accuracies(params: Params, x: Tensor, y: Tensor) -> Tensor:
    """Per-member accuracy (M,) of a group on (M, N, D), (M, N), on the device (no sync)."""
    return (predict(params, x) == y).float().mean(dim=-1)


def loss_and_grads(
    params: Params,
    x: Tensor,
    y: Tensor,
    loss: Loss = CROSS_ENTROPY,
    weights: Tensor | None = None,
) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Mean loss over the rows and its gradients (same structure as ``params``).

    cross_entropy: mean -log softmax(z)_y;
    mse_softmax: mean 1/2 ||softmax(z/T) - onehot(y)||^2 (the author's MNIST loss).
    A group (module docstring) gets one loss per member, shape (M,). ``weights`` (N,) or
    (M, N) replaces the mean's 1/N per row (a group's padding rows get 0: members whose
    batches have different sizes share one stacked batch).
    """
    n = x.shape[-2]
    acts = [x]  # inputs of every layer
    h = x
    for w, b in params[:-1]:
        h = torch.relu(_affine(b, h, w))
        acts.append(h)
    w, b = params[-1]
    z = _affine(b, h, w)  # (N, c) or (M, N, c)
    yi = y.unsqueeze(-1)
    temperature = loss.temperature
    if loss.name == "cross_entropy":
        logp = torch.log_softmax(z, dim=-1)
        per_row = -logp.gather(-1, yi).squeeze(-1)
        dz = logp.exp_()
        dz.scatter_(-1, yi, dz.gather(-1, yi) - 1.0)
        scale = 1.0
    else:  # mse_softmax (Loss checks the name)
        p = torch.softmax(z / temperature, dim=-1)
        r = p.clone()
        r.scatter_(-1, yi, r.gather(-1, yi) - 1.0)  # p - onehot
        per_row = 0.5 * (r * r).sum(dim=-1)
        # softmax Jacobian: dz = p * (r - <r, p>) / T, mean over rows
        dz = p * (r - (r * p).sum(dim=-1, keepdim=True))
        scale = temperature
    if weights is None:
        value = per_row.mean(dim=-1)
        dz.div_(n * scale)
    else:
        value = (per_row * weights).sum(dim=-1)
        dz.mul_(weights.unsqueeze(-1) / scale)
    grads: list[tuple[Tensor, Tensor]] = [None] * len(params)  # type: ignore[list-item]
    d = dz
    for i in range(len(params) - 1, -1, -1):
        a = acts[i]
        grads[i] = (a.transpose(-2, -1) @ d, d.sum(dim=-2))
        if i > 0:
            d = (d @ params[i][0].transpose(-2, -1)).mul_(
                a > 0
            )  # back through relu of layer i's input
    return value, grads


def flat_norm(grads: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """||g||_2 over every layer's W and b, as a 0-d tensor (stays on the device); for a
    stacked group (W of dimension 3) one norm per member, shape (M,)."""
    if grads[0][0].dim() == 3:
        sq = [(g * g).flatten(1).sum(dim=1) for pair in grads for g in pair]
        return torch.stack(sq).sum(dim=0).sqrt()
    sq = [torch.sum(g * g) for pair in grads for g in pair]
    return torch.stack(sq).sum().sqrt()


def round_params(params: Params, decimals: int) -> Params:
    """Weights rounded to ``decimals`` places (as they are saved)."""
    return [
        (torch.round(w, decimals=decimals), torch.round(b, decimals=decimals)) for w, b in params
    ]


def truncate(w: np.ndarray, decimals: int, saved_decimals: int | None = None) -> np.ndarray:
    """Weights cut toward zero to ``decimals`` places (float32): the paper's robustness check.

    Weights saved rounded to ``saved_decimals`` are first turned back into exact integers
    (w·10^saved) so that a float32 0.1230 (= 0.12299999…) is cut to 0.123, not 0.122; other
    weights are rounded to 3 places below the cut first, which removes the same float noise.
    """
    w64 = np.asarray(w, dtype=np.float64)
    if saved_decimals is not None and saved_decimals <= decimals:
        return np.asarray(w, dtype=np.float32)
    if saved_decimals is not None:
        k = np.rint(w64 * 10.0**saved_decimals)  # exact integers
        cut = np.trunc(k / 10.0 ** (saved_decimals - decimals))
    else:
        cut = np.trunc(np.round(w64 * 10.0**decimals, 3))
    return (cut / 10.0**decimals).astype(np.float32)


def truncate_params(params: Params, decimals: int, saved_decimals: int | None = None) -> Params:
    """:func:`truncate` of every weight and bias (same devices)."""

    def cut(t: Tensor) -> Tensor:
        a = truncate(t.detach().cpu().numpy(), decimals, saved_decimals)
        return torch.as_tensor(a, device=t.device)

    return [(cut(w), cut(b)) for w, b in params]


def to_numpy(params: Params, method: str) -> dict[str, np.ndarray]:
    """``{"S/W1": (in, out), "S/b1": (out,), ...}`` float32."""
    out: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(params, start=1):
        out[f"{method}/W{i}"] = w.detach().cpu().numpy().astype(np.float32)
        out[f"{method}/b{i}"] = b.detach().cpu().numpy().astype(np.float32)
    return out


def from_numpy(
    arrays: dict[str, np.ndarray], method: str, device: str | torch.device = "cpu"
) -> Params:
    params: Params = []
    i = 1
    while f"{method}/W{i}" in arrays:
        w = torch.as_tensor(np.asarray(arrays[f"{method}/W{i}"], dtype=np.float32), device=device)
        b = torch.as_tensor(np.asarray(arrays[f"{method}/b{i}"], dtype=np.float32), device=device)
        params.append((w, b))
        i += 1
    if not params:
        raise KeyError(f"no weights for method {method!r}")
    return params
