"""A training job's outputs: every FNN's rounded weights (``.weights.npz``) and metrics
(``.metrics.json``: the S, S′ and T records)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from errorless import fnn
from errorless.config import TransformSettings
from errorless.io import arrays_digest, write_json, write_npz
from errorless.names import proto_name
from errorless.train.gdtstate import classify_status
from errorless.train.job import Job

log = logging.getLogger(__name__)


def write_outputs(
    job: Job,
    i: int,
    fp: str,
    s_res,
    sp_res,
    t_res,
    weights_path: str,
    metrics_path: str,
) -> None:
    """``weights.npz`` and ``metrics.json`` of FNN ``i`` of the job (docs/ARCHITECTURE.md)."""
    cfg, feature = job.cfg, job.features[i]
    arrays, records, truncated = fnn_records(job, i, s_res, sp_res, t_res)
    check_decimals = int(cfg["weights"]["check_decimals"])
    section = {
        "shard": job.shard_path,
        "feature": feature,
        "model": job.model,
        "module": job.module,
        "submodule": job.submodule,
        "seed": job.seeds[i],
        "device": cfg["device"],
        "threads": torch.get_num_threads(),
        "fingerprint": fp,
        "weights_sha256": arrays_digest(arrays),
        f"accuracy_truncated_{check_decimals}": truncated,
        "gdt_stop_reason": t_res.stop_reason if t_res else None,
        "gdt_round_starts": t_res.round_starts if t_res else [],
        "gdt_resumed": bool(t_res.resumed) if t_res else False,
        "gdt_choices": {
            "streak_resets_after_growth": True,
            "rounded_check_at_lambda_1": True,
            "lambda_step_goes_on_to_max_steps": job.gdt.max_steps > job.gdt.steps,
            "consolidation_at_lambda_0": job.gdt.consolidate_steps > 0,
        },
    }
    write_npz(weights_path, **arrays)
    write_json(metrics_path, {"job": section, "records": records})
    decimals = int(cfg["weights"]["decimals"])
    for r in records:
        log.info(
            "%s %s: accuracy %.5f (rounded to %d decimals), status %s, %d residual errors",
            r["proto"],
            feature,
            r["accuracy"],
            decimals,
            r["status"],
            len(r["residual_ids"]),
        )


def fnn_records(job: Job, i: int, s_res, sp_res, t_res):
    """The saved arrays, one metrics record per method (S, Sp, T) and the accuracy of the
    saved weights cut to ``weights.check_decimals`` of FNN ``i`` of the job."""
    cfg, shard, x, y, y_np = job.cfg, job.shard, job.x[i], job.y, job.y_np
    decimals = int(cfg["weights"]["decimals"])
    check_decimals = int(cfg["weights"]["check_decimals"])
    n, c = y_np.shape[0], job.n_labels
    settings_used = {
        "seed": cfg["seed"],
        "device": cfg["device"],
        "sgd": asdict(job.sgd),
        "gdt": asdict(job.gdt),
        "transform": asdict(TransformSettings.from_dict(cfg["transform"])),
        "weights": dict(cfg["weights"]),
        "hidden": job.hidden,
    }
    base = dict(
        model=job.model,
        arch=job.arch,
        replicate=job.replicate,
        feature=job.features[i],
        module=job.module,
        submodule=job.submodule,
        n_images=n,
        n_inputs=int(x.shape[1]),
        n_labels=c,
        label_lo=shard.label_lo,
        module_labels=shard.module_labels.tolist(),
        hidden=job.hidden,
        n_params=fnn.n_params(job.sizes),
        accuracy_sgd=s_res.accuracy,
        seed=job.seeds[i],
        settings=settings_used,
    )
    produced: list[tuple[str, fnn.Params, dict[str, Any]]] = [
        ("S", s_res.params, dict(epochs=s_res.epochs, seconds_sgd=s_res.seconds)),
    ]
    if sp_res is not None:
        produced.append(
            ("Sp", sp_res.params, dict(epochs=sp_res.epochs, seconds_sgd=sp_res.seconds))
        )
    if t_res is not None:
        produced.append(
            (
                "T",
                t_res.params,
                dict(
                    epochs=s_res.epochs,
                    seconds_sgd=s_res.seconds,
                    seconds_gdt=t_res.seconds,
                    gdt_rounds=t_res.rounds,
                    accepted=t_res.accepted,
                    rejected=t_res.rejected,
                    lambda_path=t_res.lambda_path,
                    delta_path=t_res.delta_path,
                    accepted_path=t_res.accepted_path,
                    steps_path=t_res.steps_path,
                    gdt_steps=t_res.steps_taken,
                    consolidation_steps=t_res.consolidation_steps,
                    round_ends=t_res.round_ends,
                    gdt_stop_reason=t_res.stop_reason,
                ),
            )
        )
    ids = shard.ids.astype(str)
    arrays: dict[str, np.ndarray] = {}
    records, truncated = [], {}
    for method, params, extra in produced:
        rounded = fnn.round_params(params, decimals)
        arrays.update(fnn.to_numpy(rounded, method))
        pred = fnn.predict(rounded, x).cpu().numpy()
        wrong = pred != y_np
        rec = dict(proto=proto_name(method, job.model), method=method, **base)
        rec.update(
            accuracy=float(1.0 - wrong.mean()),
            epochs=extra["epochs"],
            gdt_rounds=0,
            accepted=0,
            rejected=0,
            lambda_path=[],
            delta_path=[],
            accepted_path=[],
            steps_path=[],
            gdt_steps=0,
            consolidation_steps=0,
            round_ends=[],
            gdt_stop_reason="",
            conflicts=[],
            no_anchor_labels=[],
            status="sgd_only",
            seconds_sgd=extra["seconds_sgd"],
            seconds_gdt=0.0,
        )
        rec.update({k: v for k, v in extra.items() if k != "epochs"})
        rec.update(
            residual_ids=ids[wrong].tolist(),
            residual_labels=shard.module_labels[y_np[wrong]].tolist(),
            residual_predicted=shard.module_labels[pred[wrong]].tolist(),
        )
        if method == "T":
            in_conflict = np.zeros(n, dtype=bool)
            for grp in t_res.conflicts:
                in_conflict[grp] = True
            rec["conflicts"] = [
                {"ids": ids[g].tolist(), "labels": shard.module_labels[y_np[g]].tolist()}
                for g in t_res.conflicts
            ]
            rec["no_anchor_labels"] = [int(shard.module_labels[v]) for v in t_res.no_anchor]
            rec["status"] = classify_status(
                wrong, in_conflict, y_np, set(t_res.no_anchor), t_res.stop_reason
            )
        records.append(rec)
        cut = fnn.truncate_params(rounded, check_decimals, saved_decimals=decimals)
        truncated[method] = fnn.accuracy(cut, x, y)  # the saved weights, cut
    return arrays, records, truncated
