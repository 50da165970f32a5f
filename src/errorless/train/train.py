"""``errorless train``: one FNN job — SGD to the threshold (S, Sp), then GDT (T) — or a
group of FNNs of one shard (several ``--feature``) trained side by side in one process.

Writes ``weights.npz`` and ``metrics.json`` per FNN (docs/ARCHITECTURE.md) atomically; a
group writes exactly the files its FNNs would write as single jobs (statuses equal, weights
equal up to float rounding). A checkpoint (not a Snakemake output; one per job, covering
every FNN of a group) is written during SGD and after GDT λ-steps (at most every
``gdt.checkpoint_seconds``); a restart with the same fingerprint (settings + inputs + seeds)
resumes from it and ends with bit-identical weights. The checkpoint is deleted once the
outputs are written.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from errorless import fnn
from errorless.train.checkpoint import Checkpoint, open_checkpoint
from errorless.train.gdt import GDT
from errorless.train.gdtgroup import run_group
from errorless.train.job import Job, load_job
from errorless.train.outputs import write_outputs
from errorless.train.sgd import pack_result, train_sgd_group, unpack_result

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- CLI


def train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", required=True, help="shard .npz written by `errorless modularize`")
    p.add_argument(
        "--feature",
        required=True,
        nargs="+",
        help="colour feature (R, G, ..., or gray); several: a group of FNNs of this shard, "
        "trained side by side (one --weights and --metrics per feature, in order)",
    )
    p.add_argument("--model", required=True, help="trained model '<arch>_m<replicate>', e.g. h1_m1")
    p.add_argument(
        "--settings",
        required=True,
        help="validated config as a JSON string, or @FILE holding it (YAML/JSON)",
    )
    p.add_argument(
        "--weights", required=True, nargs="+", help="output weights .npz (one per feature)"
    )
    p.add_argument(
        "--metrics", required=True, nargs="+", help="output metrics .json (one per feature)"
    )
    p.add_argument(
        "--checkpoint", help="checkpoint .pt of the job (resumed when its fingerprint matches)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="override the config's device")


SGDPair = tuple[Any, Any]  # (S result, Sp result or None) of one FNN


def sgd_phase(job: Job, ckpt: Checkpoint, payload: dict[str, Any] | None) -> list[SGDPair]:
    """SGD of every FNN (S, Sp), or its results from a checkpoint written after SGD."""
    if payload is not None and payload.get("sgd") is not None:
        g = payload.get("gdt")
        where = (
            "; ".join(
                f"{nm + ' ' if nm else ''}at round {st['round']}, λ={st['lam_ok']:.6f}"
                for nm, st in zip(job.names, g, strict=True)
            )
            if g
            else "after SGD"
        )
        log.info("resuming from checkpoint %s %s", ckpt.path, where)
        dev = job.device
        return [(unpack_result(d["S"], dev), unpack_result(d["Sp"], dev)) for d in payload["sgd"]]
    gens = [torch.Generator().manual_seed(sd) for sd in job.seeds]
    params = [
        fnn.init_params(job.sizes, gen, job.device, kind=job.sgd.init, bound=job.sgd.init_bound)
        for gen in gens
    ]
    progress = payload.get("sgd_progress") if payload is not None else None
    if progress is not None:
        log.info(
            "resuming from checkpoint %s during SGD, after epoch %s",
            ckpt.path,
            ", ".join(str(st["epoch"]) for st in progress["members"]),
        )

    def on_sgd_progress(state: dict[str, Any]) -> None:
        ckpt.save(sgd=None, sgd_progress=state, gdt=None)

    sgd_res = train_sgd_group(
        params,
        job.x,
        job.y.expand(job.m, len(job.y_np)),
        job.sgd,
        gens,
        names=job.names,
        resume=progress,
        on_progress=on_sgd_progress,
        every=job.gdt.checkpoint_seconds,
    )
    if job.gdt.enabled:
        ckpt.save(gdt=None, sgd=sgd_state(sgd_res))  # phase boundary
    return sgd_res


def sgd_state(sgd_res: list[SGDPair]) -> list[dict[str, Any]]:
    """The SGD results as the checkpoint holds them."""
    return [{"S": pack_result(sr), "Sp": pack_result(spr)} for sr, spr in sgd_res]


def gdt_phase(job: Job, sgd_res: list[SGDPair], ckpt: Checkpoint, payload) -> list[Any]:
    """GDT of every FNN from its S weights (T), resumed from the checkpoint's GDT state."""
    if not job.gdt.enabled:
        return [None] * job.m
    runs = [
        GDT(
            sgd_res[i][0].params,
            job.x[i],
            job.y,
            job.gdt,
            job.seeds[i] ^ 0x5EED,
            loss=job.loss,
            decimals=int(job.cfg["weights"]["decimals"]),
            n_classes=job.n_labels,
            name=job.names[i],
        )
        for i in range(job.m)
    ]
    if payload is not None and payload.get("gdt") is not None:
        for r, st in zip(runs, payload["gdt"], strict=True):
            r.load_state_dict(st)
    sgd = payload["sgd"] if payload is not None and payload.get("sgd") is not None else None
    sgd = sgd if sgd is not None else sgd_state(sgd_res)

    def on_checkpoint(states: list[dict[str, Any]]) -> None:
        ckpt.save(gdt=states, sgd=sgd)

    t_res = run_group(runs, on_checkpoint)
    for nm, r in zip(job.names, t_res, strict=True):
        log.info(
            "%sGDT done: %s, accuracy %.5f, %d rounds, %d accepted / %d rejected λ-steps, %.1f s",
            f"[{nm}] " if nm else "",
            r.stop_reason,
            r.accuracy,
            r.rounds,
            r.accepted,
            r.rejected,
            r.seconds,
        )
    return t_res


def train_main(args: argparse.Namespace) -> int:
    job = load_job(args)
    ckpt = open_checkpoint(job, args)
    payload = ckpt.load()
    sgd_res = sgd_phase(job, ckpt, payload)
    t_res = gdt_phase(job, sgd_res, ckpt, payload)
    for i in range(job.m):
        s_res, sp_res = sgd_res[i]
        outputs = (args.weights[i], args.metrics[i])
        write_outputs(job, i, ckpt.fingerprints[i], s_res, sp_res, t_res[i], *outputs)
    ckpt.remove()
    return 0
