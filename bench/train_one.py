"""Benchmark one h1 FNN job on a paper-sized shard: SGD to the threshold, then GDT.

    .venv/bin/python bench/train_one.py [--data blobs|photos] [--images 15000] [--threads 2] [--device cpu] [--record]

``--data blobs`` (default): Gaussian blobs, 4 centres per class plus noise — easy, and not like
images. ``--data photos``: an ImageNet-size real-photo shard: ``--images`` 64×64 crops of the
photographs bundled with scikit-image / scikit-learn (:mod:`errorless.data.photos`), ``--labels``
labels (photo parts), through the pipeline's transform of ``--feature`` (pool 2, trim 1 → 900
inputs) — what one training job of the paper's grid sees.

Prints the seconds of SGD and GDT, the λ-steps, and the FLOP rate of the full-batch GDT steps
as a ratio to a plain (images × 900) @ (900 × 256) matmul timed in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import torch
from record import record, record_argument  # bench/record.py (the script's folder)

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings
from errorless.train import gdt, gdtgroup, gdtmath, sgd


def synthetic_inputs(
    n: int, d: int, c: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Transformed-like inputs: 4 sub-centres per class + noise, centred, max |v| = 1, 4 decimals."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, 4, d)).astype(np.float32)
    y = np.arange(n) % c
    x = centres[y, rng.integers(0, 4, n)] + noise * rng.normal(size=(n, d)).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.abs(x).max(axis=1, keepdims=True)
    return np.round(x, 4).astype(np.float32), y.astype(np.int64)


def photo_inputs(n: int, c: int, feature: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real-photo crops of the first ``c`` photograph labels (the colour wheel and logo
    drawings left out: their quadrants are near-identical inputs in single features, see
    ``photos.GRAPHICS``), transformed as a training job does (900 inputs)."""
    from errorless.data import photos
    from errorless.features import transform

    labels = photos.photograph_labels()[:c]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), -(-n // c))
    images, _ = photos.crops(rng, np.asarray(labels)[y], size=64)
    keep = rng.permutation(len(y))[:n]
    return transform(images[keep], feature), y[keep].astype(np.int64)


def timed(fn, sync, repeat: int) -> float:
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - t) / repeat


def shared_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of this bench and of bench/train_many.py: problem size, threads, device."""
    ap.add_argument("--labels", type=int, default=25)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--noise", type=float, default=14.0, help="blob noise (larger = harder)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="progress lines of SGD/GDT")


def set_up(args: argparse.Namespace):
    """Logging, torch threads and the device of the parsed ``shared_arguments``:
    (device, a function that waits for the device's queued work)."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return dev, sync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        choices=["blobs", "photos"],
        default="blobs",
        help="blobs: Gaussian blobs (easy); photos: real-photo crops (module docstring)",
    )
    ap.add_argument("--feature", default="R", help="colour feature of the photo crops")
    ap.add_argument("--images", type=int, default=15000)
    ap.add_argument("--inputs", type=int, default=900)
    shared_arguments(ap)
    record_argument(ap)
    args = ap.parse_args()
    dev, sync = set_up(args)
    print(f"threads {torch.get_num_threads()}, device {dev}, load average {os.getloadavg()}")

    t = time.perf_counter()
    if args.data == "photos":
        x_np, y_np = photo_inputs(args.images, args.labels, args.feature, args.seed)
        args.inputs = x_np.shape[1]
        what = f"real-photo crops, feature {args.feature}"
    else:
        x_np, y_np = synthetic_inputs(args.images, args.inputs, args.labels, args.noise, args.seed)
        what = f"Gaussian blobs, noise {args.noise}"
    print(
        f"data: {args.images} x {args.inputs} {what}, {args.labels} labels "
        f"({time.perf_counter() - t:.1f} s)"
    )
    x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
    sizes = fnn.layer_sizes(args.inputs, [args.hidden], args.labels)

    w = torch.randn(args.inputs, args.hidden, device=dev)
    t_mm = timed(lambda: x @ w, sync, 10)
    mm_rate = 2.0 * args.images * args.inputs * args.hidden / t_mm
    print(
        f"matmul {args.images}x{args.inputs} @ {args.inputs}x{args.hidden}: {t_mm * 1e3:.1f} ms, "
        f"{mm_rate / 1e9:.1f} GFLOP/s"
    )

    gen = torch.Generator().manual_seed(args.seed)
    params = fnn.init_params(sizes, gen, dev)
    s_set, g_set = SGDSettings(), GDTSettings()
    t = time.perf_counter()
    s_res, _ = sgd.train_sgd(params, x, y, s_set, gen)
    sync()
    t_sgd = time.perf_counter() - t
    print(
        f"SGD: {t_sgd:.1f} s, {s_res.epochs} epochs, accuracy {s_res.accuracy:.5f} "
        f"({int(round((1 - s_res.accuracy) * args.images))} errors)"
    )

    # Step rate of the full-batch GDT steps alone (same code path as GDT's λ-steps).
    theta = fnn.clone(s_res.params)
    t_step = timed(lambda: gdtmath.descend(theta, x, y, 5, g_set, fnn.CROSS_ENTROPY), sync, 2) / 5
    step_flops = gdtmath.flops_per_step(args.images, sizes)
    step_rate = step_flops / t_step
    print(
        f"GDT full-batch step: {t_step * 1e3:.1f} ms, {step_flops / 1e9:.2f} GFLOP, "
        f"{step_rate / 1e9:.1f} GFLOP/s = {step_rate / mm_rate:.2f} x matmul rate"
    )

    run = gdt.GDT(s_res.params, x, y, g_set, args.seed + 1, decimals=4, n_classes=args.labels)
    t = time.perf_counter()
    r = gdtgroup.run_one(run)
    sync()
    t_gdt = time.perf_counter() - t
    n_steps = len(r.lambda_path)
    print(
        f"GDT: {t_gdt:.1f} s, {n_steps} λ-steps ({r.accepted} accepted, {r.rejected} rejected), "
        f"{r.steps_taken} gradient steps, {r.rounds} rounds, stop {r.stop_reason}, accuracy {r.accuracy:.5f} "
        f"({int(round((1 - r.accuracy) * args.images))} errors, {sum(len(g) for g in r.conflicts)} in conflicts)"
    )
    overall = r.steps_taken * step_flops / t_gdt
    print(
        f"GDT overall incl. checks: {overall / 1e9:.1f} GFLOP/s = {overall / mm_rate:.2f} x matmul rate"
    )
    print(f"SGD + GDT: {t_sgd + t_gdt:.1f} s; load average {os.getloadavg()}")
    if args.record:
        record(
            f"train_one-{args.data}-{args.device}",
            f"One ImageNet-size h1 FNN ({args.data}, {args.device}): SGD, then GDT",
            f"{args.images:,} x {args.inputs} {what}, {args.labels} labels; h1 ({args.hidden} "
            f"hidden), {torch.get_num_threads()} thread(s), device {dev}",
            [
                ("SGD: seconds", t_sgd),
                ("SGD: epochs", s_res.epochs),
                ("SGD: training accuracy", s_res.accuracy),
                ("GDT: seconds", t_gdt),
                ("GDT: λ-steps (accepted / rejected)", f"{n_steps} ({r.accepted} / {r.rejected})"),
                ("GDT: gradient steps", r.steps_taken),
                ("GDT: rounds, stop reason", f"{r.rounds}, {r.stop_reason}"),
                ("GDT: training accuracy", r.accuracy),
                ("SGD + GDT: seconds", t_sgd + t_gdt),
                ("full-batch GDT step: GFLOP/s", step_rate / 1e9),
                ("... as a multiple of a plain matmul in the same run", step_rate / mm_rate),
                ("GDT phase incl. checks, multiple of the matmul rate", overall / mm_rate),
            ],
        )


if __name__ == "__main__":
    main()
