"""Images per second of the evaluation kernel (transform + batched FNNs + vote).

Random h1 weights for n features × k modules × r submodules (default the paper's
17 × 40 × 2 = 1360 FNNs of 900 → 256 → 25), random 64×64 images; every featured model
(default p = 3, 6, 9, 12, 15, 17) votes with the top-1 and the top-3 protocol.

    .venv/bin/python bench/evaluate_bench.py --images 2048 --batch-size 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from errorless.config import FEATURES
from errorless.evaluate.inference import model_votes, proto_kernels
from errorless.evaluate.vote import vote
from errorless.features import transform_many
from errorless.gather.load import ProtoWeights


def random_proto(
    features: list[str], k: int, r: int, hidden: int, c: int, seed: int = 0
) -> ProtoWeights:
    rng = np.random.default_rng(seed)
    F, G = len(features), k * r
    W1 = (rng.standard_normal((F, G, 900, hidden), dtype=np.float32) * 0.03).round(4)
    W2 = (rng.standard_normal((F, G, hidden, c), dtype=np.float32) * 0.1).round(4)
    layers = [(W1, np.zeros((F, G, hidden), np.float32)), (W2, np.zeros((F, G, c), np.float32))]
    groups = [(f"m{j + 1:02d}", f"s{s + 1}") for j in range(k) for s in range(r)]
    label_lo = np.repeat(np.arange(k) * c, r)
    return ProtoWeights("bench", features, groups, label_lo, layers, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=17)
    ap.add_argument("--modules", type=int, default=40)
    ap.add_argument("--submodules", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--labels-per-module", type=int, default=25)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--ps", type=int, nargs="+", default=[3, 6, 9, 12, 15, 17])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    feats = list(FEATURES)[: a.features]
    ps = [p for p in a.ps if p <= a.features] or [a.features]
    t0 = time.perf_counter()
    pw = random_proto(feats, a.modules, a.submodules, a.hidden, a.labels_per_module)
    n_fnn = len(feats) * a.modules * a.submodules
    n_par = sum(W[0, 0].size + b[0, 0].size for W, b in pw.layers) * n_fnn
    print(
        f"{n_fnn} FNNs ({len(feats)} x {a.modules} x {a.submodules}), {n_par:,} parameters, "
        f"device {a.device}, torch threads {torch.get_num_threads()}, built in {time.perf_counter() - t0:.1f} s"
    )
    images = np.random.default_rng(1).integers(0, 256, (a.images, 64, 64, 3), dtype=np.uint8)
    tr = {"pool": 2, "trim": 1, "decimals": 4}

    # the parts, on one block
    n = min(a.batch_size, a.images)
    block = images[:n]
    t = time.perf_counter()
    xs = transform_many(block, list(feats), **tr)
    t_tr = time.perf_counter() - t
    kernels = proto_kernels(pw, a.device)
    t = time.perf_counter()
    outs = [k.top(torch.as_tensor(x, device=a.device), 3) for k, x in zip(kernels, xs, strict=True)]
    if a.device == "cuda":
        torch.cuda.synchronize()
    t_fnn = time.perf_counter() - t
    L, D = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
    t = time.perf_counter()
    for p in ps:
        vote(L[:p, ..., 0], D[:p, ..., 0])
        vote(L[:p], D[:p], D[:p, ..., 0])
    t_vote = time.perf_counter() - t
    print(
        f"block of {n} images: transform (all features) {t_tr:.2f} s ({n / t_tr:,.0f} img/s), "
        f"FNNs {t_fnn:.2f} s ({n / t_fnn:,.0f} img/s, {2 * n * n_par / t_fnn / 1e9:.1f} GFLOP/s), "
        f"vote {len(ps)} models x 2 protocols {t_vote:.2f} s ({n / t_vote:,.0f} img/s)"
    )

    # end to end, as `errorless evaluate` runs it
    t = time.perf_counter()
    model_votes(
        images, pw, ps, ["top1", "top3"], transform=tr, device=a.device, batch_size=a.batch_size
    )
    total = time.perf_counter() - t
    print(
        f"end to end: {a.images} images in {total:.2f} s = {a.images / total:,.1f} images/s "
        f"(all {len(ps)} featured models, top-1 and top-3)"
    )


if __name__ == "__main__":
    main()
