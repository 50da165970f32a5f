"""The authors' GDT demo on real data: sklearn's bundled 8×8 digits, 64-80-10, SGD then GDT.

    .venv/bin/python bench/gdt_digits.py [--threads 1] [--variants paper,consolidate,default] [--record]

Input as in the authors' code: the first 500 and 1,000 images, ``image.flatten(order="F") / 16``
(64 values in [0, 1]), 10 labels, one FNN with 80 hidden units; seeds 1-6 → 12 runs per row.
Rows: GDT control flows (the paper's test after exactly K steps
(docs/method.md#robustness-on-real-data), the authors' consolidation at
λ = 0, errorless' default: a λ-step goes on up to ``gdt.max_steps``) × two configurations
(default init + cross-entropy; the authors' Uniform(±5) init + ``mse_softmax``, lr 10).
Prints how many runs reach 100 % and the wall time per run (SGD + GDT).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from record import record, record_argument  # bench/record.py (the script's folder)
from sklearn.datasets import load_digits

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings
from errorless.train import gdtgroup, sgd

VARIANTS = {
    "paper": dict(max_steps=25),
    "consolidate": dict(max_steps=25, consolidate_steps=125),
    "default": {},
}
CONFIGS = {
    "default": SGDSettings(),
    "authors": SGDSettings(
        loss="mse_softmax", init="uniform", init_bound=5.0, lr=10.0, lr_decay=1.0
    ),
}


def demo_inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = np.stack([im.flatten(order="F") for im in d.images[:n]]).astype(np.float32) / 16
    return torch.tensor(x), torch.tensor(d.target[:n].astype(np.int64))


def one_run(
    x, y, seed: int, sgd_s: SGDSettings, gdt_s: GDTSettings
) -> tuple[bool, float, int, int]:
    t = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    params = fnn.init_params([64, 80, 10], gen, kind=sgd_s.init, bound=sgd_s.init_bound)
    s, _ = sgd.train_sgd(params, x, y, sgd_s, gen)
    r = gdtgroup.run_gdt(
        s.params,
        x,
        y,
        gdt_s,
        seed,
        decimals=4,
        n_classes=10,
        loss=fnn.Loss(sgd_s.loss, sgd_s.temperature),
    )
    return r.accuracy == 1.0, time.perf_counter() - t, r.accepted, r.rejected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    record_argument(ap)
    args = ap.parse_args()
    figures: list[tuple[str, str]] = []
    torch.set_num_threads(args.threads)
    data = {n: demo_inputs(n) for n in (500, 1000)}
    print(
        f"{'GDT flow':12} {'config':8} {'100 %':>6} {'s/run 500':>10} {'s/run 1000':>11} λ-steps acc/rej (max)"
    )
    for v in args.variants.split(","):
        for c in args.configs.split(","):
            runs = {
                n: [
                    one_run(*data[n], seed, CONFIGS[c], GDTSettings(**VARIANTS[v]))
                    for seed in range(1, 7)
                ]
                for n in data
            }
            every = [r for rs in runs.values() for r in rs]
            ok = sum(r[0] for r in every)
            secs = {n: max(r[1] for r in rs) for n, rs in runs.items()}
            print(
                f"{v:12} {c:8} {ok:>3}/{len(every):<2} {secs[500]:>10.2f} {secs[1000]:>11.2f} "
                f"{max(r[2] for r in every)}/{max(r[3] for r in every)}",
                flush=True,
            )
            figures.append(
                (
                    f"GDT flow {v}, config {c}",
                    f"{ok}/{len(every)} reach 100 %; max s/run {secs[500]:.2f} (500 images), "
                    f"{secs[1000]:.2f} (1,000); max λ-steps accepted/rejected "
                    f"{max(r[2] for r in every)}/{max(r[3] for r in every)}",
                )
            )
    if args.record:
        record(
            "gdt_digits",
            "GDT control flows on the authors' digits demo",
            "scikit-learn's bundled 8x8 digits, the first 500 and 1,000 images, "
            'flatten(order="F") / 16, one 64-80-10 FNN, seeds 1-6 (12 runs per row)',
            figures,
            notes=f"SGD + GDT per run on {args.threads} thread(s). Flows: paper = the batch tested "
            "after exactly K steps (gdt.max_steps: 25); consolidate = a descent at λ = 0 first "
            "(consolidate_steps: 125); default = a λ-step goes on up to gdt.max_steps (125). "
            "Configs: default init + cross-entropy; authors = Uniform(±5) init, mse_softmax, "
            "lr 10 fixed.",
        )


if __name__ == "__main__":
    main()
