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
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errorless import fnn
from errorless.config import GDTSettings, SGDSettings, TransformSettings, parse_settings
from errorless.data.shards import Shard, load_shard
from errorless.device import resolve_device
from errorless.errors import ConfigError, DataError
from errorless.features import transform
from errorless.io import arrays_digest, atomic_path, remove_stale_temporaries, write_json, write_npz
from errorless.names import proto_name, split_model, split_shard
from errorless.train.gdt import GDT
from errorless.train.gdtgroup import run_group
from errorless.train.gdtstate import classify_status
from errorless.train.sgd import pack_result, train_sgd_group, unpack_result

log = logging.getLogger(__name__)
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


def parse_model(model: str, cfg: dict[str, Any]) -> tuple[str, int, list[int]]:
    arch, rep = split_model(model)
    if rep is None:
        raise ConfigError(f"--model {model!r}: expected '<arch>_m<replicate>', e.g. h1_m1")
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


@dataclass
class Job:
    """One training job's inputs: its settings, the shard and each FNN's transformed inputs.
    A job trains M FNNs of one shard side by side (M = 1 unless several ``--feature``)."""

    cfg: dict[str, Any]
    sgd: SGDSettings
    gdt: GDTSettings
    model: str  # h1_m1
    arch: str  # h1
    replicate: int
    hidden: list[int]
    shard_path: str
    shard: Shard
    module: str  # m01
    submodule: str  # s1
    features: list[str]  # one per FNN
    seeds: list[int]  # one per FNN
    xs_np: list[np.ndarray]  # one (N, D) float32 per FNN
    x: torch.Tensor  # (M, N, D) on the device
    y_np: np.ndarray  # (N,) local labels
    y: torch.Tensor  # (N,) on the device
    device: torch.device

    @property
    def m(self) -> int:
        return len(self.features)

    @property
    def n_labels(self) -> int:
        return self.shard.n_labels

    @property
    def sizes(self) -> list[int]:
        return fnn.layer_sizes(self.xs_np[0].shape[1], self.hidden, self.n_labels)

    @property
    def names(self) -> list[str]:
        """Log tags of the FNNs: their features in a group, none for one FNN."""
        return self.features if self.m > 1 else [""]

    @property
    def loss(self) -> fnn.Loss:
        return fnn.Loss(self.sgd.loss, self.sgd.temperature)


def check_outputs(args: argparse.Namespace) -> list[str]:
    """The job's features, each named once and with one --weights and --metrics file."""
    features = list(args.feature)
    if len(args.weights) != len(features) or len(args.metrics) != len(features):
        raise ConfigError(
            f"--weights and --metrics: one file each per --feature ({len(features)} features, "
            f"{len(args.weights)} weights, {len(args.metrics)} metrics)"
        )
    if len(set(features)) != len(features):
        raise ConfigError(f"--feature: a feature is named twice in {features}")
    return features


def read_shard(path: str) -> tuple[Shard, np.ndarray]:
    """The shard and its local labels (N,), checked against the module's label range."""
    shard = load_shard(path)
    if shard.labels.shape[0] == 0:
        raise DataError(f"{path}: shard has no images")
    y_np = shard.local_labels
    if y_np.min() < 0:
        raise DataError(
            f"{path}: labels outside the module's labels "
            f"({shard.label_lo}..{shard.label_hi - 1}: {shard.n_labels} labels)"
        )
    return shard, y_np


def load_job(args: argparse.Namespace) -> Job:
    """Settings, shard and every feature's inputs of the job the command line names."""
    cfg = parse_settings(args.settings)
    if args.device:
        cfg["device"] = args.device
    torch.set_num_threads(max(1, int(args.threads)))
    device = resolve_device(cfg["device"])
    arch, rep, hidden = parse_model(args.model, cfg)
    features = check_outputs(args)
    sgd_s, gdt_s = SGDSettings.from_dict(cfg["sgd"]), GDTSettings.from_dict(cfg["gdt"])
    tr_s = TransformSettings.from_dict(cfg["transform"])
    shard, y_np = read_shard(args.shard)
    module, submodule = split_shard(shard.name)
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
            len(y_np),
            xs_np[-1].shape[1],
            shard.n_labels,
            time.perf_counter() - t,
        )
    if len({x.shape[1] for x in xs_np}) > 1:
        raise ConfigError(
            f"--feature {' '.join(features)}: a group needs features of one input size "
            f"(got {[x.shape[1] for x in xs_np]})"
        )
    return Job(
        cfg=cfg,
        sgd=sgd_s,
        gdt=gdt_s,
        model=args.model,
        arch=arch,
        replicate=rep,
        hidden=hidden,
        shard_path=str(args.shard),
        shard=shard,
        module=module,
        submodule=submodule,
        features=features,
        seeds=seeds,
        xs_np=xs_np,
        x=torch.as_tensor(np.stack(xs_np), device=device),  # (M, N, D)
        y_np=y_np,
        y=torch.as_tensor(y_np, dtype=torch.int64, device=device),
        device=device,
    )


@dataclass
class Checkpoint:
    """The job's checkpoint file (None: no checkpoints) and what makes it valid."""

    path: Path | None
    fingerprints: list[str]  # one per FNN
    env: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        fps = self.fingerprints
        return fps[0] if len(fps) == 1 else hashlib.sha256("\n".join(fps).encode()).hexdigest()

    def load(self) -> dict[str, Any] | None:
        return load_checkpoint(self.path, self.fingerprint, self.env)

    def save(self, **state: Any) -> None:
        if self.path is not None:
            save_checkpoint(self.path, {"fingerprint": self.fingerprint, "env": self.env, **state})

    def remove(self) -> None:
        if self.path is not None and self.path.exists():
            os.unlink(self.path)  # the job is complete: a rerun must start fresh


def open_checkpoint(job: Job, args: argparse.Namespace) -> Checkpoint:
    """The job's checkpoint, after removing temporaries a killed job left beside its files."""
    path = Path(args.checkpoint) if args.checkpoint else None
    for out in (*args.weights, *args.metrics, *([path] if path else [])):
        for tmp in remove_stale_temporaries(out):  # left by a job killed while writing
            log.info("removed a stale temporary file %s", tmp)
    env = numerics_env(job.device)
    fps = [
        fingerprint(
            job.cfg,
            job.hidden,
            f,
            job.model,
            sd,
            xn,
            job.y_np,
            job.shard.ids,
            job.cfg["device"],
            env,
        )
        for f, sd, xn in zip(job.features, job.seeds, job.xs_np, strict=True)
    ]
    return Checkpoint(path, fps, env)


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
