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
import hashlib
import json
import logging
import os
import re
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import fnn
from .config import GDTSettings, SGDSettings, TransformSettings, parse_settings
from .errors import ConfigError, DataError
from .gdt import GDT, classify_status, run_group
from .io import arrays_digest, atomic_path, remove_stale_temporaries, write_json, write_npz
from .names import proto_name, split_shard
from .sgd import pack_result, train_sgd_group, unpack_result

log = logging.getLogger(__name__)
MODEL_RE = re.compile(r"^(?P<arch>h\d+)_m(?P<rep>\d+)$")
CHECKPOINT_VERSION = 2  # 2: one checkpoint per job holds every FNN of a group
# settings that do not change the result: a checkpoint stays valid when only these change
NOT_IN_FINGERPRINT = ("checkpoint_seconds", "max_seconds")


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


def job_seed(base: int, model: str, feature: str, module: str, submodule: str) -> int:
    """Base seed + a stable (process-independent) hash of the job's wildcards."""
    return int(base) + zlib.crc32(f"{model}/{feature}/{module}/{submodule}".encode())


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key device: 'cuda' requested but no CUDA device is available "
            "(torch.cuda.is_available() is False); use device: cpu or a GPU node"
        )
    return torch.device(name)


def parse_model(model: str, cfg: dict[str, Any]) -> tuple[str, int, list[int]]:
    m = MODEL_RE.match(model)
    if not m:
        raise ConfigError(f"--model {model!r}: expected '<arch>_m<replicate>', e.g. h1_m1")
    arch, rep = m["arch"], int(m["rep"])
    archs = cfg["models"]["architectures"]
    if arch not in archs:
        raise ConfigError(
            f"config key models.architectures: no architecture {arch!r} "
            f"(model {model!r}); known: {sorted(archs)}"
        )
    return arch, rep, [int(h) for h in archs[arch]]


# ---------------------------------------------------------------- checkpoint


def numerics_env(device: torch.device) -> dict[str, Any]:
    """What changes the floating-point result besides the settings: the CPU thread count
    (reduction order), the device, and the library versions doing the arithmetic."""
    env = {
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def fingerprint(
    cfg: dict[str, Any],
    hidden: list[int],
    feature: str,
    model: str,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    ids: np.ndarray,
    device: str,
    env: dict[str, Any] | None = None,
) -> str:
    gdt = {k: v for k, v in cfg["gdt"].items() if k not in NOT_IN_FINGERPRINT}
    keys = {
        "sgd": cfg["sgd"],
        "gdt": gdt,
        "transform": cfg["transform"],
        "weights": cfg["weights"],
        "hidden": hidden,
        "feature": feature,
        "model": model,
        "seed": seed,
        "device": device,
        "env": env,
        "version": CHECKPOINT_VERSION,
    }
    h = hashlib.sha256(json.dumps(keys, sort_keys=True).encode())
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(a.tobytes())
    h.update("\n".join(ids.astype(str).tolist()).encode())
    return h.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: Path | None, fp: str, env: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        log.warning("checkpoint %s is unreadable (%s); ignored, starting fresh", path, e)
        return None
    if not isinstance(payload, dict):
        log.warning("checkpoint %s is not a checkpoint; ignored, starting fresh", path)
        return None
    old_env = payload.get("env")
    if (
        payload.get("fingerprint") != fp
        and env is not None
        and isinstance(old_env, dict)
        and old_env != env
    ):
        diff = ", ".join(
            f"{k} {old_env.get(k)} -> {env.get(k)}"
            for k in sorted(set(env) | set(old_env))
            if old_env.get(k) != env.get(k)
        )
        log.warning(
            "checkpoint %s was written under other numerics (%s): resuming would give a "
            "result that differs from a clean run; ignored, starting fresh",
            path,
            diff,
        )
        return None
    if payload.get("fingerprint") != fp:
        log.info(
            "checkpoint %s was written with other settings/inputs (fingerprint differs); "
            "ignored, starting fresh",
            path,
        )
        return None
    return payload


# ---------------------------------------------------------------- the job


def train_main(args: argparse.Namespace) -> int:
    from .features import transform
    from .shards import load_shard

    cfg = parse_settings(args.settings)
    if args.device:
        cfg["device"] = args.device
    torch.set_num_threads(max(1, int(args.threads)))
    device = resolve_device(cfg["device"])
    arch, rep, hidden = parse_model(args.model, cfg)
    features = list(args.feature)
    if len(args.weights) != len(features) or len(args.metrics) != len(features):
        raise ConfigError(
            f"--weights and --metrics: one file each per --feature ({len(features)} features, "
            f"{len(args.weights)} weights, {len(args.metrics)} metrics)"
        )
    if len(set(features)) != len(features):
        raise ConfigError(f"--feature: a feature is named twice in {features}")
    sgd_s = SGDSettings.from_dict(cfg["sgd"])
    gdt_s = GDTSettings.from_dict(cfg["gdt"])
    tr_s = TransformSettings.from_dict(cfg["transform"])
    decimals = int(cfg["weights"]["decimals"])

    shard = load_shard(args.shard)
    module, submodule = split_shard(shard.name)
    n = shard.labels.shape[0]
    c = shard.label_hi - shard.label_lo
    if n == 0:
        raise DataError(f"{args.shard}: shard has no images")
    y_np = shard.labels - shard.label_lo
    if y_np.min() < 0 or y_np.max() >= c:
        raise DataError(
            f"{args.shard}: labels outside the module's range [{shard.label_lo}, {shard.label_hi})"
        )
    xs_np, seeds = [], []
    for feature in features:
        t = time.perf_counter()
        xs_np.append(
            transform(shard.images, feature, pool=tr_s.pool, trim=tr_s.trim, decimals=tr_s.decimals)
        )
        seeds.append(job_seed(cfg["seed"], args.model, feature, module, submodule))
        log.info(
            "job %s %s %s_%s: %d images, %d inputs, %d labels (transform %.1f s)",
            args.model,
            feature,
            module,
            submodule,
            n,
            xs_np[-1].shape[1],
            c,
            time.perf_counter() - t,
        )
    if len({x.shape[1] for x in xs_np}) > 1:
        raise ConfigError(
            f"--feature {' '.join(features)}: a group needs features of one input size "
            f"(got {[x.shape[1] for x in xs_np]})"
        )
    m = len(features)
    x = torch.as_tensor(np.stack(xs_np), device=device)  # (M, N, D)
    y = torch.as_tensor(y_np, dtype=torch.int64, device=device)
    sizes = fnn.layer_sizes(xs_np[0].shape[1], hidden, c)
    names = features if m > 1 else [""]

    ckpt_path = Path(args.checkpoint) if args.checkpoint else None
    for out in (*args.weights, *args.metrics, *([ckpt_path] if ckpt_path else [])):
        for tmp in remove_stale_temporaries(out):  # left by a job killed while writing
            log.info("removed a stale temporary file %s", tmp)
    env = numerics_env(device)
    fps = [
        fingerprint(cfg, hidden, f, args.model, sd, xn, y_np, shard.ids, cfg["device"], env)
        for f, sd, xn in zip(features, seeds, xs_np, strict=True)
    ]
    fp = fps[0] if m == 1 else hashlib.sha256("\n".join(fps).encode()).hexdigest()
    payload = load_checkpoint(ckpt_path, fp, env)

    # ---- SGD
    if payload is not None and payload.get("sgd") is not None:
        sgd_res = [
            (unpack_result(d["S"], device), unpack_result(d["Sp"], device)) for d in payload["sgd"]
        ]
        g = payload.get("gdt")
        where = (
            "; ".join(
                f"{nm + ' ' if nm else ''}at round {st['round']}, λ={st['lam_ok']:.6f}"
                for nm, st in zip(names, g, strict=True)
            )
            if g
            else "after SGD"
        )
        log.info("resuming from checkpoint %s %s", ckpt_path, where)
    else:
        gens = [torch.Generator().manual_seed(sd) for sd in seeds]
        params = [
            fnn.init_params(sizes, gen, device, kind=sgd_s.init, bound=sgd_s.init_bound)
            for gen in gens
        ]
        progress = payload.get("sgd_progress") if payload is not None else None
        if progress is not None:
            log.info(
                "resuming from checkpoint %s during SGD, after epoch %s",
                ckpt_path,
                ", ".join(str(st["epoch"]) for st in progress["members"]),
            )

        def on_sgd_progress(state: dict[str, Any]) -> None:
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    {
                        "fingerprint": fp,
                        "env": env,
                        "sgd": None,
                        "sgd_progress": state,
                        "gdt": None,
                    },
                )

        sgd_res = train_sgd_group(
            params,
            x,
            y.expand(m, n),
            sgd_s,
            gens,
            names=names,
            resume=progress,
            on_progress=on_sgd_progress,
            every=gdt_s.checkpoint_seconds,
        )
        payload = {
            "fingerprint": fp,
            "env": env,
            "gdt": None,
            "sgd": [{"S": pack_result(sr), "Sp": pack_result(spr)} for sr, spr in sgd_res],
        }
        if ckpt_path is not None and gdt_s.enabled:
            save_checkpoint(ckpt_path, payload)  # phase boundary

    # ---- GDT
    t_res: list[Any] = [None] * m
    if gdt_s.enabled:
        runs = [
            GDT(
                sgd_res[i][0].params,
                x[i],
                y,
                gdt_s,
                seeds[i] ^ 0x5EED,
                loss=fnn.Loss(sgd_s.loss, sgd_s.temperature),
                decimals=decimals,
                n_classes=c,
                name=names[i],
            )
            for i in range(m)
        ]
        if payload.get("gdt") is not None:
            for r, st in zip(runs, payload["gdt"], strict=True):
                r.load_state_dict(st)

        def on_checkpoint(states: list[dict[str, Any]]) -> None:
            if ckpt_path is not None:
                save_checkpoint(ckpt_path, {**payload, "gdt": states})

        t_res = run_group(runs, on_checkpoint)
        for nm, r in zip(names, t_res, strict=True):
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

    # ---- outputs
    for i, feature in enumerate(features):
        write_outputs(
            args,
            cfg,
            shard,
            feature,
            seeds[i],
            fps[i],
            x[i],
            y_np,
            sizes,
            hidden,
            arch,
            rep,
            sgd_res[i][0],
            sgd_res[i][1],
            t_res[i],
            args.weights[i],
            args.metrics[i],
        )
    if ckpt_path is not None and ckpt_path.exists():
        os.unlink(ckpt_path)  # the job is complete: a rerun must start fresh
    return 0


def write_outputs(
    args,
    cfg,
    shard,
    feature,
    seed,
    fp,
    x,
    y_np,
    sizes,
    hidden,
    arch,
    rep,
    s_res,
    sp_res,
    t_res,
    weights_path,
    metrics_path,
) -> None:
    """``weights.npz`` and ``metrics.json`` of one FNN (docs/ARCHITECTURE.md)."""
    sgd_s = SGDSettings.from_dict(cfg["sgd"])
    gdt_s = GDTSettings.from_dict(cfg["gdt"])
    tr_s = TransformSettings.from_dict(cfg["transform"])
    decimals = int(cfg["weights"]["decimals"])
    check_decimals = int(cfg["weights"]["check_decimals"])
    module, submodule = split_shard(shard.name)
    n, c = y_np.shape[0], sizes[-1]
    y = torch.as_tensor(y_np, dtype=torch.int64, device=x.device)
    settings_used = {
        "seed": cfg["seed"],
        "device": cfg["device"],
        "sgd": asdict(sgd_s),
        "gdt": asdict(gdt_s),
        "transform": asdict(tr_s),
        "weights": dict(cfg["weights"]),
        "hidden": hidden,
    }
    base = dict(
        model=args.model,
        arch=arch,
        replicate=rep,
        feature=feature,
        module=module,
        submodule=submodule,
        n_images=n,
        n_inputs=int(x.shape[1]),
        n_labels=c,
        label_lo=shard.label_lo,
        hidden=hidden,
        n_params=fnn.n_params(sizes),
        accuracy_sgd=s_res.accuracy,
        seed=seed,
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
        rec = dict(proto=proto_name(method, args.model), method=method, **base)
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
            residual_labels=(y_np[wrong] + shard.label_lo).tolist(),
            residual_predicted=(pred[wrong] + shard.label_lo).tolist(),
        )
        if method == "T":
            in_conflict = np.zeros(n, dtype=bool)
            for grp in t_res.conflicts:
                in_conflict[grp] = True
            rec["conflicts"] = [
                {"ids": ids[g].tolist(), "labels": (y_np[g] + shard.label_lo).tolist()}
                for g in t_res.conflicts
            ]
            rec["no_anchor_labels"] = [int(v) + shard.label_lo for v in t_res.no_anchor]
            rec["status"] = classify_status(
                wrong, in_conflict, y_np, set(t_res.no_anchor), t_res.stop_reason
            )
        records.append(rec)
        cut = fnn.truncate_params(rounded, check_decimals, saved_decimals=decimals)
        truncated[method] = fnn.accuracy(cut, x, y)  # the saved weights, cut
    job = {
        "shard": str(args.shard),
        "feature": feature,
        "model": args.model,
        "module": module,
        "submodule": submodule,
        "seed": seed,
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
            "lambda_step_goes_on_to_max_steps": gdt_s.max_steps > gdt_s.steps,
            "consolidation_at_lambda_0": gdt_s.consolidate_steps > 0,
        },
    }
    write_npz(weights_path, **arrays)
    write_json(metrics_path, {"job": job, "records": records})
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
