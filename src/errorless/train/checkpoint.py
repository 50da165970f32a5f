"""A training job's checkpoint: one file per job holding every FNN's SGD and GDT state, refused
when the job's fingerprint (settings, data, numerics) changed."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errorless.io import atomic_path, remove_stale_temporaries
from errorless.train.job import Job

log = logging.getLogger(__name__)


CHECKPOINT_VERSION = 2  # 2: one checkpoint per job holds every FNN of a group
# settings that do not change the result: a checkpoint stays valid when only these change
NOT_IN_FINGERPRINT = ("checkpoint_seconds", "max_seconds")


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
