"""Benchmark many ImageNet-size h1 FNNs: batched (one stacked group) against one after another.

    PYTHONPATH=src python bench/train_many.py [--data blobs|photos] [--members 4] [--device cpu]
                                              [--threads 2] [--single K] [--target 1360]

Each member is one FNN of a (module, submodule) shard: ``--images`` inputs of 900 values,
``--labels`` labels, h1 (``--hidden`` 256), SGD to 98 % then GDT to 100 % with the default
settings. Members differ as the FNNs of one module do:

* ``--data blobs``: Gaussian blobs as in ``bench/train_one.py`` (the same labels, another
  draw of centres and noise per member — easy, not like images);
* ``--data photos``: real-photo crops of the first ``--labels`` photograph labels
  (:func:`errorless.data.photos.photograph_labels`, the drawings left out, as
  ``bench/train_one.py --data photos``) through the pipeline's transform; member i uses
  feature ``FEATURES[i mod 17]`` of submodule ``i div 17`` (its own crops), so 34 members are
  the 17 features x 2 submodules of one module.

The batched path trains all M members as one group (``sgd.train_sgd_group`` and
``gdtgroup.run_group``: what a ``train.group: shard`` job runs); the per-FNN path trains the first
``--single`` members (default all) one after another with the single-FNN functions (what one
``train`` job runs, without its process start-up; half of them before the group, half after,
so that a change of machine load biases neither path). Prints both in FNNs per hour (wall) and
CPU seconds per FNN, their ratio, each member's outcome on both paths, and the extrapolation
to ``--target`` FNNs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from errorless import fnn
from errorless.config import FEATURES, GDTSettings, SGDSettings
from errorless.train import gdt, gdtgroup, gdtstate, sgd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import record, record_argument  # noqa: E402
from train_one import set_up, shared_arguments, synthetic_inputs  # noqa: E402


def photo_members(
    m: int, n: int, c: int, seed: int, threads: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(M, N, 900) inputs and (M, N) labels: member i = feature i mod 17 of submodule i div 17."""
    from concurrent.futures import ThreadPoolExecutor

    from errorless.data import photos
    from errorless.features import transform

    labels = np.asarray(photos.photograph_labels()[:c])
    feats = list(FEATURES)
    shards = {}
    for sub in range(-(-m // len(feats))):  # one submodule: n crops, every label equally often
        rng = np.random.default_rng(seed + sub)
        y = np.repeat(np.arange(c), -(-n // c))
        images, _ = photos.crops(rng, labels[y], size=64)
        keep = rng.permutation(len(y))[:n]
        shards[sub] = (images[keep], y[keep].astype(np.int64))
    jobs = [(shards[i // len(feats)][0], feats[i % len(feats)]) for i in range(m)]
    with ThreadPoolExecutor(max(1, threads)) as pool:  # numpy releases the GIL in the transform
        xs = list(pool.map(lambda job: transform(*job), jobs))
    ys = [shards[i // len(feats)][1] for i in range(m)]
    names = [f"{feats[i % len(feats)]}/s{i // len(feats) + 1}" for i in range(m)]
    return np.stack(xs), np.stack(ys), names


def blob_members(m: int, n: int, d: int, c: int, noise: float, seed: int):
    xs, ys = zip(*(synthetic_inputs(n, d, c, noise, seed + i) for i in range(m)), strict=True)
    return np.stack(xs), np.stack(ys), [f"blobs{i + 1}" for i in range(m)]


def outcome(params: fnn.Params, r: gdtstate.GDTResult, x: torch.Tensor, y: torch.Tensor) -> str:
    wrong = (fnn.predict(fnn.round_params(params, 4), x) != y).cpu().numpy()
    in_conflict = np.zeros(len(wrong), bool)
    for g in r.conflicts:
        in_conflict[g] = True
    status = gdtstate.classify_status(
        wrong, in_conflict, y.cpu().numpy(), set(r.no_anchor), r.stop_reason
    )
    return (
        f"{status} ({int(wrong.sum())} errors, {len(r.lambda_path)} λ-steps, {r.steps_taken} steps)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["blobs", "photos"], default="blobs")
    ap.add_argument("--members", type=int, default=4, help="FNNs in the batched group (M)")
    ap.add_argument("--single", type=int, help="members trained one after another (default: all M)")
    ap.add_argument("--images", type=int, default=15000)
    ap.add_argument(
        "--inputs", type=int, default=900, help="blobs only (photos: 900 from the transform)"
    )
    shared_arguments(ap)
    ap.add_argument("--target", type=int, default=1360, help="FNNs to extrapolate to (17 x 40 x 2)")
    ap.add_argument(
        "--tf32",
        action="store_true",
        help="cuda: TF32 matmuls (faster, ~10 bits of mantissa; the pipeline does not use them)",
    )
    record_argument(ap)
    args = ap.parse_args()
    dev, sync = set_up(args)
    gpu = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        gpu += ", TF32 matmuls"
    m = args.members
    k = m if args.single is None else min(args.single, m)
    print(
        f"device {dev}{gpu}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"load average {os.getloadavg()}"
    )

    t = time.perf_counter()
    if args.data == "photos":
        x_np, y_np, names = photo_members(m, args.images, args.labels, args.seed, args.threads)
        what = "real-photo crops (feature / submodule per member)"
    else:
        x_np, y_np, names = blob_members(
            m, args.images, args.inputs, args.labels, args.noise, args.seed
        )
        what = f"Gaussian blobs, noise {args.noise}, one draw per member"
    print(
        f"data: {m} members x {args.images} x {x_np.shape[2]} {what}, {args.labels} labels, "
        f"h1 [{args.hidden}] ({time.perf_counter() - t:.1f} s)"
    )
    x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
    sizes = fnn.layer_sizes(x_np.shape[2], [args.hidden], args.labels)
    s_set, g_set = SGDSettings(), GDTSettings()

    def start(i: int) -> tuple[fnn.Params, torch.Generator]:
        gen = torch.Generator().manual_seed(args.seed + i)
        return fnn.init_params(sizes, gen, dev), gen

    # warm-up (kernels, allocator) outside the timings: one SGD epoch of a 2-member group
    w = [start(i) for i in range(min(2, m))]
    logging.getLogger("errorless").setLevel(logging.ERROR)
    sgd.train_sgd_group(
        [p for p, _ in w], x[: len(w)], y[: len(w)], SGDSettings(max_epochs=1), [g for _, g in w]
    )
    logging.getLogger("errorless").setLevel(logging.NOTSET)
    sync()

    def alone(i: int) -> tuple[str, float, float]:
        """Member i by the single-FNN functions: (outcome, wall s, CPU s)."""
        t, c = time.perf_counter(), time.process_time()
        p, gen = start(i)
        s_res, _ = sgd.train_sgd(p, x[i], y[i], s_set, gen)
        r = gdtgroup.run_gdt(
            s_res.params, x[i], y[i], g_set, args.seed + 1 + i, decimals=4, n_classes=args.labels
        )
        sync()
        out, wall = outcome(r.params, r, x[i], y[i]), time.perf_counter() - t
        print(
            f"alone {names[i]}: {out}, {wall:.1f} s -> {args.target} FNNs one after another: "
            f"{args.target * wall / 60:.1f} min",
            flush=True,
        )
        return out, wall, time.process_time() - c

    # per FNN: the first half of the k members alone before the group, the rest after it, so
    # that a change of machine load during the run biases neither path
    singles = [alone(i) for i in range(k // 2)]

    # ---- batched: one group of M
    t, c = time.perf_counter(), time.process_time()
    starts = [start(i) for i in range(m)]
    res = sgd.train_sgd_group(
        [p for p, _ in starts], x, y, s_set, [g for _, g in starts], names=names
    )
    sync()
    t_sgd_b = time.perf_counter() - t
    runs = [
        gdt.GDT(
            res[i][0].params,
            x[i],
            y[i],
            g_set,
            args.seed + 1 + i,
            decimals=4,
            n_classes=args.labels,
            name=names[i],
        )
        for i in range(m)
    ]
    t_res = gdtgroup.run_group(runs)
    sync()
    t_batched, c_batched = time.perf_counter() - t, time.process_time() - c
    batched_out = [outcome(r.params, r, x[i], y[i]) for i, r in enumerate(t_res)]
    groups = math.ceil(args.target / m)
    print(
        f"batched: {t_batched:.1f} s for {m} FNNs (SGD {t_sgd_b:.1f} s) -> {args.target} FNNs as {groups} "
        f"groups of {m}: {groups * t_batched / 60:.1f} min",
        flush=True,
    )
    singles += [alone(i) for i in range(k // 2, k)]

    single_out = [o for o, _, _ in singles]
    t_single, c_single = sum(w for _, w, _ in singles), sum(c for _, _, c in singles)
    per_single = t_single / k
    print(
        f"batched, {m} FNNs as one group: {t_batched:.1f} s (SGD {t_sgd_b:.1f} s, GDT {t_batched - t_sgd_b:.1f} s)"
        f" = {t_batched / m:.2f} s per FNN = {3600 * m / t_batched:.0f} FNNs/hour; CPU {c_batched / m:.1f} s per FNN"
    )
    print(
        f"per FNN, {k} FNNs one after another: {t_single:.1f} s = {per_single:.2f} s per FNN = "
        f"{3600 / per_single:.0f} FNNs/hour; CPU {c_single / k:.1f} s per FNN (compute only: no process "
        f"start-up per job)"
    )
    print(
        f"ratio batched / per FNN: {per_single * m / t_batched:.2f} x the FNNs per hour "
        f"(CPU seconds per FNN: {c_single / k / (c_batched / m):.2f} x)"
    )
    for i in range(m):
        one = single_out[i] if i < k else "(not run alone)"
        print(f"  {names[i]:>10}: batched {batched_out[i]}; alone {one}")
    same = sum(batched_out[i].split()[0] == single_out[i].split()[0] for i in range(k))
    print(f"same status batched and alone: {same} of {k}")

    groups = math.ceil(args.target / m)
    print(
        f"extrapolation to {args.target} FNNs (method: {groups} groups of {m}, each costing the measured "
        f"group time; the per-FNN path at the measured mean per FNN of the {k} run alone, without the "
        f"~14 s process start-up a per-FNN job adds):"
    )
    print(
        f"  batched {groups * t_batched / 60:.1f} min, per FNN {args.target * per_single / 60:.1f} min "
        f"on this {dev.type}; load average {os.getloadavg()}"
    )
    if args.record:
        record(
            f"train_many-{args.data}-{args.device}-{m}",
            f"{m} ImageNet-size FNNs batched vs one after another ({args.data}, {args.device})",
            f"{args.data}: {args.images:,} inputs of 900 per FNN, {args.labels} labels, h1; "
            f"{m} members batched, {k} also alone; {torch.get_num_threads()} thread(s)",
            [
                ("batched group: wall s", t_batched),
                ("... SGD s", t_sgd_b),
                ("... CPU s per FNN", c_batched / m),
                ("one after another: wall s per FNN", per_single),
                ("... CPU s per FNN", c_single / k),
                ("FNNs per hour, batched / one after another", per_single * m / t_batched),
                ("same status batched and alone", f"{same} of {k}"),
                (f"{args.target} FNNs extrapolated, batched: min", groups * t_batched / 60),
                (
                    f"{args.target} FNNs extrapolated, one after another: min",
                    args.target * per_single / 60,
                ),
            ]
            + [(f"member {names[i]}", f"batched {batched_out[i]}") for i in range(m)],
        )


if __name__ == "__main__":
    main()
